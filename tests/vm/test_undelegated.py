"""Without the delegate.conf drop-in (Debian 12's user@.service delegates
cpu memory pids only), a limit needing io is refused with the fix."""

from __future__ import annotations

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
                                 "to your systemd user instance (delegated: cpu memory pids)")
    assert "Delegate=cpu cpuset io memory pids" in err.value.hint


def test_delegated_controllers_still_plan():
    limits = parse_limits({"memory": "64m", "cpus": "0.5", "pids_limit": "10"})
    assert plan(CgroupRequest(limits), host_view(), Hierarchy()).manager == "systemd"


def test_prun_run_io_limit_refused(tmp_path):
    import subprocess

    from tests.support.rootfs import build_busybox_rootfs

    bb = str(build_busybox_rootfs(tmp_path / "rootfs"))
    out = subprocess.run(["prun", "run", "--rm", "--network", "none", "--blkio-weight", "300",
                          "--rootfs", bb, "true"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 125
    assert "prun: error: apply --blkio-weight 300: the io controller is not delegated" in out.stderr
    assert "hint: as root: mkdir -p /etc/systemd/system/user@.service.d" in out.stderr
