"""With delegation removed (a drop-in resets user@.service to Delegate=memory
pids: Debian 12's own default delegates cpu too), limits needing cpu or io are
refused with the fix."""

from __future__ import annotations

import subprocess

import pytest

from rootless.cgroups.manager import CgroupRequest, host_view, plan
from rootless.cgroups.limits import parse_limits
from rootless.cgroups.v2 import Hierarchy
from rootless.errors import HostSetupError

pytestmark = pytest.mark.vm


def test_io_limit_refused_with_the_drop_in_hint():
    with pytest.raises(HostSetupError) as err:
        plan(CgroupRequest(parse_limits({"blkio_weight": "300"})), host_view(), Hierarchy())
    assert err.value.message == ("apply --blkio-weight 300: the io controller is not delegated "
                                 "to your systemd user instance (delegated: memory pids)")
    assert "Delegate=cpu cpuset io memory pids" in err.value.hint


def test_delegated_controllers_still_plan():
    limits = parse_limits({"memory": "64m", "pids_limit": "10"})
    assert plan(CgroupRequest(limits), host_view(), Hierarchy()).manager == "systemd"


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    from tests.support.rootfs import build_busybox_rootfs

    return str(build_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs"))


def prun_run(bb, *flags):
    return subprocess.run(["prun", "run", "--rm", "--network", "none", *flags, "--rootfs", bb,
                           "true"], capture_output=True, text=True, timeout=120)


def test_prun_run_cpus_refused_naming_the_cpu_controller(bb):
    out = prun_run(bb, "--cpus", "0.5")
    assert out.returncode == 125, out
    assert ("prun: error: apply --cpus 0.5: the cpu controller is not delegated to your "
            "systemd user instance (delegated: memory pids)") in out.stderr
    assert "hint: as root: mkdir -p /etc/systemd/system/user@.service.d" in out.stderr
    assert "user@.service.d/delegate.conf" in out.stderr


def test_prun_run_io_limit_refused(bb):
    out = prun_run(bb, "--blkio-weight", "300")
    assert out.returncode == 125
    assert "prun: error: apply --blkio-weight 300: the io controller is not delegated" in out.stderr
    assert "hint: as root: mkdir -p /etc/systemd/system/user@.service.d" in out.stderr


def test_prun_run_memory_limit_still_runs(bb):
    out = prun_run(bb, "--memory", "64m")
    assert out.returncode == 0, out.stderr
