"""pasta (from passt): ``--network pasta``, when the binary is installed.

Rules:
- pasta joins the helper's user and network namespaces itself (given the
  pid), copies the host's addresses and routes into them (``--config-net``)
  and forwards exactly the planned ports: one ``-t``/``-u`` per mapping
  (``[addr/]hostPort:containerPort``; IPv6 host addresses work), and
  ``none`` for every direction not asked for (pasta's default would forward
  whatever the container binds).
- Readiness: without ``--foreground`` pasta daemonizes once the namespace is
  configured and its ports are bound, so its parent exiting 0 is the ready
  signal; a bind failure is its non-zero exit with the cause on stderr.
- Lifetime: the daemon is not our child. ``Pasta.stop`` sends SIGTERM and
  waits on a pidfd. pasta keeps the namespace alive itself, so after a
  SIGKILLed supervisor it would linger: ``cleanup`` (run by the next
  ``prun run``) stops a pasta whose supervisor (``pasta.owner``) and helper
  (``pasta.target``, which outlives the supervisor with ``run -d``) are gone.
- Sources: pasta shows loopback clients as 127.0.0.1 inside (it splices the
  connection to the container's loopback) and remote clients with their own
  address.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
from pathlib import Path

from netstack.ports import PortMapping
from netstack.procs import is_live
from rootless.errors import ContainerError, HostSetupError

PID_NAME = "pasta.pid"
OWNER_NAME = "pasta.owner"   # the supervisor's pid
TARGET_NAME = "pasta.target"  # the helper's pid (lives on with run -d)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0
INSTALL_HINT = "install passt (Debian/Ubuntu: sudo apt-get install passt), or use " \
               "--network slirp4netns"


def port_spec(m: PortMapping) -> str:
    where = "" if m.host_ip in ("0.0.0.0", "::") else f"{m.host_ip}/"
    return f"{where}{m.host_port}:{m.container_port}"


def argv(binary: str, mappings: list[PortMapping], pid: int, pid_file: Path) -> list[str]:
    """pasta's command line (pure)."""
    args = [binary, "--config-net", "--quiet", "--pid", str(pid_file)]
    for flag, proto in (("-t", "tcp"), ("-u", "udp")):
        specs = [port_spec(m) for m in mappings if m.proto == proto]
        for spec in specs or ["none"]:
            args += [flag, spec]
    args += ["-T", "none", "-U", "none", str(pid)]
    return args


class Pasta:
    def __init__(self, pid: int, state_dir: Path) -> None:
        self.pid = pid
        self.state_dir = state_dir

    def stop(self) -> None:
        if self.pid:
            _terminate(self.pid)
            self.pid = 0
        _remove_state(self.state_dir)


def start(mappings: list[PortMapping], target_pid: int, state_dir: Path,
          binary: str = "pasta") -> Pasta:
    path = shutil.which(binary)
    if path is None:
        raise HostSetupError(f"use network pasta: {binary} is not installed", hint=INSTALL_HINT)
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = state_dir / PID_NAME
    (state_dir / OWNER_NAME).write_text(f"{os.getpid()}\n")
    (state_dir / TARGET_NAME).write_text(f"{target_pid}\n")
    try:
        out = subprocess.run(argv(path, mappings, target_pid, pid_file), capture_output=True,
                             text=True, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        cleanup(state_dir, force=True)
        raise ContainerError(f"start pasta for pid {target_pid}: not ready after "
                             f"{START_TIMEOUT:.0f} s") from exc
    if out.returncode != 0:
        cleanup(state_dir, force=True)
        cause = " | ".join(ln for ln in (out.stderr + out.stdout).splitlines() if ln.strip())
        raise ContainerError(f"start pasta for pid {target_pid}: it exited with code "
                             f"{out.returncode}: {cause or '(no output)'}",
                             hint="a published port may be in use, or run with "
                                  "--network slirp4netns")
    return Pasta(int(pid_file.read_text()), state_dir)


def _terminate(pid: int) -> None:
    if not is_live(pid, "pasta", "passt"):
        return
    pidfd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGTERM)
        if not select.select([pidfd], [], [], STOP_TIMEOUT)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)


def _remove_state(state_dir: Path) -> None:
    for name in (PID_NAME, OWNER_NAME, TARGET_NAME):
        (state_dir / name).unlink(missing_ok=True)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def cleanup(state_dir: Path, force: bool = False) -> bool:
    """Stop a pasta whose supervisor and helper are gone (or any, with ``force``) and
    remove its files; a pasta serving a live container is left alone.
    Returns whether anything was removed."""
    if not (state_dir / PID_NAME).exists() and not (state_dir / OWNER_NAME).exists():
        return False
    if not force and any(os.path.exists(f"/proc/{pid}") for pid in (
            _read_pid(state_dir / OWNER_NAME), _read_pid(state_dir / TARGET_NAME)) if pid):
        return False
    pid = _read_pid(state_dir / PID_NAME)
    if pid:
        _terminate(pid)
    _remove_state(state_dir)
    return True
