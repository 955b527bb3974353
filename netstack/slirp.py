"""slirp4netns: options, feature detection, argv, and the process's lifetime.

Rules:
- ``--network slirp4netns[:k=v,…]`` options are parsed once into
  ``SlirpOptions``; the argv is computed from them plus the detected
  ``Features`` (pure), then one runner executes it.
- Features come from ``slirp4netns --help`` (its options list), so a
  sandbox/seccomp/cidr flag is passed only where the installed version has
  it. A version without ``--ready-fd``, ``--exit-fd`` or ``--api-socket``
  (before 0.4) is refused: prun cannot start it safely.
- Lifetime: ``spawn`` starts slirp4netns; ``wait_ready`` (``start`` does
  both) returns only after it wrote its ready fd, i.e. tap0 is configured;
  the supervisor calls it before letting the container exec, so the
  container never starts half-networked; if slirp4netns exits first, its
  output is in the error. (Synchronous: the
  supervisor is, because importing trio costs more than a container start.)
  slirp4netns gets the read end of an exit pipe whose write end only the
  supervisor holds (O_CLOEXEC): when the supervisor exits for any reason,
  even SIGKILL, slirp4netns sees EOF and exits. ``Slirp.stop`` closes that
  pipe, waits briefly, kills if needed, and removes the API socket
  (slirp4netns leaves it behind); ``cleanup`` does the same for a state dir
  whose supervisor was killed (the next ``prun run`` calls it).
"""

from __future__ import annotations

import ipaddress
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from netstack.procs import is_live
from rootless.errors import ContainerError, HostSetupError, UsageError

DEFAULT_MTU = 65520
DEFAULT_CIDR = "10.0.2.0/24"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0
SOCKET_NAME = "slirp4netns.sock"
PID_NAME = "slirp4netns.pid"
LOG_NAME = "slirp4netns.log"
FEATURES_CACHE = "slirp4netns.features"
INSTALL_HINT = "install slirp4netns >= 0.4 (Debian/Ubuntu: sudo apt-get install slirp4netns), " \
               "or run with --network none"


@dataclass(frozen=True)
class SlirpOptions:
    allow_host_loopback: bool = False
    mtu: int = DEFAULT_MTU
    cidr: str = DEFAULT_CIDR
    enable_ipv6: bool = False
    outbound_addr: str | None = None

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def gateway(self) -> str:
        """The host as the container sees it (host loopback when allowed)."""
        return str(self.network.network_address + 2)

    @property
    def dns(self) -> str:
        return str(self.network.network_address + 3)

    @property
    def guest_ip(self) -> str:
        return str(self.network.network_address + 100)


def parse_options(text: str, spec: str) -> SlirpOptions:
    """``allow_host_loopback=true,mtu=1500`` (after ``slirp4netns:``)."""
    def bad(cause: str) -> UsageError:
        return UsageError(f"use network {spec!r}: {cause}",
                          hint="slirp4netns options: allow_host_loopback=true|false, mtu=N, "
                               "cidr=A.B.C.0/24, enable_ipv6=true|false, outbound_addr=IPv4")
    values: dict = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise bad(f"option {item!r} needs a value (key=value)")
        if key in ("allow_host_loopback", "enable_ipv6"):
            if value not in ("true", "false"):
                raise bad(f"{key} must be true or false, not {value!r}")
            values[key] = value == "true"
        elif key == "mtu":
            if not value.isdigit() or not 68 <= int(value) <= 65521:
                raise bad(f"mtu {value!r} is not in 68-65521")
            values[key] = int(value)
        elif key == "cidr":
            try:
                net = ipaddress.IPv4Network(value)
            except ValueError as exc:
                raise bad(f"cidr {value!r} is not an IPv4 network") from exc
            if net.num_addresses < 256:
                raise bad(f"cidr {value!r} is smaller than a /24")
            values[key] = str(net)
        elif key == "outbound_addr":
            try:
                values[key] = str(ipaddress.IPv4Address(value))
            except ValueError as exc:
                raise bad(f"outbound_addr {value!r} is not an IPv4 address") from exc
        else:
            raise bad(f"unknown option {key!r}")
    return SlirpOptions(**values)


@dataclass(frozen=True)
class Features:
    """Which optional flags the installed slirp4netns understands."""

    sandbox: bool = False
    seccomp: bool = False
    cidr: bool = False
    disable_host_loopback: bool = False
    outbound_addr: bool = False
    ipv6: bool = False


REQUIRED_FLAGS = ("--ready-fd", "--exit-fd", "--api-socket", "--configure", "--mtu")


def parse_features(help_text: str, binary: str = "slirp4netns") -> Features:
    missing = [f for f in REQUIRED_FLAGS if f not in help_text]
    if missing:
        raise HostSetupError(f"use {binary}: it is too old (no {', '.join(missing)})",
                             hint=INSTALL_HINT)
    return Features(sandbox="--enable-sandbox" in help_text,
                    seccomp="--enable-seccomp" in help_text,
                    cidr="--cidr" in help_text,
                    disable_host_loopback="--disable-host-loopback" in help_text,
                    outbound_addr="--outbound-addr" in help_text,
                    ipv6="--enable-ipv6" in help_text)


def detect(binary: str = "slirp4netns", cache_dir: Path | None = None) -> tuple[str, Features]:
    """Find slirp4netns and read its features: ``--help`` costs 5-20 ms, so
    the text is cached in ``cache_dir`` keyed by the binary's path, size and
    mtime (an upgrade changes the key)."""
    path = shutil.which(binary)
    if path is None:
        raise HostSetupError(f"use network slirp4netns: {binary} is not installed",
                             hint=INSTALL_HINT)
    st = os.stat(path)
    key = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n"
    cache = cache_dir / FEATURES_CACHE if cache_dir is not None else None
    if cache is not None:
        try:
            cached = cache.read_text()
        except OSError:
            cached = ""
        if cached.startswith(key):
            return path, parse_features(cached[len(key):], path)
    try:
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostSetupError(f"run {path} --help: {exc}", hint=INSTALL_HINT) from exc
    text = out.stdout + out.stderr
    features = parse_features(text, path)
    if cache is not None:
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}")
        tmp.write_text(key + text)
        tmp.rename(cache)
    return path, features


def argv(binary: str, features: Features, opts: SlirpOptions, pid: int, sock: Path,
         ready_fd: int, exit_fd: int) -> list[str]:
    """slirp4netns's command line for the namespaces of ``pid`` (pure)."""
    args = [binary, "--configure", f"--mtu={opts.mtu}", f"--ready-fd={ready_fd}",
            f"--exit-fd={exit_fd}", f"--api-socket={sock}"]
    if opts.cidr != DEFAULT_CIDR:
        if not features.cidr:
            raise HostSetupError(f"use slirp4netns cidr={opts.cidr}: {binary} has no --cidr",
                                 hint=INSTALL_HINT)
        args.append(f"--cidr={opts.cidr}")
    if not opts.allow_host_loopback:
        if not features.disable_host_loopback:
            raise HostSetupError(f"isolate host loopback: {binary} has no --disable-host-loopback",
                                 hint=INSTALL_HINT)
        args.append("--disable-host-loopback")
    if opts.enable_ipv6:
        if not features.ipv6:
            raise HostSetupError(f"use slirp4netns enable_ipv6: {binary} has no --enable-ipv6",
                                 hint=INSTALL_HINT)
        args.append("--enable-ipv6")
    if opts.outbound_addr:
        if not features.outbound_addr:
            raise HostSetupError(f"use slirp4netns outbound_addr: {binary} has no "
                                 "--outbound-addr", hint=INSTALL_HINT)
        args.append(f"--outbound-addr={opts.outbound_addr}")
    if features.sandbox:
        args.append("--enable-sandbox")
    if features.seccomp:
        args.append("--enable-seccomp")
    # The target's user namespace is joined too (slirp4netns opens
    # /proc/PID/ns/user itself when given a pid).
    args += [str(pid), "tap0"]
    return args


class Slirp:
    """A running slirp4netns; ``stop`` ends it (idempotent)."""

    def __init__(self, proc: subprocess.Popen, exit_w: int, ready_r: int, state_dir: Path,
                 options: SlirpOptions, target_pid: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.api_socket = state_dir / SOCKET_NAME
        self.state_dir = state_dir
        self.options = options
        self.target_pid = target_pid
        self._exit_w = exit_w
        self._ready_r = ready_r

    def wait_ready(self) -> Slirp:
        """Block until tap0 is configured; on failure stop and raise with its output."""
        if self._ready_r < 0:
            return self
        try:
            _wait_ready(self.proc, self._ready_r, self.state_dir, self.target_pid)
        except BaseException:
            self.stop()  # closes the ready fd too
            raise
        os.close(self._ready_r)
        self._ready_r = -1
        return self

    @property
    def exit_fd(self) -> int:
        """The write end of the exit pipe: slirp4netns lives while it is open."""
        return self._exit_w

    def stop(self) -> None:
        if self._ready_r >= 0:
            os.close(self._ready_r)
            self._ready_r = -1
        if self._exit_w >= 0:
            os.close(self._exit_w)  # slirp4netns exits when its exit fd reaches EOF
            self._exit_w = -1
        if self.proc.returncode is None:
            # A pidfd wakes us the moment it exits; Popen.wait(timeout) would
            # poll with sleeps of up to 50 ms on the start/exit hot path.
            pidfd = os.pidfd_open(self.proc.pid)
            try:
                exited = select.select([pidfd], [], [], STOP_TIMEOUT)[0]
            finally:
                os.close(pidfd)
            if not exited:
                self.proc.kill()
            self.proc.wait()
        _remove_state(self.state_dir)

    def __enter__(self) -> Slirp:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(opts: SlirpOptions, target_pid: int, state_dir: Path, *,
          binary: str = "slirp4netns", cache_dir: Path | None = None) -> Slirp:
    """Start slirp4netns for ``target_pid``'s namespaces; return once tap0 is up."""
    return spawn(opts, target_pid, state_dir, binary=binary, cache_dir=cache_dir).wait_ready()


def spawn(opts: SlirpOptions, target_pid: int, state_dir: Path, *,
          binary: str = "slirp4netns", cache_dir: Path | None = None) -> Slirp:
    """Start slirp4netns and return at once; ``wait_ready`` before using it
    (the supervisor overlaps its ~30 ms start with the helper's mounts)."""
    path, features = detect(binary, cache_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd_sock = state_dir / SOCKET_NAME
    ready_r, ready_w = os.pipe()
    exit_r, exit_w = os.pipe()
    log_fd = os.open(state_dir / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        cmd = argv(path, features, opts, target_pid, cmd_sock, ready_w, exit_r)
        proc = subprocess.Popen(cmd, pass_fds=(ready_w, exit_r), stdin=subprocess.DEVNULL,
                                stdout=log_fd, stderr=log_fd, start_new_session=True)
    except BaseException:
        os.close(ready_r)
        os.close(exit_w)
        raise
    finally:
        for fd in (ready_w, exit_r, log_fd):
            os.close(fd)
    slirp = Slirp(proc, exit_w, ready_r, state_dir, opts, target_pid)
    try:
        (state_dir / PID_NAME).write_text(f"{proc.pid}\n")
    except BaseException:
        slirp.stop()
        raise
    return slirp


def _wait_ready(proc: subprocess.Popen, ready_r: int, state_dir: Path, target_pid: int) -> None:
    poller = select.poll()
    poller.register(ready_r, select.POLLIN)
    if not poller.poll(READY_TIMEOUT * 1000):
        raise ContainerError(f"start slirp4netns for pid {target_pid}: not ready after "
                             f"{READY_TIMEOUT:.0f} s: {_log_tail(state_dir)}",
                             hint="the host may be overloaded; rerun with --log-level debug")
    if not os.read(ready_r, 16):
        proc.wait()
        raise ContainerError(f"start slirp4netns for pid {target_pid}: it exited with code "
                             f"{proc.returncode}: {_log_tail(state_dir)}",
                             hint="check that /dev/net/tun exists and is 0666, or run with "
                                  "--network none")


def _log_tail(state_dir: Path, lines: int = 5) -> str:
    try:
        text = (state_dir / LOG_NAME).read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc.strerror})"
    useful = [ln for ln in text.splitlines()
              if ln.strip() and not ln.startswith("WARNING: Support for seccomp")]
    return " | ".join(useful[-lines:]) or "(no output)"


def _remove_state(state_dir: Path) -> None:
    for name in (SOCKET_NAME, PID_NAME, LOG_NAME):
        (state_dir / name).unlink(missing_ok=True)


def cleanup(state_dir: Path) -> bool:
    """Remove what a killed supervisor left in ``state_dir`` (its slirp4netns
    exited with it through the exit pipe; the socket file stays). A state dir
    whose slirp4netns still runs belongs to a live container: left alone.
    Returns whether anything was removed."""
    try:
        pid = int((state_dir / PID_NAME).read_text())
    except (OSError, ValueError):
        pid = 0
    if pid and is_live(pid, "slirp4netns"):
        return False
    # No pid file yet in a fresh dir: a container starting right now (its
    # slirp4netns may have made the socket before the pid file is written).
    if not pid and time.time() - _mtime(state_dir) < READY_TIMEOUT:
        return False
    found = any((state_dir / n).exists() for n in (PID_NAME, SOCKET_NAME))
    _remove_state(state_dir)
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
