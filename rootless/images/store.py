"""The local image store, and what ``prun run`` asks of it.

Layout under the data dir (``rootless.paths``)::

    blobs/sha256/<hex>   manifests, configs and layer blobs, content-addressed
    layers/<hex>/        each layer unpacked once, keyed by its diff-id
    tmp/<pid>-<rand>     work in progress (removed when its process is gone)
    locks/<hex>.lock     flock(2) per layer: one process unpacks it
    http-registries/<host:port>  insecure registries that answered plain HTTP
    prun.db              images, layers, names (rootless.db)

Rules:
- Every blob is verified against its digest while it is written, to a temp
  file renamed into place; every layer is unpacked into a temp dir (through
  ``unpack``, the safe chokepoint) and renamed into place after its diff-id
  checked. An image becomes visible only when the database transaction that
  names it commits, after all its blobs and layers are in place: a Ctrl-C or
  kill -9 at any point leaves no half image, and the leftovers in tmp/ are
  removed by the next prun that opens the store.
- Concurrent pulls of the same layer serialise on its lock; the second one
  finds the layer present and skips it.
- Layers are shared: a layer is deleted only when no image refers to it
  (``manage`` does that under the layer's lock).

For ``prun run``: ``resolve_for_run(ref_or_id, pull=...)`` returns a
``RunImage`` (the image ID, its run config, its layer dirs). Whether to pull
is the caller's decision, made by ``pull``: "never" (the default; raises
``ImageNotFound`` when the image is not in the store), "missing" (pull it
then, as ``prun run`` does by default) or "always". This API is stable.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rootless import db
from rootless.errors import NotFoundError, StoreError, UsageError
from rootless.images import media, reference
from rootless.paths import Paths


class ImageNotFound(NotFoundError):
    """The image is not in the local store."""


@dataclass(frozen=True)
class RunImage:
    """What a container needs from its image."""

    id: str                    # sha256:<hex> of the config
    name: str                  # the reference it was found under (or the ID)
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    workdir: str
    user: str
    exposed_ports: list[str]   # "80/tcp"
    labels: dict[str, str]
    stop_signal: str | None
    volumes: list[str]
    layer_dirs: list[Path]     # bottom → top

    @property
    def lowerdirs(self) -> list[Path]:
        """Layer dirs top first, as fusefs.server.MountSpec takes them."""
        return list(reversed(self.layer_dirs))


@dataclass(frozen=True)
class LayerRecord:
    diff_id: str
    blob_digest: str
    media_type: str
    blob_size: int
    size: int                  # uncompressed tar bytes


def hexof(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise StoreError(f"use digest {digest!r}: only sha256:<64 hex> is supported")
    return hexd


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.layers = root / "layers"
        self.tmp = root / "tmp"
        self.locks = root / "locks"
        self._db: sqlite3.Connection | None = None
        # One connection shared by the pull's worker threads: statements and
        # transactions on it are serialised here.
        self.dblock = threading.RLock()
        self._held = threading.local()

    @classmethod
    def default(cls) -> Store:
        return cls(Paths.from_env().data)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                # Private like podman's storage: layers hold other users' files.
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                for d in (self.blobs, self.layers, self.tmp, self.locks):
                    d.mkdir(parents=True, exist_ok=True)
                self._db = db.open_db(self.root / "prun.db")
            except (OSError, sqlite3.Error) as exc:
                cause = getattr(exc, "strerror", None) or str(exc)
                raise StoreError(f"open image store {self.root}: {cause}",
                                 hint="the store ($PRUN_ROOT, else $XDG_DATA_HOME/prun) must "
                                      "be a directory you own and can write") from exc
            self._clean_tmp()
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ------------------------------------------------------------ temp, locks

    def _clean_tmp(self) -> None:
        for entry in os.listdir(self.tmp):
            pid = entry.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                path = self.tmp / entry
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    def new_tmp(self, what: str) -> Path:
        self.db  # noqa: B018 -- creates the directories
        return self.tmp / f"{os.getpid()}-{os.urandom(6).hex()}-{what}"

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive flock on locks/<name>.lock; re-entrant within a thread."""
        held = self._held.__dict__.setdefault("names", set())
        if name in held:
            yield
            return
        self.db  # noqa: B018
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.add(name)
            yield
        finally:
            held.discard(name)
            os.close(fd)

    # ------------------------------------------------------------ registries

    def answered_http(self, host: str) -> bool:
        """Whether insecure registry ``host`` answered plain HTTP before."""
        return (self.root / "http-registries" / host).exists()

    def remember_http(self, host: str) -> None:
        path = self.root / "http-registries"
        path.mkdir(exist_ok=True)
        (path / host).touch()

    # ------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        return self.blobs / hexof(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def read_blob(self, digest: str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError as exc:
            raise StoreError(f"read blob {digest}: missing from the store",
                             hint="remove the image (prun rmi) and pull or load it again") \
                from exc

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` (checked against ``digest`` when given)."""
        import hashlib

        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and actual != digest:
            raise StoreError(f"store blob {digest}: content has digest {actual}",
                             hint="the source sent corrupt data; try again")
        path = self.blob_path(actual)
        if not path.exists():
            tmp = self.new_tmp("blob")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return actual

    # ------------------------------------------------------------ layers

    def layer_dir(self, diff_id: str) -> Path:
        return self.layers / hexof(diff_id)

    def has_layer(self, diff_id: str) -> bool:
        with self.dblock:
            row = self.db.execute("SELECT 1 FROM layers WHERE diff_id = ?",
                                  (diff_id,)).fetchone()
        return row is not None and self.layer_dir(diff_id).is_dir()

    def layer_size(self, diff_id: str) -> int:
        with self.dblock:
            row = self.db.execute("SELECT size FROM layers WHERE diff_id = ?",
                                  (diff_id,)).fetchone()
        return row["size"] if row else 0

    def ingest_layer(self, source: BinaryIO, *, media_type: str, diff_id: str | None = None,
                     blob_digest: str | None = None, blob_size: int = -1,
                     progress: Callable[[int], None] | None = None) -> LayerRecord:
        """Read one layer blob from ``source``: keep the blob, unpack it.

        ``diff_id``/``blob_digest``/``blob_size`` are checked when given. Raises
        ``blobio.CorruptBlob`` or ``unpack.UnsafeLayer`` on bad content and
        OSError on host failures; nothing is left behind in any case."""
        from rootless.images import blobio, unpack

        blob_tmp = self.new_tmp("layer-blob")
        dir_tmp = self.new_tmp("layer")
        try:
            with open(blob_tmp, "wb") as sink:
                tee = blobio.BlobTee(source, sink, progress, blob_size)
                try:
                    tar = blobio.Hashing(blobio.Decompressed(tee))
                    dir_tmp.mkdir()
                    unpack.unpack(tar, str(dir_tmp))
                    tar.drain()
                except (blobio.CorruptBlob, unpack.UnsafeLayer) as exc:
                    # Bad content may be a damaged download: name that cause.
                    if blob_digest is not None:
                        while tee.read():
                            pass
                        if tee.digest != blob_digest:
                            raise blobio.CorruptBlob(f"blob has digest {tee.digest}, "
                                                     f"expected {blob_digest}") from exc
                    raise
                while tee.read():
                    pass
            if blob_digest is not None and tee.digest != blob_digest:
                raise blobio.CorruptBlob(f"blob has digest {tee.digest}, expected {blob_digest}")
            if diff_id is not None and tar.digest != diff_id:
                raise blobio.CorruptBlob(f"uncompressed layer has digest {tar.digest}, "
                                         f"expected {diff_id} (from the image config)")
            record = LayerRecord(tar.digest, tee.digest, media_type, tee.size, tar.size)
            os.replace(blob_tmp, self.blob_path(tee.digest))
            self._commit_layer(dir_tmp, record)
            return record
        finally:
            for leftover in (blob_tmp, dir_tmp):
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                elif leftover.exists():
                    leftover.unlink()

    def _commit_layer(self, dir_tmp: Path, record: LayerRecord) -> None:
        with self.lock(hexof(record.diff_id)):
            final = self.layer_dir(record.diff_id)
            if self.has_layer(record.diff_id):
                return  # another pull got there first; ours is thrown away
            if final.exists():
                shutil.rmtree(final)  # unpacked by a process killed before it recorded it
            os.rename(dir_tmp, final)
            with self.dblock, db.transaction(self.db):
                self.db.execute("INSERT OR REPLACE INTO layers VALUES (?, ?)",
                                (record.diff_id, record.size))

    # ------------------------------------------------------------ images

    def commit_image(self, manifest: bytes, manifest_type: str, config: bytes,
                     layers: list[LayerRecord], names: list[str],
                     source_digest: str | None = None) -> str:
        """Record an image whose layers are all present; point ``names`` at
        it (moving them from any image that had them). Returns its ID."""
        manifest_digest = self.put_blob(manifest)
        image_id = self.put_blob(config)
        cfg = media.load_json(config, "image config")
        with self.dblock, db.transaction(self.db) as conn:
            for layer in layers:
                if conn.execute("SELECT 1 FROM layers WHERE diff_id = ?",
                                (layer.diff_id,)).fetchone() is None:
                    raise StoreError(f"record image {image_id}: layer {layer.diff_id} is "
                                     f"missing (removed while pulling?)", hint="pull again")
            size = sum(self.layer_size(layer.diff_id) for layer in layers)
            # An upsert, not REPLACE: REPLACE deletes the row and so, by
            # cascade, the names other pulls gave this image.
            conn.execute("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO "
                         "UPDATE SET manifest_digest = excluded.manifest_digest, "
                         "manifest_type = excluded.manifest_type, size = excluded.size",
                         (image_id, manifest_digest, manifest_type, cfg.get("created"),
                          time.time(), size))
            conn.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
            conn.executemany("INSERT INTO image_layers VALUES (?, ?, ?, ?, ?, ?)",
                             [(image_id, i, layer.diff_id, layer.blob_digest, layer.media_type,
                               layer.blob_size) for i, layer in enumerate(layers)])
            for name in names:
                conn.execute("INSERT OR REPLACE INTO names VALUES (?, ?, ?)",
                             (name, image_id, source_digest or manifest_digest))
        return image_id

    def name_digest(self, name: str) -> tuple[str, str] | None:
        """(image ID, source digest) a name points at."""
        row = self.db.execute("SELECT image_id, source_digest FROM names WHERE name = ?",
                              (name,)).fetchone()
        return (row["image_id"], row["source_digest"]) if row else None

    def image_layers(self, image_id: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM image_layers WHERE image_id = ? ORDER BY position",
                               (image_id,)).fetchall()

    def image_row(self, image_id: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()

    def config(self, image_id: str) -> dict:
        return media.load_json(self.read_blob(image_id), "image config")

    def lookup(self, text: str, search: list[str] | None = None) -> tuple[str, str] | None:
        """(image ID, name) for a reference or an ID prefix, or None.

        A reference is tried first (a short one as localhost/NAME, then on
        each search registry), then an ID or unique ID prefix."""
        ref = None
        with contextlib.suppress(UsageError):  # not a reference: maybe an ID
            ref = reference.parse(text)
        if ref is not None:
            if search is None:
                from rootless.images import config as regconf
                search = regconf.load().search
            for cand in reference.candidates(ref, search):
                name = f"{cand.name}@{cand.digest}" if cand.digest else cand.tagged
                hit = self.name_digest(name)
                if hit:
                    return hit[0], str(cand)
        if reference.looks_like_id(text):
            prefix = "sha256:" + text.removeprefix("sha256:")
            rows = self.db.execute("SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2",
                                   (prefix, prefix + "g")).fetchall()
            if len(rows) == 1:
                return rows[0]["id"], rows[0]["id"]
            if len(rows) > 1:
                raise StoreError(f"find image {text}: the ID prefix is ambiguous",
                                 hint="give more digits of the ID")
        return None

    def run_image(self, image_id: str, name: str) -> RunImage:
        rc = media.run_config(self.config(image_id))
        dirs = []
        for row in self.image_layers(image_id):
            path = self.layer_dir(row["diff_id"])
            if not path.is_dir():
                raise StoreError(f"use image {name}: layer {row['diff_id']} is missing",
                                 hint=f"remove and pull it again: prun rmi {name}")
            dirs.append(path)
        return RunImage(image_id, name, rc.entrypoint, rc.cmd, rc.env, rc.workdir, rc.user,
                        rc.exposed_ports, rc.labels, rc.stop_signal, rc.volumes, dirs)


def not_found(text: str) -> ImageNotFound:
    return ImageNotFound(f"find image {text}: not in the local store",
                         hint=f"pull it first: prun pull {text}")


def resolve_for_run(ref_or_id: str, *, pull: str = "never", store: Store | None = None,
                    quiet: bool = False, options=None) -> RunImage:
    """The image ``prun run IMAGE`` means, pulled per ``pull`` (see module doc);
    ``options`` (a ``pull.PullOptions``: --tls-verify, --cert-dir, --creds,
    --platform) apply when it pulls."""
    if pull not in ("never", "missing", "always"):
        raise ValueError(f"pull policy {pull!r}")
    store = store or Store.default()
    hit = None if pull == "always" else store.lookup(ref_or_id)
    if hit is None:
        if pull == "never":
            raise not_found(ref_or_id)
        from rootless.images import pull as pulling

        result = pulling.pull(ref_or_id, store=store, quiet=quiet, options=options)
        hit = (result.image_id, result.name)
    return store.run_image(*hit)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dump_json(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
