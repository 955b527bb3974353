"""The store on real files: layers verified and unpacked once, images
visible only when whole, load/save/import round trips, shared layers kept
until their last image goes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from rootless.errors import ConflictError, NotFoundError, UsageError
from rootless.images import archive, manage
from rootless.images.blobio import CorruptBlob
from rootless.images.store import ImageNotFound, Store, resolve_for_run
from rootless.images.unpack import UnsafeLayer
from tests.support import images
from tests.support.images import TarBuilder, compress, sha256


@pytest.fixture
def store(private_store) -> Store:
    s = Store(private_store)
    yield s
    s.close()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="module")
def busybox(work):
    return images.busybox_image(work)


def leftovers(store: Store) -> list[str]:
    return os.listdir(store.tmp)


LAYER = TarBuilder().dir("etc").file("etc/hello", "hi\n").build()


@pytest.mark.parametrize("compression", ["gzip", "zstd", None])
def test_ingest_verifies_and_unpacks_each_compression(store, compression):
    blob = compress(LAYER, compression)
    rec = store.ingest_layer(io.BytesIO(blob), media_type="x", diff_id=sha256(LAYER),
                             blob_digest=sha256(blob))
    assert (rec.diff_id, rec.blob_digest, rec.size) == (sha256(LAYER), sha256(blob), len(LAYER))
    assert store.blob_path(rec.blob_digest).read_bytes() == blob
    assert (store.layer_dir(rec.diff_id) / "etc/hello").read_text() == "hi\n"
    assert leftovers(store) == []


def test_digest_mismatch_stores_nothing(store):
    blob = compress(LAYER, "gzip")
    with pytest.raises(CorruptBlob, match="expected sha256:0000"):
        store.ingest_layer(io.BytesIO(blob), media_type="x", blob_digest="sha256:" + "0" * 64)
    with pytest.raises(CorruptBlob, match="uncompressed layer has digest"):
        store.ingest_layer(io.BytesIO(blob), media_type="x", diff_id="sha256:" + "1" * 64)
    assert os.listdir(store.layers) == [] and os.listdir(store.blobs) == []
    assert leftovers(store) == []


def test_a_blob_longer_than_declared_is_refused_while_streaming(store):
    blob = compress(LAYER, None)
    with pytest.raises(CorruptBlob, match="larger than the 100 bytes"):
        store.ingest_layer(io.BytesIO(blob), media_type="x", blob_size=100)
    assert os.listdir(store.layers) == [] and leftovers(store) == []


def test_hostile_layer_stores_nothing(store):
    bad = TarBuilder().symlink("x", "/").file("x/etc/passwd", "pwned").build()
    with pytest.raises(UnsafeLayer):
        store.ingest_layer(io.BytesIO(bad), media_type="x")
    assert os.listdir(store.layers) == [] and leftovers(store) == []


def test_truncated_gzip_is_corrupt(store):
    blob = compress(LAYER, "gzip")[:-20]
    with pytest.raises(CorruptBlob):
        store.ingest_layer(io.BytesIO(blob), media_type="x")
    assert leftovers(store) == []


def test_docker_archive_load_save_round_trip(store, busybox, work, tmp_path):
    arch = images.docker_archive(busybox, work / "bb.tar", ["busybox:latest", "me/bb:1"])
    loaded = archive.load(arch, store)
    assert [item.image_id for item in loaded] == [busybox.id]
    assert loaded[0].names == ["docker.io/library/busybox:latest", "docker.io/me/bb:1"]
    run = resolve_for_run("busybox", store=store)
    assert run.id == busybox.id and (run.layer_dirs[0] / "bin/busybox").is_file()
    saved = tmp_path / "saved.tar"
    with open(saved, "wb") as f:
        archive.save([(busybox.id, ["docker.io/library/busybox:latest"])], f, store)
    with tarfile.open(saved) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    other = Store(tmp_path / "other")
    assert archive.load(saved, other)[0].image_id == busybox.id
    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", f"docker-archive:{saved}"], check=True,
                             capture_output=True, text=True).stdout
        assert json.loads(out)["Layers"] == busybox.diff_ids


def test_oci_archive_and_layout_round_trip(store, busybox, tmp_path):
    loaded = archive.load(busybox.layout, store)   # an OCI layout directory
    assert loaded[0].image_id == busybox.id and loaded[0].names == []
    manage.tag(store, busybox.id[7:19], ["bb:oci"])
    saved = tmp_path / "oci.tar"
    with open(saved, "wb") as f:
        archive.save([(busybox.id, ["localhost/bb:oci"])], f, store, "oci-archive")
    other = Store(tmp_path / "other")
    item = archive.load(saved, other)[0]
    assert item.image_id == busybox.id and item.names == ["localhost/bb:oci"]
    assert other.has_blob(busybox.layer_digests[0])  # compressed blobs kept as they were


def test_not_an_archive(store, tmp_path):
    (tmp_path / "x.tar").write_bytes(TarBuilder().file("a", "b").build())
    with pytest.raises(UsageError, match="neither manifest.json"):
        archive.load(tmp_path / "x.tar", store)
    with pytest.raises(NotFoundError):
        archive.load(tmp_path / "missing.tar", store)


def test_import_makes_a_one_layer_localhost_image(store, tmp_path):
    tarball = tmp_path / "rootfs.tar.gz"
    tarball.write_bytes(compress(LAYER, "gzip"))
    image_id = archive.import_rootfs(tarball, "myroot", store,
                                     changes={"Cmd": ["/bin/sh"], "WorkingDir": "/etc"})
    run = resolve_for_run("myroot", store=store)
    assert run.id == image_id and run.cmd == ["/bin/sh"] and run.workdir == "/etc"
    assert run.name == "localhost/myroot:latest"
    assert (run.layer_dirs[0] / "etc/hello").exists()


def test_shared_layers_outlive_the_first_image_removed(store, busybox, work):
    archive.load(busybox.layout, store)
    manage.tag(store, busybox.id, ["one", "two"])
    extra = TarBuilder().file("extra", "x").build()
    other = images.write_image(work / "other", [*images.busybox_layers(work), extra])
    archive.load(other.layout, store)
    manage.tag(store, other.id, ["other"])
    # By name, an image with two names only loses that name.
    assert manage.remove(store, "one") == ["Untagged: localhost/one:latest"]
    manage.tag(store, busybox.id, ["one"])
    with pytest.raises(ConflictError, match="several names"):
        manage.remove(store, busybox.id)
    assert manage.remove(store, busybox.id, force=True)[-1] == f"Deleted: {busybox.id[7:]}"
    for diff_id in busybox.diff_ids:
        assert store.has_layer(diff_id)  # still used by "other"
    with pytest.raises(ImageNotFound):
        resolve_for_run("two", store=store)
    manage.remove(store, "other")
    assert os.listdir(store.layers) == [] and os.listdir(store.blobs) == []


def test_prune_removes_dangling_images_and_orphan_layers(store, busybox, work):
    archive.load(busybox.layout, store)  # unnamed: dangling
    orphan = TarBuilder().file("orphan", "x").build()
    store.ingest_layer(io.BytesIO(orphan), media_type="x")
    assert manage.prune(store) == [busybox.id]
    assert os.listdir(store.layers) == []


def test_inspect_and_history(store, busybox):
    archive.load(busybox.layout, store)
    manage.tag(store, busybox.id, ["bb"])
    info = manage.inspect(store, "bb")
    assert info["Id"] == busybox.id[7:] and info["RepoTags"] == ["localhost/bb:latest"]
    assert info["RootFS"]["Layers"] == busybox.diff_ids and info["Config"]["Cmd"] == ["sh"]
    hist = manage.history(store, "bb")
    assert [h["created_by"] for h in hist] == ["layer 1", "layer 0"]
    assert hist[0]["id"] == busybox.id[7:]


def test_resolve_by_id_prefix_and_missing(store, busybox):
    archive.load(busybox.layout, store)
    assert resolve_for_run(busybox.id[7:15], store=store).id == busybox.id
    with pytest.raises(ImageNotFound) as err:
        resolve_for_run("nosuch", store=store)
    assert err.value.message == "find image nosuch: not in the local store"
    assert err.value.hint == "pull it first: prun pull nosuch"


def test_an_image_a_container_uses_is_kept_unless_forced(store, busybox):
    from rootless.containers import store as containers

    archive.load(busybox.layout, store)
    manage.tag(store, busybox.id, ["bb"])
    records = containers.Store()
    records.add(containers.Container(containers.new_id(), "web", "bb", busybox.id, ["sh"], 0.0))
    with pytest.raises(ConflictError, match="in use by container.*web") as err:
        manage.remove(store, "bb")
    assert err.value.hint.startswith("remove the containers first")
    assert manage.prune(store, all_unused=True) == []
    assert manage.remove(store, "bb", force=True)[-1] == f"Deleted: {busybox.id[7:]}"
