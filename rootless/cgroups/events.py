"""Whether the OOM killer struck a container's cgroup (memory.events).

Rules:
- Lean on purpose: the keeper of a detached container uses it, so it
  imports only os and errno (see rootless.containers.keeper).
- ``OomWatch(path)`` is made before the container's process may run and
  reads the parent's hierarchical ``oom_kill`` count as a baseline.
- ``kills()`` after the process exited: the cgroup's own count while the
  cgroup exists; systemd removes an emptied scope's cgroup right after the
  last process exits, often before anyone could read it, so then the
  parent's count minus the baseline (a sibling cgroup OOM-killed in the same
  window is counted too). None: no memory accounting there.
- A file that is gone (ENOENT, or ENODEV when the cgroup went between open
  and read) reads as None; other errors propagate.
"""

from __future__ import annotations

import errno
import os

ROOT = "/sys/fs/cgroup"


def oom_kills(path: str, root: str = ROOT) -> int | None:
    """The ``oom_kill`` count of cgroup ``path`` (as /proc/PID/cgroup writes it)."""
    try:
        with open(os.path.join(root, path.strip("/"), "memory.events"), "rb") as f:
            data = f.read()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return None
        raise
    for line in data.splitlines():
        key, _, value = line.partition(b" ")
        if key == b"oom_kill":
            return int(value)
    return None


class OomWatch:
    def __init__(self, path: str, root: str = ROOT) -> None:
        self.path, self.root = path, root
        self.parent = path.rsplit("/", 1)[0] or "/"
        self.base = oom_kills(self.parent, root)

    def kills(self) -> int | None:
        own = oom_kills(self.path, self.root)
        if own is not None:
            return own
        now = oom_kills(self.parent, self.root)
        return None if now is None or self.base is None else now - self.base
