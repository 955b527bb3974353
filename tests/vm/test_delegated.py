"""cgroup v2 limits through a delegated systemd scope, in the systemd guest
(scripts/vm-test, phase "delegated": Delegate=cpu cpuset io memory pids).

Each test holds its process before exec until it is in the cgroup, as the
supervisor does with a container's init."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from rootless.cgroups.manager import cgroup_of, join
from tests.vm.cgroup_helpers import contain

pytestmark = pytest.mark.vm
PY = [sys.executable, "-S", "-c"]
ALLOC = "x=$(head -c 200m /dev/zero | tr '\\0' a); echo survived"   # sh gets OOM-killed


def wait_gone(fs, path, timeout=10):
    deadline = time.monotonic() + timeout
    while fs.exists(path):
        assert time.monotonic() < deadline, f"{path} still exists"
        time.sleep(0.05)


def test_memory_limit_oom_kills_and_scope_goes_away():
    held, cg = contain([*PY, "b = bytearray(200 << 20); print('survived')"], memory="64m")
    assert cg.manager == "systemd" and cg.unit.startswith("prun-")
    assert cg.path.endswith(f"/{cg.unit}")
    assert (cg.fs.read(cg.path, "memory.max") or "").strip() == str(64 << 20)
    held.release()
    code = held.proc.wait()
    assert code == -9, held.proc.stdout.read()
    # The emptied scope is collected by systemd (CollectMode=inactive-or-failed).
    wait_gone(cg.fs, cg.path)
    cg.close()   # already gone: not an error
    assert cg.oom_killed


def test_pids_limit_stops_a_fork_bomb():
    bomb = ("import os, time\nn = 0\n"
            "for _ in range(40):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\n"
            "print(n, flush=True)\n")
    held, cg = contain([*PY, bomb], pids_limit="8")
    held.release()
    line = held.proc.stdout.readline()
    assert int(line) == 7     # itself + 7 children = pids.max
    st = cg.stats()
    assert st.pids == 8 and st.pids_limit == 8
    cg.close()
    held.proc.wait()
    wait_gone(cg.fs, cg.path)


def test_cpu_quota_throttles_and_stats_are_live():
    held, cg = contain([*PY, "import time\nt = time.time() + 1.5\nwhile time.time() < t: pass"],
                             cpus="0.2")
    assert cg.fs.read(cg.path, "cpu.max").strip() == "20000 100000"
    held.release()
    time.sleep(1.0)   # read while it runs: systemd removes the scope once it is empty
    stat = cg.fs.read(cg.path, "cpu.stat") or ""
    throttled = int(next(l.split()[1] for l in stat.splitlines() if l.startswith("nr_throttled")))
    assert throttled > 0, stat
    st = cg.stats()
    assert st.cpu_usec > 50_000 and st.memory is not None
    held.proc.wait()
    cg.close()


def test_exec_processes_join_and_freeze():
    held, cg = contain(["sleep", "30"], memory="64m")
    held.release()
    joiner = subprocess.Popen(["sleep", "30"])
    join(held.proc.pid, joiner.pid)   # what prun exec does
    assert cgroup_of(joiner.pid) == cg.path
    assert sorted(cg.fs.procs(cg.path)) == sorted([held.proc.pid, joiner.pid])
    cg.fs.freeze(cg.path, True)
    assert cg.fs.frozen(cg.path)
    cg.fs.freeze(cg.path, False)
    cg.close()
    assert held.proc.wait() < 0 and joiner.wait() < 0   # StopUnit signals what is left
    wait_gone(cg.fs, cg.path)


def test_cgroupfs_manager_in_a_delegated_unit():
    own = cgroup_of(os.getpid())
    held, cg = contain([*PY, "b = bytearray(200 << 20)"], "cgroupfs", memory="64m",
                             pids_limit="20")
    assert cg.manager == "cgroupfs" and cg.path.startswith(own)
    assert cgroup_of(os.getpid()) == own + "/init"   # moved out: no internal processes
    held.release()
    assert held.proc.wait() == -9
    cg.close()
    assert cg.oom_killed
    assert not cg.fs.exists(cg.path)


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    from tests.support.rootfs import build_busybox_rootfs

    return str(build_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs"))


def prun(*args, timeout=120):
    if args[0] == "run":   # slirp4netns in UML would only add seconds
        args = ("run", "--network", "none", *args[1:])
    return subprocess.run(["prun", *args], capture_output=True, text=True, timeout=timeout)


def scopes():
    out = subprocess.run(["systemctl", "--user", "list-units", "--all", "--plain",
                          "--no-legend", "prun-*"], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_prun_run_memory_limit_exits_137_and_leaves_no_scope(bb):
    out = prun("run", "--rm", "--memory", "64m", "--rootfs", bb, "sh", "-c", ALLOC)
    assert out.returncode == 137, out.stderr
    assert scopes() == []


def inspect(name):
    import json

    out = prun("inspect", name)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]["State"]


def test_inspect_shows_oom_killed_foreground_and_detached(bb):
    out = prun("run", "--name", "oomfg", "--memory", "64m", "--rootfs", bb, "sh", "-c", ALLOC)
    assert out.returncode == 137, out.stderr
    out = prun("run", "-d", "--name", "oomd", "--memory", "64m", "--rootfs", bb,
               "sh", "-c", ALLOC)
    assert out.returncode == 0, out.stderr
    out = prun("run", "--name", "calm", "--memory", "64m", "--rootfs", bb, "true")
    assert out.returncode == 0, out.stderr
    try:
        waited = prun("wait", "oomd")
        assert waited.stdout == "137\n", waited
        for name in ("oomfg", "oomd"):
            state = inspect(name)
            assert (state["Status"], state["ExitCode"], state["OOMKilled"]) == \
                ("exited", 137, True), (name, state)
        state = inspect("calm")
        assert (state["ExitCode"], state["OOMKilled"]) == (0, False), state
    finally:
        rm = prun("rm", "-f", "oomfg", "oomd", "calm")
    assert rm.returncode == 0, rm.stderr


def test_prun_run_pids_limit(bb):
    out = prun("run", "--rm", "--pids-limit", "8", "--rootfs", bb, "sh", "-c",
               "for i in $(seq 20); do sleep 3 & done; wait; echo done")
    assert "can't fork" in out.stderr + out.stdout, out
    assert scopes() == []


def test_prun_run_without_limits_gets_a_scope(bb):
    out = prun("run", "--rm", "--rootfs", bb, "sh", "-c", "cat /proc/self/cgroup")
    assert out.returncode == 0, out.stderr
    assert "prun-" in out.stdout and ".scope" in out.stdout


def test_detached_container_stats_pause_update_and_rm(bb):
    import json

    out = prun("run", "-d", "--name", "busy", "--memory", "64m", "--pids-limit", "50",
               "--rootfs", bb, "sh", "-c", "while :; do :; done")
    assert out.returncode == 0, out.stderr
    try:
        out = prun("stats", "--no-stream", "--format", "json", "busy")
        assert out.returncode == 0, out.stderr
        (row,) = json.loads(out.stdout)
        assert row["memory_limit"] == 64 << 20 and row["pids_limit"] == 50
        assert row["pids"] >= 1 and row["memory"] > 0 and row["cpu_percent"] > 10
        events = f"/sys/fs/cgroup{row['cgroup']}/cgroup.events"
        # exec'd processes land in the container's cgroup (as its cgroup
        # namespace shows it: the same line as the init's)
        out = prun("exec", "busy", "sh", "-c", "cat /proc/self/cgroup /proc/1/cgroup")
        assert out.returncode == 0, out.stderr
        mine, init = out.stdout.splitlines()
        assert mine == init, out.stdout
        table = prun("stats", "--no-stream").stdout
        assert row["id"][:12] in table and "64.0MiB" in table
        assert inspect("busy")["Paused"] is False
        assert prun("pause", "busy").returncode == 0
        assert "frozen 1" in open(events).read()
        assert inspect("busy")["Paused"] is True
        (paused,) = json.loads(prun("stats", "--no-stream", "--format", "json", "busy").stdout)
        assert paused["cpu_percent"] < 5
        assert prun("unpause", "busy").returncode == 0
        assert "frozen 0" in open(events).read()
        assert prun("update", "--memory", "128m", "--cpus", "0.5", "busy").returncode == 0
        (updated,) = json.loads(prun("stats", "--no-stream", "--format", "json", "busy").stdout)
        assert updated["memory_limit"] == 128 << 20
        assert open(f"/sys/fs/cgroup{row['cgroup']}/cpu.max").read().strip() == "50000 100000"
    finally:
        rm = prun("rm", "-f", "busy")
    assert rm.returncode == 0, rm.stderr
    deadline = time.monotonic() + 20
    while scopes():
        assert time.monotonic() < deadline, scopes()
        time.sleep(0.2)
    out = prun("pause", "busy")
    assert out.returncode == 125 and "prun: error: find container 'busy'" in out.stderr
