"""Reading and writing cgroup v2 files over a root of plain files."""

import pytest

from rootless.cgroups.v2 import Hierarchy, own_cgroup
from rootless.errors import ContainerError


def test_stats_parse_and_missing_controllers(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (d / "memory.current").write_text("4096\n")
    (d / "memory.max").write_text("max\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (d / "io.stat").write_text("8:0 rbytes=100 wbytes=20 rios=1 wios=1\n8:16 rbytes=1 wbytes=2\n")
    st = Hierarchy(tmp_path).stats("/c")
    assert (st.cpu_usec, st.memory, st.memory_limit) == (1500, 4096, None)
    assert (st.io_read, st.io_write, st.oom_kills) == (101, 22, 1)
    assert st.pids is None and st.pids_limit is None   # pids controller not enabled


def test_apply_writes_one_line_per_write(tmp_path):
    (tmp_path / "c").mkdir()
    for name in ("pids.max", "io.weight"):
        (tmp_path / "c" / name).write_text("")
    fs = Hierarchy(tmp_path)
    fs.apply("/c", {"pids.max": "8", "io.weight": "default 100\n8:0 200"})
    assert (tmp_path / "c/pids.max").read_text() == "8"
    # plain files keep the concatenation; the kernel takes each write as one entry
    assert (tmp_path / "c/io.weight").read_text() == "default 1008:0 200"


def test_write_to_a_missing_controller_file_names_it(tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(ContainerError, match=r"write '64' to .*/c/memory.max: No such file"):
        Hierarchy(tmp_path).write("/c", "memory.max", "64")


def test_own_cgroup():
    assert own_cgroup("12:pids:/\n0::/user.slice/x.scope\n") == "/user.slice/x.scope"
