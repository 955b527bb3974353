"""Container logs in docker's json-file format: writer (keeper) and reader (CLI).

Rules:
- One JSON object per line: ``{"log": "text\\n", "stream": "stdout"|"stderr",
  "time": "<RFC 3339, UTC, 9 fraction digits>"}``, as docker and podman's
  json-file driver write it; the fixed-width time makes string order time
  order. A line longer than ``MAX_LINE`` is cut into pieces without the
  trailing newline (docker does the same at 16 KiB).
- The writer runs in the long-lived keeper: it imports only ``os``, ``time``
  and the C string encoder ``_json`` (the ``json`` package pulls in ``re``:
  memory every idle container would pay), and never blocks on anything but
  its own file. The reader side imports what it likes, lazily.
- Rotation (``--log-opt max-size=10m,max-file=N``): once the file reaches
  max-size, ``container.log`` becomes ``container.log.1`` (the older ones
  shift up, the oldest beyond max-file-1 is deleted) and a new file starts.
  Readers walk the files oldest first, and a follower notices the rename by
  the inode changing and finishes the old file first.
- ``parse_size`` and ``parse_since`` turn user text into numbers and raise
  UsageError naming the flag.
"""

from __future__ import annotations

import contextlib
import os
import time

from _json import encode_basestring

MAX_LINE = 16 * 1024
DEFAULT_MAX_FILES = 1


def timestamp(ns: int | None = None) -> str:
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class LogWriter:
    """Append the container's output to ``path`` line by line, rotating by size."""

    def __init__(self, path: str, max_size: int = 0, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.path = path
        self.max_size = max_size
        self.max_files = max(max_files, 1)
        self._partial = {"stdout": b"", "stderr": b""}
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        out = []
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE)
            if nl >= 0:
                out.append(self._record(stream, buf[:nl + 1]))
                buf = buf[nl + 1:]
            elif len(buf) >= MAX_LINE:
                out.append(self._record(stream, buf[:MAX_LINE]))
                buf = buf[MAX_LINE:]
            else:
                break
        self._partial[stream] = buf
        if out:
            self._append(b"".join(out))

    def flush(self) -> None:
        """Write out unterminated lines (the process exited mid-line)."""
        out = [self._record(s, b) for s, b in self._partial.items() if b]
        self._partial = {"stdout": b"", "stderr": b""}
        if out:
            self._append(b"".join(out))

    def close(self) -> None:
        self.flush()
        os.close(self._fd)

    @staticmethod
    def _record(stream: str, line: bytes) -> bytes:
        text = encode_basestring(line.decode("utf-8", "replace"))
        return f'{{"log":{text},"stream":"{stream}","time":"{timestamp()}"}}\n'.encode()

    def _append(self, data: bytes) -> None:
        if self.max_size and self._size and self._size + len(data) > self.max_size:
            self._rotate()
        os.write(self._fd, data)
        self._size += len(data)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self.max_files == 1:
            os.unlink(self.path)
        else:
            for i in range(self.max_files - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
        self._size = 0


class Entry:
    __slots__ = ("stream", "time", "text")

    def __init__(self, stream: str, time: str, text: str) -> None:
        self.stream, self.time, self.text = stream, time, text


def _parse(line: bytes) -> Entry | None:
    import json
    try:
        obj = json.loads(line)
    except ValueError:
        return None  # a line cut by a crash mid-write
    return Entry(obj.get("stream", "stdout"), obj.get("time", ""), obj.get("log", ""))


def log_files(path: str) -> list[str]:
    """The log files of one container, oldest first."""
    rotated = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        rotated.append(f"{path}.{i}")
        i += 1
    return rotated[::-1] + ([path] if os.path.exists(path) else [])


def read(path: str, tail: int | None = None, since: str | None = None,
         until: str | None = None) -> list[Entry]:
    """Entries of all files, filtered by time, the last ``tail`` of them."""
    return read_to(path, tail, since, until)[0]


def read_to(path: str, tail: int | None = None, since: str | None = None,
            until: str | None = None) -> tuple[list[Entry], tuple[int, int]]:
    """``read`` plus where it stopped in ``path``: (inode, offset) for ``follow``."""
    from collections import deque
    keep: deque[Entry] = deque(maxlen=tail) if tail is not None else deque()
    end = (0, 0)
    for name in log_files(path):
        with open(name, "rb") as f:
            pos = 0
            for line in f:
                if not line.endswith(b"\n"):
                    break  # still being written: follow picks it up whole
                pos += len(line)
                e = _parse(line)
                if e is None or (since and e.time < since) or (until and e.time > until):
                    continue
                keep.append(e)
            if name == path:
                end = (os.fstat(f.fileno()).st_ino, pos)
    return ([] if tail == 0 else list(keep)), end


def follow(path: str, done, since: str | None = None, poll: float = 0.1,
           start: tuple[int, int] | None = None):
    """Entries written to ``path`` after ``start`` (read_to's end; default:
    the current end), until ``done()`` and all is read.

    Survives rotation: when ``path`` gets a new inode the rest of the old
    file is read before switching.
    """
    f = _open_wait(path, done, poll)
    if f is None:
        return
    if start is None:
        f.seek(0, os.SEEK_END)
    elif os.fstat(f.fileno()).st_ino == start[0]:
        f.seek(start[1])
    pending = b""
    while True:
        chunk = f.read()
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                e = _parse(line)
                if e is not None and not (since and e.time < since):
                    yield e
            continue
        try:
            rotated = os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            rotated = True
        if rotated:
            nxt = _open_wait(path, done, poll)
            if nxt is None:
                f.close()
                return
            f.close()
            f, pending = nxt, b""
            continue
        if done():
            # one last read: the keeper may have written just before exiting
            if not f.read(1):
                f.close()
                return
            f.seek(-1, os.SEEK_CUR)
            continue
        time.sleep(poll)


def _open_wait(path: str, done, poll: float):
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if done():
                return None
            time.sleep(poll)


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
          "g": 1024 ** 3, "gb": 1024 ** 3}


def parse_size(text: str, flag: str = "--log-opt max-size") -> int:
    from rootless.errors import UsageError
    t = text.strip().lower()
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(digits):]
    try:
        value = float(digits)
    except ValueError:
        value = -1
    if unit not in _UNITS or value < 0:
        raise UsageError(f"parse {flag}={text}: not a size", hint="e.g. 10m, 512k, 1g")
    return int(value * _UNITS[unit])


_DURATION = {"s": 1, "m": 60, "h": 3600}


def parse_since(text: str, now: float | None = None, flag: str = "--since") -> str:
    """``--since``/``--until`` value → timestamp string comparable with entries.

    Accepts a Unix time (``1700000000[.5]``), a duration back from now
    (``10m``, ``1h30m``, ``45s``) or an RFC 3339 / ``YYYY-MM-DD[THH:MM:SS]``
    time (UTC unless it carries an offset).
    """
    from datetime import datetime, timezone

    from rootless.errors import UsageError
    now = time.time() if now is None else now
    t = text.strip()
    with contextlib.suppress(ValueError):  # not a number: a duration or a date
        return timestamp(int(float(t) * 1e9))
    total, num = 0.0, ""
    for ch in t:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in _DURATION and num:
            total += float(num) * _DURATION[ch]
            num = ""
        else:
            total = -1
            break
    if total > 0 and not num:
        return timestamp(int((now - total) * 1e9))
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"parse {flag} {text!r}: not a time",
                         hint="use a Unix time, a duration such as 10m, or 2024-05-01T12:00:00Z"
                         ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return timestamp(int(dt.timestamp() * 1e9))
