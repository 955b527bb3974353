"""Preflight findings for hosts we cannot produce here, through a fake Host."""

from __future__ import annotations

import os
import stat

from rootless import preflight
from rootless.preflight import DEGRADED, MISSING, OK
from tests.fakes.host import FakeHost


def test_a_healthy_host_is_ready():
    caps = preflight.probe(FakeHost())
    assert caps.ready
    assert caps.get("user namespaces").status == OK
    assert caps.get("/etc/subuid range").detail.startswith("65536 ids (100000-165535)")


def test_missing_subuid_is_degraded_with_the_usermod_fix():
    caps = preflight.probe(FakeHost(files={"/etc/subuid": "someoneelse:100000:65536\n"}))
    f = caps.get("/etc/subuid range")
    assert f.status == DEGRADED
    assert f.fix == "sudo usermod --add-subuids 100000-165535 alice"
    assert caps.ready  # a single-id mapping still runs containers


def test_subuid_by_numeric_uid_and_small_ranges():
    caps = preflight.probe(FakeHost(files={"/etc/subuid": "1000:100000:1000\n"}))
    f = caps.get("/etc/subuid range")
    assert f.status == DEGRADED
    assert "1000 ids" in f.detail and "65536 recommended" in f.detail


def test_unopenable_dev_fuse_is_missing_and_names_chmod():
    caps = preflight.probe(FakeHost(unopenable={"/dev/fuse": "Permission denied"}))
    f = caps.get("/dev/fuse")
    assert f.status == MISSING
    assert "Permission denied" in f.detail
    assert f.fix.startswith("sudo chmod 0666 /dev/fuse")
    assert not caps.ready


def test_userns_disabled_by_sysctl():
    caps = preflight.probe(FakeHost(files={"/proc/sys/user/max_user_namespaces": "0\n"}))
    f = caps.get("user namespaces")
    assert f.status == MISSING and "max_user_namespaces" in f.fix
    assert not caps.ready


def test_apparmor_restriction_is_named():
    host = FakeHost(files={"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"},
                    unshare_error="Permission denied")
    f = preflight.probe(host).get("user namespaces")
    assert f.status == MISSING
    assert "AppArmor" in f.detail and "apparmor_restrict_unprivileged_userns=0" in f.fix


def test_newuidmap_without_setuid_is_degraded():
    host = FakeHost(modes={"/usr/bin/newuidmap": stat.S_IFREG | 0o755})
    f = preflight.probe(host).get("newuidmap/newgidmap")
    assert f.status == DEGRADED and f.fix == "sudo apt-get install uidmap"


def test_missing_slirp4netns_and_libfuse():
    caps = preflight.probe(FakeHost(tools={"newuidmap", "newgidmap"}, libraries=set()))
    assert caps.get("slirp4netns").status == MISSING
    assert caps.get("slirp4netns").fix == "sudo apt-get install slirp4netns"
    assert caps.get("libfuse3").fix == "sudo apt-get install libfuse3-3"


def test_cgroup_v2_with_delegation_is_ok_and_hybrid_is_degraded():
    assert preflight.probe(FakeHost()).get("cgroup v2 delegation").status == OK
    hybrid = FakeHost(files={"/proc/self/mountinfo":
                             "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"})
    f = preflight.probe(hybrid).get("cgroup v2 delegation")
    assert f.status == DEGRADED and "hybrid" in f.detail and "--cgroups=disabled" in f.fix


def test_undelegated_controllers_name_the_drop_in():
    host = FakeHost(files={
        "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/cgroup.controllers":
            "cpu pids\n"})
    f = preflight.probe(host).get("cgroup v2 delegation")
    assert f.status == DEGRADED
    assert "missing: memory, io" in f.detail and "delegate.conf" in f.fix


def test_storage_on_nfs_warns_and_noexec_is_missing():
    nfs = preflight.probe(FakeHost(fs_type=0x6969)).get("storage filesystem")
    assert nfs.status == DEGRADED and "nfs" in nfs.detail
    noexec = preflight.probe(FakeHost(mount_opts={"rw", "noexec"}))
    assert noexec.get("storage filesystem").status == MISSING
    assert not noexec.ready


def test_runtime_dir_unset_falls_back_with_a_hint():
    f = preflight.probe(FakeHost(env={"PATH": "/usr/bin"})).get("XDG_RUNTIME_DIR")
    assert f.status == DEGRADED and "enable-linger alice" in f.fix


def test_real_host_probe_runs(tmp_path):
    # The real Host must at least produce every finding without raising.
    caps = preflight.probe(preflight.Host(env={**os.environ, "PRUN_ROOT": str(tmp_path)}))
    assert [f.name for f in caps.findings] == [
        "user namespaces", "/etc/subuid range", "/etc/subgid range", "newuidmap/newgidmap",
        "/dev/fuse", "libfuse3", "slirp4netns", "/dev/net/tun", "cgroup v2 delegation",
        "systemd user instance", "XDG_RUNTIME_DIR", "storage filesystem"]
