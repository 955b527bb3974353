"""A cgroup v2 hierarchy through its files; the root is a parameter.

Rules:
- Every path is relative to the hierarchy root (``/sys/fs/cgroup`` by
  default; tests pass a directory of plain files), written like
  /proc/PID/cgroup shows it: ``/user.slice/.../prun-ID.scope``.
- Writing a limit file translates OSError once into a ``ContainerError``
  naming the file and the value.
- A cgroup with processes cannot enable controllers for children (the
  "no internal processes" rule): ``make_leaf`` moves the caller into a child
  first. The order matters: move, then enable, then create children.
- Reads tolerate a missing controller file (the controller is not enabled
  there): the stat is then ``None``, not zero, so ``prun stats`` shows "--"
  rather than a made-up number.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rootless.errors import ContainerError

ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Stats:
    """One sample of a cgroup's accounting; ``None`` = controller not enabled."""

    cpu_usec: int | None
    memory: int | None
    memory_limit: int | None      # None also when unlimited ("max")
    pids: int | None
    pids_limit: int | None
    io_read: int | None
    io_write: int | None
    oom_kills: int | None
    taken_at: float               # time.monotonic() of the sample

    def as_dict(self) -> dict:
        return asdict(self)


def parse_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.events) → dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def parse_io_stat(text: str) -> tuple[int, int]:
    """io.stat lines ``MAJ:MIN rbytes=N wbytes=N ...`` → (read, written) bytes."""
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                written += int(value)
    return read, written


def own_cgroup(proc_cgroup: str) -> str:
    """The v2 path from the text of /proc/PID/cgroup (its ``0::`` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    raise ContainerError("find the cgroup v2 path: /proc/self/cgroup has no '0::' line",
                         hint="cgroup v2 is not mounted as the unified hierarchy")


class Hierarchy:
    """The cgroup v2 files under ``root``."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = Path(root)

    def dir(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def read(self, path: str, name: str) -> str | None:
        """The file's text; None when it (or its cgroup) does not exist."""
        try:
            return (self.dir(path) / name).read_text()
        except OSError as exc:
            # ENODEV: the cgroup was removed between open and read.
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return None
            raise

    def write(self, path: str, name: str, value: str) -> None:
        target = self.dir(path) / name
        try:
            # One write() per line: io.weight/io.max take one entry per write.
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
            try:
                for line in value.splitlines() or [value]:
                    os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise ContainerError(f"write {value!r} to {target}: {exc.strerror or exc}") from exc

    def controllers(self, path: str) -> set[str]:
        """Controllers the parent made available here (cgroup.controllers)."""
        return set((self.read(path, "cgroup.controllers") or "").split())

    def writable(self, path: str) -> bool:
        d = self.dir(path)
        return os.access(d, os.W_OK) and os.access(d / "cgroup.procs", os.W_OK) \
            and os.access(d / "cgroup.subtree_control", os.W_OK)

    def create(self, path: str) -> None:
        try:
            self.dir(path).mkdir()
        except FileExistsError:
            return
        except OSError as exc:
            raise ContainerError(f"create cgroup {self.dir(path)}: {exc.strerror or exc}") from exc

    def enable(self, path: str, controllers: set[str]) -> None:
        """Make ``controllers`` available to the children of ``path``."""
        have = set((self.read(path, "cgroup.subtree_control") or "").split())
        wanted = sorted(controllers - have)
        if wanted:
            self.write(path, "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    def move(self, path: str, pid: int) -> None:
        self.write(path, "cgroup.procs", str(pid))

    def make_leaf(self, path: str, leaf: str, pid: int) -> str:
        """Move ``pid`` from ``path`` into ``path/leaf`` (created); returns it."""
        child = f"{path.rstrip('/')}/{leaf}"
        self.create(child)
        self.move(child, pid)
        return child

    def procs(self, path: str) -> list[int]:
        return [int(p) for p in (self.read(path, "cgroup.procs") or "").split()]

    def apply(self, path: str, files: dict[str, str]) -> None:
        for name, value in files.items():
            self.write(path, name, value)

    def freeze(self, path: str, frozen: bool, timeout: float = 5.0) -> None:
        """Write cgroup.freeze and wait until cgroup.events reports it."""
        self.write(path, "cgroup.freeze", "1" if frozen else "0")
        want = f"frozen {int(frozen)}"
        deadline = time.monotonic() + timeout
        while want not in (self.read(path, "cgroup.events") or "").splitlines():
            if time.monotonic() > deadline:
                raise ContainerError(f"{'freeze' if frozen else 'thaw'} cgroup {path}: "
                                     f"not {'frozen' if frozen else 'thawed'} after {timeout:g} s")
            time.sleep(0.005)

    def frozen(self, path: str) -> bool:
        return "frozen 1" in (self.read(path, "cgroup.events") or "").splitlines()

    def exists(self, path: str) -> bool:
        return self.dir(path).is_dir()

    def stats(self, path: str) -> Stats:
        cpu = self.read(path, "cpu.stat")
        mem = self.read(path, "memory.current")
        mem_max = self.read(path, "memory.max")
        pids = self.read(path, "pids.current")
        pids_max = self.read(path, "pids.max")
        io = self.read(path, "io.stat")
        events = self.read(path, "memory.events")
        read, written = parse_io_stat(io) if io is not None else (None, None)

        def limit(text: str | None) -> int | None:
            return int(text) if text is not None and text.strip().isdigit() else None

        return Stats(
            cpu_usec=parse_keyed(cpu).get("usage_usec") if cpu is not None else None,
            memory=int(mem) if mem is not None else None,
            memory_limit=limit(mem_max),
            pids=int(pids) if pids is not None else None,
            pids_limit=limit(pids_max),
            io_read=read, io_write=written,
            oom_kills=parse_keyed(events).get("oom_kill") if events is not None else None,
            taken_at=time.monotonic())

    def remove(self, path: str) -> None:
        """Kill what is left (cgroup.kill) and remove the cgroup, children first."""
        d = self.dir(path)
        if not d.is_dir():
            return
        if (d / "cgroup.kill").exists() and self.procs(path):
            self.write(path, "cgroup.kill", "1")
        for child in sorted((c for c in d.iterdir() if c.is_dir()), reverse=True):
            self.remove(f"{path.rstrip('/')}/{child.name}")
        deadline = time.monotonic() + 5
        while True:
            try:
                d.rmdir()
                return
            except OSError as exc:
                # EBUSY while killed processes are still being reaped.
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise ContainerError(f"remove cgroup {d}: {exc.strerror or exc}") from exc
                time.sleep(0.01)
