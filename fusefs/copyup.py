"""Copy-up: a complete private copy of a lower file, made in the work dir.

``clone`` builds the copy under a temporary name in the work dir (same
filesystem as the upper dir); the union core then renames or links it into
place, so a crash at any point leaves either no copy or a complete one (the
work dir is emptied at the next mount).

Rules:
- Data is reflinked (FICLONE) when the filesystem can, else copied in the
  kernel with copy_file_range, else with sendfile; never through Python.
- The copy carries the served metadata (override_stat, always written so it
  does not depend on the host ids of the lower file), the origin inode
  (inode numbers stay stable across copy-up), the container's xattrs, and
  the times. Its on-disk mode always lets the owner (the storage user) read
  and write it and never has setuid/setgid bits.
- Device nodes, FIFOs and sockets become empty regular files whose type and
  device number live in the metadata (Linux keeps no user.* xattrs on
  special files).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import stat

from fusefs import meta

FICLONE = 0x40049409
_NO_CLONE = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.EPERM,
             errno.EBADF)
_NO_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
_CHUNK = 1 << 30
_counter = itertools.count()


def disk_perm(perm: int, *, is_dir: bool) -> int:
    """On-disk permission bits for a file the container sees with ``perm``."""
    return (perm & 0o777) | (0o700 if is_dir else 0o600)


def temp_name(workdir: str) -> str:
    return f"{workdir}/{os.getpid()}.{next(_counter)}"


def copy_data(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy ``size`` bytes from the start of src_fd to dst_fd, in the kernel."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        return
    except OSError as exc:
        if exc.errno not in _NO_CLONE:
            raise
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src_fd, dst_fd, min(_CHUNK, size - done), done, done)
            if n == 0:
                return
            done += n
        return
    except OSError as exc:
        if exc.errno not in _NO_RANGE:
            raise
    while done < size:
        n = os.sendfile(dst_fd, src_fd, done, min(_CHUNK, size - done))
        if n == 0:
            return
        done += n


def served_meta(st: os.stat_result, stored: meta.Meta | None) -> meta.Meta:
    """The metadata a file is served with, made explicit (type included)."""
    if stored is not None:
        return stored
    kind = stat.S_IFMT(st.st_mode)
    special = kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK, stat.S_IFIFO)
    return meta.Meta(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                     kind if special else None,
                     st.st_rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0)


def _copy_xattrs(src: str, dst: str | int) -> None:
    keep = meta.copied_xattrs()
    for name in os.listxattr(src, follow_symlinks=False):
        if name == meta.XATTR or (name not in keep and meta.container_xattr(name) is None):
            continue
        os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False))


def clone(src: str, st: os.stat_result, served: meta.Meta, workdir: str, *,
          data: bool = True) -> str:
    """Make a complete copy of ``src`` in ``workdir``; return its path.

    ``data=False`` copies everything but the contents (for O_TRUNC opens and
    truncate to 0).
    """
    tmp = temp_name(workdir)
    kind = stat.S_IFMT(st.st_mode)
    origin = meta.encode_origin(st.st_dev, st.st_ino)
    times = (st.st_atime_ns, st.st_mtime_ns)
    if kind == stat.S_IFLNK:
        # Linux keeps no user.* xattrs on symlinks: only target and times.
        os.symlink(os.readlink(src), tmp)
        os.utime(tmp, ns=times, follow_symlinks=False)
        return tmp
    if kind == stat.S_IFDIR:
        os.mkdir(tmp, disk_perm(served.perm, is_dir=True))
        target: str | int = tmp
    else:
        target = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         disk_perm(served.perm, is_dir=False))
    try:
        if kind == stat.S_IFREG and data and st.st_size:
            src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                copy_data(src_fd, target, st.st_size)
            finally:
                os.close(src_fd)
        _copy_xattrs(src, target)
        meta.write(target, served)
        os.setxattr(target, meta.ORIGIN, origin)
        os.utime(target, ns=times)
    except BaseException:
        if isinstance(target, int):
            os.close(target)
            target = tmp
        if kind == stat.S_IFDIR:
            os.rmdir(tmp)
        else:
            os.unlink(tmp)
        raise
    if isinstance(target, int):
        os.close(target)
    return tmp
