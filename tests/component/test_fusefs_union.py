"""The union core (fusefs.fs.UnionFS) on real directories, without FUSE.

Layers are built in tmp dirs; every assertion is about what the container
would see (names, contents, served attributes, errno) or what lands in the
upper dir (an OCI layer diff).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from fusefs import meta
from fusefs.fs import UnionFS
from tests.support.layers import build_layer

ME = (os.geteuid(), os.getegid())


@pytest.fixture
def stack(tmp_path):
    """make(*layer trees, top first) -> UnionFS with an upper dir."""
    os.umask(0)

    def make(*trees: dict) -> UnionFS:
        lowers = [build_layer(tmp_path / f"l{i}", t) for i, t in enumerate(trees)]
        (tmp_path / "upper").mkdir(0o755)
        (tmp_path / "work").mkdir(0o700)
        return UnionFS([str(p) for p in lowers], str(tmp_path / "upper"),
                       str(tmp_path / "work"))
    yield make
    os.umask(0o022)


def read(fs: UnionFS, path: str) -> bytes:
    fd = fs.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def write(fs: UnionFS, path: str, data: bytes, flags: int = os.O_WRONLY | os.O_APPEND) -> None:
    """Append as the kernel does: backing fds have no O_APPEND, writes carry offsets."""
    fd = fs.open(path, flags)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, data)
    finally:
        os.close(fd)


def errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


# ---- lookup, whiteouts, opaque directories -----------------------------------

def test_top_layer_wins_and_directories_merge(stack):
    fs = stack({"a": "top", "d": {"t": "1"}}, {"a": "bottom", "b": "b", "d": {"u": "2"}})
    assert read(fs, "/a") == b"top"
    assert sorted(fs.names("/")) == ["a", "b", "d"]
    assert sorted(fs.names("/d")) == ["t", "u"]


def test_oci_whiteout_hides_lower_entry_and_is_never_visible(stack):
    fs = stack({".wh.b": "", "d": {".wh..wh..opq": ""}}, {"b": "b", "d": {"old": "x"}, "c": ""})
    assert sorted(fs.names("/")) == ["c", "d"]
    assert fs.names("/d") == []
    assert errno_of(fs.getattr, "/b") == errno.ENOENT
    assert errno_of(fs.getattr, "/.wh.b") == errno.ENOENT
    assert errno_of(fs.create, "/.wh.x", 0o644, os.O_WRONLY, *ME) == errno.EINVAL


def test_whiteout_in_same_layer_does_not_hide_its_own_entry(stack):
    fs = stack({"a": "here", ".wh.a": ""}, {"a": "below"})
    assert read(fs, "/a") == b"here"


def test_file_in_upper_layer_stops_merge_of_lower_directory(stack):
    fs = stack({"d": "now a file"}, {"d": {"x": ""}})
    assert stat.S_ISREG(fs.getattr("/d").mode)
    assert errno_of(fs.names, "/d") == errno.ENOTDIR


def test_delete_lower_file_writes_whiteout_in_upper(stack, tmp_path):
    fs = stack({"d": {"f": "x"}})
    fs.unlink("/d/f")
    assert fs.names("/d") == []
    assert (tmp_path / "upper/d/.wh.f").exists()
    assert (tmp_path / "l0/d/f").read_text() == "x"


def test_rmdir_then_mkdir_of_lower_directory_is_opaque(stack, tmp_path):
    fs = stack({"d": {}}, {"d": {"old": "x"}})
    # d is not empty: its lower child shows.
    assert errno_of(fs.rmdir, "/d") == errno.ENOTEMPTY
    fs.unlink("/d/old")
    fs.rmdir("/d")
    assert "d" not in fs.names("/")
    fs.mkdir("/d", 0o755, *ME)
    assert fs.names("/d") == []
    assert (tmp_path / "upper/d/.wh..wh..opq").exists()


def test_recreated_file_replaces_whiteout(stack, tmp_path):
    fs = stack({"f": "old"})
    fs.unlink("/f")
    os.close(fs.create("/f", 0o644, os.O_WRONLY, *ME))
    assert read(fs, "/f") == b""
    assert not (tmp_path / "upper/.wh.f").exists()


# ---- copy-up -------------------------------------------------------------------

def test_write_open_copies_up_with_parents_and_keeps_lower(stack, tmp_path):
    fs = stack({"a": {"b": {"f": "lower"}}})
    before = fs.getattr("/a/b/f")
    write(fs, "/a/b/f", b"+more")
    assert read(fs, "/a/b/f") == b"lower+more"
    assert (tmp_path / "upper/a/b/f").read_text() == "lower+more"
    assert (tmp_path / "l0/a/b/f").read_text() == "lower"
    after = fs.getattr("/a/b/f")
    assert after.ino == before.ino and after.mtime_ns != 0
    assert (fs.getattr("/a").ino, fs.getattr("/a/b").ino) != (0, 0)


def test_o_trunc_copy_up_skips_data_and_read_open_does_not_copy(stack, tmp_path):
    fs = stack({"f": "x" * 10000, "g": "keep"})
    write(fs, "/f", b"new", os.O_WRONLY | os.O_TRUNC)
    assert read(fs, "/f") == b"new"
    assert read(fs, "/g") == b"keep"
    assert not (tmp_path / "upper/g").exists()


def test_metadata_changes_copy_up_and_store_ownership_as_xattr(stack, tmp_path):
    fs = stack({"f": "x", "d": {}})
    fs.chown("/f", 70, 71)
    fs.chmod("/f", 0o4750)
    a = fs.getattr("/f")
    assert (a.uid, a.gid, stat.S_IMODE(a.mode)) == (70, 71, 0o4750)
    disk = os.lstat(tmp_path / "upper/f")
    assert (disk.st_uid, disk.st_gid) == ME        # host ownership unchanged
    assert not disk.st_mode & stat.S_ISUID           # no setuid bit on the host
    assert meta.read(str(tmp_path / "upper/f")) == meta.Meta(70, 71, 0o4750)
    fs.utimens("/d", 5_000_000_000, None)
    assert fs.getattr("/d").atime_ns == 5_000_000_000


def test_copy_up_is_atomic_and_work_dir_leftovers_are_cleared(stack, tmp_path):
    fs = stack({"f": "data"})
    work = tmp_path / "work/prun-work"
    (work / "half-copy").write_text("partial")
    UnionFS([str(tmp_path / "l0")], str(tmp_path / "upper"), str(tmp_path / "work"))
    assert list(work.iterdir()) == []
    write(fs, "/f", b"!")
    assert list(work.iterdir()) == []
    assert sorted(os.listdir(tmp_path / "upper")) == ["f"]


def test_work_dir_must_share_the_upper_filesystem(tmp_path):
    (tmp_path / "u").mkdir()
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("tmp_path is on /dev/shm's filesystem")
    with pytest.raises(OSError) as info:
        UnionFS([], str(tmp_path / "u"), "/dev/shm")
    assert info.value.errno == errno.EXDEV


# ---- rename --------------------------------------------------------------------

def test_rename_lower_directory_moves_the_whole_tree(stack, tmp_path):
    fs = stack({"d": {"x": "1", "s": {"y": "2"}}}, {"d": {"z": "3"}, "e": {"keep": ""}})
    ino = fs.getattr("/d/s/y").ino
    fs.rename("/d", "/n")
    assert "d" not in fs.names("/")
    assert sorted(fs.names("/n")) == ["s", "x", "z"]
    assert read(fs, "/n/s/y") == b"2" and read(fs, "/n/z") == b"3"
    assert fs.getattr("/n/s/y").ino == ino
    # A directory named like the old one does not pick up the old contents.
    fs.mkdir("/d", 0o755, *ME)
    assert fs.names("/d") == []


def test_rename_over_existing_and_noreplace_exchange(stack):
    from fusefs import _libc
    fs = stack({"a": "A", "b": "B", "c": "C", "e": {}, "f": {"x": ""}})
    fs.rename("/a", "/b")
    assert read(fs, "/b") == b"A" and "a" not in fs.names("/")
    assert errno_of(fs.rename, "/b", "/c", _libc.RENAME_NOREPLACE) == errno.EEXIST
    fs.rename("/b", "/c", _libc.RENAME_EXCHANGE)
    assert (read(fs, "/b"), read(fs, "/c")) == (b"C", b"A")
    assert errno_of(fs.rename, "/e", "/f") == errno.ENOTEMPTY
    assert errno_of(fs.rename, "/c", "/e") == errno.EISDIR
    assert errno_of(fs.rename, "/e", "/c") == errno.ENOTDIR


# ---- hard links and inode numbers ------------------------------------------------

def test_hard_links_stay_coherent_through_copy_up(stack, tmp_path):
    fs = stack({"d": {"one": "shared"}})
    os.link(tmp_path / "l0/d/one", tmp_path / "l0/two")
    before = fs.getattr("/two")
    assert before.nlink == 2 and before.ino == fs.getattr("/d/one").ino
    write(fs, "/d/one", b"!")
    assert read(fs, "/two") == b"shared!"
    a, b = fs.getattr("/d/one"), fs.getattr("/two")
    assert a.ino == b.ino == before.ino and a.nlink == b.nlink == 2
    fs.unlink("/two")
    assert fs.getattr("/d/one").nlink == 1


def test_link_inside_union_shares_inode(stack):
    fs = stack({"f": "x"})
    fs.link("/f", "/g")
    a, b = fs.getattr("/f"), fs.getattr("/g")
    assert a.ino == b.ino and a.nlink == b.nlink == 2
    assert errno_of(fs.link, "/", "/h") == errno.EPERM


def test_inode_numbers_unique_across_layers(stack):
    fs = stack({"a": "1", "d": {"x": ""}}, {"b": "2", "d": {"y": ""}}, {"c": "3"})
    paths = ["/a", "/b", "/c", "/d", "/d/x", "/d/y"]
    inos = [fs.getattr(p).ino for p in paths]
    assert len(set(inos)) == len(paths)
    assert {ino for _, _, ino in fs.readdir("/")} == {fs.getattr(p).ino for p in paths[:4]}


def test_listing_attributes_equal_what_lookups_serve(stack, tmp_path):
    # The mount answers READDIRPLUS from readdir_attrs and LOOKUP from
    # getattr; the kernel caches whichever came first, so they must agree.
    fs = stack({"d": {"own": "x"}, "f": "1", "ln": ("link", "f"), "gone": "",
                ".wh.hidden": ""},
               {"d": {"low": "y"}, "hidden": "h", "opq": {"under": ""}})
    os.link(tmp_path / "l0/f", tmp_path / "l0/f2")
    meta.write(str(tmp_path / "l0/f2"), meta.Meta(7, 8, 0o4755, None, 0))
    write(fs, "/d/low", b"copied up")
    fs.unlink("/gone")
    fs.unlink("/opq/under")
    fs.mkdir("/new", 0o700, 0, 0)
    for path in ("/", "/d", "/opq", "/new"):
        listed = fs.readdir_attrs(path)
        assert listed == [(name, fs.getattr(f"{path.rstrip('/')}/{name}")) for name, _ in listed]
    names = dict(fs.readdir_attrs("/"))
    assert sorted(names) == ["d", "f", "f2", "ln", "new", "opq"]
    assert names["d"].nlink == 1                      # merged from two layers
    assert names["f"].ino == names["f2"].ino and names["f2"].nlink == 2
    assert (names["f2"].uid, names["f2"].gid, names["f2"].mode) == (7, 8, stat.S_IFREG | 0o4755)
    assert stat.S_ISLNK(names["ln"].mode)


# ---- special files, metadata, names, xattrs --------------------------------------

def test_device_from_layer_metadata_is_served_with_type_and_rdev(stack, tmp_path):
    fs = stack({"null": ""})
    meta.write(str(tmp_path / "l0/null"), meta.Meta(0, 0, 0o666, stat.S_IFCHR, os.makedev(1, 3)))
    a = fs.getattr("/null")
    assert stat.S_ISCHR(a.mode) and a.rdev == os.makedev(1, 3) and (a.uid, a.gid) == (0, 0)
    assert errno_of(fs.mknod, "/dev2", stat.S_IFCHR | 0o600, os.makedev(1, 3), *ME) == errno.EPERM


def test_fifo_and_socket_nodes(stack):
    fs = stack({})
    fs.mknod("/p", stat.S_IFIFO | 0o640, 0, 5, 6)
    fs.mknod("/s", stat.S_IFSOCK | 0o755, 0, 0, 0)
    p, s = fs.getattr("/p"), fs.getattr("/s")
    assert stat.S_ISFIFO(p.mode) and (p.uid, p.gid, stat.S_IMODE(p.mode)) == (5, 6, 0o640)
    assert stat.S_ISSOCK(s.mode)


def test_setgid_directory_passes_group_down(stack):
    fs = stack({})
    fs.mkdir("/g", 0o2775, 0, 50)
    fs.mkdir("/g/sub", 0o755, 0, 0)
    os.close(fs.create("/g/f", 0o644, os.O_WRONLY, 0, 0))
    sub, f = fs.getattr("/g/sub"), fs.getattr("/g/f")
    assert sub.gid == f.gid == 50 and sub.mode & stat.S_ISGID


def test_names_too_long(stack):
    fs = stack({})
    assert errno_of(fs.create, "/" + "x" * 256, 0o644, os.O_WRONLY, *ME) == errno.ENAMETOOLONG
    assert errno_of(fs.getattr, "/" + "x" * 256) == errno.ENAMETOOLONG


def test_xattrs_user_capability_and_hidden_internal(stack, tmp_path):
    fs = stack({"f": "x"})
    fs.setxattr("/f", "user.note", b"hi", 0)
    fs.setxattr("/f", "security.capability", b"\x01\x02", 0)
    assert fs.getxattr("/f", "user.note") == b"hi"
    assert fs.getxattr("/f", "security.capability") == b"\x01\x02"
    assert sorted(fs.listxattr("/f")) == ["security.capability", "user.note"]
    assert errno_of(fs.setxattr, "/f", "trusted.x", b"", 0) == errno.EPERM
    assert errno_of(fs.getxattr, "/f", meta.XATTR) == errno.ENODATA
    assert errno_of(fs.setxattr, "/f", meta.ORIGIN, b"1:2", 0) == errno.EPERM
    fs.removexattr("/f", "user.note")
    assert fs.listxattr("/f") == ["security.capability"]
    assert (tmp_path / "l0/f").read_text() == "x" and not os.listxattr(tmp_path / "l0/f")


def test_read_only_union_refuses_changes(tmp_path):
    build_layer(tmp_path / "l", {"f": "x"})
    fs = UnionFS([str(tmp_path / "l")])
    assert read(fs, "/f") == b"x"
    assert errno_of(fs.unlink, "/f") == errno.EROFS
    assert errno_of(fs.open, "/f", os.O_WRONLY) == errno.EROFS


def test_symlinks_are_served_not_followed(stack, tmp_path):
    fs = stack({"etc": ("link", "/etc"), "rel": ("link", "etc/passwd")})
    assert fs.readlink("/etc") == "/etc" and stat.S_ISLNK(fs.getattr("/etc").mode)
    assert errno_of(fs.getattr, "/etc/passwd") == errno.ENOTDIR
    fs.symlink("target", "/new", *ME)
    assert os.readlink(tmp_path / "upper/new") == "target"


def test_chown_back_to_the_storage_owner_drops_no_stale_metadata(stack, tmp_path):
    fs = stack({})
    os.close(fs.create("/f", 0o644, os.O_WRONLY, *ME))
    fs.chown("/f", *ME)
    assert meta.read(str(tmp_path / "upper/f")) is None     # nothing to store
    fs.chown("/f", 7, 8)
    fs.chown("/f", *ME)
    fs.chmod("/f", 0o640)
    a = fs.getattr("/f")
    assert (a.uid, a.gid, stat.S_IMODE(a.mode)) == (*ME, 0o640)


def test_id_mappings_shift_served_owners_and_unshift_what_comes_in(tmp_path):
    # keep-id for a user whose id is 1000: stored 0..999 are served as
    # 1..1000, stored 1000 as 0 (the server's own id), the rest unmapped.
    from fusefs.idmapping import IdMapping
    os.umask(0)
    low = build_layer(tmp_path / "low", {"root-file": "r", "app-file": "a", "far": "f"})
    meta.write(str(low / "root-file"), meta.Meta(0, 0, 0o644))
    meta.write(str(low / "app-file"), meta.Meta(1000, 1000, 0o640))
    meta.write(str(low / "far"), meta.Meta(70000, 70000, 0o644))
    (tmp_path / "upper").mkdir()
    (tmp_path / "work").mkdir()
    keep_id = IdMapping([(0, 1, 1000), (1000, 0, 1)])
    fs = UnionFS([str(low)], str(tmp_path / "upper"), str(tmp_path / "work"),
                 uid_map=keep_id, gid_map=keep_id)
    try:
        owners = {p: (fs.getattr(p).uid, fs.getattr(p).gid)
                  for p in ("/root-file", "/app-file", "/far")}
        assert owners == {"/root-file": (1, 1), "/app-file": (0, 0), "/far": (65534, 65534)}
        fd = fs.create("/new", 0o100644, os.O_WRONLY | os.O_CREAT, 0, 0)   # by the user
        os.close(fd)
        assert meta.read(str(tmp_path / "upper/new")) == meta.Meta(1000, 1000, 0o644)
        assert fs.setattr("/root-file", uid=5, gid=-1).uid == 5
        assert meta.read(str(tmp_path / "upper/root-file")).uid == 4
        fs.mkdir("/dir", 0o40755, 1, 1)                                    # by container root
        assert fs.getattr("/dir").uid == 1
        assert meta.read(str(tmp_path / "upper/dir")) == meta.Meta(0, 0, 0o755)
    finally:
        os.umask(0o022)
