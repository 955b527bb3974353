"""The fusepy adapter: UnionFS served through libfuse3's low-level API.

The only module that imports fusepy. It uses fusepy's ctypes types (stat,
statvfs, off_t, mode_t) with libfuse3 loaded, and declares libfuse 3.14's
low-level structs and operation table itself, because the low-level API is
what makes a Python server fast: one callback per kernel request, replies
built in C (file data goes from the backing fd to the kernel without
entering Python), kernel caching of entries, attributes, symlinks, file
pages and directory listings, directory listings that carry every entry's
attributes (READDIRPLUS: one request per listing chunk instead of a LOOKUP
per name), 1 MiB write requests, and worker threads that are Python threads
(a libfuse-created thread pays for a fresh interpreter thread state on
every callback). fusepy's own API is libfuse2-only and high-level (a path
lookup per request); libfuse2 has none of the features above.

Rules:
- Node ids are the served inode numbers (fusefs.layer.InodeNumbers), so hard
  links share one kernel inode (page cache and attributes stay coherent) and
  a copy-up keeps its kernel inode. ``_Nodes`` maps a node id to the union
  paths it was looked up by, follows renames, and forgets a node when the
  kernel does; an open-unlinked file is served through its open fd. Every
  entry a READDIRPLUS reply carries counts as one lookup (the kernel
  forgets it later), "." and ".." carry node id 0 and count nothing.
- Every request gets exactly one reply: handlers reply themselves on
  success; an OSError is replied as its errno; any other exception is
  logged with its traceback and replied as EIO.
- Directory listings are built when the kernel reads offset 0 (the offset
  of an entry is its index + 1) and kept only until it has read them to the
  end: the kernel caches listings itself (FOPEN_CACHE_DIR, dropped on
  changes it makes).
- The union may change only through this mount while it is served (entry,
  attribute, symlink and page caches trust that).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import operator
import os
import platform
import signal
import stat
import struct
import threading
from collections.abc import Callable
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_int, c_size_t, c_uint,
                    c_uint32, c_uint64, c_void_p)

from fusefs import LIBFUSE

# fusepy loads a libfuse at import; naming ours spares it an `ldconfig -p`
# (a fork+exec) and a second library.
os.environ.setdefault("FUSE_LIBRARY_PATH", LIBFUSE)
import fuse as _fusepy  # noqa: E402

from fusefs import _libc  # noqa: E402
from fusefs.fs import UnionFS, set_times  # noqa: E402
from fusefs.union import Attr, join, split  # noqa: E402

log = logging.getLogger("fusefs")

_lib = ctypes.CDLL(LIBFUSE)
_off_t = _fusepy.c_off_t
_mode_t = _fusepy.c_mode_t
_dev_t = _fusepy.c_dev_t
_Stat = _fusepy.c_stat
_req, _ino = c_void_p, c_uint64
_ROOT = 1
_ROOT_ALIAS = (1 << 64) - 2     # node id for a file whose served inode number is 1
# fuse_common.h FUSE_CAP_* bits
_CAP_ATOMIC_O_TRUNC, _CAP_SPLICE_WRITE = 1 << 3, 1 << 7
_CAP_AUTO_INVAL_DATA, _CAP_READDIRPLUS, _CAP_READDIRPLUS_AUTO = 1 << 12, 1 << 13, 1 << 14
_CAP_WRITEBACK_CACHE = 1 << 16
_CAP_PARALLEL_DIROPS, _CAP_HANDLE_KILLPRIV, _CAP_CACHE_SYMLINKS = 1 << 18, 1 << 20, 1 << 23
_SET_MODE, _SET_UID, _SET_GID, _SET_SIZE = 1, 2, 4, 8
_SET_ATIME, _SET_MTIME, _SET_ATIME_NOW, _SET_MTIME_NOW = 16, 32, 128, 256
_BUF_IS_FD, _BUF_FD_SEEK = 1 << 1, 1 << 2
_READ_AHEAD = 2 << 20
# linux/fuse.h: struct fuse_entry_out (with struct fuse_attr), struct fuse_dirent
_ENTRY_OUT = struct.Struct("<QQQQII6Q10I")
_DIRENT = struct.Struct("<QQII")


# fusepy's c_stat stops before glibc's trailing reserved words; struct
# fuse_entry_param embeds a whole struct stat, so it is padded to the real size.
_STAT_SIZE = {"x86_64": 144, "aarch64": 128}.get(platform.machine(), ctypes.sizeof(_Stat))
_ATTR_KEYS = ("st_dev", "st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev",
              "st_size", "st_blksize", "st_blocks", "st_atimespec.sec", "st_atimespec.nsec",
              "st_mtimespec.sec", "st_mtimespec.nsec", "st_ctimespec.sec", "st_ctimespec.nsec")


def _stat_layout() -> tuple[str, operator.itemgetter]:
    """struct format of a whole struct stat (from fusepy's c_stat offsets),
    and the getter ordering an _ATTR_KEYS tuple into it: packing with struct
    is several times cheaper than setting ctypes fields one by one."""
    parts = []
    for name, _ in _Stat._fields_:
        field = getattr(_Stat, name)
        if name.endswith("timespec"):
            half = field.size // 2
            code = {4: "i", 8: "q"}[half]
            parts += [(field.offset, code, f"{name}.sec"), (field.offset + half, code, f"{name}.nsec")]
        elif name.startswith("st_"):
            parts.append((field.offset, {4: "I", 8: "Q"}[field.size], name))
    fmt, pos, order = "", 0, []
    for offset, code, name in sorted(parts):
        fmt += f"{offset - pos}x{code}" if offset > pos else code
        pos = offset + struct.calcsize("=" + code)
        order.append(_ATTR_KEYS.index(name))
    return fmt + (f"{_STAT_SIZE - pos}x" if _STAT_SIZE > pos else ""), operator.itemgetter(*order)


_STAT_FMT, _stat_order = _stat_layout()
_STAT = struct.Struct("=" + _STAT_FMT)
# struct fuse_entry_param: ino, generation, struct stat, attr_timeout, entry_timeout
_ENTRY = struct.Struct("=QQ" + _STAT_FMT + "dd")


def _times(a: Attr) -> tuple[int, int, int, int, int, int]:
    """(atime s, ns, mtime s, ns, ctime s, ns)"""
    return (*divmod(a.atime_ns, 1_000_000_000), *divmod(a.mtime_ns, 1_000_000_000),
            *divmod(a.ctime_ns, 1_000_000_000))


def _stat_values(a: Attr) -> tuple:
    return _stat_order((0, a.ino, a.mode, a.nlink, a.uid, a.gid, a.rdev, a.size, a.blksize,
                        a.blocks, *_times(a)))


def _attr_out(a: Attr) -> tuple:
    """struct fuse_attr's values (the kernel's rdev is the low 32 bits of
    glibc's dev_t encoding, as libfuse passes it)."""
    asec, ansec, msec, mnsec, csec, cnsec = _times(a)
    return (a.ino, a.size, a.blocks, asec, msec, csec, ansec, mnsec, cnsec, a.mode, a.nlink,
            a.uid, a.gid, a.rdev & 0xFFFFFFFF, a.blksize, 0)


class _Ctx(ctypes.Structure):
    _fields_ = [("uid", c_uint), ("gid", c_uint), ("pid", c_int), ("umask", _mode_t)]


class _FileInfo(ctypes.Structure):
    """libfuse 3.14's struct fuse_file_info."""
    _fields_ = [("flags", c_int), ("writepage", c_uint, 1), ("direct_io", c_uint, 1),
                ("keep_cache", c_uint, 1), ("flush", c_uint, 1), ("nonseekable", c_uint, 1),
                ("flock_release", c_uint, 1), ("cache_readdir", c_uint, 1),
                ("noflush", c_uint, 1), ("padding", c_uint, 24), ("padding2", c_uint, 32),
                ("fh", c_uint64), ("lock_owner", c_uint64), ("poll_events", c_uint32)]


_FI = POINTER(_FileInfo)


class _Buf(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("flags", c_int), ("mem", c_void_p), ("fd", c_int),
                ("pos", _off_t)]


class _BufVec(ctypes.Structure):
    _fields_ = [("count", c_size_t), ("idx", c_size_t), ("off", c_size_t), ("buf", _Buf * 1)]


class _ConnInfo(ctypes.Structure):
    _fields_ = [("proto_major", c_uint), ("proto_minor", c_uint), ("max_write", c_uint),
                ("max_read", c_uint), ("max_readahead", c_uint), ("capable", c_uint),
                ("want", c_uint), ("max_background", c_uint),
                ("congestion_threshold", c_uint), ("time_gran", c_uint),
                ("reserved", c_uint * 22)]


class _Forget(ctypes.Structure):
    _fields_ = [("ino", c_uint64), ("nlookup", c_uint64)]


class _Args(ctypes.Structure):
    _fields_ = [("argc", c_int), ("argv", POINTER(c_char_p)), ("allocated", c_int)]


def _f(*args):
    return CFUNCTYPE(None, *args)


# libfuse 3.14's struct fuse_lowlevel_ops, in order; None marks slots we leave NULL.
_OPS = [
    ("init", _f(c_void_p, c_void_p)), ("destroy", None),
    ("lookup", _f(_req, _ino, c_char_p)), ("forget", _f(_req, _ino, c_uint64)),
    ("getattr", _f(_req, _ino, _FI)),
    ("setattr", _f(_req, _ino, POINTER(_Stat), c_int, _FI)),
    ("readlink", _f(_req, _ino)), ("mknod", _f(_req, _ino, c_char_p, _mode_t, _dev_t)),
    ("mkdir", _f(_req, _ino, c_char_p, _mode_t)), ("unlink", _f(_req, _ino, c_char_p)),
    ("rmdir", _f(_req, _ino, c_char_p)), ("symlink", _f(_req, c_char_p, _ino, c_char_p)),
    ("rename", _f(_req, _ino, c_char_p, _ino, c_char_p, c_uint)),
    ("link", _f(_req, _ino, _ino, c_char_p)), ("open", _f(_req, _ino, _FI)),
    ("read", _f(_req, _ino, c_size_t, _off_t, _FI)),
    ("write", _f(_req, _ino, c_void_p, c_size_t, _off_t, _FI)),
    ("flush", None), ("release", _f(_req, _ino, _FI)),
    ("fsync", _f(_req, _ino, c_int, _FI)), ("opendir", _f(_req, _ino, _FI)),
    ("readdir", None), ("releasedir", None),
    ("fsyncdir", None), ("statfs", _f(_req, _ino)),
    ("setxattr", _f(_req, _ino, c_char_p, c_void_p, c_size_t, c_int)),
    ("getxattr", _f(_req, _ino, c_char_p, c_size_t)),
    ("listxattr", _f(_req, _ino, c_size_t)), ("removexattr", _f(_req, _ino, c_char_p)),
    ("access", None), ("create", _f(_req, _ino, c_char_p, _mode_t, _FI)),
    ("getlk", None), ("setlk", None), ("bmap", None), ("ioctl", None), ("poll", None),
    ("write_buf", None), ("retrieve_reply", None),
    ("forget_multi", _f(_req, c_size_t, POINTER(_Forget))),
    ("flock", None), ("fallocate", _f(_req, _ino, c_int, _off_t, _off_t, _FI)),
    ("readdirplus", _f(_req, _ino, c_size_t, _off_t, _FI)),
    ("copy_file_range", None), ("lseek", None),
]


class _LowLevelOps(ctypes.Structure):
    _fields_ = [(name, proto or c_void_p) for name, proto in _OPS]


def _sig(name: str, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


_req_ctx = _sig("fuse_req_ctx", POINTER(_Ctx), c_void_p)
_reply_err = _sig("fuse_reply_err", c_int, c_void_p, c_int)
_reply_none = _sig("fuse_reply_none", None, c_void_p)
_reply_entry = _sig("fuse_reply_entry", c_int, c_void_p, c_char_p)
_reply_create = _sig("fuse_reply_create", c_int, c_void_p, c_char_p, _FI)
_reply_attr = _sig("fuse_reply_attr", c_int, c_void_p, c_char_p, c_double)
_reply_readlink = _sig("fuse_reply_readlink", c_int, c_void_p, c_char_p)
_reply_open = _sig("fuse_reply_open", c_int, c_void_p, _FI)
_reply_write = _sig("fuse_reply_write", c_int, c_void_p, c_size_t)
_reply_buf = _sig("fuse_reply_buf", c_int, c_void_p, c_char_p, c_size_t)
_reply_data = _sig("fuse_reply_data", c_int, c_void_p, POINTER(_BufVec), c_int)
_reply_statfs = _sig("fuse_reply_statfs", c_int, c_void_p, POINTER(_fusepy.c_statvfs))
_reply_xattr = _sig("fuse_reply_xattr", c_int, c_void_p, c_size_t)
_session_new = _sig("fuse_session_new", c_void_p, POINTER(_Args), POINTER(_LowLevelOps),
                    c_size_t, c_void_p)
_session_mount = _sig("fuse_session_mount", c_int, c_void_p, c_char_p)
_session_unmount = _sig("fuse_session_unmount", None, c_void_p)
_session_destroy = _sig("fuse_session_destroy", None, c_void_p)
_session_exited = _sig("fuse_session_exited", c_int, c_void_p)
_session_receive = _sig("fuse_session_receive_buf", c_int, c_void_p, POINTER(_Buf))
_session_process = _sig("fuse_session_process_buf", None, c_void_p, POINTER(_Buf))
_opt_free_args = _sig("fuse_opt_free_args", None, POINTER(_Args))


class MountFailed(Exception):
    """libfuse could not mount; the message is libfuse's/fusermount's text."""


class _Nodes:
    """Node id → the union paths the kernel knows it by (see module rules).

    A node's paths are one str (the common case: one name, and a find over
    a big tree keeps tens of thousands of nodes), a tuple when hard links
    gave it several, () when its last name was removed while it is open.
    """

    def __init__(self) -> None:
        self.paths: dict[int, str | tuple[str, ...]] = {_ROOT: "/"}
        self.lookups: dict[int, int] = {}
        self.fds: dict[int, set[int]] = {}
        self.lock = threading.Lock()

    def first(self, nid: int) -> str | None:
        paths = self.paths.get(nid)
        if not paths:
            return None
        return paths if isinstance(paths, str) else paths[0]

    def path(self, nid: int) -> str:
        path = self.first(nid)
        if path is None:
            raise OSError(errno.ENOENT, "no path left for this node")
        return path

    def remember(self, nid: int, path: str) -> None:
        with self.lock:
            self.lookups[nid] = self.lookups.get(nid, 0) + 1
            paths = self.paths.get(nid)
            if not paths:
                self.paths[nid] = path
            elif paths != path and path not in _as_tuple(paths):
                self.paths[nid] = (*_as_tuple(paths), path)

    def forget(self, nid: int, n: int) -> None:
        with self.lock:
            left = self.lookups.get(nid, 0) - n
            if left > 0:
                self.lookups[nid] = left
            elif nid != _ROOT:
                self.lookups.pop(nid, None)
                self.paths.pop(nid, None)

    def drop(self, nid: int, path: str) -> None:
        with self.lock:
            paths = self.paths.get(nid)
            if paths:
                left = tuple(p for p in _as_tuple(paths) if p != path)
                self.paths[nid] = left[0] if len(left) == 1 else left

    def moved(self, old: str, new: str, *, exchanged: bool = False) -> None:
        """``old`` (and what is below it) is now ``new``; with ``exchanged``
        ``new`` is also now ``old``."""
        moves = [(old, new), (new, old)] if exchanged else [(old, new)]

        def rename(p: str) -> str:
            for src, dst in moves:
                if p == src or p.startswith(src + "/"):
                    return dst + p[len(src):]
            return p

        with self.lock:
            for nid, paths in self.paths.items():
                self.paths[nid] = rename(paths) if isinstance(paths, str) else \
                    tuple(rename(p) for p in paths)


def _as_tuple(paths: str | tuple[str, ...]) -> tuple[str, ...]:
    return (paths,) if isinstance(paths, str) else paths


def _nid(ino: int) -> int:
    return _ROOT_ALIAS if ino == _ROOT else ino


def _readable(flags: int) -> int:
    """Open flags for a backing file: the kernel's write-back cache fills
    partly written pages by reading them, even through a write-only open."""
    if flags & os.O_ACCMODE == os.O_WRONLY:
        return flags & ~os.O_ACCMODE | os.O_RDWR
    return flags


def _handler(fn: Callable[..., None]) -> Callable[..., None]:
    def call(req, *args):
        try:
            fn(req, *args)
        except OSError as exc:
            _reply_err(req, exc.errno or errno.EIO)
        except Exception:
            log.exception("unexpected failure in %s", fn.__name__)
            _reply_err(req, errno.EIO)
    call.__name__ = fn.__name__
    return call


class _Adapter:
    """The low-level callbacks, bound to one UnionFS."""

    def __init__(self, fs: UnionFS, timeout: float) -> None:
        self.fs = fs
        self.timeout = timeout
        whole, frac = divmod(timeout, 1)
        self._valid, self._valid_ns = int(whole), int(frac * 1e9)
        self.negative = _ENTRY.pack(0, 0, *(0,) * len(_ATTR_KEYS), 0.0, timeout)
        self.nodes = _Nodes()
        self.listings: dict[int, list[tuple[bytes, str, Attr]]] = {}
        self._next_read: dict[int, int] = {}    # fd -> where a sequential read goes on
        self.ops = _LowLevelOps()
        self._keep = []
        for name, proto in _OPS:
            if proto is None:
                continue
            impl = getattr(self, f"op_{name}")
            if name not in ("init", "forget", "forget_multi"):
                impl = _handler(impl)
            cb = proto(impl)
            self._keep.append(cb)
            setattr(self.ops, name, cb)

    # ---- helpers ------------------------------------------------------------

    def _child(self, parent: int, name: bytes) -> str:
        return join(self.nodes.path(parent), os.fsdecode(name))

    def _entry(self, req, path: str, a: Attr | None = None, fi=None) -> None:
        if a is None:
            a = self.fs.getattr(path)
        nid = _nid(a.ino)
        e = _ENTRY.pack(nid, 0, *_stat_values(a), self.timeout, self.timeout)
        self.nodes.remember(nid, path)
        if fi is None:
            if _reply_entry(req, e):
                self.nodes.forget(nid, 1)
        elif _reply_create(req, e, fi):
            self.nodes.forget(nid, 1)
            self._closed(nid, fi.contents.fh)

    def _attr(self, nid: int) -> Attr:
        path = self.nodes.first(nid)
        if path is not None:
            return self.fs.getattr(path)
        fds = self.nodes.fds.get(nid)
        if fds:
            return self.fs.fattr(next(iter(fds)))
        raise OSError(errno.ENOENT, "no path left for this node")

    def _changed(self, *nids: int) -> None:
        for nid in nids:
            self.listings.pop(nid, None)

    @staticmethod
    def _caller(req) -> tuple[int, int]:
        ctx = _req_ctx(req).contents
        return ctx.uid, ctx.gid

    # ---- lookup and attributes ---------------------------------------------

    def op_init(self, userdata, conn):
        # O_TRUNC reaches open() instead of a separate setattr, so a lower
        # file opened with O_TRUNC is copied up without its data. Read
        # replies splice file pages to the kernel (measured +20% on reads).
        # Listings always carry attributes (find, ls -l, tar, du all stat
        # what they list), and symlink targets are cached like pages.
        # Writes go through the kernel's write-back cache: one WRITE per
        # flushed range instead of one per write(2) (tar x sent 1.6 per
        # file), the kernel keeps size and mtime while pages are dirty, and
        # close() flushes them. Correct because nothing but this mount writes
        # the upper files.
        # libfuse3's defaults that are wrong here: AUTO_INVAL_DATA (re-reads
        # attributes on every read; nothing changes behind the kernel's
        # back), HANDLE_KILLPRIV (the kernel, not the union, clears setuid
        # bits on write), PARALLEL_DIROPS (directory changes stay serialised
        # per directory, as with libfuse2).
        info = ctypes.cast(conn, POINTER(_ConnInfo)).contents
        info.want &= ~(_CAP_AUTO_INVAL_DATA | _CAP_HANDLE_KILLPRIV | _CAP_PARALLEL_DIROPS
                       | _CAP_READDIRPLUS_AUTO)
        info.want |= info.capable & (_CAP_ATOMIC_O_TRUNC | _CAP_SPLICE_WRITE | _CAP_READDIRPLUS
                                     | _CAP_CACHE_SYMLINKS | _CAP_WRITEBACK_CACHE)

    def op_lookup(self, req, parent, name):
        try:
            self._entry(req, self._child(parent, name))
        except FileNotFoundError:
            # A negative entry: the kernel caches the miss for the timeout.
            _reply_entry(req, self.negative)

    def op_forget(self, req, nid, n):
        self.nodes.forget(nid, n)
        _reply_none(req)

    def op_forget_multi(self, req, count, forgets):
        for i in range(count):
            self.nodes.forget(forgets[i].ino, forgets[i].nlookup)
        _reply_none(req)

    def op_getattr(self, req, nid, fi):
        _reply_attr(req, _STAT.pack(*_stat_values(self._attr(nid))), self.timeout)

    def op_setattr(self, req, nid, attr, to_set, fi):
        a = attr.contents
        if fi and self.nodes.first(nid) is None:
            # An open-unlinked file: only what its fd can do.
            fd = fi.contents.fh
            if to_set & _SET_SIZE:
                os.ftruncate(fd, a.st_size)
            if to_set & (_SET_ATIME | _SET_MTIME | _SET_ATIME_NOW | _SET_MTIME_NOW):
                set_times(fd, os.fstat(fd),
                          self._time(to_set, _SET_ATIME, _SET_ATIME_NOW, a.st_atimespec),
                          self._time(to_set, _SET_MTIME, _SET_MTIME_NOW, a.st_mtimespec))
            _reply_attr(req, _STAT.pack(*_stat_values(self.fs.fattr(fd))), self.timeout)
            return
        result = self.fs.setattr(
            self.nodes.path(nid),
            mode=a.st_mode if to_set & _SET_MODE else None,
            uid=a.st_uid if to_set & _SET_UID else -1,
            gid=a.st_gid if to_set & _SET_GID else -1,
            size=a.st_size if to_set & _SET_SIZE else None,
            fd=fi.contents.fh if fi and to_set & _SET_SIZE else None,
            atime=self._time(to_set, _SET_ATIME, _SET_ATIME_NOW, a.st_atimespec),
            mtime=self._time(to_set, _SET_MTIME, _SET_MTIME_NOW, a.st_mtimespec))
        _reply_attr(req, _STAT.pack(*_stat_values(result)), self.timeout)

    @staticmethod
    def _time(to_set: int, given: int, now: int, ts) -> int | None | bool:
        """ns to set, True for "now", None to leave the time as it is."""
        if to_set & now:
            return True
        if to_set & given:
            return ts.tv_sec * 1_000_000_000 + ts.tv_nsec
        return None

    def op_readlink(self, req, nid):
        _reply_readlink(req, os.fsencode(self.fs.readlink(self.nodes.path(nid))))

    def op_statfs(self, req, nid):
        v = self.fs.statfs()
        s = _fusepy.c_statvfs()
        s.f_bsize, s.f_frsize = v.f_bsize, v.f_frsize
        s.f_blocks, s.f_bfree, s.f_bavail = v.f_blocks, v.f_bfree, v.f_bavail
        s.f_files, s.f_ffree, s.f_favail = v.f_files, v.f_ffree, v.f_favail
        s.f_namemax = 255
        _reply_statfs(req, ctypes.byref(s))

    # ---- namespace ------------------------------------------------------------

    def op_mknod(self, req, parent, name, mode, rdev):
        path = self._child(parent, name)
        self.fs.mknod(path, mode, rdev, *self._caller(req))
        self._changed(parent)
        self._entry(req, path)

    def op_mkdir(self, req, parent, name, mode):
        path = self._child(parent, name)
        self.fs.mkdir(path, mode, *self._caller(req))
        self._changed(parent)
        self._entry(req, path)

    def op_symlink(self, req, target, parent, name):
        path = self._child(parent, name)
        self.fs.symlink(os.fsdecode(target), path, *self._caller(req))
        self._changed(parent)
        self._entry(req, path)

    def op_link(self, req, nid, parent, name):
        path = self._child(parent, name)
        self.fs.link(self.nodes.path(nid), path)
        self._changed(parent)
        self._entry(req, path)

    def op_unlink(self, req, parent, name):
        self._remove(req, parent, name, self.fs.unlink)

    def op_rmdir(self, req, parent, name):
        self._remove(req, parent, name, self.fs.rmdir)

    def _remove(self, req, parent, name, remove) -> None:
        path = self._child(parent, name)
        nid = _nid(self.fs.getattr(path).ino)
        remove(path)
        self.nodes.drop(nid, path)
        self._changed(parent, nid)
        _reply_err(req, 0)

    def op_rename(self, req, parent, name, newparent, newname, flags):
        old, new = self._child(parent, name), self._child(newparent, newname)
        exchange = bool(flags & _libc.RENAME_EXCHANGE)
        try:
            replaced = None if exchange else _nid(self.fs.getattr(new).ino)
        except FileNotFoundError:
            replaced = None
        self.fs.rename(old, new, flags)
        if replaced is not None:
            self.nodes.drop(replaced, new)
        self.nodes.moved(old, new, exchanged=exchange)
        self._changed(parent, newparent)
        _reply_err(req, 0)

    # ---- files ----------------------------------------------------------------

    def op_open(self, req, nid, fip):
        fi = fip.contents
        fi.fh = fd = self.fs.open(self.nodes.path(nid), _readable(fi.flags))
        # Every change to the file goes through this kernel inode (hard
        # links share it), so its page cache stays valid between opens.
        fi.keep_cache = 1
        self._opened(nid, fd)
        if _reply_open(req, fip):
            self._closed(nid, fd)

    def op_create(self, req, parent, name, mode, fip):
        path = self._child(parent, name)
        fi = fip.contents
        fi.fh = fd = self.fs.create(path, mode, _readable(fi.flags), *self._caller(req))
        fi.keep_cache = 1
        self._changed(parent)
        a = self.fs.fattr(fd)
        self._opened(_nid(a.ino), fd)
        self._entry(req, path, a, fip)

    def _opened(self, nid: int, fd: int) -> None:
        with self.nodes.lock:
            self.nodes.fds.setdefault(nid, set()).add(fd)

    def _closed(self, nid: int, fd: int) -> None:
        with self.nodes.lock:
            fds = self.nodes.fds.get(nid)
            if fds is not None:
                fds.discard(fd)
                if not fds:
                    del self.nodes.fds[nid]
        self._next_read.pop(fd, None)
        os.close(fd)

    def op_read(self, req, nid, size, offset, fi):
        fd = fi.contents.fh
        bv = _BufVec(1, 0, 0)
        b = bv.buf[0]
        b.size, b.flags, b.fd, b.pos = size, _BUF_IS_FD | _BUF_FD_SEEK, fd, offset
        _reply_data(req, ctypes.byref(bv), 0)
        # Requests are served one at a time: for a sequential reader, ask the
        # host to start reading ahead now, so the next request finds the data
        # in its page cache instead of waiting for the disk.
        if self._next_read.get(fd) == offset:
            os.posix_fadvise(fd, offset + size, _READ_AHEAD, os.POSIX_FADV_WILLNEED)
        self._next_read[fd] = offset + size

    def op_write(self, req, nid, buf, size, offset, fi):
        view = (ctypes.c_char * size).from_address(buf)
        _reply_write(req, os.pwrite(fi.contents.fh, view, offset))

    def op_release(self, req, nid, fi):
        self._closed(nid, fi.contents.fh)
        _reply_err(req, 0)

    def op_fsync(self, req, nid, datasync, fi):
        (os.fdatasync if datasync else os.fsync)(fi.contents.fh)
        _reply_err(req, 0)

    def op_fallocate(self, req, nid, mode, offset, length, fi):
        _libc.fallocate(fi.contents.fh, mode, offset, length)
        _reply_err(req, 0)

    # ---- directories ----------------------------------------------------------

    def op_opendir(self, req, nid, fip):
        self.nodes.path(nid)
        # The kernel keeps the listing in the directory's page cache across
        # opens; changes made through the mount drop it.
        fi = fip.contents
        fi.cache_readdir = fi.keep_cache = 1
        _reply_open(req, fip)

    def op_readdirplus(self, req, nid, size, offset, fi):
        listing = self.listings.get(nid)
        if listing is None or offset == 0:
            listing = self.listings[nid] = self._listing(nid)
        records, sent = [], []
        used = 0
        for i in range(offset, len(listing)):
            raw, path, a = listing[i]
            reclen = _ENTRY_OUT.size + ((_DIRENT.size + len(raw) + 7) & ~7)
            if used + reclen > size:
                break
            used += reclen
            node = 0 if not path else _nid(a.ino)
            records.append(_ENTRY_OUT.pack(node, 0, self._valid, self._valid, self._valid_ns,
                                           self._valid_ns, *_attr_out(a))
                           + _DIRENT.pack(a.ino, i + 1, len(raw), stat.S_IFMT(a.mode) >> 12) + raw
                           + b"\0" * (reclen - _ENTRY_OUT.size - _DIRENT.size - len(raw)))
            if node:
                sent.append((node, path))
        if not records:
            self.listings.pop(nid, None)
        data = b"".join(records)
        # Each entry in the reply is a lookup the kernel will forget later.
        for node, path in sent:
            self.nodes.remember(node, path)
        if _reply_buf(req, data, len(data)):
            for node, _ in sent:
                self.nodes.forget(node, 1)

    def _listing(self, nid: int) -> list[tuple[bytes, str, Attr]]:
        """(name, union path or "" for . and .., attributes)."""
        path = self.nodes.path(nid)
        here = self._attr(nid)
        up = here if path == "/" else self.fs.getattr(split(path)[0])
        return [(b".", "", here), (b"..", "", up),
                *((os.fsencode(name), join(path, name), a)
                  for name, a in self.fs.readdir_attrs(path))]

    # ---- xattrs -----------------------------------------------------------------

    def op_setxattr(self, req, nid, name, value, size, flags):
        self.fs.setxattr(self.nodes.path(nid), name.decode(), ctypes.string_at(value, size),
                         flags)
        _reply_err(req, 0)

    def op_getxattr(self, req, nid, name, size):
        self._reply_sized(req, size, self.fs.getxattr(self.nodes.path(nid), name.decode()))

    def op_listxattr(self, req, nid, size):
        names = self.fs.listxattr(self.nodes.path(nid))
        self._reply_sized(req, size, b"".join(n.encode() + b"\0" for n in names))

    @staticmethod
    def _reply_sized(req, size: int, data: bytes) -> None:
        if not size:
            _reply_xattr(req, len(data))
        elif len(data) > size:
            _reply_err(req, errno.ERANGE)
        else:
            _reply_buf(req, data, len(data))

    def op_removexattr(self, req, nid, name):
        self.fs.removexattr(self.nodes.path(nid), name.decode())
        _reply_err(req, 0)


class _StderrCapture:
    """Collects what libfuse/fusermount print on fd 2 during one call."""

    def __enter__(self):
        self._saved = os.dup(2)
        self._r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        os.set_blocking(self._r, False)
        try:
            self.text = os.read(self._r, 65536).decode(errors="replace").strip()
        except BlockingIOError:
            self.text = ""
        os.close(self._r)


def _worker(session: int) -> None:
    buf = _Buf()    # libfuse allocates buf.mem on the first receive
    try:
        while not _session_exited(session):
            n = _session_receive(session, ctypes.byref(buf))
            if n in (-errno.EINTR, -errno.EAGAIN):
                continue
            if n <= 0:
                break
            _session_process(session, ctypes.byref(buf))
    finally:
        _libc.free(buf.mem)


def _detach(mountpoint: str) -> None:
    """Lazily unmount: the kernel keeps serving open files, and the session
    ends once the last one is closed. (libfuse3's fuse_session_unmount would
    also close the device fd under the workers.)"""
    try:
        _libc.umount2(mountpoint, _libc.MNT_DETACH)
    except PermissionError:
        import subprocess   # only outside a user namespace of our own
        subprocess.run(["fusermount3", "-u", "-q", "-z", "--", mountpoint], check=False)
    except OSError as exc:
        log.info("unmount %s: %s", mountpoint, exc.strerror)


def serve(fs: UnionFS, mountpoint: str, options: list[str], *, timeout: float, threads: int,
          ready: Callable[[str | None], None]) -> None:
    """Mount ``fs`` at ``mountpoint`` and serve it until it is unmounted.

    ``options`` are libfuse's mount and low-level -o options; ``timeout`` is
    the kernel's entry/attribute cache time in seconds; ``threads`` worker
    threads serve requests. ``ready(None)`` is called once the kernel answers
    requests on the mount, ``ready(message)`` if that check fails;
    MountFailed is raised when the mount itself fails. SIGINT/SIGTERM/SIGHUP
    unmount (lazily: open files keep being served until closed).
    """
    adapter = _Adapter(fs, timeout)
    argv = [b"prun-overlayfs", b"-o", ",".join(options).encode()]
    args = _Args(len(argv), (c_char_p * len(argv))(*argv), 0)
    with _StderrCapture() as cap:
        session = _session_new(ctypes.byref(args), ctypes.byref(adapter.ops),
                               ctypes.sizeof(_LowLevelOps), None)
    _opt_free_args(ctypes.byref(args))
    if not session:
        raise MountFailed(_clean(cap.text) or "cannot start the FUSE session")
    try:
        with _StderrCapture() as cap:
            failed = _session_mount(session, os.fsencode(mountpoint))
        if failed:
            raise MountFailed(_clean(cap.text) or "mount failed")
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, lambda signum, frame: _detach(mountpoint))
        workers = [threading.Thread(target=_worker, args=(session,), name=f"fusefs-{i}",
                                    daemon=True) for i in range(max(1, threads))]
        try:
            for t in workers:
                t.start()
            try:
                os.stat(mountpoint)
            except OSError as exc:
                ready(f"mount {mountpoint}: {exc.strerror}")
            else:
                ready(None)
            for t in workers:
                t.join()
        finally:
            _session_unmount(session)
    finally:
        _session_destroy(session)


def _clean(text: str) -> str:
    return "; ".join(line.removeprefix("fuse: ") for line in text.splitlines() if line.strip())


__all__ = ["MountFailed", "serve"]
