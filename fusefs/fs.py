"""UnionFS: the union (fusefs.union) plus every change a container can make.

Each method is one filesystem operation as the kernel asks for it, with the
caller's uid/gid where it creates something (ids as served: the id mappings
turn them into the stored ones first). The rules of fusefs.union
apply; the order of steps in each method is what keeps them crash-safe:
- a whiteout for NAME is created while NAME still exists in the upper layer
  (it is dormant until the upper NAME goes), and removed only after a new
  upper NAME exists;
- directories are built in the work dir (metadata, opaque marker) and
  renamed into place; removed directories are renamed into the work dir
  first and deleted there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import time

from fusefs import _libc, copyup, meta, whiteout
from fusefs.union import Attr, Entry, Union, _err, check_name, join, split

_XATTR_EPERM = ("trusted.",)


class UnionFS(Union):
    # ---- helpers --------------------------------------------------------

    def _new_name(self, path: str) -> tuple[Entry, str, str]:
        """Parent entry, upper parent dir and name for an entry to create."""
        parent, name = split(path)
        check_name(name)
        if whiteout.is_reserved(name):
            raise _err(errno.EINVAL, path)
        self._need_upper()
        pe = self.dir(parent)
        with contextlib.suppress(FileNotFoundError):
            self._child(pe, name, path)
            raise _err(errno.EEXIST, path)
        updir = self.upper_dir(parent)
        return self.dir(parent), updir, name

    @staticmethod
    def _unhide(parent: Entry, updir: str, name: str) -> None:
        """Drop the whiteout a new entry replaces. Only where lower dirs merge
        in: prun writes a whiteout only for a name a lower layer shows, so
        elsewhere this saves a syscall per created file."""
        if any(layer for layer, _ in parent.dirs):
            whiteout.remove(updir, name)

    def _stored_ids(self, uid: int, gid: int) -> tuple[int, int]:
        """Ids the kernel gave (served; -1 = unchanged) as the union stores them."""
        if uid >= 0 and self.uid_map is not None:
            uid = self.uid_map.stored(uid)
        if gid >= 0 and self.gid_map is not None:
            gid = self.gid_map.stored(gid)
        return uid, gid

    def _owner_meta(self, parent: Entry, uid: int, gid: int, perm: int,
                    is_dir: bool) -> meta.Meta:
        uid, gid = self._stored_ids(uid, gid)
        pm = self.served(parent)
        if pm.perm & stat.S_ISGID:
            # BSD group semantics on setgid directories, as every Linux fs.
            gid = pm.gid
            if is_dir:
                perm |= stat.S_ISGID
        return meta.Meta(uid, gid, perm & 0o7777)

    def _store_meta(self, ref: str | int, m: meta.Meta, is_dir: bool,
                    stored: meta.Meta | None = None) -> None:
        """Make ``ref`` serve ``m``; ``stored`` is its current xattr value.

        Nothing is written when it already serves exactly ``m``: tar and cp -a
        chown/chmod every file to what it already is.
        """
        plain = meta.Meta(self.owner[0], self.owner[1], copyup.disk_perm(m.perm, is_dir=is_dir))
        if stored is None and m == plain:
            return
        if stored != m:
            meta.write(ref, m)

    def _trash(self, real: str) -> None:
        tmp = copyup.temp_name(self.work)
        os.rename(real, tmp)
        shutil.rmtree(tmp)

    # ---- creating -----------------------------------------------------------

    def create(self, path: str, mode: int, flags: int, uid: int, gid: int) -> int:
        with self.lock:
            pe, updir, name = self._new_name(path)
            m = self._owner_meta(pe, uid, gid, stat.S_IMODE(mode), False)
            real = f"{updir}/{name}"
            fd = os.open(real, (flags & ~(os.O_NOCTTY | os.O_APPEND)) | os.O_CREAT | os.O_EXCL
                         | os.O_NOFOLLOW | os.O_CLOEXEC, copyup.disk_perm(m.perm, is_dir=False))
            try:
                self._store_meta(fd, m, False)
            except BaseException:
                os.close(fd)
                os.unlink(real)
                raise
            self._unhide(pe, updir, name)
            return fd

    def mknod(self, path: str, mode: int, rdev: int, uid: int, gid: int) -> None:
        kind = stat.S_IFMT(mode)
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            raise _err(errno.EPERM, path)
        with self.lock:
            pe, updir, name = self._new_name(path)
            m = self._owner_meta(pe, uid, gid, stat.S_IMODE(mode), False)
            real = f"{updir}/{name}"
            disk = copyup.disk_perm(m.perm, is_dir=False)
            if kind in (stat.S_IFIFO, stat.S_IFSOCK):
                # Linux keeps no user.* xattrs on FIFOs and sockets, and the
                # kernel serves both from the FUSE inode without opening the
                # backing file: an empty file whose metadata names the type.
                m = meta.Meta(m.uid, m.gid, m.perm, kind)
            elif kind not in (stat.S_IFREG, 0):
                raise _err(errno.EINVAL, path)
            fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, disk)
            try:
                self._store_meta(fd, m, False)
            finally:
                os.close(fd)
            self._unhide(pe, updir, name)

    def mkdir(self, path: str, mode: int, uid: int, gid: int) -> None:
        with self.lock:
            pe, updir, name = self._new_name(path)
            m = self._owner_meta(pe, uid, gid, stat.S_IMODE(mode), True)
            tmp = copyup.temp_name(self.work)
            os.mkdir(tmp, copyup.disk_perm(m.perm, is_dir=True))
            try:
                self._store_meta(tmp, m, True)
                if whiteout.exists(updir, name):
                    # A removed lower directory of that name must not show
                    # through the new one.
                    whiteout.mark_opaque(tmp)
                os.rename(tmp, f"{updir}/{name}")
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._unhide(pe, updir, name)
            self.forget(path, tree=True)

    def symlink(self, target: str, path: str, uid: int, gid: int) -> None:
        with self.lock:
            pe, updir, name = self._new_name(path)
            os.symlink(target, f"{updir}/{name}")
            self._unhide(pe, updir, name)

    def link(self, old: str, new: str) -> None:
        with self.lock:
            e = self.lookup(old)
            if e.is_dir:
                raise _err(errno.EPERM, old)
            pe, updir, name = self._new_name(new)
            e = self.copy_up(e)
            os.link(e.real, f"{updir}/{name}")
            self._unhide(pe, updir, name)

    # ---- removing -------------------------------------------------------------

    def unlink(self, path: str) -> None:
        with self.lock:
            e = self.lookup(path)
            if e.is_dir:
                raise _err(errno.EISDIR, path)
            self._need_upper()
            if e.layer != 0 and stat.S_ISREG(e.st.st_mode) and e.st.st_nlink > 1:
                e = self.copy_up(e)   # the other names' link count drops
            self._remove(e, lambda real: os.unlink(real))

    def rmdir(self, path: str) -> None:
        with self.lock:
            if path == "/":
                raise _err(errno.EBUSY, path)
            e = self.lookup(path)
            if not e.is_dir:
                raise _err(errno.ENOTDIR, path)
            self._need_upper()
            if self.names(path):
                raise _err(errno.ENOTEMPTY, path)
            self._remove(e, self._trash)
            self.forget(path, tree=True)

    def _remove(self, e: Entry, delete) -> None:
        parent, name = split(e.path)
        pe = self.dir(parent)
        if self._in_lower(pe, name):
            whiteout.create(self.upper_dir(parent), name)
        if e.layer == 0:
            delete(e.real)

    # ---- renaming -----------------------------------------------------------

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        with self.lock:
            src = self.lookup(old)
            newparent, newname = split(new)
            check_name(newname)
            if whiteout.is_reserved(newname):
                raise _err(errno.EINVAL, new)
            self._need_upper()
            try:
                dst = self.lookup(new)
            except FileNotFoundError:
                dst = None
            if flags & _libc.RENAME_EXCHANGE:
                if dst is None:
                    raise _err(errno.ENOENT, new)
                return self._exchange(src, dst)
            if dst is not None:
                if flags & _libc.RENAME_NOREPLACE:
                    raise _err(errno.EEXIST, new)
                if old == new or (not src.is_dir and self.attr(src).ino == self.attr(dst).ino):
                    return None   # same file: POSIX says do nothing
                if src.is_dir and not dst.is_dir:
                    raise _err(errno.ENOTDIR, new)
                if dst.is_dir and not src.is_dir:
                    raise _err(errno.EISDIR, new)
                if dst.is_dir and self.names(new):
                    raise _err(errno.ENOTEMPTY, new)
            src = self._prepare_move(src)
            updir = self.upper_dir(newparent)
            oldparent, oldname = split(old)
            if self._in_lower(self.dir(oldparent), oldname):
                whiteout.create(os.path.dirname(src.real), oldname)
            if dst is not None and dst.is_dir and dst.layer == 0:
                self._trash(dst.real)   # may hold whiteouts: rename(2) would refuse
            os.rename(src.real, f"{updir}/{newname}")
            whiteout.remove(updir, newname)
            self.forget(old, tree=True)
            self.forget(new, tree=True)
            return None

    def _prepare_move(self, e: Entry) -> Entry:
        if not e.is_dir:
            return self.copy_up(e)
        e = self.copy_up_tree(e)
        # Fully copied up: nothing below may merge in at its new name.
        whiteout.mark_opaque(e.real)
        return e

    def _exchange(self, a: Entry, b: Entry) -> None:
        a = self._prepare_move(a)
        b = self._prepare_move(b)
        _libc.renameat2(a.real, b.real, _libc.RENAME_EXCHANGE)
        self.forget(a.path, tree=True)
        self.forget(b.path, tree=True)

    # ---- attributes -----------------------------------------------------------

    def setattr(self, path: str, *, mode: int | None = None, uid: int = -1, gid: int = -1,
                size: int | None = None, fd: int | None = None,
                atime: int | bool | None = None, mtime: int | bool | None = None) -> Attr:
        """One kernel SETATTR: copy up once, apply every change, return the result.

        ``uid``/``gid`` -1 keep the owner; ``size`` truncates (through ``fd``
        when the caller has the file open); times are ns since the epoch, True
        for now, None to keep.
        """
        with self.lock:
            e = self.lookup(path)
            e = self.copy_up(e, data=size is None or size > 0 or fd is not None)
            if mode is not None or uid >= 0 or gid >= 0:
                self._set_owner_mode(e, mode, *self._stored_ids(uid, gid))
        if size is not None:
            if fd is None:
                os.truncate(e.real, size)
            else:
                os.ftruncate(fd, size)
        if atime is not None or mtime is not None:
            set_times(e.real, e.st, atime, mtime)
        return self.attr(e.restat())

    def _set_owner_mode(self, e: Entry, mode: int | None, uid: int, gid: int) -> None:
        if stat.S_ISLNK(e.st.st_mode):
            if mode is not None:
                raise _err(errno.EOPNOTSUPP, e.path)
            return   # no metadata on symlinks; ownership has no effect there
        stored = meta.read(e.real)
        m = copyup.served_meta(e.st, stored)
        m = meta.Meta(m.uid if uid < 0 else uid, m.gid if gid < 0 else gid,
                      m.perm if mode is None else stat.S_IMODE(mode), m.kind, m.rdev)
        disk = copyup.disk_perm(m.perm, is_dir=e.is_dir)
        if stat.S_IMODE(e.st.st_mode) != disk:
            os.chmod(e.real, disk)
        self._store_meta(e.real, m, e.is_dir, stored)

    def chmod(self, path: str, mode: int) -> None:
        self.setattr(path, mode=mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.setattr(path, uid=uid, gid=gid)

    def truncate(self, path: str, length: int) -> None:
        self.setattr(path, size=length)

    def utimens(self, path: str, atime: int | bool | None, mtime: int | bool | None) -> None:
        self.setattr(path, atime=atime, mtime=mtime)

    # ---- xattrs -----------------------------------------------------------------

    def getxattr(self, path: str, name: str) -> bytes:
        disk = meta.disk_xattr(name)
        if disk is None:
            raise _err(errno.ENODATA, path)
        return os.getxattr(self.lookup(path).real, disk, follow_symlinks=False)

    def listxattr(self, path: str) -> list[str]:
        names = os.listxattr(self.lookup(path).real, follow_symlinks=False)
        return [n for n in map(meta.container_xattr, names) if n is not None]

    def setxattr(self, path: str, name: str, value: bytes, flags: int) -> None:
        disk = self._settable(path, name)
        with self.lock:
            e = self.copy_up(self.lookup(path))
        os.setxattr(e.real, disk, value, flags, follow_symlinks=False)

    def removexattr(self, path: str, name: str) -> None:
        disk = self._settable(path, name)
        with self.lock:
            e = self.lookup(path)
            os.getxattr(e.real, disk, follow_symlinks=False)   # ENODATA before a copy-up
            e = self.copy_up(e)
        os.removexattr(e.real, disk, follow_symlinks=False)

    @staticmethod
    def _settable(path: str, name: str) -> str:
        disk = meta.disk_xattr(name)
        if disk is None:
            code = errno.EPERM if name.startswith(_XATTR_EPERM + ("user.",)) else errno.EOPNOTSUPP
            raise _err(code, path)
        return disk


def set_times(ref: str | int, st: os.stat_result, atime: int | bool | None,
              mtime: int | bool | None) -> None:
    """utimensat for a path (not followed) or fd: ns, True for now, None to keep."""
    now = time.time_ns()
    pick = (lambda t, old: now if t is True else old if t is None else t)
    times = (pick(atime, st.st_atime_ns), pick(mtime, st.st_mtime_ns))
    if isinstance(ref, int):
        os.utime(ref, ns=times)
    else:
        os.utime(ref, ns=times, follow_symlinks=False)


__all__ = ["UnionFS", "join", "set_times"]
