"""cgroup v2 limits through a delegated systemd scope, in the systemd guest
(scripts/vm-test, phase "delegated": Delegate=cpu cpuset io memory pids).

Each test holds its process before exec until it is in the cgroup, as the
supervisor does with a container's init."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trio

from rootless.cgroups.manager import cgroup_of
from tests.vm.cgroup_helpers import contain

pytestmark = pytest.mark.vm
PY = [sys.executable, "-S", "-c"]


async def wait_gone(fs, path, timeout=10):
    with trio.fail_after(timeout):
        while fs.exists(path):
            await trio.sleep(0.05)


async def test_memory_limit_oom_kills_and_scope_goes_away():
    held, cg = await contain([*PY, "b = bytearray(200 << 20); print('survived')"], memory="64m")
    assert cg.manager == "systemd" and cg.unit.startswith("prun-")
    assert cg.path.endswith(f"/{cg.unit}")
    assert (cg.fs.read(cg.path, "memory.max") or "").strip() == str(64 << 20)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cg.watch_oom)
        held.release()
        code = await trio.to_thread.run_sync(held.proc.wait)
        nursery.cancel_scope.cancel()
    assert code == -9, held.proc.stdout.read()
    assert cg.oom_killed
    # The emptied scope is collected by systemd (CollectMode=inactive-or-failed).
    await wait_gone(cg.fs, cg.path)
    await cg.close()   # already gone: not an error


async def test_pids_limit_stops_a_fork_bomb():
    bomb = ("import os, time\nn = 0\n"
            "for _ in range(40):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\n"
            "print(n, flush=True)\n")
    held, cg = await contain([*PY, bomb], pids_limit="8")
    held.release()
    line = await trio.to_thread.run_sync(held.proc.stdout.readline)
    assert int(line) == 7     # itself + 7 children = pids.max
    st = cg.stats()
    assert st.pids == 8 and st.pids_limit == 8
    await cg.close()
    await trio.to_thread.run_sync(held.proc.wait)
    await wait_gone(cg.fs, cg.path)


async def test_cpu_quota_throttles_and_stats_are_live():
    held, cg = await contain([*PY, "import time\nt = time.time() + 1.5\nwhile time.time() < t: pass"],
                             cpus="0.2")
    assert cg.fs.read(cg.path, "cpu.max").strip() == "20000 100000"
    held.release()
    await trio.to_thread.run_sync(held.proc.wait)
    stat = cg.fs.read(cg.path, "cpu.stat") or ""
    throttled = int(next(l.split()[1] for l in stat.splitlines() if l.startswith("nr_throttled")))
    assert throttled > 0, stat
    st = cg.stats()
    assert st.cpu_usec > 100_000 and st.memory is not None
    await cg.close()


async def test_exec_processes_join_and_freeze():
    held, cg = await contain(["sleep", "30"], memory="64m")
    held.release()
    joiner = subprocess.Popen(["sleep", "30"])
    await cg.attach(joiner.pid)
    assert cgroup_of(joiner.pid) == cg.path
    assert sorted(cg.fs.procs(cg.path)) == sorted([held.proc.pid, joiner.pid])
    cg.fs.freeze(cg.path, True)
    assert cg.fs.frozen(cg.path)
    cg.fs.freeze(cg.path, False)
    await cg.close()
    assert held.proc.wait() < 0 and joiner.wait() < 0   # StopUnit signals what is left
    await wait_gone(cg.fs, cg.path)


async def test_cgroupfs_manager_in_a_delegated_unit():
    own = cgroup_of(os.getpid())
    held, cg = await contain([*PY, "b = bytearray(200 << 20)"], "cgroupfs", memory="64m",
                             pids_limit="20")
    assert cg.manager == "cgroupfs" and cg.path.startswith(own)
    assert cgroup_of(os.getpid()) == own + "/init"   # moved out: no internal processes
    held.release()
    assert await trio.to_thread.run_sync(held.proc.wait) == -9
    await cg.close()
    assert cg.oom_killed
    assert not cg.fs.exists(cg.path)
