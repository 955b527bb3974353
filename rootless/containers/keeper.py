"""The keeper: the one long-lived process per detached container (like conmon).

It runs the container's process through a workload, copies its stdout and
stderr into the json-file log, answers the control socket, applies the
restart policy and records the outcome.

Rules:
- Lean on purpose (it lives as long as the container, and its memory is the
  idle cost of a container): a sync epoll loop, no threads, imports limited
  to os, signal, socket, select, marshal, time, ctypes, the C ``_json``
  encoder and errno (rootless.cgroups.events). No trio, click, sqlite,
  json, dataclasses or typing.
- It never touches the database: it writes ``state.json`` in the container's
  runtime dir (temp + rename) at every transition; the CLI folds that into
  the store. A keeper killed with SIGKILL leaves a stale ``running`` state
  and a dead pid, which the CLI recognises (keeper pid not alive).
- It is a child subreaper, so the container's process is reaped here even
  when it is a grandchild (fork + unshare(PID) + fork).
- SIGTERM/SIGINT/SIGHUP to the keeper mean "stop the container" (stop
  signal, then SIGKILL after the timeout); the keeper exits only once the
  container has exited for good.
- ``ready(error)`` is called once: with None when the first start succeeded
  and the socket listens, or with the message when the first start failed
  (``fd_ready`` adapts a pipe: b"1" or b"E <message>\\n").
- A workload has ``start() -> (pid, stdout_fd, stderr_fd)`` and
  ``cleanup()`` (after the last exit: unmount, stop helpers).
- OOM kills: with ``cgroup_record`` (the file where the run's cgroup hook
  wrote the container's cgroup path) the Keeper, made before the first
  run's process may exec, watches that cgroup, and the first run's exit
  records ``oom_killed`` from its memory.events (rootless.cgroups.events);
  restarted runs are not in that cgroup.
"""

from __future__ import annotations

import ctypes
import marshal
import os
import select
import signal
import socket
import time

from _json import encode_basestring

from rootless.cgroups.events import OomWatch
from rootless.containers import policy
from rootless.containers.control import SOCKET_NAME, read_all
from rootless.containers.logs import LogWriter, timestamp

STATE_NAME = "state.json"
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# spec keys and defaults: what a launcher passes to Keeper
SPEC_DEFAULTS = {"log_max_size": 0, "log_max_files": 1, "restart": "no",
                 "stop_signal": int(signal.SIGTERM), "stop_timeout": 10.0,
                 "cgroup_record": "", "cgroup_root": "/sys/fs/cgroup"}


def new_state() -> dict:
    return {"status": policy.CREATED, "pid": 0, "keeper_pid": os.getpid(), "exit_code": 0,
            "started_at": "", "finished_at": "", "restart_count": 0,
            "manually_stopped": False, "error": "", "oom_killed": False}


def _encode(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return encode_basestring(value)
    return repr(value)


def write_state(rundir: str, state: dict) -> None:
    tmp = os.path.join(rundir, f".{STATE_NAME}.tmp")
    text = "{" + ",".join(f'"{k}":{_encode(v)}' for k, v in state.items()) + "}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.write(fd, text.encode())
    os.close(fd)
    os.replace(tmp, os.path.join(rundir, STATE_NAME))


def read_state(rundir: str) -> dict | None:
    import json
    try:
        with open(os.path.join(rundir, STATE_NAME)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


class Keeper:
    def __init__(self, spec: dict, workload, clock=time.monotonic) -> None:
        self.spec = {**SPEC_DEFAULTS, **spec}
        self.rundir = self.spec["rundir"]
        self.workload = workload
        self.clock = clock
        self.policy = policy.parse_restart(self.spec["restart"])
        self.state = new_state()
        self.ep = select.epoll()
        self.handlers: dict[int, object] = {}
        self.log = LogWriter(self.spec["log_path"], self.spec["log_max_size"],
                             self.spec["log_max_files"])
        self.waiters: list[socket.socket] = []
        self.timers: list[tuple[float, object]] = []
        self.pipes: dict[int, str] = {}
        self.run_started = 0.0
        self.delay = 0.0
        self.finished = False
        # made before the first run's process may exec: its baseline counts
        self.oom: OomWatch | None = _oom_watch(self.spec["cgroup_record"],
                                               self.spec["cgroup_root"])

    # ------------------------------------------------------------ lifecycle

    def serve(self, ready=None) -> int:
        """Run until the container has exited for good; return its exit code."""
        set_subreaper()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGCHLD, *STOP_SIGNALS):
            signal.signal(sig, _ignore)
        self._watch(wake_r, self._on_signal)
        path = os.path.join(self.rundir, SOCKET_NAME)
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(path)
        listener.listen(64)
        listener.setblocking(False)
        self._watch(listener.fileno(), lambda _fd: self._on_accept(listener))
        try:
            self._start()
        except OSError as exc:
            self._finish(127, f"start container: {exc}")
            if ready is not None:
                ready(f"start container: {exc}")
            return 127
        if ready is not None:
            ready(None)
        while not (self.finished and not self.pipes):
            self._loop_once()
        self.log.close()
        for conn in self.waiters:
            self._reply(conn, {"ok": True, "exit_code": self.state["exit_code"]})
        listener.close()
        os.unlink(path)
        return self.state["exit_code"]

    def _start(self) -> None:
        pid, out_fd, err_fd = self.workload.start()
        for fd, stream in ((out_fd, "stdout"), (err_fd, "stderr")):
            os.set_blocking(fd, False)
            self.pipes[fd] = stream
            self._watch(fd, self._read)
        self.run_started = self.clock()
        self.state.update(status=policy.RUNNING, pid=pid, started_at=timestamp(),
                          finished_at="", oom_killed=False)
        write_state(self.rundir, self.state)

    def _exited(self, code: int) -> None:
        self._drain()
        self.log.flush()
        s = self.state
        s.update(exit_code=code, finished_at=timestamp(), pid=0)
        if self.oom is not None:
            s["oom_killed"] = bool(self.oom.kills())
            self.oom = None
        self.timers = []
        if policy.decide_restart(self.policy, code, s["restart_count"], s["manually_stopped"]):
            self.delay = policy.backoff(self.delay, self.clock() - self.run_started)
            s["status"] = policy.RESTARTING
            write_state(self.rundir, s)
            self._after(self.delay, self._restart)
        else:
            self._finish(code, "")

    def _restart(self) -> None:
        self.state["restart_count"] += 1
        try:
            self._start()
        except OSError as exc:
            self._finish(127, f"restart container: {exc}")

    def _finish(self, code: int, error: str) -> None:
        s = self.state
        s.update(status=policy.EXITED, exit_code=code, error=error, pid=0,
                 finished_at=s["finished_at"] or timestamp())
        self.workload.cleanup()
        write_state(self.rundir, s)
        self.finished = True

    # ------------------------------------------------------------ event loop

    def _watch(self, fd: int, handler) -> None:
        self.handlers[fd] = handler
        self.ep.register(fd, select.EPOLLIN)

    def _unwatch(self, fd: int) -> None:
        self.ep.unregister(fd)
        del self.handlers[fd]

    def _loop_once(self) -> None:
        timeout = -1.0
        if self.timers:
            timeout = max(0.0, min(t for t, _ in self.timers) - self.clock())
        for fd, _ in self.ep.poll(timeout):
            handler = self.handlers.get(fd)
            if handler is not None:
                handler(fd)
        now = self.clock()
        due = [cb for t, cb in self.timers if t <= now]
        self.timers = [(t, cb) for t, cb in self.timers if t > now]
        for cb in due:
            cb()

    def _after(self, seconds: float, cb) -> None:
        self.timers.append((self.clock() + seconds, cb))

    def _on_signal(self, fd: int) -> None:
        sigs = os.read(fd, 512)
        if any(s in sigs for s in STOP_SIGNALS):
            self._stop(self.spec["stop_timeout"], self.spec["stop_signal"])
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.state["pid"] and self.state["status"] == policy.RUNNING:
                self._exited(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                             else os.waitstatus_to_exitcode(status))

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
        self._unwatch(fd)
        os.close(fd)
        del self.pipes[fd]
        return False

    # ------------------------------------------------------------ control

    def _on_accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(True)
        conn.settimeout(2.0)
        try:
            msg = marshal.loads(read_all(conn))
        except (OSError, ValueError, EOFError, TypeError):
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
            self._reply(conn, {"ok": True, "state": s})
        elif op == "wait":
            if self.finished:
                self._reply(conn, {"ok": True, "exit_code": s["exit_code"]})
            else:
                self.waiters.append(conn)
        elif op == "stop":
            self._stop(float(msg.get("timeout", self.spec["stop_timeout"])),
                       int(msg.get("signal") or self.spec["stop_signal"]))
            self._reply(conn, {"ok": True})
        elif op == "kill":
            s["manually_stopped"] = True
            if s["status"] == policy.RESTARTING:
                self._cancel_restart()
            elif s["pid"]:
                os.kill(s["pid"], int(msg.get("signal") or signal.SIGKILL))
            self._reply(conn, {"ok": True})
        else:
            self._reply(conn, {"ok": False, "error": f"unknown operation {op!r}"})

    def _stop(self, timeout: float, sig: int) -> None:
        s = self.state
        s["manually_stopped"] = True
        if s["status"] == policy.RESTARTING:
            self._cancel_restart()
            return
        pid = s["pid"]
        if not pid:
            return
        os.kill(pid, sig)

        def escalate() -> None:
            if self.state["pid"] == pid:
                os.kill(pid, signal.SIGKILL)
        self._after(timeout, escalate)

    def _cancel_restart(self) -> None:
        self.timers = []
        self._finish(self.state["exit_code"], "")

    @staticmethod
    def _reply(conn: socket.socket, msg: dict) -> None:
        try:
            conn.sendall(marshal.dumps(msg))
        except (BrokenPipeError, ConnectionResetError):
            conn.close()  # the client went away (ctrl-c on `prun wait`): nobody to tell
            return
        conn.close()


def _oom_watch(record: str, root: str) -> OomWatch | None:
    """Watch the cgroup named in ``record`` (under ``root``); None without one."""
    if not record:
        return None
    try:
        with open(record) as f:
            return OomWatch(f.read().strip(), root)
    except FileNotFoundError:
        return None  # the container runs without a cgroup (none possible, or disabled)


def set_subreaper() -> None:
    """Orphaned descendants (the container after its fork parent exits) come to us."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def fd_ready(fd: int):
    """A ``ready`` callback reporting on a pipe (b"1" or b"E <message>\\n")."""
    os.set_inheritable(fd, False)  # the container must not hold it open

    def ready(error: str | None) -> None:
        os.write(fd, b"1" if error is None else f"E {error}\n".encode())
        os.close(fd)
    return ready


def _ignore(signum, frame) -> None:
    """Signals only wake the loop (set_wakeup_fd); the loop handles them."""
