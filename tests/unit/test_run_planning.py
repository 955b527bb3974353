"""Pure planners of `prun run`: id maps, capabilities, mounts, users, flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from rootless import idmap, protocol
from rootless.errors import NotFoundError, UsageError
from rootless.ns import caps, plan, seccomp, users
from rootless.runspec import BuildContext, RunRequest, image_process, merge_env, parse_mount, \
    parse_tmpfs, parse_volume

SUBUID = "other:1:5\nalice:100000:65536\n# comment\n1000:300000:10\n"


def test_subuid_lines_by_name_and_by_uid():
    assert idmap.parse_subid(SUBUID, "alice", 1000) == [(100000, 65536), (300000, 10)]
    assert idmap.parse_subid(SUBUID, "bob", 1001) == []


def test_default_map_root_is_the_user_then_sub_ranges():
    m = idmap.plan(1000, 1000, [(100000, 65536)], [(200000, 65536)])
    assert m.uid == [(0, 1000, 1), (1, 100000, 65536)]
    assert m.gid == [(0, 1000, 1), (1, 200000, 65536)]
    assert not m.single
    assert idmap.argv("newuidmap", 42, m.uid) == ["newuidmap", "42", "0", "1000", "1", "1",
                                                  "100000", "65536"]


def test_keep_id_nests_own_id_at_itself_over_the_default_map():
    m = idmap.plan(1000, 1000, [(100000, 65536)], [(100000, 65536)], userns="keep-id")
    assert m.uid == [(0, 1000, 1), (1, 100000, 65536)]       # the FUSE server's namespace
    assert m.nested_uid == [(0, 1, 1000), (1000, 0, 1), (1001, 1001, 64536)]
    assert m.maps_uid(65536) and not m.maps_uid(65537)
    single = idmap.plan(1000, 1000, [], [], userns="keep-id")
    assert single.single and single.nested_uid == [(1000, 0, 1)]


def test_user_maps_name_intermediate_ids():
    m = idmap.plan(1000, 1000, [(100000, 65536)], [(100000, 65536)],
                   uidmap=idmap.parse_user_map("0:1:100", "--uidmap"))
    assert m.nested_uid == [(0, 1, 100)] and m.nested_gid == [(0, 1, 100)]
    with pytest.raises(UsageError, match="outside the ids you own"):
        idmap.plan(1000, 1000, [(100000, 10)], [(100000, 10)],
                   uidmap=idmap.parse_user_map("0:5:100", "--uidmap"))
    with pytest.raises(UsageError, match="CONTAINER_ID:HOST_ID:SIZE"):
        idmap.parse_user_map("0:1", "--uidmap")


def test_without_sub_ranges_a_single_mapping():
    m = idmap.plan(1000, 1000, [], [])
    assert m.single and m.uid == [(0, 1000, 1)]


def test_caps_default_add_drop_all():
    default = caps.plan_caps([], [])
    assert [caps.NAMES[c] for c in default] == sorted(caps.DEFAULT, key=caps.NUMBER.get)
    assert caps.mask(default) == 0x800405FB
    assert caps.NUMBER["CHOWN"] not in caps.plan_caps([], ["chown"])
    assert caps.plan_caps(["NET_ADMIN"], ["ALL"]) == [caps.NUMBER["NET_ADMIN"]]
    assert len(caps.plan_caps(["ALL"], [])) == len(caps.NAMES)
    with pytest.raises(UsageError, match="--cap-add NOPE: unknown capability"):
        caps.plan_caps(["NOPE"], [])


def test_seccomp_default_blocks_keyring_and_mounts_unless_sys_admin():
    _, rules = seccomp.default_profile(["CHOWN"])
    names = {r[0] for r in rules}
    assert {"keyctl", "add_key", "request_key", "mount", "bpf", "reboot"} <= names
    assert not names & {"unshare", "clone", "setns"}     # podman allows nested userns
    _, rules = seccomp.default_profile(["SYS_ADMIN"])
    names = {r[0] for r in rules}
    assert "keyctl" in names and "mount" not in names


def test_seccomp_json_profile_with_capability_conditions():
    text = ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": ['
            '{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},'
            '{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": '
            '["CAP_SYS_ADMIN"]}}]}')
    default, rules = seccomp.parse_json(text, ["CHOWN"], "p.json")
    assert default == "errno:1" and [r[0] for r in rules] == ["read", "write"]
    with pytest.raises(UsageError, match="load seccomp profile bad.json"):
        seccomp.parse_json("{", [], "bad.json")


def test_mount_plan_order_and_read_only():
    ops = plan.plan_mounts(plan.MountInputs(
        volumes=[plan.Volume("/h/b", "/x/y"), plan.Volume("/h/a", "/x", readonly=True)],
        etc_files={"/etc/hosts": "/r/hosts"}, read_only=True, network="host"))
    kinds = [op[0] for op in ops]
    assert ops[0] == ("mount", "proc", "/proc", "proc", 14, None)
    assert ("sys", False) in ops                       # --network host: bind the host's
    binds = [op for op in ops if op[0] == "bind"]
    assert [b[2] for b in binds] == ["/etc/hosts", "/x", "/x/y"]   # parents first
    assert binds[1][4] is True                        # :ro
    assert kinds.index("mask") > kinds.index("bind") and kinds[-1] == "rootfs_ro"
    assert ("mount", "tmpfs", "/tmp", "tmpfs", 6, "mode=1777") in ops


def test_users_names_numbers_groups():
    passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    group = "root:x:0:\nwheel:x:10:app\napp:x:1000:\n"
    ident = users.lookup("app", [], passwd, group)
    assert (ident.uid, ident.gid, ident.groups, ident.home) == (1000, 1000, [10, 1000], "/home/app")
    assert users.lookup("", [], passwd, group).groups == []
    ident = users.lookup("4321:wheel", ["99"], passwd, group)
    assert (ident.uid, ident.gid, ident.groups, ident.home) == (4321, 10, [10, 99], "/")
    assert users.passwd_line(ident) == "4321:*:4321:10:container user:/:/bin/sh\n"
    with pytest.raises(users.UserError, match="unable to find user nobody"):
        users.lookup("nobody", [], passwd, group)


@pytest.fixture
def ctx(tmp_path):
    return BuildContext(cid="ab" * 32, cwd=tmp_path, host_env={"FROMHOST": "h"},
                        volumes_dir=tmp_path / "volumes", rootfs_mountpoint=tmp_path / "mnt",
                        etc_files={})


def test_entrypoint_and_cmd_like_docker():
    cfg = {"Entrypoint": ["/ep"], "Cmd": ["a"], "WorkingDir": "/w", "User": "app"}
    assert image_process(cfg, RunRequest("img")) == (["/ep", "a"], "/w", "app")
    assert image_process(cfg, RunRequest("img", command=["b"]))[0] == ["/ep", "b"]
    assert image_process(cfg, RunRequest("img", entrypoint="/x"))[0] == ["/x"]
    assert image_process(cfg, RunRequest("img", entrypoint='["/x","-c"]',
                                         command=["y"]))[0] == ["/x", "-c", "y"]
    with pytest.raises(UsageError, match="no command or entrypoint"):
        image_process({}, RunRequest("img"))


def test_env_merge_keeps_order_and_defaults_path():
    assert merge_env(["A=1", "B=2"], ["A=3"]) == ["A=3", "B=2",
                                                 "PATH=/usr/local/sbin:/usr/local/bin:"
                                                 "/usr/sbin:/usr/bin:/sbin:/bin"]


def test_volumes_binds_named_and_errors(ctx, tmp_path):
    (tmp_path / "d").mkdir()
    v = parse_volume("./d:/data:ro", ctx)
    assert (v.source, v.target, v.readonly, v.origin) == (str(tmp_path / "d"), "/data", True,
                                                          "-v ./d:/data:ro")
    v = parse_volume("cache:/c", ctx)
    assert v.source == str(tmp_path / "volumes/cache/_data") and Path(v.source).is_dir()
    with pytest.raises(NotFoundError, match="mount -v ./nope:/x: ./nope: no such file"):
        parse_volume("./nope:/x", ctx)
    with pytest.raises(UsageError, match="unknown option bogus"):
        parse_volume("./d:/x:bogus", ctx)


def test_tmpfs_and_mount_flags(ctx, tmp_path):
    t = parse_tmpfs("/t:size=1m,exec")
    assert (t.kind, t.options, t.flags) == ("tmpfs", "size=1m", 6)
    m = parse_mount(f"type=bind,source={tmp_path},target=/b,readonly", ctx)
    assert (m.source, m.target, m.readonly) == (str(tmp_path), "/b", True)
    with pytest.raises(UsageError, match="unknown option foo"):
        parse_mount("type=tmpfs,target=/t,foo=1", ctx)


def test_protocol_round_trip_and_garbage():
    msg = protocol.Failed("mount /x: denied", "fix it", 125)
    assert protocol.decode(protocol.encode(msg)) == msg
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(b"\x00garbage")
    with pytest.raises(protocol.ProtocolError, match="closed"):
        protocol.decode(b"")
