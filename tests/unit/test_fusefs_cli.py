"""prun-overlayfs' command line: fuse-overlayfs' options map onto a MountSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusefs.__main__ import Usage, main, parse


def test_podman_style_command_line(tmp_path):
    spec, foreground, notes = parse([
        "-o", "lowerdir=/l/top:/l/bottom,upperdir=/u,workdir=/w,context=\"system_u:x\\,y\"",
        "-o", "rw,nodev,noatime,squash_to_uid=5", str(tmp_path / "m")])
    assert spec.lowerdirs == [Path("/l/top"), Path("/l/bottom")]
    assert (spec.upperdir, spec.workdir) == (Path("/u"), Path("/w"))
    assert spec.mountpoint == tmp_path / "m"
    assert spec.squash_uid == 5 and spec.squash_gid is None
    assert not foreground and notes == []


def test_read_only_without_upper_and_foreground_debug():
    spec, foreground, _ = parse(["-d", "-olowerdir=a", "m"])
    assert spec.upperdir is None and spec.workdir is None
    assert foreground and spec.debug
    assert spec.lowerdirs == [Path("a").absolute()]


def test_squash_to_root_and_unknown_option_note():
    spec, _, notes = parse(["-o", "lowerdir=a,squash_to_root,frobnicate=1", "m"])
    assert (spec.squash_uid, spec.squash_gid) == (0, 0)
    assert notes == ["unknown argument ignored: frobnicate"]


@pytest.mark.parametrize("argv, text", [
    (["m"], "lowerdir"),
    (["-o", "lowerdir=a,upperdir=u", "m"], "go together"),
    (["-o", "lowerdir=a,uidmapping=0:1", "m"], "uidmapping: expected STORED:SERVED:COUNT"),
    (["-o", "lowerdir=a,gidmapping=0:x:1", "m"], "gidmapping: ids and counts must be numbers"),
    (["-o", "lowerdir=a,uidmapping=0:1:0", "m"], "counts > 0"),
    (["-o", "lowerdir=a"], "MOUNTPOINT"),
    (["-o", "lowerdir=a,squash_to_uid=x", "m"], "not a number"),
])
def test_usage_errors(argv, text):
    with pytest.raises(Usage, match=text):
        parse(argv)


def test_usage_error_exits_2(capsys):
    assert main(["-o", "upperdir=u", "m"]) == 2
    assert "lowerdir" in capsys.readouterr().err


def test_id_mappings_as_podman_passes_them():
    # podman 4.3 --userns=keep-id for uid 1001, as it called prun-overlayfs
    keep_id = ":0:1:1001:1001:0:1:1002:1002:64535"
    spec, _, notes = parse(["-o", f"lowerdir=a,uidmapping={keep_id},gidmapping=0:1:5", "m"])
    assert spec.uid_mapping == [(0, 1, 1001), (1001, 0, 1), (1002, 1002, 64535)]
    assert spec.gid_mapping == [(0, 1, 5)] and notes == []


def test_threads_option():
    spec, _, notes = parse(["-o", "lowerdir=a,threads=3", "m"])
    assert spec.threads == 3 and notes == []
