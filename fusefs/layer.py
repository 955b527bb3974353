"""Layer: one directory of the union stack, and stable inode numbers.

A Layer is a directory tree on the host: the upper (writable) dir or a
read-only lower dir. The union core only asks a layer for the backing path of
a union path and, for lower layers, for all the names of a hard-linked inode
(needed to copy a hard-link group up together).

Rules:
- Union paths are absolute ("/", "/etc/passwd"); a backing path is the layer
  root joined with the union path. The union core checks every directory
  component it descends through is a real directory (lstat), so a symlink in
  a layer is never followed on the host.
- Lower layers never change while mounted, so what is learned about them
  (the hard-link index) is cached for the mount's lifetime.
- Inode numbers served are (device index << 48 | st_ino) of the file's
  origin: the lower inode a copied-up file came from, else its own inode.
  Device indexes are assigned upper first, then lowers top-first, so on the
  usual single-filesystem store they are the real inode numbers. Inodes that
  do not fit are numbered from 2**63 upward for the mount's lifetime.
"""

from __future__ import annotations

import os
import threading

_SHIFT = 48
_FALLBACK_BASE = 1 << 63


class Layer:
    """A directory of the stack (see the module docstring)."""

    def __init__(self, root: str, *, writable: bool = False) -> None:
        self.root = os.path.abspath(root).rstrip("/") or "/"
        self.writable = writable
        self.dev = os.stat(self.root).st_dev
        self._links: dict[int, list[str]] | None = None
        self._links_lock = threading.Lock()

    def path(self, union_path: str) -> str:
        return self.root if union_path == "/" else self.root + union_path

    def hardlinks(self, ino: int) -> list[str]:
        """Union paths of every name of inode ``ino`` in this layer."""
        with self._links_lock:
            if self._links is None:
                self._links = self._index()
        return list(self._links.get(ino, ()))

    def _index(self) -> dict[int, list[str]]:
        # One walk by d_ino (no stat calls); only inodes with several names
        # are kept, so the index stays small.
        seen: dict[int, list[str]] = {}
        stack = [("", self.root)]
        while stack:
            rel, real = stack.pop()
            with os.scandir(real) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((f"{rel}/{entry.name}", entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        seen.setdefault(entry.inode(), []).append(f"{rel}/{entry.name}")
        return {ino: names for ino, names in seen.items() if len(names) > 1}

    def __repr__(self) -> str:
        return f"Layer({self.root!r}, writable={self.writable})"


class InodeNumbers:
    """Maps (st_dev, st_ino) of a file's origin to the st_ino served."""

    def __init__(self, devs: list[int]) -> None:
        self._index: dict[int, int] = {}
        for dev in devs:
            self._index.setdefault(dev, len(self._index))
        self._fallback: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def __call__(self, dev: int, ino: int) -> int:
        idx = self._index.get(dev)
        if idx is None:
            with self._lock:
                idx = self._index.setdefault(dev, len(self._index))
        if ino < (1 << _SHIFT) and idx < (1 << (63 - _SHIFT)):
            return (idx << _SHIFT) | ino
        with self._lock:
            return self._fallback.setdefault((dev, ino), _FALLBACK_BASE + len(self._fallback))
