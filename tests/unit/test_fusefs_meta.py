"""The override_stat metadata encoding shared by unpack and the union fs."""

from __future__ import annotations

import os
import stat

import pytest

from fusefs import meta


@pytest.mark.parametrize("m, text", [
    (meta.Meta(70, 70, 0o4755), b"70:70:04755"),
    (meta.Meta(0, 0, 0o1777), b"0:0:01777"),
    (meta.Meta(0, 5, 0o620, stat.S_IFCHR, os.makedev(136, 3)), b"0:5:0620:char-136-3"),
    (meta.Meta(0, 0, 0o660, stat.S_IFBLK, os.makedev(8, 1)), b"0:0:0660:block-8-1"),
    (meta.Meta(1000, 1000, 0o644, stat.S_IFIFO), b"1000:1000:0644:pipe"),
])
def test_round_trip(m, text):
    assert meta.encode(m) == text
    assert meta.decode(text) == m


def test_fuse_overlayfs_plain_types_mean_on_disk_type():
    assert meta.decode(b"1:2:0755:dir") == meta.Meta(1, 2, 0o755)


def test_served_mode_combines_type_and_perm():
    m = meta.Meta(0, 0, 0o666, stat.S_IFCHR, os.makedev(1, 3))
    assert m.mode(stat.S_IFREG | 0o600) == stat.S_IFCHR | 0o666
    assert meta.Meta(0, 0, 0o4755).mode(stat.S_IFREG | 0o644) == stat.S_IFREG | 0o4755


@pytest.mark.parametrize("bad", [b"", b"1:2", b"a:b:c", b"1:2:0644:whatever"])
def test_malformed_values_raise(bad):
    with pytest.raises(ValueError):
        meta.decode(bad)


def test_xattr_on_real_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert meta.read(str(f)) is None
    meta.write(str(f), meta.Meta(65534, 65534, 0o600))
    assert meta.read(str(f)) == meta.Meta(65534, 65534, 0o600)
