"""Offline images: load/save docker and OCI archives, import a rootfs tar.

- ``load`` reads a ``docker save`` archive (``manifest.json``), an OCI
  archive or an OCI layout directory (``index.json``), plain or compressed;
  every layer goes through ``Store.ingest_layer`` (verify + safe unpack) and
  every image is committed atomically, as a pull is.
- ``save`` writes a docker-archive (uncompressed ``<diff-id>/layer.tar``
  files, ``manifest.json`` and ``repositories``; ``docker load`` and
  ``podman load`` read it) or an oci-archive (blobs as stored; the
  ``org.opencontainers.image.ref.name`` annotation carries each name).
- ``import_rootfs`` makes a one-layer image from a tarball (``prun import``).
- Names: docker's ``RepoTags`` are normalised (busybox:latest →
  docker.io/library/busybox:latest); names prun gives (import) put short
  names under localhost/.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rootless.errors import NotFoundError, UsageError
from rootless.images import media, reference
from rootless.images.store import LayerRecord, Store, dump_json, hexof


@dataclass
class Loaded:
    image_id: str
    names: list[str]


class _Source:
    """Members of a tar archive or files of a directory, by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar = None if path.is_dir() else tarfile.open(path, "r:*")
        if self.tar is not None:
            self.members = {m.name.removeprefix("./"): m for m in self.tar.getmembers()}

    def has(self, name: str) -> bool:
        return (self.path / name).is_file() if self.tar is None else name in self.members

    def open(self, name: str) -> BinaryIO:
        if self.tar is None:
            return open(self.path / name, "rb")
        member = self.members.get(name)
        if member is not None and member.issym():
            # docker 25 saves layer.tar files as symlinks to blobs/sha256/…
            target = os.path.normpath(os.path.join(os.path.dirname(name), member.linkname))
            member = self.members.get(target)
        if member is None or not member.isreg():
            raise KeyError(name)
        return self.tar.extractfile(member)

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def load(path: Path, store: Store) -> list[Loaded]:
    what = f"load {path}"
    if not path.exists():
        raise NotFoundError(f"{what}: no such file", hint="give the archive with -i FILE")
    try:
        src = _Source(path)
    except (tarfile.TarError, OSError) as exc:
        raise UsageError(f"{what}: not a tar archive or OCI layout: {exc}",
                         hint="prun load reads docker save and OCI archives") from exc
    try:
        if src.has("manifest.json"):
            return _load_docker(src, store, what)
        if src.has("index.json"):
            return _load_oci(src, store, what)
        raise UsageError(f"{what}: neither manifest.json (docker-archive) nor index.json "
                         f"(oci-archive) in it", hint="prun load reads docker save and OCI "
                                                      "archives; for a rootfs use prun import")
    except (KeyError, ValueError, TypeError, tarfile.TarError) as exc:
        if isinstance(exc, UsageError):
            raise
        from rootless.images.unpack import UnsafeLayer
        if isinstance(exc, UnsafeLayer):
            raise UsageError(f"{what}: refusing an unsafe layer: {exc}",
                             hint="the archive is malformed or hostile; nothing was stored") \
                from exc
        raise UsageError(f"{what}: malformed archive: {type(exc).__name__}: {exc}") from exc
    finally:
        src.close()


def _layer(src: _Source, store: Store, name: str, media_type: str, diff_id: str,
           blob_digest: str | None) -> LayerRecord:
    blob = blob_digest or diff_id  # a docker-archive layer is stored uncompressed
    with store.lock(hexof(diff_id)):
        if store.has_layer(diff_id) and store.has_blob(blob):
            return LayerRecord(diff_id, blob, media_type, store.blob_path(blob).stat().st_size,
                               store.layer_size(diff_id))
        with src.open(name) as f:
            return store.ingest_layer(f, media_type=media_type, diff_id=diff_id,
                                      blob_digest=blob_digest)


def _load_docker(src: _Source, store: Store, what: str) -> list[Loaded]:
    out = []
    for entry in json.loads(src.read("manifest.json")):
        cfg_bytes = src.read(entry["Config"])
        diff_ids = media.diff_ids(media.load_json(cfg_bytes, "image config"))
        if len(diff_ids) != len(entry["Layers"]):
            raise ValueError(f"{entry['Config']}: {len(diff_ids)} diff_ids for "
                             f"{len(entry['Layers'])} layers")
        records = []
        for name, diff_id in zip(entry["Layers"], diff_ids):
            records.append(_layer(src, store, name, media.DOCKER_LAYER, diff_id, None))
        manifest = _manifest(media.DOCKER_MANIFEST, media.DOCKER_CONFIG, cfg_bytes, records)
        names = [reference.parse(t).tagged for t in entry.get("RepoTags") or []]
        image_id = store.commit_image(manifest, media.DOCKER_MANIFEST, cfg_bytes, records, names)
        out.append(Loaded(image_id, names))
    return out


def _load_oci(src: _Source, store: Store, what: str) -> list[Loaded]:
    out = []
    index = media.load_json(src.read("index.json"), "index.json")
    for desc in media.parse_index(dump_json(index)):
        body = src.read(_blob_name(desc.digest))
        kind = media.kind(body, desc.media_type)
        if kind in media.INDEXES:
            chosen = media.select_platform(media.parse_index(body), media.host_platform())
            if chosen is None:
                raise ValueError(f"no image for {media.host_platform()} in index {desc.digest}")
            body = src.read(_blob_name(chosen.digest))
        manifest = media.parse_manifest(body)
        cfg_bytes = src.read(_blob_name(manifest.config.digest))
        store.put_blob(cfg_bytes, manifest.config.digest)
        diff_ids = media.diff_ids(media.load_json(cfg_bytes, "image config"))
        records = []
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True):
            rec = _layer(src, store, _blob_name(layer.digest), layer.media_type, diff_id,
                         layer.digest)
            records.append(LayerRecord(rec.diff_id, layer.digest, layer.media_type, layer.size,
                                       rec.size))
        names = []
        ref_name = desc.annotations.get("org.opencontainers.image.ref.name")
        # OCI tools often write a bare tag ("latest") here: that names no
        # repository, so the image stays unnamed (podman does the same).
        if ref_name and ("/" in ref_name or ":" in ref_name):
            names.append(reference.parse(ref_name).tagged)
        image_id = store.commit_image(body, manifest.media_type, cfg_bytes, records, names)
        out.append(Loaded(image_id, names))
    return out


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{hexof(digest)}"


def _manifest(media_type: str, config_type: str, cfg_bytes: bytes,
              records: list[LayerRecord]) -> bytes:
    import hashlib

    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": config_type, "size": len(cfg_bytes),
                      "digest": "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()},
           "layers": [{"mediaType": r.media_type, "size": r.blob_size, "digest": r.blob_digest}
                      for r in records]}
    return json.dumps(doc, indent=3).encode()


# ---------------------------------------------------------------- import

def import_rootfs(path: Path, name: str | None, store: Store, *, changes: dict | None = None,
                  message: str | None = None) -> str:
    what = f"import {path}"
    ref = reference.local_name(name) if name else None
    try:
        f = open(path, "rb")
    except FileNotFoundError as exc:
        raise NotFoundError(f"{what}: no such file") from exc
    from rootless.images import blobio, unpack

    with f:
        head = f.read(4)
        f.seek(0)
        mtype = {"gzip": media.OCI_LAYER_GZIP, "zstd": media.OCI_LAYER_ZSTD}.get(
            media.compression("", head), media.OCI_LAYER)
        try:
            rec = store.ingest_layer(f, media_type=mtype)
        except (blobio.CorruptBlob, unpack.UnsafeLayer) as exc:
            raise UsageError(f"{what}: {exc}", hint="give a tar archive of a root filesystem "
                                                    "(optionally gzip or zstd compressed)") \
                from exc
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os_, arch, *variant = media.host_platform().split("/")
    cfg = {"created": now, "architecture": arch, "os": os_, "config": changes or {},
           "rootfs": {"type": "layers", "diff_ids": [rec.diff_id]},
           "history": [{"created": now, "created_by": "prun import",
                        **({"comment": message} if message else {})}]}
    if variant:
        cfg["variant"] = variant[0]
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    manifest = _manifest(media.OCI_MANIFEST, media.OCI_CONFIG, cfg_bytes, [rec])
    return store.commit_image(manifest, media.OCI_MANIFEST, cfg_bytes, [rec],
                              [ref.tagged] if ref else [])


# ---------------------------------------------------------------- save

def save(images: list[tuple[str, list[str]]], out: BinaryIO, store: Store,
         fmt: str = "docker-archive") -> None:
    """Write (image ID, names to record) pairs as one archive to ``out``."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        if fmt == "docker-archive":
            _save_docker(tar, images, store)
        elif fmt == "oci-archive":
            _save_oci(tar, images, store)
        else:
            raise UsageError(f"save: unknown format {fmt!r}",
                             hint="use docker-archive or oci-archive")


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, size: int = 0,
         fileobj: BinaryIO | None = None, directory: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        return
    info.mode = 0o644
    info.size = len(data) if data is not None else size
    tar.addfile(info, io.BytesIO(data) if data is not None else fileobj)


def _save_docker(tar: tarfile.TarFile, images: list[tuple[str, list[str]]],
                 store: Store) -> None:
    from rootless.images import blobio

    manifest, repositories, written = [], {}, set()
    for image_id, names in images:
        cfg_name = f"{hexof(image_id)}.json"
        if cfg_name not in written:
            _add(tar, cfg_name, store.read_blob(image_id))
            written.add(cfg_name)
        layers = []
        for row in store.image_layers(image_id):
            name = f"{hexof(row['diff_id'])}/layer.tar"
            if name not in written:
                _add(tar, hexof(row["diff_id"]), directory=True)
                with open(store.blob_path(row["blob_digest"]), "rb") as blob:
                    plain = blobio.Decompressed(blobio.BlobTee(blob, None))
                    _add(tar, name, size=store.layer_size(row["diff_id"]), fileobj=plain)
                written.add(name)
            layers.append(name)
        tags = []
        for n in names:
            ref = reference.parse(n)
            tags.append(_docker_name(ref))
            repositories.setdefault(_docker_name(ref).rsplit(":", 1)[0], {})[
                ref.tag or "latest"] = hexof(image_id)
        manifest.append({"Config": cfg_name, "RepoTags": tags, "Layers": layers})
    _add(tar, "manifest.json", json.dumps(manifest).encode())
    _add(tar, "repositories", json.dumps(repositories).encode())


def _docker_name(ref: reference.Reference) -> str:
    # docker writes familiar names: busybox:latest, user/app:1
    path = ref.path.removeprefix("library/") if ref.domain == reference.DOCKER_HUB else ref.path
    prefix = "" if ref.domain == reference.DOCKER_HUB else ref.domain + "/"
    return f"{prefix}{path}:{ref.tag or 'latest'}"


def _save_oci(tar: tarfile.TarFile, images: list[tuple[str, list[str]]], store: Store) -> None:
    _add(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    _add(tar, "blobs", directory=True)
    _add(tar, "blobs/sha256", directory=True)
    written, manifests = set(), []
    for image_id, names in images:
        row = store.image_row(image_id)
        digests = [row["manifest_digest"], image_id] + \
            [r["blob_digest"] for r in store.image_layers(image_id)]
        for d in digests:
            if d not in written:
                path = store.blob_path(d)
                with open(path, "rb") as f:
                    _add(tar, _blob_name(d), size=path.stat().st_size, fileobj=f)
                written.add(d)
        desc = {"mediaType": row["manifest_type"], "digest": row["manifest_digest"],
                "size": store.blob_path(row["manifest_digest"]).stat().st_size}
        for n in names or [None]:
            entry = dict(desc)
            if n:
                entry["annotations"] = {"org.opencontainers.image.ref.name": n}
            manifests.append(entry)
    index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": manifests}
    _add(tar, "index.json", json.dumps(index).encode())


def spool(stream: BinaryIO, store: Store) -> Path:
    """Copy stdin to a temp file (archives need random access)."""
    path = store.new_tmp("load.tar")
    with open(path, "wb") as f:
        shutil.copyfileobj(stream, f, 1 << 20)
    return path
