"""The keeper records whether the OOM killer struck its container's cgroup
(a hierarchy of plain files; the "container" is a host process that edits
memory.events the way the kernel would, then dies of SIGKILL)."""

from __future__ import annotations

import json
import os

import pytest

from rootless.containers.keeper import Keeper
from tests.fakes.keeper_host import HostWorkload

SCOPE = "/user.slice/app.slice/prun-x.scope"


@pytest.fixture
def hierarchy(tmp_path):
    root = tmp_path / "cg"
    (root / SCOPE.lstrip("/")).mkdir(parents=True)
    (root / "user.slice/app.slice/memory.events").write_text("oom 2\noom_kill 2\n")
    (root / SCOPE.lstrip("/") / "memory.events").write_text("oom 0\noom_kill 0\n")
    record = tmp_path / "cgroup"
    record.write_text(SCOPE + "\n")
    return root, record


def serve(tmp_path, root, record, script: str, restart: str = "no") -> dict:
    """Run a Keeper in a child process over ``sh -c script``; its final state."""
    rundir = tmp_path / "run"
    rundir.mkdir()
    spec = {"rundir": str(rundir), "log_path": str(tmp_path / "ctr.log"),
            "cgroup_record": str(record), "cgroup_root": str(root), "restart": restart}
    pid = os.fork()
    if pid == 0:
        try:
            Keeper(spec, HostWorkload(["sh", "-c", script])).serve()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return json.loads((rundir / "state.json").read_text())


def test_oom_kill_in_the_scope(tmp_path, hierarchy):
    root, _record = hierarchy
    events = root / SCOPE.lstrip("/") / "memory.events"
    state = serve(tmp_path, *hierarchy, f"printf 'oom 1\\noom_kill 1\\n' > {events}; kill -9 $$")
    assert (state["exit_code"], state["oom_killed"]) == (137, True)


def test_scope_already_removed_counts_from_the_parent(tmp_path, hierarchy):
    root, _record = hierarchy
    parent = root / "user.slice/app.slice"
    state = serve(tmp_path, *hierarchy, f"rm -r {parent}/prun-x.scope; "
                  f"printf 'oom 3\\noom_kill 3\\n' > {parent}/memory.events; kill -9 $$")
    assert (state["exit_code"], state["oom_killed"]) == (137, True)


def test_killed_without_oom(tmp_path, hierarchy):
    root, _record = hierarchy
    state = serve(tmp_path, *hierarchy, f"rm -r {root}/user.slice/app.slice/prun-x.scope; "
                  "kill -9 $$")
    assert (state["exit_code"], state["oom_killed"]) == (137, False)


def test_no_cgroup_record(tmp_path, hierarchy):
    root, record = hierarchy
    record.unlink()
    state = serve(tmp_path, root, record, "exit 3")
    assert (state["exit_code"], state["oom_killed"]) == (3, False)
