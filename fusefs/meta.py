"""Ownership/mode/type metadata stored with each file of a layer.

Files in image layers and upper dirs are owned by the host user on disk; what
the container sees (uid, gid, permission bits incl. setuid/setgid/sticky, and
for special files their type and device number) is stored in one xattr, the
one containers-storage and fuse-overlayfs use, so a layer prun unpacked reads
the same in either tool:

    user.containers.override_stat = b"UID:GID:0PERM[:TYPE]"

- PERM is the 12 permission bits (``mode & 0o7777``) in octal.
- TYPE is present when the type served differs from the type on disk: device
  nodes, FIFOs and sockets cannot (or need not) be created rootless, so they
  are stored as empty regular files and TYPE says what they are:
  ``pipe``, ``socket``, ``char-MAJOR-MINOR``, ``block-MAJOR-MINOR``.
- A file without the xattr is served as owned by container root (0:0) with
  its on-disk permission bits.
- Linux forbids user.* xattrs on symlinks: a symlink is always served as
  0:0 with mode 0777 (ownership of a symlink has no effect on access).

Rules: this module is the only place that knows the encoding; readers and
writers (unpack, copy-up, chown/chmod in the union fs) go through it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

XATTR = "user.containers.override_stat"

_TYPES = {"pipe": stat.S_IFIFO, "socket": stat.S_IFSOCK, "char": stat.S_IFCHR,
          "block": stat.S_IFBLK, "file": stat.S_IFREG, "dir": stat.S_IFDIR,
          "symlink": stat.S_IFLNK}
_NAMES = {v: k for k, v in _TYPES.items()}


@dataclass(frozen=True)
class Meta:
    uid: int
    gid: int
    perm: int            # mode & 0o7777
    kind: int | None = None  # S_IFxxx served instead of the on-disk type, or None
    rdev: int = 0        # for char/block devices

    def mode(self, disk_mode: int) -> int:
        """st_mode to serve, given the file's on-disk st_mode."""
        kind = self.kind if self.kind is not None else stat.S_IFMT(disk_mode)
        return kind | self.perm


def encode(meta: Meta) -> bytes:
    text = f"{meta.uid}:{meta.gid}:0{meta.perm & 0o7777:o}"
    if meta.kind is not None:
        name = _NAMES[meta.kind]
        if meta.kind in (stat.S_IFCHR, stat.S_IFBLK):
            name += f"-{os.major(meta.rdev)}-{os.minor(meta.rdev)}"
        text += f":{name}"
    return text.encode()


def decode(value: bytes) -> Meta:
    """Parse an override_stat value; ValueError when it is malformed."""
    parts = value.decode("ascii").split(":")
    if len(parts) not in (3, 4):
        raise ValueError(f"malformed {XATTR} value {value!r}")
    uid, gid, perm = int(parts[0]), int(parts[1]), int(parts[2], 8)
    kind, rdev = None, 0
    if len(parts) == 4:
        name, *dev = parts[3].split("-")
        if name not in _TYPES:
            raise ValueError(f"unknown file type {name!r} in {XATTR} value {value!r}")
        kind = _TYPES[name]
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            rdev = os.makedev(int(dev[0]), int(dev[1]))
        if kind in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            # The fuse-overlayfs spelling of "same as on disk".
            kind = None
    return Meta(uid, gid, perm & 0o7777, kind, rdev)


def read(path: str | int, *, follow_symlinks: bool = False) -> Meta | None:
    """The stored metadata of a file (path or fd), or None when it has none."""
    try:
        return decode(os.getxattr(path, XATTR, follow_symlinks=follow_symlinks))
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return None
        raise


def write(path: str | int, meta: Meta, *, follow_symlinks: bool = False) -> None:
    os.setxattr(path, XATTR, encode(meta), follow_symlinks=follow_symlinks)
