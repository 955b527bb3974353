"""`prun run -d` inside the helper: the helper becomes the container's keeper.

The helper already lives in the container's user namespace and is the
parent of the FUSE server, so for a detached container it stays on as the
keeper (rootless.containers.keeper) instead of starting one more process:
a detached container costs helper + FUSE server (+ slirp4netns) only.

Rules:
- Runs under ``python -S`` in the helper: imports only the lean keeper,
  rootless.protocol and rootless.ns.sys.
- The container init is never forked by the helper directly: a short-lived
  intermediate P does unshare(CLONE_NEWPID) and forks the init C, writes
  C's pid on a pipe and exits, so C is re-parented to the helper (a child
  subreaper). Why: a process may unshare(CLONE_NEWPID) only once (a second
  call is EINVAL), and after its first PID 1 died it could not even fork
  again; through P every restart gets a fresh PID namespace.
- The helper waits for P before it lets C exec, so C's PR_SET_PDEATHSIG
  (set right before exec) is bound to the helper, not to P: SIGKILL of the
  keeper kills the container.
- C's stdin is /dev/null, stdout and stderr are pipes the keeper copies
  into the json-file log.
- First start: the supervisor's handshake (Created, Go) as in the
  foreground; fds that come with Go (slirp4netns's exit pipe) stay open as
  long as the keeper lives; then the helper clears its own PR_SET_PDEATHSIG (the
  supervisor is about to exit), sends Detached and closes the socket.
  Restarts: the same init code with a private socketpair and no hooks.
- ``cleanup`` stops the FUSE server (its mount lives only in the helper's
  mount namespace, so nothing stays mounted on the host).
"""

from __future__ import annotations

import os
import signal
import socket

from rootless import protocol as P
from rootless.containers.keeper import Keeper, set_subreaper
from rootless.ns import sys as nsys


class InitWorkload:
    def __init__(self, spec: dict, init, fuse_pid: int) -> None:
        self.spec = spec
        self.init = init          # rootless._helper.container(sock, spec, ready_w, go_r)
        self.fuse_pid = fuse_pid
        self.first: tuple[int, int, int] | None = None
        self.sock: socket.socket | None = None   # restarts: init's Failed messages land here

    def spawn(self, sock: socket.socket) -> tuple[int, int, int, int, int]:
        """Fork P → C; return (C's pid, stdout, stderr, C's ready fd, C's go fd)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        cready_r, cready_w = os.pipe()
        cgo_r, cgo_w = os.pipe()
        pid_r, pid_w = os.pipe()
        p = os.fork()
        if p == 0:
            try:
                nsys.unshare(nsys.CLONE_NEWPID)
                c = os.fork()
                if c == 0:
                    self._init(sock, out_w, err_w, cready_w, cgo_r)
                os.write(pid_w, str(c).encode())
            finally:
                os._exit(0)
        for fd in (out_w, err_w, cready_w, cgo_r, pid_w):
            os.close(fd)
        os.waitpid(p, 0)
        data = os.read(pid_r, 32)
        os.close(pid_r)
        if not data:
            for fd in (out_r, err_r, cready_r, cgo_w):
                os.close(fd)
            raise OSError("create the container's PID namespace failed")
        return int(data), out_r, err_r, cready_r, cgo_w

    def _init(self, sock, out_w: int, err_w: int, cready_w: int, cgo_r: int) -> None:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        try:
            self.init(sock, self.spec, cready_w, cgo_r)
        except BaseException as exc:  # the init must never return into the keeper
            os.write(2, f"prun: error: set up the container: {exc}\n".encode())
        os._exit(125)

    def start(self) -> tuple[int, int, int]:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        if self.sock is not None:
            self.sock.close()
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            cpid, out_r, err_r, cready_r, cgo_w = self.spawn(theirs)
        finally:
            theirs.close()
        if os.read(cready_r, 1) == b"r":
            os.write(cgo_w, b"g")
        os.close(cready_r)
        os.close(cgo_w)
        return cpid, out_r, err_r

    def cleanup(self) -> None:
        if not self.fuse_pid:
            return
        try:
            os.kill(self.fuse_pid, signal.SIGTERM)
            os.waitpid(self.fuse_pid, 0)
        except (ProcessLookupError, ChildProcessError):
            return  # it was gone already (the keeper's loop reaped it)
        finally:
            self.fuse_pid = 0


def keep(sock: socket.socket, spec: dict, fuse_pid: int, init) -> int:
    """Start the container, hand over to the supervisor, then keep it; return its exit code."""
    set_subreaper()
    work = InitWorkload(spec, init, fuse_pid)
    cpid, out_r, err_r, cready_r, cgo_w = work.spawn(sock)
    if os.read(cready_r, 1) != b"r":
        # The init told the supervisor why (Failed) and exited.
        os.waitpid(cpid, 0)
        work.cleanup()
        return 125
    P.send(sock, P.Created(cpid))
    go, held = P.recv(sock)
    if not isinstance(go, P.Go):
        raise P.ProtocolError(f"expected Go, got {type(go).__name__}")
    # Held open until the keeper exits (e.g. slirp4netns's exit pipe), but
    # never inherited by a restarted container.
    for fd in held:
        os.set_inheritable(fd, False)
    # Before C may exec: the keeper's OOM watch takes its baseline now.
    keeper = Keeper(spec["detach"], work)
    os.write(cgo_w, b"g")
    os.close(cready_r)
    os.close(cgo_w)
    work.first = (cpid, out_r, err_r)

    def ready(error: str | None) -> None:
        if error is None:
            nsys.prctl(nsys.PR_SET_PDEATHSIG, 0)
            P.send(sock, P.Detached(os.getpid()))
        else:
            P.send(sock, P.Failed(error, None, 125))
        sock.close()
    return keeper.serve(ready)
