"""Manager choice and the errors for limits a host cannot enforce, over a
cgroup hierarchy made of plain files (the root is injected)."""

import pytest

from rootless.cgroups.limits import Limits, parse_limits
from rootless.cgroups.manager import CgroupRequest, HostView, plan
from rootless.cgroups.v2 import Hierarchy
from rootless.errors import HostSetupError, UsageError

UID = 1000
USER_SVC = f"/user.slice/user-{UID}.slice/user@{UID}.service"
OWN = f"{USER_SVC}/app.slice/run-1.service"


def make(tmp_path, path, controllers="", mode=0o755):
    d = tmp_path / path.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    for name, text in {"cgroup.controllers": controllers, "cgroup.procs": "",
                       "cgroup.subtree_control": ""}.items():
        (d / name).write_text(text)
    d.chmod(mode)
    return d


def view(layout="v2", bus="unix:path=/run/user/1000/bus"):
    return HostView(layout, OWN, UID, "alice", bus)


def request(mode="enabled", manager=None, **opts):
    return CgroupRequest(parse_limits(opts), mode, manager)


def test_hybrid_host_refuses_limits_naming_flag_and_controller(tmp_path):
    with pytest.raises(HostSetupError) as err:
        plan(request(memory="64m"), view("hybrid", None), Hierarchy(tmp_path))
    assert err.value.message.startswith("apply --memory 64m: cgroups on this host are a v1/v2 "
                                        "hybrid")
    assert "memory controller" in err.value.message
    assert "--cgroups=disabled" in err.value.hint
    assert err.value.exit_code == 125


def test_no_limits_on_hybrid_runs_without_cgroup(tmp_path):
    assert plan(request(), view("hybrid", None), Hierarchy(tmp_path)).manager == "none"


def test_disabled_refuses_limits(tmp_path):
    with pytest.raises(UsageError, match="--pids-limit 5 with --cgroups=disabled"):
        plan(request("disabled", pids_limit="5"), view(), Hierarchy(tmp_path))
    assert plan(request("disabled"), view(), Hierarchy(tmp_path)).manager == "none"


def test_systemd_preferred_and_missing_controller_named(tmp_path):
    make(tmp_path, USER_SVC, "cpu memory pids")
    fs = Hierarchy(tmp_path)
    assert plan(request(memory="64m", cpus="1"), view(), fs).manager == "systemd"
    with pytest.raises(HostSetupError) as err:
        plan(request(memory="64m", blkio_weight="300"), view(), fs)
    assert err.value.message == ("apply --blkio-weight 300: the io controller is not delegated "
                                 "to your systemd user instance (delegated: cpu memory pids)")
    assert "delegate.conf" in err.value.hint
    assert "Delegate=cpu cpuset io memory pids" in err.value.hint


def test_no_bus_uses_delegated_own_cgroup(tmp_path):
    make(tmp_path, OWN, "cpu io memory pids")
    p = plan(request(memory="64m"), view(bus=None), Hierarchy(tmp_path))
    assert (p.manager, p.parent) == ("cgroupfs", OWN)


def test_no_bus_and_not_delegated(tmp_path):
    make(tmp_path, OWN, "cpu memory pids", mode=0o555)
    fs = Hierarchy(tmp_path)
    for f in ("cgroup.procs", "cgroup.subtree_control"):
        (tmp_path / OWN.lstrip("/") / f).chmod(0o444)
    if fs.writable(OWN):
        pytest.skip("running as root: file modes do not stop writes")
    with pytest.raises(HostSetupError) as err:
        plan(request(cpus="0.5"), view(bus=None), fs)
    assert "apply --cpus 0.5: no systemd user instance" in err.value.message
    assert "loginctl enable-linger alice" in err.value.hint
    assert plan(request(), view(bus=None), fs).manager == "none"


def test_forced_systemd_without_bus(tmp_path):
    with pytest.raises(HostSetupError, match="use --cgroup-manager=systemd: no systemd user bus"):
        plan(request(manager="systemd"), view(bus=None), Hierarchy(tmp_path))


def test_cgroupfs_missing_controller(tmp_path):
    make(tmp_path, OWN, "memory pids")
    with pytest.raises(HostSetupError, match=r"apply --cpus 2: the cpu controller is not "
                                             r"available in your cgroup"):
        plan(request(manager="cgroupfs", cpus="2"), view(), Hierarchy(tmp_path))


def test_bad_mode(tmp_path):
    with pytest.raises(UsageError, match="--cgroups 'off'"):
        plan(CgroupRequest(Limits(), "off"), view(), Hierarchy(tmp_path))
