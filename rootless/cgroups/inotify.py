"""Wait for changes of a cgroup file (memory.events) with inotify, in trio.

Rules:
- cgroup v2 files signal changes as IN_MODIFY; ``watch`` yields once per
  batch of events and ends when the file goes away (IN_IGNORED: the cgroup
  was removed) or when cancelled. The fd is closed on every exit path.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import AsyncIterator

IN_MODIFY = 0x2
IN_IGNORED = 0x8000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then the name)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


async def watch(path: str) -> AsyncIterator[None]:
    import trio

    fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
    try:
        _check(_libc.inotify_add_watch(fd, path.encode(), IN_MODIFY), f"watch {path}")
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            masks = []
            offset = 0
            while offset < len(data):
                _, mask, _, length = EVENT.unpack_from(data, offset)
                masks.append(mask)
                offset += EVENT.size + length
            if any(m & IN_MODIFY for m in masks):
                yield
            if any(m & IN_IGNORED for m in masks):
                return
    finally:
        os.close(fd)
