"""The unpack chokepoint against hostile and unusual layer tarballs, on real
files in a temp dir: nothing is ever written outside the layer, and what the
image says about owners, modes and devices is recorded, not applied."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from fusefs import meta
from rootless.images.unpack import UnsafeLayer, unpack
from tests.support.images import TarBuilder


@pytest.fixture
def box(tmp_path: Path):
    """A layer dir inside a sandbox, plus a victim dir next to it."""
    layer = tmp_path / "layer"
    layer.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("untouched")
    return layer, victim


def run(tar: bytes, layer: Path):
    return unpack(io.BytesIO(tar), str(layer))


def snapshot(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink()
                                             else None) for p in path.rglob("*")}


def raw(name: str, kind=tarfile.REGTYPE, linkname: str = "", data: bytes = b"") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, linkname, len(data), 0o644
    return info


def test_dotdot_is_refused(box):
    layer, victim = box
    tar = TarBuilder().raw(raw("../victim/evil"), b"").build()
    with pytest.raises(UnsafeLayer, match="'..'"):
        run(tar, layer)
    assert snapshot(victim) == {"keep": b"untouched"}


def test_absolute_names_are_contained(box):
    layer, victim = box
    tar = TarBuilder().raw(raw(f"{victim}/evil", data=b"x"), b"x").build()
    run(tar, layer)
    assert (layer / victim.relative_to("/") / "evil").read_bytes() == b"x"
    assert snapshot(victim) == {"keep": b"untouched"}


@pytest.mark.parametrize("target", ["ABS", "../victim", "../../.."])
def test_writing_through_a_symlink_planted_earlier_is_refused(box, target):
    layer, victim = box
    target = str(victim) if target == "ABS" else target
    tar = (TarBuilder().symlink("link", target)
           .file("link/evil", "pwned").build())
    with pytest.raises(UnsafeLayer, match="not a directory"):
        run(tar, layer)
    assert snapshot(victim) == {"keep": b"untouched"}


def test_a_symlink_replacing_a_directory_is_not_followed_afterwards(box):
    layer, victim = box
    tar = (TarBuilder().dir("d").file("d/a", "1").symlink("d", str(victim))
           .file("d/evil", "pwned").build())
    with pytest.raises(UnsafeLayer):
        run(tar, layer)
    assert snapshot(victim) == {"keep": b"untouched"}


def test_a_file_over_a_symlink_replaces_the_link_not_its_target(box):
    layer, victim = box
    tar = TarBuilder().symlink("f", f"{victim}/keep").file("f", "new").build()
    run(tar, layer)
    assert (layer / "f").read_text() == "new" and not (layer / "f").is_symlink()
    assert (victim / "keep").read_text() == "untouched"


@pytest.mark.parametrize("link", ["../victim/keep", "ABS", "sym/keep"])
def test_hard_links_outside_the_layer_are_refused(box, link):
    layer, victim = box
    link = f"{victim}/keep" if link == "ABS" else link
    tar = (TarBuilder().symlink("sym", str(victim)).hardlink("stolen", link).build())
    with pytest.raises(UnsafeLayer):
        run(tar, layer)
    assert not (layer / "stolen").exists()
    assert os.stat(victim / "keep").st_nlink == 1


def test_hard_links_inside_the_layer_share_the_inode(box):
    layer, _ = box
    run(TarBuilder().dir("a").file("a/f", "data", mode=0o4755).hardlink("b", "a/f").build(),
        layer)
    assert os.stat(layer / "a/f").st_ino == os.stat(layer / "b").st_ino
    assert meta.read(str(layer / "b")).perm == 0o4755


def test_absolute_symlink_targets_are_kept_as_written(box):
    layer, _ = box
    run(TarBuilder().symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .symlink("rel", "../../x").build(), layer)
    assert os.readlink(layer / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(layer / "rel") == "../../x"


def test_devices_fifos_owners_and_setuid_are_recorded_not_applied(box):
    layer, _ = box
    tar = (TarBuilder().dir("dev").device("dev/null", True, 1, 3)
           .device("dev/sda", False, 8, 0, mode=0o660, gid=6)
           .fifo("run.fifo", mode=0o600, uid=5)
           .file("bin/su", "x", mode=0o4755)
           .dir("home/app", mode=0o700, uid=1000, gid=1000)
           .dir("tmp", mode=0o1777)
           .file("plain", "y").build())
    run(tar, layer)
    null = layer / "dev/null"
    assert stat.S_ISREG(null.lstat().st_mode) and null.stat().st_size == 0
    m = meta.read(str(null))
    assert (m.kind, os.major(m.rdev), os.minor(m.rdev), m.perm) == (stat.S_IFCHR, 1, 3, 0o666)
    m = meta.read(str(layer / "dev/sda"))
    assert (m.kind, m.rdev, m.gid, m.perm) == (stat.S_IFBLK, os.makedev(8, 0), 6, 0o660)
    assert meta.read(str(layer / "run.fifo")).kind == stat.S_IFIFO
    su = (layer / "bin/su").stat()
    assert su.st_mode & 0o7000 == 0 and su.st_uid == os.getuid()
    assert meta.read(str(layer / "bin/su")).perm == 0o4755
    home = meta.read(str(layer / "home/app"))
    assert (home.uid, home.gid, home.perm) == (1000, 1000, 0o700)
    tmp = layer / "tmp"
    assert tmp.stat().st_mode & 0o7777 == 0o755  # never world-writable on the host
    assert meta.read(str(tmp)).perm == 0o1777
    assert meta.read(str(layer / "plain")) is None  # 0:0 0644 needs no record


def test_whiteouts_are_kept_as_files_for_the_union_fs(box):
    layer, _ = box
    run(TarBuilder().dir("etc").whiteout("etc/gone").opaque("var/cache").build(), layer)
    assert (layer / "etc/.wh.gone").is_file()
    assert (layer / "var/cache/.wh..wh..opq").is_file()


def test_later_entries_replace_earlier_ones(box):
    layer, _ = box
    tar = (TarBuilder().dir("x").file("x/inner", "1").file("x", "now a file")
           .file("y", "old").dir("y").build())
    run(tar, layer)
    assert (layer / "x").read_text() == "now a file"
    assert (layer / "y").is_dir()


def test_nul_in_a_pax_name_is_refused(box):
    layer, _ = box
    info = raw("a")
    info.pax_headers = {"path": "a\x00b"}
    tar = TarBuilder().raw(info, b"").build()
    with pytest.raises(UnsafeLayer):
        run(tar, layer)


def test_capability_xattr_is_kept_under_its_on_disk_name(box):
    layer, _ = box
    info = raw("bin/ping", data=b"x")
    info.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
                        "SCHILY.xattr.trusted.evil": "no"}
    run(TarBuilder().raw(info, b"x").build(), layer)
    assert os.getxattr(layer / "bin/ping", "user.prun.security.capability") == \
        b"\x01\x00\x00\x02"
    assert "trusted.evil" not in os.listxattr(layer / "bin/ping")


def test_parents_missing_from_the_archive_are_created_and_mtimes_kept(box):
    layer, _ = box
    run(TarBuilder().file("a/b/c/file", "z").build(), layer)
    assert (layer / "a/b/c/file").stat().st_mtime == 1700000000
    assert (layer / "a/b/c").is_dir()


def test_garbage_is_not_a_layer(box):
    layer, _ = box
    with pytest.raises(UnsafeLayer, match="not a valid tar"):
        run(b"\x01" * 1024, layer)
