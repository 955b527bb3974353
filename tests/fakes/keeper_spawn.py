"""Spawn host-process keepers (tests/fakes/keeper_host.py) detached.

``start`` spawns a keeper like the supervisor does for `prun run -d` (new
session, stdio on /dev/null, readiness on the fd named by PRUN_READY_FD)
and records it in the store; ``host_launcher`` writes ``keeper.spec`` (the
keeper spec plus the argv, marshalled) into the container's runtime dir.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import subprocess
import sys
import time

from rootless.containers import keeper, lifecycle, policy
from rootless.containers.lifecycle import keeper_env, refresh
from rootless.containers.store import proc_starttime, remove_tree
from rootless.errors import ContainerError


def host_launcher(store, c):
    spec = {"rundir": str(store.run_dir(c.id)), "log_path": str(store.log_path(c.id)),
            **{k: c.config[k] for k in ("restart", "log_max_size", "log_max_files",
                                        "stop_timeout") if k in c.config}}
    with open(os.path.join(spec["rundir"], "keeper.spec"), "wb") as f:
        marshal.dump({"spec": spec, "argv": c.command}, f)
    env = keeper_env()
    env["PYTHONPATH"] += os.pathsep + os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    return [sys.executable, "-S", "-m", "tests.fakes.keeper_host", spec["rundir"]], env


def start(store, c, timeout: float = 60.0):
    """Spawn the keeper of ``c`` detached from us; return once it runs or failed."""
    refresh(store, c)
    if lifecycle.is_live(c):
        return c
    rundir = store.run_dir(c.id)
    remove_tree(rundir)
    rundir.mkdir(parents=True, mode=0o700)
    store.data_dir(c.id).mkdir(parents=True, exist_ok=True)
    argv, env = host_launcher(store, c)
    ready_r, ready_w = os.pipe()
    env = {**env, "PRUN_READY_FD": str(ready_w)}
    with open(os.devnull, "r+b") as null:
        proc = subprocess.Popen(argv, env=env, stdin=null, stdout=null, stderr=null,
                                pass_fds=(ready_w,), start_new_session=True, close_fds=True)
    os.close(ready_w)
    store.update(c, status=policy.RUNNING, keeper_pid=proc.pid,
                 keeper_start=proc_starttime(proc.pid), error="", exit_code=0)
    answer = _read_ready(ready_r, timeout)
    if answer != b"1":
        message = answer[2:].decode(errors="replace").strip() if answer.startswith(b"E ") \
            else "the keeper exited before the container started"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        refresh(store, c)
        raise ContainerError(f"start container {c.name}: {message}",
                             hint="run it in the foreground (without -d) to see its output")
    st = keeper.read_state(str(rundir))
    if st is not None:
        lifecycle.fold(store, c, st)
    return c


def _read_ready(fd: int, timeout: float) -> bytes:
    import select
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return b"E timed out waiting for the container to start"
            chunk = os.read(fd, 4096)
            data += chunk
            if not chunk or data == b"1" or data.endswith(b"\n"):
                return data
    finally:
        os.close(fd)
