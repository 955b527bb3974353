"""Unpack one layer tarball into an empty directory: THE safe chokepoint.

Every tar member of every image goes through ``unpack``. Rules:
- Names are split into components; ``..`` anywhere, a NUL byte or an empty
  result is refused (``UnsafeLayer``); a leading ``/`` or ``./`` is dropped
  (the name is contained in the layer, as docker does).
- Nothing is written through a symlink: the parent directory of each member
  is reached by ``openat`` one component at a time with ``O_NOFOLLOW |
  O_DIRECTORY`` from the layer root's fd, so a symlink planted by an earlier
  member (absolute or relative) makes the member fail instead of escaping.
  Files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``; an existing name
  is removed first (a later member replaces an earlier one, as tar does).
- Hard links resolve their target the same way, inside this layer only, and
  link with ``follow_symlinks=False``.
- Symlink *targets* are stored as written, absolute ones too: they are
  resolved inside the container's root by the kernel there, never here.
- Nothing privileged reaches the host: files are owned by the user and at
  least owner-readable/writable (dirs owner-rwx), never group/other-
  writable, without setuid/setgid/sticky bits on disk; device nodes, FIFOs and sockets are empty regular
  files. What the image says (uid, gid, all 12 mode bits, the file type and
  device number) is recorded through ``fusefs.meta`` (one xattr), which the
  union fs serves. ``security.capability`` and ``user.*`` xattrs from PAX
  headers are kept under their on-disk names (``fusefs.meta.disk_xattr``).
- Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are ordinary empty files here:
  the union fs reads them in that form.
- Errors propagate (``UnsafeLayer`` for hostile content, ``OSError`` such as
  ENOSPC for the host): the caller unpacks into a temporary directory and
  throws it away, so a failed layer never becomes visible.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO

from fusefs import meta

_COPY = 1 << 20
_MAX_CACHED_DIRS = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR_PREFIX = "SCHILY.xattr."
_SPECIAL = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
            tarfile.FIFOTYPE: stat.S_IFIFO}
_CREATE = frozenset({*tarfile.REGULAR_TYPES, tarfile.SYMTYPE, tarfile.LNKTYPE, *_SPECIAL})


class UnsafeLayer(ValueError):
    """A member would write outside the layer or is malformed."""


@dataclass
class UnpackStats:
    entries: int = 0
    bytes: int = 0      # regular file content written


def split_name(name: str) -> tuple[str, ...]:
    """Components of a member name inside the layer (``()`` is the root)."""
    if "\x00" in name:
        raise UnsafeLayer(f"member name {name!r} contains a NUL byte")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeLayer(f"member {name!r} has a '..' component")
    return parts


def unpack(tar_stream: BinaryIO, root: str) -> UnpackStats:
    """Unpack the uncompressed tar read from ``tar_stream`` into ``root``
    (an existing empty directory). Reads up to the end-of-archive marker."""
    root_fd = os.open(root, _DIR_FLAGS)
    writer = _Writer(root_fd)
    try:
        # "r:" over a forward-only reader, not "r|": tarfile's stream mode
        # copies its whole buffer on every 512-byte header read (quadratic
        # in the buffer size; it was half of a pull's CPU time).
        with tarfile.open(fileobj=_Forward(tar_stream), mode="r:") as tar:
            for member in tar:
                writer.member(member, tar)
        writer.finish()
    except tarfile.TarError as exc:
        raise UnsafeLayer(f"not a valid tar stream: {exc}") from exc
    finally:
        writer.close()
        os.close(root_fd)
    return writer.stats


class _Writer:
    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.dirs: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self.dir_times: dict[tuple[str, ...], int] = {}
        self.stats = UnpackStats()

    # -------------------------------------------------------------- dir fds

    def open_dir(self, parts: tuple[str, ...], create: bool, what: str) -> int:
        """fd of directory ``parts`` (cached), never through a symlink."""
        if not parts:
            return self.root_fd
        fd = self.dirs.get(parts)
        if fd is not None:
            self.dirs.move_to_end(parts)
            return fd
        parent = self.open_dir(parts[:-1], create, what)
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise UnsafeLayer(f"member {what!r}: {'/'.join(parts)} does not exist "
                                  f"in this layer") from None
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeLayer(f"member {what!r} goes through {'/'.join(parts)}, "
                                  f"which is not a directory (a symlink?)") from exc
            raise
        self.dirs[parts] = fd
        if len(self.dirs) > _MAX_CACHED_DIRS:
            _, old = self.dirs.popitem(last=False)
            os.close(old)
        return fd

    def forget(self, parts: tuple[str, ...]) -> None:
        """Drop cached fds of ``parts`` and below (it is being replaced)."""
        n = len(parts)
        for key in [k for k in self.dirs if k[:n] == parts]:
            os.close(self.dirs.pop(key))
        for key in [k for k in self.dir_times if k[:n] == parts]:
            del self.dir_times[key]

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()

    # -------------------------------------------------------------- members

    def member(self, m: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = split_name(m.name)
        self.stats.entries += 1
        if not parts:
            if m.isdir():
                self._set_meta(self.root_fd, m, stat.S_IFDIR)
            return
        parent = self.open_dir(parts[:-1], True, m.name)
        if m.isdir():
            self._dir(parent, parts, m)
            return
        if m.type not in _CREATE:
            raise UnsafeLayer(f"member {m.name!r} has unsupported type {m.type!r}")
        try:
            self._create(parent, parts[-1], m, tar)
        except FileExistsError:
            # A later member replaces an earlier one, as tar does. (Trying
            # first and removing on EEXIST saves an lstat per member.)
            self._remove(parent, parts)
            self._create(parent, parts[-1], m, tar)

    def _create(self, parent: int, name: str, m: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        if m.isreg():
            self._file(parent, name, m, tar.extractfile(m))
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=parent)
            os.utime(name, ns=(int(m.mtime) * 10**9,) * 2, dir_fd=parent, follow_symlinks=False)
        elif m.islnk():
            self._hardlink(parent, name, m)
        else:
            self._file(parent, name, m, None, _SPECIAL[m.type])

    def _remove(self, parent: int, parts: tuple[str, ...]) -> None:
        name = parts[-1]
        if stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
            self.forget(parts)
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    def _dir(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        name = parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o700, dir_fd=parent)
        fd = self.open_dir(parts, False, m.name)
        self._set_meta(fd, m, stat.S_IFDIR)
        self.dir_times[parts] = m.mtime

    def _file(self, parent: int, name: str, m: tarfile.TarInfo, data: BinaryIO | None,
              kind: int | None = None) -> None:
        fd = os.open(name, _NEW_FILE, 0o600, dir_fd=parent)
        try:
            if data is not None:
                while chunk := data.read(_COPY):
                    _write_all(fd, chunk)
                    self.stats.bytes += len(chunk)
            self._set_meta(fd, m, stat.S_IFREG, kind)
            os.utime(fd, ns=(int(m.mtime) * 10**9,) * 2)
        finally:
            os.close(fd)

    def _hardlink(self, parent: int, name: str, m: tarfile.TarInfo) -> None:
        target = split_name(m.linkname)
        if not target:
            raise UnsafeLayer(f"hard link {m.name!r} points at the layer root")
        tparent = self.open_dir(target[:-1], False, m.name)
        try:
            os.link(target[-1], name, src_dir_fd=tparent, dst_dir_fd=parent,
                    follow_symlinks=False)
        except FileNotFoundError as exc:
            raise UnsafeLayer(f"hard link {m.name!r} points at {m.linkname!r}, which is not "
                              f"in this layer") from exc
        except PermissionError as exc:
            raise UnsafeLayer(f"hard link {m.name!r} points at directory {m.linkname!r}") \
                from exc

    def _set_meta(self, fd: int, m: tarfile.TarInfo, disk_type: int,
                  kind: int | None = None) -> None:
        perm = m.mode & 0o7777
        # Never group/other-writable on the host; the image's bits are in meta.
        disk = (perm & 0o755) | (0o700 if disk_type == stat.S_IFDIR else 0o600)
        os.fchmod(fd, disk)
        if m.uid or m.gid or perm != disk or kind is not None:
            rdev = os.makedev(m.devmajor, m.devminor) if kind in (stat.S_IFCHR, stat.S_IFBLK) \
                else 0
            meta.write(fd, meta.Meta(m.uid, m.gid, perm, kind, rdev))
        for key, value in m.pax_headers.items():
            if key.startswith(_XATTR_PREFIX):
                disk_name = meta.disk_xattr(key[len(_XATTR_PREFIX):])
                if disk_name:
                    os.setxattr(fd, disk_name, value.encode("utf-8", "surrogateescape"))

    def finish(self) -> None:
        # Directory mtimes last, deepest first: creating entries changed them.
        for parts in sorted(self.dir_times, key=len, reverse=True):
            parent = self.open_dir(parts[:-1], False, "/".join(parts))
            t = int(self.dir_times[parts]) * 10**9
            os.utime(parts[-1], ns=(t, t), dir_fd=parent, follow_symlinks=False)


class _Forward:
    """A stream that tells its position and seeks forward only (by reading),
    which is all tarfile's "r:" mode does when members are read in order."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.pos = 0
        self.buf = b""
        self.off = 0

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        target = pos if whence == 0 else self.pos + pos
        if whence not in (0, 1) or target < self.pos:
            raise OSError(errno.ESPIPE, "layer streams are read forward only")
        while self.pos < target and self.read(min(target - self.pos, _COPY)):
            pass
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        have = len(self.buf) - self.off
        if have >= n:
            data = self.buf[self.off:self.off + n]
            self.off += n
        else:
            parts = [self.buf[self.off:]] if have else []
            got = have
            while got < n:
                chunk = self.inner.read(max(_COPY, min(n - got, 1 << 24)))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
            joined = b"".join(parts)
            data, self.buf, self.off = joined[:n], joined, min(n, len(joined))
        self.pos += len(data)
        return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
