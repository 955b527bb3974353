"""Container operations behind the CLI: refresh, start, stop, kill, wait, rm.

Rules:
- ``refresh`` is the one place where live state (the keeper's state.json and
  whether the keeper process still lives) is folded into the store. Every
  command that shows or changes a container calls it first, so a keeper
  killed with SIGKILL is noticed by the next command: the container shows
  as exited (exit code 137, State.Error says why) and its runtime dir
  (socket, state file) is removed. The container's own processes died with
  the keeper (PID namespace + PDEATHSIG), and the FUSE mount lived only in
  the keeper's mount namespace, so nothing else can be left.
- Talking to a keeper goes through control.request; a keeper that does not
  answer is treated as gone, never as an error to show.
- Starting is the supervisor's job (rootless.containers.detach.start): the
  helper that sets up the namespaces becomes the keeper.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from fusefs import LIBFUSE
from rootless.containers import control, keeper, policy
from rootless.containers.store import Container, Store, alive, remove_tree
from rootless.errors import ConflictError, ContainerError, PrunError

LIVE = (policy.RUNNING, policy.RESTARTING)
KEEPER_DIED = 137


def refresh(store: Store, c: Container) -> Container:
    if c.status not in LIVE:
        return c
    rundir = store.run_dir(c.id)
    st = keeper.read_state(str(rundir))
    if alive(c.keeper_pid, c.keeper_start):
        if st is not None and st["status"] != policy.CREATED:
            fold(store, c, st)
        return c
    if st is not None and st["status"] == policy.EXITED:
        fold(store, c, st)
    else:
        store.update(c, status=policy.EXITED, pid=0, exit_code=KEEPER_DIED,
                     finished_at=keeper.timestamp(),
                     error=f"the keeper process (pid {c.keeper_pid}) died; "
                           f"the container's processes died with it")
    store.update(c, keeper_pid=0, keeper_start=0)
    for d in store.runtime_dirs(c.id):
        remove_tree(d)
    return c


def fold(store: Store, c: Container, st: dict) -> None:
    changes = {k: st[k] for k in ("status", "pid", "exit_code", "started_at",
                                  "finished_at", "restart_count", "error", "oom_killed")
               if getattr(c, k) != st[k]}
    if changes:
        store.update(c, **changes)


def is_live(c: Container) -> bool:
    return c.status in LIVE


def _sock(store: Store, c: Container) -> str:
    return str(store.run_dir(c.id) / control.SOCKET_NAME)


def stop(store: Store, c: Container, timeout: float | None = None) -> Container:
    refresh(store, c)
    if not is_live(c):
        return c
    msg = {"op": "stop"}
    if timeout is not None:
        msg["timeout"] = timeout
    with contextlib.suppress(control.KeeperGone):
        control.request(_sock(store, c), msg)
        control.request(_sock(store, c), {"op": "wait"}, timeout=None)
    return _await_keeper(store, c)


def kill(store: Store, c: Container, sig: int = signal.SIGKILL) -> Container:
    refresh(store, c)
    if not is_live(c):
        raise ConflictError(f"kill container {c.name}: it is not running",
                            hint=f"see its state with 'prun ps -a -f name={c.name}'")
    with contextlib.suppress(control.KeeperGone):
        control.request(_sock(store, c), {"op": "kill", "signal": int(sig)})
    return refresh(store, c)


def wait(store: Store, c: Container) -> int:
    refresh(store, c)
    if is_live(c):
        with contextlib.suppress(control.KeeperGone):
            control.request(_sock(store, c), {"op": "wait"}, timeout=None)
        _await_keeper(store, c)
    return c.exit_code


def _await_keeper(store: Store, c: Container, grace: float = 10.0) -> Container:
    """The keeper answers wait just before it exits: give it a moment to go."""
    deadline = time.monotonic() + grace
    while alive(c.keeper_pid, c.keeper_start) and time.monotonic() < deadline:
        time.sleep(0.01)
    if alive(c.keeper_pid, c.keeper_start):
        os.kill(c.keeper_pid, signal.SIGKILL)
        while alive(c.keeper_pid, c.keeper_start):
            time.sleep(0.01)
    return refresh(store, c)


def remove(store: Store, c: Container, force: bool = False,
           volumes: bool = False) -> None:
    refresh(store, c)
    if is_live(c):
        if not force:
            raise ConflictError(f"remove container {c.name}: it is running",
                                hint=f"stop it first (prun stop {c.name}) or use prun rm -f")
        with contextlib.suppress(control.KeeperGone):
            control.request(_sock(store, c), {"op": "kill", "signal": int(signal.SIGKILL)})
        _await_keeper(store, c)
    for d in store.runtime_dirs(c.id):
        remove_tree(d)
    remove_tree(store.data_dir(c.id))
    link = store.name_link(c.name)
    if link.is_symlink() and os.readlink(link) == c.id:
        link.unlink()
    if volumes:
        for name in c.config.get("anonymous_volumes", []):
            remove_tree(store.volume_dir(name))
            store.remove_volume(name)
    store.remove(c)


def keeper_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a keeper: PATH and locale kept, prun's package importable."""
    import rootless
    env = {k: v for k, v in os.environ.items()
           if k in ("PATH", "HOME", "USER", "LANG", "LC_ALL", "XDG_RUNTIME_DIR",
                    "PRUN_LOG_LEVEL", "PRUN_ROOT", "PRUN_RUNROOT")}
    env["PYTHONPATH"] = str(Path(rootless.__file__).resolve().parent.parent)
    env.update(extra or {})
    return env


def exec_in(store: Store, c: Container, args: list[str], env: list[str], user: str | None,
            workdir: str | None, stdin: bool) -> int:
    """Run ``args`` in the running container ``c`` (rootless.containers.nsexec); its exit code."""
    import json
    import marshal
    import sys

    refresh(store, c)
    if c.status != policy.RUNNING or not c.pid:
        raise ConflictError(f"exec in container {c.name}: it is not running",
                            hint=f"start it first (prun start {c.name})")
    try:
        spec = json.loads((store.data_dir(c.id) / "config.json").read_text())["spec"]
    except FileNotFoundError as exc:
        raise ContainerError(f"exec in container {c.name}: its configuration is missing") from exc
    proc = spec["process"]
    req = {"pid": c.pid, "process": proc, "args": args, "env": env,
           "user": user if user is not None else proc["user"], "user_given": user is not None,
           "cwd": workdir or proc["cwd"], "single_map": spec["single_map"]}
    r, w = os.pipe()
    env_vars = keeper_env({"FUSE_LIBRARY_PATH": LIBFUSE})
    site = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    env_vars["PYTHONPATH"] = os.pathsep.join([env_vars["PYTHONPATH"], *site])
    with open(os.devnull, "rb") as null:
        proc_ = subprocess.Popen([sys.executable, "-S", "-P", "-m", "rootless.containers.nsexec",
                                  str(r)], pass_fds=(r,), env=env_vars,
                                 stdin=None if stdin else null)
    os.close(r)
    try:
        # Into the container's cgroup (its limits) before the command starts:
        # nsexec waits for the request below before it forks the command.
        from rootless.cgroups.manager import join
        join(c.pid, proc_.pid)
    except PrunError:
        os.close(w)
        proc_.kill()
        proc_.wait()
        raise
    os.write(w, marshal.dumps(req))
    os.close(w)
    previous = {s: signal.signal(s, lambda sig, _f: proc_.send_signal(sig))
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc_.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
