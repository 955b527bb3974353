"""The supervisor's handle on the helper process (spawn, talk, reap).

Rules:
- ``spawn`` uses posix_spawn and imports nothing heavy: ``prun run``
  starts the helper before the CLI imports click (rootless.entry), so the
  helper's interpreter start and the FUSE server's imports overlap with the
  supervisor's own start-up. ``take`` hands that pre-started helper to the
  supervisor (or spawns one now).
- A helper that never gets its Spec (a flag error, ``--help``) sees EOF on
  its socket and exits; its FUSE child sees EOF on its pipe and exits.
- ``close`` always reaps: kill if still running, then waitpid.
- A helper for ``run -d`` becomes the container's keeper and outlives us:
  it starts in its own session with /dev/null as stdio. The pre-started
  helper is made for the mode the command line suggests; ``take`` replaces
  it when the guess was wrong.
- A helper for ``--network container:`` (``join``) gets the extra argument
  ``join``: it waits for its Spec and joins the target's user namespace
  instead of creating one (rootless.containers.netjoin).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

from fusefs import LIBFUSE
from rootless import protocol as P

_prestarted: Helper | None = None


class HelperDied(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"the namespace helper exited (status {status}) before reporting")
        self.status = status


class Helper:
    def __init__(self, detach: bool = False, join: bool = False) -> None:
        self.detach = detach
        self.join = join
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        site = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
        env = {k: v for k, v in os.environ.items() if k.startswith(("PRUN_", "LANG", "LC_"))}
        env["PYTHONPATH"] = os.pathsep.join([pkg, *site])
        env["FUSE_LIBRARY_PATH"] = LIBFUSE   # fusepy: skip find_library's ldconfig run
        os.set_inheritable(theirs.fileno(), True)
        stdio = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0),
                 (os.POSIX_SPAWN_DUP2, 0, 1), (os.POSIX_SPAWN_DUP2, 0, 2)] if detach else []
        self.pid = os.posix_spawn(
            sys.executable, [sys.executable, "-S", "-P", "-m", "rootless._helper",
                             str(theirs.fileno()), *(["join"] if join else [])], env, setsid=detach, file_actions=stdio)
        theirs.close()
        self.sock = ours
        self.status: int | None = None

    def send(self, msg: P.Message, fds: list[int] | None = None) -> None:
        P.send(self.sock, msg, fds)

    def recv(self) -> tuple[P.Message, list[int]]:
        try:
            return P.recv(self.sock)
        except P.ProtocolError:
            raise HelperDied(self.wait()) from None

    def wait(self) -> int:
        if self.status is None:
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):  # already gone: waitpid reaps it
                os.kill(self.pid, signal.SIGKILL)
            self.wait()
        self.sock.close()


def prestart(detach: bool, join: bool = False) -> None:
    global _prestarted
    _prestarted = Helper(detach, join)


def take(detach: bool = False, join: bool = False) -> Helper:
    global _prestarted
    helper, _prestarted = _prestarted, None
    if helper is not None and (helper.detach, helper.join) != (detach, join):
        helper.close()
        helper = None
    return helper or Helper(detach, join)
