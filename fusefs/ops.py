"""The fusepy adapter: UnionFS served through libfuse2's high-level API.

The only module that imports fusepy. It uses fusepy's ctypes bindings
(operation table, stat/statvfs/file-info structs, the loaded libfuse) but
drives libfuse itself (fuse_mount, fuse_new, fuse_loop_mt) instead of
fusepy's FUSE class, because prun needs: the mount error text, a readiness
signal once the kernel answers, per-open kernel caching, fallocate,
NULL-path operations on open-unlinked files, and a read/write path that
copies data straight between libfuse's buffer and the backing fd.

Rules:
- Every callback returns 0/-errno: OSError becomes its errno; any other
  exception is logged with its traceback and returned as EIO.
- Paths are decoded with os.fsdecode (surrogateescape), so any byte string
  a layer holds round-trips.
- read/write/fsync/ftruncate/fallocate/release work on the fh, which is the
  backing fd; libfuse computes no path for them (flag_nopath).
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int, c_size_t, c_uint, c_void_p

import fuse as _fusepy

from fusefs import _libc
from fusefs.fs import UnionFS

log = logging.getLogger("fusefs")

_lib = _fusepy._libfuse
_off_t = _fusepy.c_off_t
_FileInfo = _fusepy.fuse_file_info
_FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3
_UNSET_ID = 0xFFFFFFFF


class _Operations(_fusepy.fuse_operations):
    """libfuse 2.9's struct fuse_operations: fusepy's plus the tail it lacks."""
    _fields_ = [
        ("poll", c_void_p),
        ("write_buf", c_void_p),
        ("read_buf", c_void_p),
        ("flock", c_void_p),
        ("fallocate", CFUNCTYPE(c_int, c_char_p, c_int, _off_t, _off_t, POINTER(_FileInfo))),
    ]


class _Args(ctypes.Structure):
    _fields_ = [("argc", c_int), ("argv", POINTER(c_char_p)), ("allocated", c_int)]


class _ConnInfo(ctypes.Structure):
    _fields_ = [("proto_major", c_uint), ("proto_minor", c_uint), ("async_read", c_uint),
                ("max_write", c_uint), ("max_readahead", c_uint), ("capable", c_uint),
                ("want", c_uint), ("max_background", c_uint),
                ("congestion_threshold", c_uint), ("reserved", c_uint * 23)]


def _versioned(name: str, version: str, restype, *argtypes):
    # fuse_new/fuse_mount/fuse_unmount also exist in old ABI versions (one is
    # libfuse's "Base" symbol, which plain dlsym returns): ask for 2.6's.
    dlvsym = ctypes.CDLL(None).dlvsym
    dlvsym.restype = c_void_p
    dlvsym.argtypes = [c_void_p, c_char_p, c_char_p]
    addr = dlvsym(_lib._handle, name.encode(), version.encode())
    if not addr:
        raise ImportError(f"libfuse2 has no {name}@{version}")
    return CFUNCTYPE(restype, *argtypes)(addr)


_fuse_mount = _versioned("fuse_mount", "FUSE_2.6", c_void_p, c_char_p, POINTER(_Args))
_fuse_new = _versioned("fuse_new", "FUSE_2.6", c_void_p, c_void_p, POINTER(_Args),
                       POINTER(_Operations), c_size_t, c_void_p)
_fuse_unmount = _versioned("fuse_unmount", "FUSE_2.6", None, c_char_p, c_void_p)
_lib.fuse_loop_mt.argtypes = [c_void_p]
_lib.fuse_destroy.argtypes = [c_void_p]
_lib.fuse_get_session.argtypes = [c_void_p]
_lib.fuse_get_session.restype = c_void_p
_lib.fuse_set_signal_handlers.argtypes = [c_void_p]
_lib.fuse_remove_signal_handlers.argtypes = [c_void_p]
_lib.fuse_opt_free_args.argtypes = [POINTER(_Args)]


class MountFailed(Exception):
    """libfuse could not mount; the message is libfuse's/fusermount's text."""


def _guard(fn: Callable[..., int | None]) -> Callable[..., int]:
    def call(*args):
        try:
            return fn(*args) or 0
        except OSError as exc:
            return -(exc.errno or errno.EIO)
        except Exception:
            log.exception("unexpected failure in %s", fn.__name__)
            return -errno.EIO
    call.__name__ = fn.__name__
    return call


def _path(raw: bytes | None) -> str:
    return os.fsdecode(raw)


class _Adapter:
    """The callbacks libfuse calls, bound to one UnionFS."""

    def __init__(self, fs: UnionFS) -> None:
        self.fs = fs
        self._dirs: dict[int, str] = {}
        self._dir_ids = itertools.count(1)
        self.ops = _Operations()
        self._keep = []
        for name, proto, *_ in _fusepy.fuse_operations._fields_ + _Operations._fields_:
            impl = getattr(self, f"op_{name}", None)
            if impl is None or not hasattr(proto, "argtypes"):
                continue
            cb = proto(impl if name in ("read", "write") else _guard(impl))
            self._keep.append(cb)
            setattr(self.ops, name, cb)
        self.ops.flag_nullpath_ok = 1
        self.ops.flag_nopath = 1
        self.ops.flag_utime_omit_ok = 0

    # ---- attributes ---------------------------------------------------------

    @staticmethod
    def _fill(st, a) -> None:
        st.st_ino = a.ino
        st.st_mode = a.mode
        st.st_nlink = a.nlink
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_rdev = a.rdev
        st.st_size = a.size
        st.st_blksize = a.blksize
        st.st_blocks = a.blocks
        st.st_atimespec.tv_sec, st.st_atimespec.tv_nsec = divmod(a.atime_ns, 1_000_000_000)
        st.st_mtimespec.tv_sec, st.st_mtimespec.tv_nsec = divmod(a.mtime_ns, 1_000_000_000)
        st.st_ctimespec.tv_sec, st.st_ctimespec.tv_nsec = divmod(a.ctime_ns, 1_000_000_000)

    def op_getattr(self, path, buf):
        self._fill(buf.contents, self.fs.getattr(_path(path)))

    def op_fgetattr(self, path, buf, fip):
        self._fill(buf.contents, self.fs.fattr(fip.contents.fh))

    def op_readlink(self, path, buf, size):
        target = os.fsencode(self.fs.readlink(_path(path)))[:size - 1] + b"\0"
        ctypes.memmove(buf, target, len(target))

    # ---- namespace ------------------------------------------------------------

    @staticmethod
    def _caller() -> tuple[int, int]:
        ctx = _lib.fuse_get_context().contents
        return ctx.uid, ctx.gid

    def op_mknod(self, path, mode, dev):
        self.fs.mknod(_path(path), mode, dev, *self._caller())

    def op_mkdir(self, path, mode):
        self.fs.mkdir(_path(path), mode, *self._caller())

    def op_unlink(self, path):
        self.fs.unlink(_path(path))

    def op_rmdir(self, path):
        self.fs.rmdir(_path(path))

    def op_symlink(self, target, path):
        self.fs.symlink(_path(target), _path(path), *self._caller())

    def op_rename(self, old, new):
        self.fs.rename(_path(old), _path(new))

    def op_link(self, old, new):
        self.fs.link(_path(old), _path(new))

    def op_chmod(self, path, mode):
        self.fs.chmod(_path(path), mode)

    def op_chown(self, path, uid, gid):
        self.fs.chown(_path(path), -1 if uid == _UNSET_ID else uid,
                      -1 if gid == _UNSET_ID else gid)

    def op_truncate(self, path, length):
        self.fs.truncate(_path(path), length)

    def op_utimens(self, path, buf):
        times = None
        if buf:
            t = buf.contents
            times = (t.actime.tv_sec * 1_000_000_000 + t.actime.tv_nsec,
                     t.modtime.tv_sec * 1_000_000_000 + t.modtime.tv_nsec)
        self.fs.utimens(_path(path), times)

    # ---- files ----------------------------------------------------------------

    def op_open(self, path, fip):
        fi = fip.contents
        fd, keep = self.fs.open(_path(path), fi.flags)
        fi.fh = fd
        fi.keep_cache = 1 if keep else 0

    def op_create(self, path, mode, fip):
        fi = fip.contents
        fi.fh = self.fs.create(_path(path), mode, fi.flags, *self._caller())

    def op_read(self, path, buf, size, offset, fip):
        try:
            view = (ctypes.c_char * size).from_address(ctypes.addressof(buf.contents))
            return os.preadv(fip.contents.fh, (view,), offset)
        except OSError as exc:
            return -(exc.errno or errno.EIO)
        except Exception:
            log.exception("unexpected failure in read")
            return -errno.EIO

    def op_write(self, path, buf, size, offset, fip):
        try:
            view = (ctypes.c_char * size).from_address(ctypes.addressof(buf.contents))
            return os.pwrite(fip.contents.fh, view, offset)
        except OSError as exc:
            return -(exc.errno or errno.EIO)
        except Exception:
            log.exception("unexpected failure in write")
            return -errno.EIO

    def op_flush(self, path, fip):
        return 0

    def op_release(self, path, fip):
        os.close(fip.contents.fh)

    def op_fsync(self, path, datasync, fip):
        (os.fdatasync if datasync else os.fsync)(fip.contents.fh)

    def op_ftruncate(self, path, length, fip):
        os.ftruncate(fip.contents.fh, length)

    def op_fallocate(self, path, mode, offset, length, fip):
        _libc.fallocate(fip.contents.fh, mode, offset, length)

    def op_statfs(self, path, buf):
        v = self.fs.statfs()
        s = buf.contents
        s.f_bsize, s.f_frsize = v.f_bsize, v.f_frsize
        s.f_blocks, s.f_bfree, s.f_bavail = v.f_blocks, v.f_bfree, v.f_bavail
        s.f_files, s.f_ffree, s.f_favail = v.f_files, v.f_ffree, v.f_favail
        s.f_namemax = 255

    # ---- directories ----------------------------------------------------------

    def op_opendir(self, path, fip):
        p = _path(path)
        self.fs.dir(p)
        fh = next(self._dir_ids)
        self._dirs[fh] = p
        fip.contents.fh = fh

    def op_readdir(self, path, buf, filler, offset, fip):
        entries = self.fs.readdir(self._dirs[fip.contents.fh])
        st = _fusepy.c_stat()
        ref = ctypes.pointer(st)
        filler(buf, b".", None, 0)
        filler(buf, b"..", None, 0)
        for name, kind, ino in entries:
            st.st_mode = kind
            st.st_ino = ino
            if filler(buf, os.fsencode(name), ref, 0):
                break

    def op_releasedir(self, path, fip):
        self._dirs.pop(fip.contents.fh, None)

    def op_fsyncdir(self, path, datasync, fip):
        return 0

    # ---- xattrs -----------------------------------------------------------------

    def op_setxattr(self, path, name, value, size, flags):
        self.fs.setxattr(_path(path), name.decode(), ctypes.string_at(value, size), flags)

    def op_getxattr(self, path, name, value, size):
        data = self.fs.getxattr(_path(path), name.decode())
        if not size:
            return len(data)
        if len(data) > size:
            return -errno.ERANGE
        ctypes.memmove(value, data, len(data))
        return len(data)

    def op_listxattr(self, path, namebuf, size):
        data = b"".join(n.encode() + b"\0" for n in self.fs.listxattr(_path(path)))
        if not size:
            return len(data)
        if len(data) > size:
            return -errno.ERANGE
        ctypes.memmove(namebuf, data, len(data))
        return len(data)

    def op_removexattr(self, path, name):
        self.fs.removexattr(_path(path), name.decode())

    # ---- lifecycle ------------------------------------------------------------

    def op_init(self, conn):
        # O_TRUNC reaches open() instead of a separate truncate, so a lower
        # file opened with O_TRUNC is copied up without its data.
        info = ctypes.cast(conn, POINTER(_ConnInfo)).contents
        if info.capable & _FUSE_CAP_ATOMIC_O_TRUNC:
            info.want |= _FUSE_CAP_ATOMIC_O_TRUNC


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


def serve(fs: UnionFS, mountpoint: str, options: list[str],
          ready: Callable[[str | None], None]) -> None:
    """Mount ``fs`` at ``mountpoint`` and serve it until it is unmounted.

    ``ready(None)`` is called once the kernel answers requests on the mount,
    ``ready(message)`` if that check fails; MountFailed is raised when the
    mount itself fails. SIGINT/SIGTERM/SIGHUP end the loop and unmount.
    """
    adapter = _Adapter(fs)
    argv = [b"prun-overlayfs", b"-o", ",".join(options).encode()]
    args = _Args(len(argv), (c_char_p * len(argv))(*argv), 0)
    mp = os.fsencode(mountpoint)
    with _StderrCapture() as cap:
        ch = _fuse_mount(mp, ctypes.byref(args))
    if not ch:
        _lib.fuse_opt_free_args(ctypes.byref(args))
        raise MountFailed(_clean(cap.text) or "mount failed")
    with _StderrCapture() as cap:
        f = _fuse_new(ch, ctypes.byref(args), ctypes.byref(adapter.ops),
                          ctypes.sizeof(_Operations), None)
    _lib.fuse_opt_free_args(ctypes.byref(args))
    if not f:
        _fuse_unmount(mp, ch)
        raise MountFailed(_clean(cap.text) or "cannot start the FUSE session")
    session = _lib.fuse_get_session(f)
    if threading.current_thread() is threading.main_thread():
        # libfuse installs its handlers only over SIG_DFL.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    _lib.fuse_set_signal_handlers(session)

    def probe() -> None:
        try:
            os.stat(mountpoint)
        except OSError as exc:
            ready(f"mount {mountpoint}: {exc.strerror}")
            return
        ready(None)

    threading.Thread(target=probe, name="fusefs-ready", daemon=True).start()
    try:
        _lib.fuse_loop_mt(f)
    finally:
        _lib.fuse_remove_signal_handlers(session)
        _fuse_unmount(mp, ch)
        _lib.fuse_destroy(f)


def _clean(text: str) -> str:
    return "; ".join(line.removeprefix("fuse: ") for line in text.splitlines() if line.strip())


__all__ = ["MountFailed", "serve"]
