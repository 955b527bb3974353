"""The seed image layer: what `prun system init` imports as localhost/busybox."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from rootless.errors import HostSetupError
from rootless.images import seed
from tests.support import caps


@pytest.fixture(scope="module")
def layer() -> tarfile.TarFile:
    caps.require_tool("busybox")
    return tarfile.open(fileobj=io.BytesIO(seed.busybox_layer()))


def test_layer_holds_a_runnable_shell_and_users(layer):
    members = {m.name: m for m in layer.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert members["tmp"].mode == 0o1777
    passwd = layer.extractfile("etc/passwd").read().decode()
    assert passwd.startswith("root:x:0:0:") and "nobody:x:65534:65534:" in passwd
    assert "nogroup:x:65534:" in layer.extractfile("etc/group").read().decode()


def test_layer_is_reproducible():
    caps.require_tool("busybox")
    assert seed.busybox_layer() == seed.busybox_layer()


def test_dynamic_busybox_is_refused_with_the_package_to_install(tmp_path):
    with pytest.raises(HostSetupError) as err:
        seed.busybox_layer(Path("/bin/true"))
    assert "not a static binary" in err.value.message
    assert "busybox-static" in err.value.hint


def test_missing_busybox_names_the_path(tmp_path):
    with pytest.raises(HostSetupError) as err:
        seed.busybox_layer(tmp_path / "busybox")
    assert str(tmp_path / "busybox") in err.value.message
