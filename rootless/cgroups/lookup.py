"""Find the cgroup of a running container by the name or id the user wrote.

Rules:
- The run hook records the container's cgroup path in
  ``<runtime>/containers/<id>/cgroup`` while the container runs (the
  supervisor removes that directory when it exits), so a running
  foreground or detached container is found by full id, unique id prefix or
  name (``<data>/containers/names/<name>`` → id); containers in the
  lifecycle store are also found through their recorded pid.
- A record whose cgroup no longer exists (a detached container that
  exited: its runtime dir outlives it) means "not running".
- Not running, or running without a cgroup, is a NotFoundError / a
  ContainerError saying which, with a hint.
- ``frozen`` (inspect's State.Paused) reads cgroup.events of the recorded
  cgroup; no record or no cgroup: not paused.
"""

from __future__ import annotations

import os
from pathlib import Path

from rootless.cgroups.manager import cgroup_of
from rootless.cgroups.v2 import Hierarchy
from rootless.errors import ConflictError, ContainerError, NotFoundError
from rootless.paths import Paths

RECORD = "cgroup"


def record_path(paths: Paths, cid: str) -> Path:
    return paths.runtime / "containers" / cid / RECORD


def record(paths: Paths, cid: str, cgroup: str) -> None:
    target = record_path(paths, cid)
    if target.parent.is_dir():
        target.write_text(cgroup)


def frozen(paths: Paths, cid: str, fs: Hierarchy | None = None) -> bool:
    """Whether the recorded cgroup of container ``cid`` is frozen (prun pause)."""
    try:
        path = record_path(paths, cid).read_text().strip()
    except FileNotFoundError:
        return False
    return (fs or Hierarchy()).frozen(path)


def find(ref: str, paths: Paths | None = None, fs: Hierarchy | None = None) -> tuple[str, str]:
    """(container id, cgroup v2 path) of the running container ``ref``."""
    paths = paths or Paths.from_env()
    fs = fs or Hierarchy()
    running = paths.runtime / "containers"
    ids = sorted(p.name for p in running.iterdir()) if running.is_dir() else []
    link = paths.data / "containers" / "names" / ref
    if link.is_symlink():
        matches = [os.readlink(link)]
    else:
        matches = [cid for cid in ids if cid == ref] or [cid for cid in ids if cid.startswith(ref)]
    if len(matches) > 1:
        raise ConflictError(f"find container {ref!r}: the id prefix is ambiguous "
                            f"({len(matches)} containers match)",
                            hint="give more characters of the id, or the name")
    if not matches or matches[0] not in ids:
        return _from_store(ref, paths)
    cid = matches[0]
    try:
        path = record_path(paths, cid).read_text().strip()
    except FileNotFoundError:
        raise ContainerError(f"find the cgroup of container {ref}: it runs without a cgroup",
                             hint="cgroups are unavailable on this host or it was started "
                                  "with --cgroups=disabled (see 'prun info')") from None
    if not fs.exists(path):
        raise NotFoundError(f"find container {ref!r}: it is not running (its cgroup is gone)",
                            hint="see 'prun ps' for running containers")
    return cid, path


def _from_store(ref: str, paths: Paths) -> tuple[str, str]:
    from rootless.containers.lifecycle import is_live, refresh
    from rootless.containers.store import Store

    store = Store(paths)
    c = refresh(store, store.resolve(ref))
    if not is_live(c) or not c.pid:
        raise NotFoundError(f"find container {ref!r}: it is not running",
                            hint="see 'prun ps' for running containers")
    return c.id, cgroup_of(c.pid)
