"""Finding a running container's cgroup by id, prefix or name (runtime records)."""

import pytest

from rootless.cgroups import lookup
from rootless.cgroups.v2 import Hierarchy
from rootless.errors import ConflictError, ContainerError, NotFoundError
from rootless.paths import Paths

A = "ab" + "0" * 62
B = "ac" + "1" * 62


@pytest.fixture
def paths(tmp_path):
    p = Paths(data=tmp_path / "data", runtime=tmp_path / "run")
    for cid in (A, B):
        (p.runtime / "containers" / cid).mkdir(parents=True)
    lookup.record(p, A, "/user.slice/app.slice/prun-a.scope")
    names = p.data / "containers" / "names"
    names.mkdir(parents=True)
    (names / "web").symlink_to(A)
    (names / "db").symlink_to(B)
    return p


@pytest.fixture
def fs(tmp_path):
    (tmp_path / "cg/user.slice/app.slice/prun-a.scope").mkdir(parents=True)
    return Hierarchy(tmp_path / "cg")


def test_by_id_prefix_and_name(paths, fs):
    want = (A, "/user.slice/app.slice/prun-a.scope")
    assert lookup.find(A, paths, fs) == want
    assert lookup.find("ab", paths, fs) == want
    assert lookup.find("web", paths, fs) == want


def test_cgroup_gone_means_not_running(paths, tmp_path):
    with pytest.raises(NotFoundError, match="find container 'web': it is not running"):
        lookup.find("web", paths, Hierarchy(tmp_path / "empty"))


def test_ambiguous_prefix(paths, fs):
    with pytest.raises(ConflictError, match="find container 'a': the id prefix is ambiguous"):
        lookup.find("a", paths, fs)


def test_running_without_cgroup(paths, fs):
    with pytest.raises(ContainerError, match="find the cgroup of container db: it runs without"):
        lookup.find("db", paths, fs)


def test_record_skipped_once_the_container_is_gone(paths, tmp_path):
    lookup.record(paths, "f" * 64, "/x")
    assert not (paths.runtime / "containers" / ("f" * 64)).exists()
