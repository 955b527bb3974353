"""Follow changes of a cgroup file (memory.events) with inotify, in a thread.

Rules:
- cgroup v2 files signal changes as IN_MODIFY. ``FileWatch`` calls
  ``on_change`` once at start and once per batch of events, in a daemon
  thread (the supervisor's own loop blocks on the helper's socket), until
  ``stop`` or until the file goes away (IN_IGNORED: the cgroup was removed).
- ``stop`` wakes the thread through a pipe and joins it; the fds are closed
  by the thread on every exit path.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
from collections.abc import Callable

IN_MODIFY = 0x2
IN_IGNORED = 0x8000
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then the name)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class FileWatch:
    def __init__(self, path: str, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.fd = _check(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC), "inotify_init1")
        try:
            _check(_libc.inotify_add_watch(self.fd, path.encode(), IN_MODIFY), f"watch {path}")
        except OSError:
            os.close(self.fd)
            raise
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        on_change()
        self.thread = threading.Thread(target=self._loop, name="cgroup-watch", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self.fd, self.wake_r], [], [])
                if self.wake_r in ready:
                    return
                try:
                    data = os.read(self.fd, 4096)
                except BlockingIOError:
                    continue
                masks, offset = 0, 0
                while offset < len(data):
                    _, mask, _, length = EVENT.unpack_from(data, offset)
                    masks |= mask
                    offset += EVENT.size + length
                if masks & IN_MODIFY:
                    self.on_change()
                if masks & IN_IGNORED:
                    return
        finally:
            os.close(self.fd)
            os.close(self.wake_r)

    def stop(self) -> None:
        os.write(self.wake_w, b"x")
        self.thread.join()
        os.close(self.wake_w)
