"""The image commands as a user types them: load, save, import, images,
tag, rmi, inspect, history, prune — real prun processes, real files."""

from __future__ import annotations

import json
import tarfile

import pytest

from tests.support import images
from tests.support.images import TarBuilder, compress
from tests.support.prun import prun

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busybox_archive(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli-images")
    image = images.busybox_image(work)
    return image, images.docker_archive(image, work / "busybox.tar", ["busybox:latest"])


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_load_images_tag_inspect_rmi(busybox_archive):
    image, path = busybox_archive
    assert ok(prun("load", "-i", str(path))) == \
        "Loaded image: docker.io/library/busybox:latest\n"
    ok(prun("tag", "busybox", "mybox:1", "quay.io/me/box"))
    table = ok(prun("images")).splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    repos = sorted(line.split()[0] + ":" + line.split()[1] for line in table[1:])
    assert repos == ["docker.io/library/busybox:latest", "localhost/mybox:1",
                     "quay.io/me/box:latest"]
    assert ok(prun("images", "-q")) == image.id[7:19] + "\n"
    info = json.loads(ok(prun("image", "inspect", "mybox:1")))[0]
    assert info["Id"] == image.id[7:] and info["Config"]["Cmd"] == ["sh"]
    assert "layer 1" in ok(prun("history", "busybox"))
    assert ok(prun("rmi", "mybox:1")) == "Untagged: localhost/mybox:1\n"
    ok(prun("untag", "busybox", "quay.io/me/box"))
    assert json.loads(ok(prun("images", "--format", "json")))[0]["Names"] == \
        ["docker.io/library/busybox:latest"]
    ok(prun("tag", "busybox", "quay.io/me/box"))
    refused = prun("rmi", image.id[7:19])
    assert refused.returncode == 125 and "several names" in refused.stderr
    out = ok(prun("rmi", "-f", image.id[7:19]))
    assert out.splitlines()[-1] == f"Deleted: {image.id[7:]}"
    assert ok(prun("images", "-q")) == ""


def test_rmi_of_a_missing_image_exits_125_with_a_hint():
    result = prun("rmi", "nosuch")
    assert result.returncode == 125
    assert result.stderr.splitlines() == ["prun: error: find image nosuch: not in the local store",
                                          "hint: pull it first: prun pull nosuch"]


def test_save_load_round_trip_through_stdin_and_stdout(busybox_archive, tmp_path, monkeypatch):
    image, path = busybox_archive
    ok(prun("load", "-q", "-i", str(path)))
    saved = prun("save", "busybox", input=b"")
    assert saved.returncode == 0, saved.stderr
    with tarfile.open(fileobj=__import__("io").BytesIO(saved.stdout)) as t:
        assert "manifest.json" in t.getnames()
    ok(prun("save", "--format", "oci-archive", "-o", str(tmp_path / "oci.tar"), "busybox"))
    monkeypatch.setenv("PRUN_ROOT", str(tmp_path / "second"))
    loaded = prun("load", input=saved.stdout)
    assert loaded.returncode == 0 and b"docker.io/library/busybox:latest" in loaded.stdout
    monkeypatch.setenv("PRUN_ROOT", str(tmp_path / "third"))
    ok(prun("load", "-i", str(tmp_path / "oci.tar")))
    assert ok(prun("images", "-q", "--no-trunc")).strip() == image.id[7:]


def test_import_with_changes(tmp_path):
    rootfs = tmp_path / "rootfs.tar.gz"
    rootfs.write_bytes(compress(TarBuilder().file("bin/tool", "x", mode=0o755).build(), "gzip"))
    image_id = ok(prun("import", "-c", 'CMD ["/bin/tool"]', "-c", "ENV A=1", "-m", "hi",
                       str(rootfs), "tool:2")).strip()
    info = json.loads(ok(prun("image", "inspect", "tool:2")))[0]
    assert info["Id"] == image_id and info["RepoTags"] == ["localhost/tool:2"]
    assert info["Config"] == {"Cmd": ["/bin/tool"], "Env": ["A=1"]}
    bad = prun("import", "-c", "FROM x", str(rootfs))
    assert bad.returncode == 125 and "unsupported instruction FROM" in bad.stderr


def test_prune_removes_only_dangling_images(busybox_archive, tmp_path):
    image, _ = busybox_archive
    ok(prun("load", "-q", "-i", str(image.layout)))   # OCI layout: unnamed
    rootfs = tmp_path / "r.tar"
    rootfs.write_bytes(TarBuilder().file("f", "x").build())
    kept = ok(prun("import", str(rootfs), "kept")).strip()
    assert ok(prun("image", "prune", "-f")).strip() == image.id[7:]
    assert ok(prun("images", "-q", "--no-trunc")).strip() == kept


def test_bad_reference_is_a_usage_error():
    result = prun("pull", "Bad/Name")
    assert result.returncode == 125
    assert "repository name must be lowercase" in result.stderr
