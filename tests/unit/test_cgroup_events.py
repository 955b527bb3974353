"""OOM kills from memory.events over a hierarchy of plain files."""

from rootless.cgroups.events import OomWatch, oom_kills

SCOPE = "/app.slice/prun-x.scope"


def make(tmp_path, parent_kills="1", own_kills="0"):
    (tmp_path / "app.slice/prun-x.scope").mkdir(parents=True)
    (tmp_path / "app.slice/memory.events").write_text(f"oom 1\noom_kill {parent_kills}\n")
    (tmp_path / "app.slice/prun-x.scope/memory.events").write_text(f"oom_kill {own_kills}\n")
    return OomWatch(SCOPE, str(tmp_path))


def test_own_count_while_the_cgroup_exists(tmp_path):
    watch = make(tmp_path)
    assert watch.kills() == 0
    (tmp_path / "app.slice/prun-x.scope/memory.events").write_text("oom 1\noom_kill 1\n")
    assert watch.kills() == 1


def test_parent_delta_once_the_cgroup_is_gone(tmp_path):
    watch = make(tmp_path, parent_kills="4")
    (tmp_path / "app.slice/prun-x.scope/memory.events").unlink()
    (tmp_path / "app.slice/prun-x.scope").rmdir()
    assert watch.kills() == 0
    (tmp_path / "app.slice/memory.events").write_text("oom_kill 5\n")
    assert watch.kills() == 1


def test_no_memory_accounting_is_none(tmp_path):
    assert oom_kills("/nowhere", str(tmp_path)) is None
    assert OomWatch("/nowhere/x", str(tmp_path)).kills() is None
