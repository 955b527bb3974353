"""`prun run` limit flags on a host without cgroup v2 delegation (this CI
host: no systemd, a v1/v2 hybrid): a limit is refused with exit 125, the
flag, the controller and the fix; without limits, or with
--cgroups=disabled, the container runs. The enforcing side runs in the
systemd guest (tests/vm)."""

from __future__ import annotations

import pytest

from rootless.preflight import Host, cgroup_layout
from tests.integration.run_support import prun, require_run_host
from tests.support.caps import require
from tests.support.rootfs import build_busybox_rootfs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    require_run_host()
    return str(build_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs"))


def test_limit_refused_without_unified_cgroup_v2(bb):
    layout, _ = cgroup_layout(Host())
    require(layout != "v2", "this host has the unified cgroup v2 hierarchy (tests/vm covers it)")
    out = prun("run", "--rm", "--memory", "64m", "--cpus", "0.5", "--rootfs", bb, "true")
    assert out.returncode == 125
    assert (f"prun: error: apply --cpus 0.5: cgroups on this host are "
            f"{'a v1/v2 hybrid' if layout == 'hybrid' else 'v1'}, not the unified cgroup v2 "
            "hierarchy, so the cpu controller cannot be delegated to an unprivileged user"
            ) in out.stderr
    assert "hint: boot the host with systemd.unified_cgroup_hierarchy=1" in out.stderr
    assert "Traceback" not in out.stderr


def test_without_limits_and_with_cgroups_disabled_it_runs(bb):
    assert prun("run", "--rm", "--rootfs", bb, "true").returncode == 0
    out = prun("run", "--rm", "--cgroups=disabled", "--rootfs", bb, "echo", "ok")
    assert (out.returncode, out.stdout) == (0, "ok\n")


@pytest.mark.parametrize("args,message", [
    (["--cgroups=disabled", "--pids-limit", "10"],
     "use --pids-limit 10 with --cgroups=disabled: a limit needs a cgroup"),
    (["--memory", "lots"], "parse --memory 'lots': not a size"),
    (["--cpus", "1", "--cpu-quota", "50000"],
     "use --cpus 1 with --cpu-quota 50000: they set the same limit"),
])
def test_bad_limit_flags_exit_125(bb, args, message):
    out = prun("run", "--rm", *args, "--rootfs", bb, "true")
    assert out.returncode == 125
    assert f"prun: error: {message}" in out.stderr
