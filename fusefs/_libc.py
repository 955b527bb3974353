"""What Python's os module lacks: renameat2, fallocate(mode), umount2, free.

Rules: thin ctypes wrappers raising OSError with errno, nothing else.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
MNT_DETACH = 2

_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None


def _check(res: int, what: str) -> None:
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def renameat2(old: str, new: str, flags: int) -> None:
    _check(_libc.renameat2(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new), flags),
           "renameat2")


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    _check(_libc.fallocate(fd, mode, offset, length), "fallocate")


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), "umount2")


def free(ptr: int | None) -> None:
    """free(3) memory a C library allocated for us (None is a no-op)."""
    _libc.free(ptr)
