"""The keeper: the one long-lived process per detached container (like conmon).

It runs the container's process through a ``Workload``, copies its stdout and
stderr into the json-file log, answers the control socket, applies the
restart policy and records the outcome.

Rules:
- Lean on purpose (it lives as long as the container): a sync epoll loop,
  no threads of its own, imports limited to the standard library's os,
  signal, socket, selectors, json and time. No trio, click, sqlite or rich.
- It never touches the database: it writes ``state.json`` in the container's
  runtime dir (temp + rename) at every transition; the CLI folds that into
  the store. A keeper killed with SIGKILL leaves a stale ``running`` state
  and a dead pid, which the CLI recognises (keeper pid not alive).
- It is a child subreaper, so the container's process is reaped here even
  when it is a grandchild (fork + unshare(PID) + fork).
- SIGTERM/SIGINT/SIGHUP to the keeper mean "stop the container" (stop
  signal, then SIGKILL after the timeout); the keeper exits only once the
  container has exited for good.
- ``ready_fd`` gets b"1" once the first start succeeded and the socket
  listens, or b"E <message>\\n" when the first start failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from rootless.containers import policy
from rootless.containers.control import SOCKET_NAME
from rootless.containers.logs import LogWriter, timestamp

STATE_NAME = "state.json"
PR_SET_CHILD_SUBREAPER = 36


class Workload(Protocol):
    def start(self) -> tuple[int, int, int]:
        """Start the container's process: (pid, stdout read fd, stderr read fd)."""

    def cleanup(self) -> None:
        """After the last exit: release what start() set up (mounts, network)."""


@dataclass
class KeeperSpec:
    id: str
    rundir: str
    log_path: str
    log_max_size: int = 0
    log_max_files: int = 1
    restart: str = "no"          # policy text, e.g. "on-failure:3"
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0


@dataclass
class State:
    status: str = policy.CREATED
    pid: int = 0
    keeper_pid: int = 0
    exit_code: int = 0
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    manually_stopped: bool = False
    error: str = ""
    extra: dict = field(default_factory=dict)


def write_state(rundir: str, state: State) -> None:
    tmp = os.path.join(rundir, f".{STATE_NAME}.tmp")
    with open(tmp, "w") as f:
        json.dump(asdict(state), f)
    os.replace(tmp, os.path.join(rundir, STATE_NAME))


def read_state(rundir: str) -> State | None:
    try:
        with open(os.path.join(rundir, STATE_NAME)) as f:
            return State(**json.load(f))
    except FileNotFoundError:
        return None


class Keeper:
    def __init__(self, spec: KeeperSpec, workload: Workload,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.workload = workload
        self.clock = clock
        self.policy = policy.parse_restart(spec.restart)
        self.state = State(keeper_pid=os.getpid())
        self.sel = selectors.DefaultSelector()
        self.log = LogWriter(spec.log_path, spec.log_max_size, spec.log_max_files)
        self.waiters: list[socket.socket] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.pipes: dict[int, str] = {}
        self.run_started = 0.0
        self.delay = 0.0
        self.finished = False

    # ------------------------------------------------------------ lifecycle

    def serve(self, ready_fd: int | None = None) -> int:
        """Run until the container has exited for good; return its exit code."""
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if ready_fd is not None:
            os.set_inheritable(ready_fd, False)  # the container must not hold it open
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        self.sel.register(wake_r, selectors.EVENT_READ, self._on_signal)
        path = os.path.join(self.spec.rundir, SOCKET_NAME)
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(path)
        listener.listen(16)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, self._on_accept)
        try:
            self._start()
        except OSError as exc:
            self._finish(127, f"start container: {exc}")
            if ready_fd is not None:
                os.write(ready_fd, f"E start container: {exc}\n".encode())
                os.close(ready_fd)
            return 127
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        while not (self.finished and not self.pipes):
            self._loop_once()
        self.log.close()
        for sock in self.waiters:
            self._reply(sock, {"ok": True, "exit_code": self.state.exit_code})
        listener.close()
        os.unlink(path)
        return self.state.exit_code

    def _start(self) -> None:
        pid, out_fd, err_fd = self.workload.start()
        for fd, stream in ((out_fd, "stdout"), (err_fd, "stderr")):
            os.set_blocking(fd, False)
            self.pipes[fd] = stream
            self.sel.register(fd, selectors.EVENT_READ, self._on_output)
        self.run_started = self.clock()
        s = self.state
        s.status, s.pid, s.started_at, s.finished_at = policy.RUNNING, pid, timestamp(), ""
        write_state(self.spec.rundir, s)

    def _exited(self, code: int) -> None:
        self._drain()
        self.log.flush()
        s = self.state
        s.exit_code, s.finished_at, s.pid = code, timestamp(), 0
        self.timers = []
        if policy.decide_restart(self.policy, code, s.restart_count, s.manually_stopped):
            self.delay = policy.backoff(self.delay, self.clock() - self.run_started)
            s.status = policy.RESTARTING
            write_state(self.spec.rundir, s)
            self._after(self.delay, self._restart)
        else:
            self._finish(code, "")

    def _restart(self) -> None:
        self.state.restart_count += 1
        try:
            self._start()
        except OSError as exc:
            self._finish(127, f"restart container: {exc}")

    def _finish(self, code: int, error: str) -> None:
        s = self.state
        s.status, s.exit_code, s.error, s.pid = policy.EXITED, code, error, 0
        s.finished_at = s.finished_at or timestamp()
        self.workload.cleanup()
        write_state(self.spec.rundir, s)
        self.finished = True

    # ------------------------------------------------------------ event loop

    def _loop_once(self) -> None:
        timeout = None
        if self.timers:
            timeout = max(0.0, min(t for t, _ in self.timers) - self.clock())
        for key, _ in self.sel.select(timeout):
            key.data(key.fileobj)
        now = self.clock()
        due = [cb for t, cb in self.timers if t <= now]
        self.timers = [(t, cb) for t, cb in self.timers if t > now]
        for cb in due:
            cb()

    def _after(self, seconds: float, cb: Callable[[], None]) -> None:
        self.timers.append((self.clock() + seconds, cb))

    def _on_signal(self, fd: int) -> None:
        sigs = os.read(fd, 512)
        if any(s in sigs for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
            self._stop(self.spec.stop_timeout, self.spec.stop_signal)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.state.pid and self.state.status == policy.RUNNING:
                self._exited(os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status)
                             else 128 + os.WTERMSIG(status))

    def _on_output(self, fd: int) -> None:
        self._read(fd)

    def _drain(self) -> None:
        for fd in list(self.pipes):
            while fd in self.pipes and self._read(fd):
                continue

    def _read(self, fd: int) -> bool:
        """Copy one chunk of output to the log; False when there was none."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if data:
            self.log.write(self.pipes[fd], data)
            return True
        self.sel.unregister(fd)
        os.close(fd)
        del self.pipes[fd]
        return False

    # ------------------------------------------------------------ control

    def _on_accept(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        conn.setblocking(True)
        conn.settimeout(2.0)
        try:
            line = conn.makefile("rb").readline()
            msg = json.loads(line)
        except (OSError, ValueError):
            conn.close()
            return
        try:
            self._handle(conn, msg)
        except OSError as exc:
            self._reply(conn, {"ok": False, "error": str(exc)})

    def _handle(self, conn: socket.socket, msg: dict) -> None:
        op = msg.get("op")
        s = self.state
        if op == "status":
            self._reply(conn, {"ok": True, "state": asdict(s)})
        elif op == "wait":
            if self.finished:
                self._reply(conn, {"ok": True, "exit_code": s.exit_code})
            else:
                self.waiters.append(conn)
        elif op == "stop":
            self._stop(float(msg.get("timeout", self.spec.stop_timeout)),
                       int(msg.get("signal") or self.spec.stop_signal))
            self._reply(conn, {"ok": True})
        elif op == "kill":
            sig = int(msg.get("signal") or signal.SIGKILL)
            s.manually_stopped = True
            if s.status == policy.RESTARTING:
                self._cancel_restart()
            elif s.pid:
                os.kill(s.pid, sig)
            self._reply(conn, {"ok": True})
        else:
            self._reply(conn, {"ok": False, "error": f"unknown operation {op!r}"})

    def _stop(self, timeout: float, sig: int) -> None:
        s = self.state
        s.manually_stopped = True
        if s.status == policy.RESTARTING:
            self._cancel_restart()
            return
        if not s.pid:
            return
        os.kill(s.pid, sig)
        pid = s.pid

        def escalate() -> None:
            if self.state.pid == pid:
                os.kill(pid, signal.SIGKILL)
        self._after(timeout, escalate)

    def _cancel_restart(self) -> None:
        self.timers = []
        self._finish(self.state.exit_code, "")

    @staticmethod
    def _reply(conn: socket.socket, msg: dict) -> None:
        # A client that went away (ctrl-c on `prun wait`) needs no answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(json.dumps(msg).encode() + b"\n")
        conn.close()
