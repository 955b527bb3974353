"""The union: overlayfs semantics over a stack of Layers, without FUSE.

Layer 0 is the upper (writable) layer when there is one; the rest are the
lower layers, top first. Paths are union paths ("/", "/etc/passwd").

Rules:
- Lookup goes top-down; a directory merges with the directories of the same
  name below it until an opaque directory, a whiteout or a non-directory
  stops it. Whiteout markers are never visible.
- Every change happens in the upper layer, after copying the entry (and its
  parent directories) up; each on-disk step is atomic (temp in the work dir
  + rename/link, or a whiteout created while still shadowed by the name it
  will hide), so a crash never shows a half-made entry.
- Served ownership/mode come from metadata (fusefs.meta) through the id
  mappings (fusefs.idmapping; squash_to_* wins over both), served inode
  numbers from fusefs.layer.InodeNumbers over the file's origin.
- Hard-linked lower files are copied up as a group (all their visible names
  are linked to one upper inode) before any write, link, unlink or rename,
  so link counts and shared inode numbers stay right.
- A lower directory being renamed is copied up as a whole tree and marked
  opaque (no EXDEV, no redirects).
- Failures are OSError with the errno overlayfs would return; the FUSE
  adapter turns them into replies.
- Namespace operations hold one re-entrant lock (the directory cache and the
  upper dir are shared); reads and writes through open fds do not.
- The core expects umask 0 (fusefs.server sets it) so on-disk modes are the
  ones it asks for.
- Backing files are opened without O_APPEND: the kernel already turns an
  append into a write at the end, and Linux's pwrite on an O_APPEND fd would
  append page write-backs of shared mmaps that reach us through that fd.
"""

from __future__ import annotations

import collections
import errno
import os
import shutil
import stat
import threading
from collections.abc import Iterator

from fusefs import copyup, meta, whiteout
from fusefs.idmapping import IdMapping
from fusefs.layer import InodeNumbers, Layer

NAME_MAX = 255
_WORK_SUBDIR = "prun-work"


def _err(code: int, path: str = "") -> OSError:
    return OSError(code, os.strerror(code), path)


def split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent or "/", name


def join(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


class Entry:
    """A resolved union path: the topmost layer that holds it."""

    __slots__ = ("path", "layer", "real", "st", "dirs")

    def __init__(self, path: str, layer: int, real: str, st: os.stat_result,
                 dirs: list[tuple[int, str]] | None) -> None:
        self.path = path
        self.layer = layer
        self.real = real
        self.st = st
        self.dirs = dirs       # directories: (layer, backing dir) merged, top first

    @property
    def is_dir(self) -> bool:
        return self.dirs is not None

    def restat(self) -> Entry:
        """The same entry with its current lstat."""
        return Entry(self.path, self.layer, self.real, os.lstat(self.real), self.dirs)


# What the kernel is told about a file (collections.namedtuple: importing
# typing for NamedTuple would cost the container start ~10 ms).
Attr = collections.namedtuple("Attr", "ino mode nlink uid gid rdev size blksize blocks "
                                      "atime_ns mtime_ns ctime_ns")


class Union:
    def __init__(self, lowers: list[str], upper: str | None = None, work: str | None = None, *,
                 squash_uid: int | None = None, squash_gid: int | None = None,
                 uid_map: IdMapping | None = None, gid_map: IdMapping | None = None) -> None:
        if not lowers and upper is None:
            raise ValueError("a union needs at least one layer")
        self.layers: list[Layer] = []
        if upper is not None:
            if work is None:
                raise ValueError("an upper dir needs a work dir")
            self.layers.append(Layer(upper, writable=True))
        self.layers.extend(Layer(d) for d in lowers)
        self.upper = self.layers[0] if upper is not None else None
        self.work = ""
        if upper is not None:
            self.work = self._prepare_work(work)
        self.inodes = InodeNumbers([layer.dev for layer in self.layers])
        self.squash_uid = squash_uid
        self.squash_gid = squash_gid
        self.uid_map = uid_map
        self.gid_map = gid_map
        self.owner = (os.geteuid(), os.getegid())
        self.lock = threading.RLock()
        self._dirs: dict[str, Entry] = {}

    def _prepare_work(self, work: str) -> str:
        path = os.path.join(os.path.abspath(work), _WORK_SUBDIR)
        if os.stat(work).st_dev != self.layers[0].dev:
            raise OSError(errno.EXDEV, "the work dir must be on the upper dir's filesystem", work)
        # Leftovers of a crashed server: half copies and trashed dirs.
        shutil.rmtree(path, ignore_errors=True)
        os.mkdir(path, 0o700)
        return path

    # ---- lookup ---------------------------------------------------------

    def _root(self) -> Entry:
        top = self.layers[0]
        return Entry("/", 0, top.root, os.lstat(top.root),
                     [(i, layer.root) for i, layer in enumerate(self.layers)])

    def lookup(self, path: str) -> Entry:
        if path == "/":
            return self._root()
        d = self._dirs.get(path)
        if d is not None:
            return d.restat()
        parent, name = split(path)
        return self._child(self.dir(parent), name, path)

    def dir(self, path: str) -> Entry:
        """The (cached) entry of a directory; ENOTDIR when it is not one."""
        d = self._dirs.get(path)
        if d is None:
            d = self.lookup(path)
            if not d.is_dir:
                raise _err(errno.ENOTDIR, path)
            self._dirs[path] = d
        return d

    @staticmethod
    def _find(dirs: list[tuple[int, str]], name: str) -> tuple[int, os.stat_result] | None:
        """Index in ``dirs`` and lstat of the topmost visible ``name``."""
        last = len(dirs) - 1
        for i, (_, dreal) in enumerate(dirs):
            try:
                st = os.lstat(f"{dreal}/{name}")
            except FileNotFoundError:
                # A whiteout in the bottom dir hides nothing: one syscall
                # less for every name that does not exist.
                if i < last and whiteout.exists(dreal, name):
                    return None
                continue
            if whiteout.is_whiteout_stat(st):
                return None
            return i, st
        return None

    def _child(self, parent: Entry, name: str, path: str) -> Entry:
        check_name(name)
        if whiteout.is_reserved(name):
            raise _err(errno.ENOENT, path)
        found = self._find(parent.dirs, name)
        if found is None:
            raise _err(errno.ENOENT, path)
        i, st = found
        layer, dreal = parent.dirs[i]
        real = f"{dreal}/{name}"
        if not stat.S_ISDIR(st.st_mode):
            return Entry(path, layer, real, st, None)
        merged = [(layer, real)]
        below = parent.dirs[i + 1:]
        if below and not whiteout.is_opaque(real):
            for k, (lj, dj) in enumerate(below, 1):
                under = f"{dj}/{name}"
                try:
                    st2 = os.lstat(under)
                except FileNotFoundError:
                    if whiteout.exists(dj, name):
                        break
                    continue
                if not stat.S_ISDIR(st2.st_mode):
                    break
                merged.append((lj, under))
                if k < len(below) and whiteout.is_opaque(under):
                    break
        return Entry(path, layer, real, st, merged)

    def _in_lower(self, parent: Entry, name: str) -> bool:
        """Whether the lower layers would show ``name`` without the upper."""
        return self._find([d for d in parent.dirs if d[0] != 0 or self.upper is None], name) \
            is not None

    def forget(self, path: str, *, tree: bool = False) -> None:
        """Drop cached directory entries for ``path`` (and below with tree)."""
        self._dirs.pop(path, None)
        if tree:
            prefix = path.rstrip("/") + "/"
            for key in [k for k in self._dirs if k.startswith(prefix)]:
                del self._dirs[key]

    # ---- attributes -------------------------------------------------------

    def attr(self, e: Entry) -> Attr:
        return self._attr(e.real, e.st, e.layer == 0 and self.upper is not None,
                          len(e.dirs) if e.dirs else 1)

    def fattr(self, fd: int) -> Attr:
        return self._attr(fd, os.fstat(fd), True, 1)

    def _attr(self, ref: str | int, st: os.stat_result, upper: bool, merged: int) -> Attr:
        mode, uid, gid, rdev = st.st_mode, st.st_uid, st.st_gid, st.st_rdev
        origin = None
        if not stat.S_ISLNK(mode):
            m, origin = meta.read_upper(ref) if upper else (meta.read(ref), None)
            if m is not None:
                uid, gid, mode = m.uid, m.gid, m.mode(mode)
                if m.kind is not None:
                    rdev = m.rdev
        if self.uid_map is not None:
            uid = self.uid_map.served(uid)
        if self.gid_map is not None:
            gid = self.gid_map.served(gid)
        if self.squash_uid is not None:
            uid = self.squash_uid
        if self.squash_gid is not None:
            gid = self.squash_gid
        ino = self.inodes(*origin) if origin else self.inodes(st.st_dev, st.st_ino)
        # A merged directory's link count is unknown without listing every
        # layer; 1 tells find/fts not to rely on it (as on btrfs).
        nlink = st.st_nlink if merged == 1 else 1
        return Attr(ino, mode, nlink, uid, gid, rdev, st.st_size, st.st_blksize, st.st_blocks,
                    st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)

    def getattr(self, path: str) -> Attr:
        return self.attr(self.lookup(path))

    def served(self, e: Entry) -> meta.Meta:
        stored = None if stat.S_ISLNK(e.st.st_mode) else meta.read(e.real)
        return copyup.served_meta(e.st, stored)

    # ---- reading ------------------------------------------------------------

    def readdir(self, path: str) -> list[tuple[str, int, int]]:
        """(name, S_IFMT type, st_ino) of every visible entry, without . and .."""
        out = []
        for name, kind, ent, layer in self._scan(path):
            upper = layer == 0 and self.upper is not None
            origin = meta.read_origin(ent.path) if upper and kind != stat.S_IFLNK else None
            out.append((name, kind, self.inodes(*origin) if origin
                        else self.inodes(self.layers[layer].dev, ent.inode())))
        return out

    def readdir_attrs(self, path: str) -> list[tuple[str, Attr]]:
        """(name, attributes) of every visible entry, without . and ..: what
        a lookup of each would give, cheaper (one lstat for a non-directory)."""
        out = []
        for name, kind, ent, layer in self._scan(path):
            if kind == stat.S_IFDIR:
                a = self.attr(self.lookup(join(path, name)))   # layers merge
            else:
                a = self._attr(ent.path, ent.stat(follow_symlinks=False),
                               layer == 0 and self.upper is not None, 1)
            out.append((name, a))
        return out

    def _scan(self, path: str) -> Iterator[tuple[str, int, os.DirEntry, int]]:
        """(name, S_IFMT type, the topmost layer's entry, that layer's index)
        of every visible entry of directory ``path``."""
        d = self.dir(path)
        seen: set[str] = set()
        hidden: set[str] = set()
        for layer, dreal in d.dirs:
            wh: list[str] = []
            with os.scandir(dreal) as it:
                for ent in it:
                    name = ent.name
                    if name.startswith(whiteout.PREFIX):
                        if name != whiteout.OPAQUE:
                            wh.append(name[len(whiteout.PREFIX):])
                        continue
                    if name in seen or name in hidden:
                        continue
                    if ent.is_dir(follow_symlinks=False):
                        kind = stat.S_IFDIR
                    elif ent.is_file(follow_symlinks=False):
                        kind = stat.S_IFREG
                    elif ent.is_symlink():
                        kind = stat.S_IFLNK
                    else:
                        st = ent.stat(follow_symlinks=False)
                        if whiteout.is_whiteout_stat(st):
                            wh.append(name)
                            continue
                        kind = stat.S_IFMT(st.st_mode)
                    seen.add(name)
                    yield name, kind, ent, layer
            hidden.update(wh)

    def names(self, path: str) -> list[str]:
        return [name for name, _, _ in self.readdir(path)]

    def readlink(self, path: str) -> str:
        e = self.lookup(path)
        return os.readlink(e.real)

    def open(self, path: str, flags: int) -> int:
        """Open the backing file for I/O (a write open copies it up first)."""
        write = (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC
        if write:
            self._need_upper()
        with self.lock:
            e = self.lookup(path)
            if write and e.layer != 0:
                e = self.copy_up(e, data=not flags & os.O_TRUNC)
        return os.open(e.real, (flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_APPEND))
                       | os.O_NOFOLLOW | os.O_CLOEXEC)

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.layers[0].root)

    # ---- copy-up ------------------------------------------------------------

    def _need_upper(self) -> None:
        if self.upper is None:
            raise _err(errno.EROFS)

    def upper_dir(self, path: str) -> str:
        """Backing path of directory ``path`` in the upper layer, copied up."""
        d = self.dir(path)
        if d.layer == 0 and self.upper is not None:
            return d.real
        return self.copy_up(d).real

    def copy_up(self, e: Entry, *, data: bool = True) -> Entry:
        """Make ``e`` an upper entry (see the module rules); returns it fresh."""
        if e.layer == 0 and self.upper is not None:
            return e
        self._need_upper()
        with self.lock:
            if stat.S_ISREG(e.st.st_mode) and e.st.st_nlink > 1:
                return self._copy_up_links(e, data)
            parent, name = split(e.path)
            updir = self.upper_dir(parent)
            tmp = copyup.clone(e.real, e.st, self.served(e), self.work, data=data)
            os.rename(tmp, f"{updir}/{name}")
            self.forget(e.path)
            return self.lookup(e.path)

    def _copy_up_links(self, e: Entry, data: bool) -> Entry:
        names = [e.path]
        for other in self.layers[e.layer].hardlinks(e.st.st_ino):
            if other == e.path:
                continue
            try:
                o = self.lookup(other)
            except OSError:
                continue
            if o.layer == e.layer and o.st.st_ino == e.st.st_ino:
                names.append(other)
        tmp = copyup.clone(e.real, e.st, self.served(e), self.work, data=data)
        try:
            for p in names:
                parent, name = split(p)
                os.link(tmp, f"{self.upper_dir(parent)}/{name}")
        finally:
            os.unlink(tmp)
        return self.lookup(e.path)

    def copy_up_tree(self, e: Entry) -> Entry:
        """Copy a directory and everything visible below it to the upper layer."""
        e = self.copy_up(e)
        if len(e.dirs) == 1:
            return e   # nothing merges in from below
        for name in self.names(e.path):
            child = self.lookup(join(e.path, name))
            if child.is_dir:
                self.copy_up_tree(child)
            elif child.layer != 0:
                self.copy_up(child)
        return self.lookup(e.path)


def check_name(name: str) -> None:
    # A character encodes to at most 4 bytes: most names need no encoding.
    if len(name) > NAME_MAX // 4 and len(os.fsencode(name)) > NAME_MAX:
        raise _err(errno.ENAMETOOLONG, name)
