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
- A file without the xattr is served with its on-disk owner as seen from the
  FUSE server's user namespace (prun stores files as the host user, which is
  container root there; a podman store chowned to subuids reads as those
  ids) and its on-disk permission bits.
- Linux forbids user.* xattrs on symlinks: a symlink is always served as
  0:0 with mode 0777 (ownership of a symlink has no effect on access).

Two more xattrs live here, because they too are metadata stored with a file:

- ``user.prun.origin`` = b"DEV:INO" on a copied-up file or directory names
  the lower inode it came from, so the union fs keeps serving the same inode
  number after copy-up (and hard links copied up together share it).
- Extended attributes the container sets are stored under on-disk names:
  ``user.*`` as is; ``security.capability`` (setcap) as
  ``user.prun.security.capability`` (rootless cannot write security.*);
  ``trusted.*``, ``system.*`` and other ``security.*`` are not supported.
  Internal names (this module's, overlayfs' and fuse-overlayfs') are never
  shown to nor settable by the container.

Rules: this module is the only place that knows these encodings; readers and
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
        return decode(_get(path, XATTR, follow_symlinks))
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return None
        raise


def write(path: str | int, meta: Meta, *, follow_symlinks: bool = False) -> None:
    if isinstance(path, int):
        os.setxattr(path, XATTR, encode(meta))
    else:
        os.setxattr(path, XATTR, encode(meta), follow_symlinks=follow_symlinks)


def _get(path: str | int, name: str, follow_symlinks: bool) -> bytes:
    # os.getxattr refuses follow_symlinks=False together with an fd.
    if isinstance(path, int):
        return os.getxattr(path, name)
    return os.getxattr(path, name, follow_symlinks=follow_symlinks)


ORIGIN = "user.prun.origin"
_CAPABILITY = "security.capability"
_CAPABILITY_ON_DISK = "user.prun.security.capability"
_INTERNAL_PREFIXES = ("user.prun.", "user.containers.", "user.overlay.", "user.fuseoverlayfs.")


def encode_origin(dev: int, ino: int) -> bytes:
    return f"{dev}:{ino}".encode()


def read_origin(path: str | int) -> tuple[int, int] | None:
    """The (st_dev, st_ino) a copied-up file came from, or None."""
    try:
        value = _get(path, ORIGIN, False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
            return None
        raise
    dev, _, ino = value.partition(b":")
    return int(dev), int(ino)


def read_upper(ref: str | int) -> tuple[Meta | None, tuple[int, int] | None]:
    """Stored metadata and origin of an upper file (path or fd).

    One listing first: most upper files carry neither xattr, and then that
    listing is the only syscall instead of two failed reads.
    """
    try:
        names = os.listxattr(ref) if isinstance(ref, int) else \
            os.listxattr(ref, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return None, None
        raise
    return (read(ref) if XATTR in names else None,
            read_origin(ref) if ORIGIN in names else None)


def disk_xattr(name: str) -> str | None:
    """On-disk name for an xattr the container names; None when unsupported."""
    if name == _CAPABILITY:
        return _CAPABILITY_ON_DISK
    if name.startswith("user.") and not name.startswith(_INTERNAL_PREFIXES):
        return name
    return None


def container_xattr(disk_name: str) -> str | None:
    """The name the container sees for an on-disk xattr; None to hide it."""
    if disk_name == _CAPABILITY_ON_DISK:
        return _CAPABILITY
    if disk_name.startswith("user.") and not disk_name.startswith(_INTERNAL_PREFIXES):
        return disk_name
    return None


def copied_xattrs() -> tuple[str, ...]:
    """Internal xattrs a copy-up carries over besides the container's own."""
    return (XATTR, _CAPABILITY_ON_DISK)
