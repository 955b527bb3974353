"""Wipe one user's prun state: ``prun system reset``.

Rules:
- Containers go first, through the ordinary forced removal, so their
  keepers, FUSE servers and slirp4netns are killed and nothing holds the
  directories that follow.
- Then every mount still visible under the data or runtime dir (a crash can
  leave a FUSE mount of ours behind, e.g. from prun-overlayfs) is detached
  lazily with fusermount -u -z (umount2 MNT_DETACH for non-FUSE mounts needs
  privileges we do not have): deleting through a live mount would delete the
  files it serves.
- Last the data and runtime dirs are deleted; the dirs themselves stay
  (``ensure_private_dir`` recreates them with the right mode anyway).
- Only the current user's own directories are touched: they come from
  Paths, never from user input.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rootless.errors import StoreError
from rootless.paths import Paths


@dataclass
class ResetReport:
    containers: int
    unmounted: list[str]


def mounts_under(roots: list[Path], mountinfo: str) -> list[str]:
    """Mount points below any of ``roots``, deepest first (unmount order)."""
    found = []
    for line in mountinfo.splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if any(point == str(r) or point.startswith(str(r) + "/") for r in roots):
            found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def reset(paths: Paths | None = None) -> ResetReport:
    paths = paths or Paths.from_env()
    removed = _remove_containers(paths)
    points = mounts_under([paths.data, paths.runtime], Path("/proc/self/mountinfo").read_text())
    for point in points:
        res = subprocess.run(["fusermount", "-u", "-z", point], capture_output=True, text=True)
        if res.returncode != 0:
            raise StoreError(f"reset: unmount {point}: {res.stderr.strip() or 'fusermount failed'}",
                             hint=f"unmount it yourself (fusermount -u -z {point}), then run "
                                  "prun system reset again")
    from rootless.containers.store import remove_tree

    for root in (paths.data, paths.runtime):
        if root.is_dir():
            for entry in os.scandir(root):
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    remove_tree(path)
                else:
                    path.unlink()
    return ResetReport(containers=removed, unmounted=points)


def _remove_containers(paths: Paths) -> int:
    if not (paths.data / "prun.db").exists():
        return 0
    from rootless.containers import lifecycle
    from rootless.containers.store import Store

    store = Store(paths)
    containers = store.list()
    for c in containers:
        lifecycle.remove(store, c, force=True, volumes=True)
    store.conn.close()
    return len(containers)
