"""Whiteouts and opaque directories, in OCI layer format.

- ``.wh.NAME`` in a layer directory hides NAME in the layers below it (not
  in its own layer: a layer holding both NAME and ``.wh.NAME`` shows NAME).
- ``.wh..wh..opq`` in a layer directory makes it opaque: nothing below it
  merges in. The overlayfs spellings are honoured when reading layers too:
  a character device 0/0 is a whiteout, and the xattr
  ``trusted.overlay.opaque``/``user.overlay.opaque`` = ``y`` marks an opaque
  directory.
- prun writes only the ``.wh.`` forms (rootless cannot mknod 0/0), so its
  upper dirs are valid OCI layer diffs as they stand.
- Names starting with ``.wh.`` are never visible through the mount and
  cannot be created in it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def is_reserved(name: str) -> bool:
    """Whether a name is a whiteout marker (never shown, never created)."""
    return name.startswith(PREFIX)


def is_whiteout_stat(st: os.stat_result) -> bool:
    """overlayfs' whiteout: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def hidden_name(name: str) -> str:
    return PREFIX + name


def exists(dirpath: str, name: str) -> bool:
    """Whether ``dirpath`` holds a whiteout for ``name``."""
    try:
        os.lstat(f"{dirpath}/{PREFIX}{name}")
    except FileNotFoundError:
        return False
    return True


def is_opaque(dirpath: str) -> bool:
    with contextlib.suppress(FileNotFoundError):
        os.lstat(f"{dirpath}/{OPAQUE}")
        return True
    try:
        names = os.listxattr(dirpath, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return False
        raise
    for attr in _OPAQUE_XATTRS:
        if attr in names and os.getxattr(dirpath, attr, follow_symlinks=False) == b"y":
            return True
    return False


def create(dirpath: str, name: str) -> None:
    """Hide ``name`` in the layers below ``dirpath`` (idempotent)."""
    fd = os.open(f"{dirpath}/{PREFIX}{name}", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.close(fd)


def remove(dirpath: str, name: str) -> None:
    """Drop a whiteout for ``name`` if there is one."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{dirpath}/{PREFIX}{name}")


def mark_opaque(dirpath: str) -> None:
    fd = os.open(f"{dirpath}/{OPAQUE}", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.close(fd)
