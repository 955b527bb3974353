"""Build OCI images locally, with no network, for tests and benchmarks.

- ``TarBuilder`` writes layer tarballs entry by entry with the owners, modes,
  link types and whiteouts a test wants recorded in the tar headers (the
  files never need to exist with those owners on disk).
- ``write_image`` turns layer tarballs plus a config into an OCI image layout
  directory (``oci-layout``, ``index.json``, ``blobs/sha256/…``), in OCI or
  Docker schema 2 media types, gzip/zstd/uncompressed; ``write_index`` adds
  a multi-platform index; ``docker_archive`` writes what ``docker save``
  writes. Everything is reproducible (fixed mtimes), so digests are stable
  between runs and caches stay valid.
- ``busybox_image`` (two layers from Debian's busybox-static, see
  tests/support/rootfs.py), ``debian_image`` (four layers from a cached
  ``debootstrap --variant=minbase bookworm`` rootfs, tests/support/debian.py)
  and ``synthetic_image`` (N layers of incompressible data) are the stock
  images the registry fixtures push.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import rootfs

EPOCH = 1700000000  # fixed mtime for reproducible layers

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             None: "application/vnd.oci.image.layer.v1.tar"}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = {"gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                None: "application/vnd.docker.image.rootfs.diff.tar"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- layer tars

class TarBuilder:
    """Write a layer tarball entry by entry, in memory."""

    def __init__(self, fmt: int = tarfile.PAX_FORMAT) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=fmt)

    def _info(self, name: str, kind: bytes, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = EPOCH
        return info

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))
        return self

    def file(self, name: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0,
             gid: int = 0) -> TarBuilder:
        data = data.encode() if isinstance(data, str) else data
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))
        return self

    def symlink(self, name: str, target: str, uid: int = 0, gid: int = 0) -> TarBuilder:
        info = self._info(name, tarfile.SYMTYPE, 0o777, uid, gid)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> TarBuilder:
        info = self._info(name, tarfile.LNKTYPE, 0o644, 0, 0)
        info.linkname = target
        self._tar.addfile(info)
        return self

    def device(self, name: str, char: bool, major: int, minor: int, mode: int = 0o666,
               uid: int = 0, gid: int = 0) -> TarBuilder:
        info = self._info(name, tarfile.CHRTYPE if char else tarfile.BLKTYPE, mode, uid, gid)
        info.devmajor, info.devminor = major, minor
        self._tar.addfile(info)
        return self

    def fifo(self, name: str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> TarBuilder:
        self._tar.addfile(self._info(name, tarfile.FIFOTYPE, mode, uid, gid))
        return self

    def whiteout(self, path: str) -> TarBuilder:
        """Delete ``path`` of lower layers (an empty ``.wh.<name>`` file)."""
        head, _, name = path.rpartition("/")
        return self.file(f"{head}/.wh.{name}" if head else f".wh.{name}")

    def opaque(self, dirpath: str) -> TarBuilder:
        """Hide everything lower layers have under ``dirpath``."""
        return self.file(f"{dirpath}/.wh..wh..opq")

    def raw(self, info: tarfile.TarInfo, data: bytes | None = None) -> TarBuilder:
        """Add a hand-made header (hostile-tarball tests)."""
        self._tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self

    def build(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


def tar_from_dir(root: Path, owners: dict[str, tuple[int, int, int]] | None = None,
                 prefix_filter=None) -> bytes:
    """A layer tarball of the tree under ``root`` (sorted, hard links kept).

    ``owners`` maps relative paths to (uid, gid, mode) recorded instead of
    the on-disk values; everything else is recorded as 0:0.
    """
    owners = owners or {}
    out = TarBuilder()
    seen: dict[tuple[int, int], str] = {}
    for rel in _walk(root):
        if prefix_filter is not None and not prefix_filter(rel):
            continue
        path = root / rel
        st = path.lstat()
        uid, gid, mode = owners.get(rel, (0, 0, stat.S_IMODE(st.st_mode)))
        if stat.S_ISDIR(st.st_mode):
            out.dir(rel, mode, uid, gid)
        elif stat.S_ISLNK(st.st_mode):
            out.symlink(rel, os.readlink(path), uid, gid)
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in seen:
                out.hardlink(rel, seen[key])
                continue
            seen[key] = rel
            out.file(rel, path.read_bytes(), mode, uid, gid)
    return out.build()


def _walk(root: Path) -> Iterator[str]:
    """Relative paths under ``root``, sorted, each directory before its contents."""
    def walk(rel: str) -> Iterator[str]:
        base = root / rel if rel else root
        for name in sorted(os.listdir(base)):
            child = f"{rel}/{name}" if rel else name
            yield child
            path = base / name
            if path.is_dir() and not path.is_symlink():
                yield from walk(child)
    return walk("")


def compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression is None:
        return data
    raise ValueError(f"unknown compression {compression!r}")


# ---------------------------------------------------------------- images

@dataclass
class BuiltImage:
    """One image in an OCI layout directory."""

    layout: Path
    manifest_digest: str
    manifest_media_type: str
    config_digest: str
    layer_digests: list[str]
    diff_ids: list[str]
    platform: str = "linux/amd64"
    children: list[BuiltImage] = field(default_factory=list)  # for an index

    @property
    def id(self) -> str:
        return self.config_digest

    def blob_path(self, digest: str) -> Path:
        algo, hexd = digest.split(":")
        return self.layout / "blobs" / algo / hexd

    def blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def manifest(self) -> dict:
        return json.loads(self.blob(self.manifest_digest))

    def config(self) -> dict:
        return json.loads(self.blob(self.config_digest))


def _put_blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return digest


def _write_index_json(layout: Path, manifests: list[dict]) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    (layout / "index.json").write_text(json.dumps(index, indent=1))


def image_config(diff_ids: list[str], platform: str = "linux/amd64", cmd=("sh",),
                 env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
                 extra: dict | None = None) -> dict:
    os_, arch, *variant = platform.split("/")
    cfg = {
        "created": "2023-11-14T22:13:20Z",
        "architecture": arch,
        "os": os_,
        "config": {"Env": list(env), "Cmd": list(cmd), **(extra or {})},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"layer {i}"}
                    for i in range(len(diff_ids))],
    }
    if variant:
        cfg["variant"] = variant[0]
    return cfg


def write_image(layout: Path, layers: list[bytes], *, compression: str | None = "gzip",
                docker: bool = False, platform: str = "linux/amd64", ref: str | None = None,
                config: dict | None = None, **config_args) -> BuiltImage:
    """Write an image (layer tarballs, uncompressed) into an OCI layout dir."""
    layout.mkdir(parents=True, exist_ok=True)
    if docker and compression == "zstd":
        raise ValueError("Docker schema 2 has no zstd layer type")
    layer_type = (DOCKER_LAYER if docker else OCI_LAYER)[compression]
    diff_ids, descs = [], []
    for tar in layers:
        diff_ids.append(sha256(tar))
        blob = compress(tar, compression)
        descs.append({"mediaType": layer_type, "digest": _put_blob(layout, blob),
                      "size": len(blob)})
    cfg = config if config is not None else image_config(diff_ids, platform, **config_args)
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                   "digest": _put_blob(layout, cfg_bytes), "size": len(cfg_bytes)},
        "layers": descs,
    }
    man_bytes = json.dumps(manifest, indent=3).encode()
    image = BuiltImage(layout, _put_blob(layout, man_bytes), manifest["mediaType"],
                       manifest["config"]["digest"], [d["digest"] for d in descs], diff_ids,
                       platform)
    desc = {"mediaType": image.manifest_media_type, "digest": image.manifest_digest,
            "size": len(man_bytes)}
    if ref:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref}
    _write_index_json(layout, [desc])
    return image


def write_index(layout: Path, images: list[BuiltImage], docker: bool = False) -> BuiltImage:
    """A multi-platform index over images already written into ``layout``."""
    manifests = []
    for img in images:
        os_, arch, *variant = img.platform.split("/")
        plat = {"os": os_, "architecture": arch}
        if variant:
            plat["variant"] = variant[0]
        manifests.append({"mediaType": img.manifest_media_type, "digest": img.manifest_digest,
                          "size": img.blob_path(img.manifest_digest).stat().st_size,
                          "platform": plat})
    index = {"schemaVersion": 2, "mediaType": DOCKER_LIST if docker else OCI_INDEX,
             "manifests": manifests}
    data = json.dumps(index, indent=3).encode()
    digest = _put_blob(layout, data)
    _write_index_json(layout, [{"mediaType": index["mediaType"], "digest": digest,
                                "size": len(data)}])
    return BuiltImage(layout, digest, index["mediaType"], "", [], [], "", children=images)


def all_blobs(image: BuiltImage) -> list[str]:
    """Digests the image needs in a registry, children before their index."""
    if image.children:
        return [d for c in image.children for d in all_blobs(c)]
    return [*image.layer_digests, image.config_digest]


def docker_archive(image: BuiltImage, out: Path, repo_tags: Iterable[str] = ()) -> Path:
    """Write a ``docker save`` archive (uncompressed layer.tar files)."""
    with tarfile.open(out, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
            tar.addfile(info, io.BytesIO(data))
        layer_names = []
        for digest, diff_id in zip(image.layer_digests, image.diff_ids):
            blob = image.blob(digest)
            tar_bytes = _decompress(blob)
            name = f"{diff_id.split(':')[1]}/layer.tar"
            add(name, tar_bytes)
            layer_names.append(name)
        cfg_name = f"{image.config_digest.split(':')[1]}.json"
        add(cfg_name, image.blob(image.config_digest))
        manifest = [{"Config": cfg_name, "RepoTags": list(repo_tags), "Layers": layer_names}]
        add("manifest.json", json.dumps(manifest).encode())
    return out


def _decompress(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


# ---------------------------------------------------------------- stock images

# Files added to the busybox image's first layer, and what layer two does to them.
BUSYBOX_EXTRA = {
    "etc/removed-in-layer2": "this file is whited out by layer 2\n",
    "var/cache/app/old-a": "hidden by the opaque dir in layer 2\n",
    "var/cache/app/old-b": "hidden by the opaque dir in layer 2\n",
}


_BUSYBOX_LAYERS: dict[Path, list[bytes]] = {}


def busybox_layers(workdir: Path) -> list[bytes]:
    """Two layers: a busybox rootfs with OWNERS recorded, then a change layer
    with a whiteout, an opaque directory and a new file."""
    if workdir in _BUSYBOX_LAYERS:
        return _BUSYBOX_LAYERS[workdir]
    root = rootfs.build_busybox_rootfs(workdir / "busybox-rootfs")
    for rel, text in BUSYBOX_EXTRA.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    base = tar_from_dir(root, rootfs.OWNERS)
    change = (TarBuilder()
              .dir("etc").whiteout("etc/removed-in-layer2")
              .file("etc/motd", "hello from layer 2\n")
              .dir("var/cache/app").opaque("var/cache/app")
              .file("var/cache/app/new", "added by layer 2\n", uid=1000, gid=1000)
              .build())
    _BUSYBOX_LAYERS[workdir] = [base, change]
    return _BUSYBOX_LAYERS[workdir]


def busybox_image(workdir: Path, *, compression: str | None = "gzip", docker: bool = False,
                  platform: str = "linux/amd64") -> BuiltImage:
    layers = busybox_layers(workdir)
    name = f"busybox-{compression}-{'docker' if docker else 'oci'}-{platform.replace('/', '-')}"
    return write_image(workdir / name, layers, compression=compression, docker=docker,
                       platform=platform, ref="latest")


def multiarch_busybox(workdir: Path) -> BuiltImage:
    """An OCI index with linux/amd64 and linux/arm64 busybox images that differ
    in a marker file, so a test can tell which one it got."""
    layout = workdir / "busybox-multiarch"
    base = busybox_layers(workdir)
    images = []
    for plat in ("linux/arm64/v8", "linux/amd64"):
        marker = TarBuilder().dir("etc").file("etc/platform", plat + "\n").build()
        images.append(write_image(layout, [*base, marker], platform=plat))
    return write_index(layout, images)


def synthetic_image(layout: Path, layers: int = 10, mib: int = 20,
                    compression: str | None = "gzip") -> BuiltImage:
    """``layers`` layers of ``mib`` MiB incompressible data each (benchmarks)."""
    if (layout / "index.json").exists():
        return _reload(layout)
    tars = []
    for i in range(layers):
        data = hashlib.shake_256(f"layer {i}".encode()).digest(mib << 20)
        tars.append(TarBuilder().dir(f"data{i}").file(f"data{i}/blob", data).build())
    tmp = layout.with_name(layout.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_image(tmp, tars, compression=compression)
    tmp.rename(layout)
    return _reload(layout)


def debian_image(cache: Path | None = None) -> BuiltImage:
    """Four layers from the cached debootstrap minbase rootfs: /usr/lib*, the
    rest of /usr, everything else, then a layer that empties /usr/share/doc
    (opaque directory) and adds a file."""
    from tests.support import debian

    cache = cache or debian.cache_dir()
    rootfs_tar = debian.rootfs_tar(cache)
    layout = cache / f"debian-image-{rootfs_tar.stem}"
    if (layout / "index.json").exists():
        return _reload(layout)
    groups: list[TarBuilder] = [TarBuilder(), TarBuilder(), TarBuilder()]
    with tarfile.open(rootfs_tar) as src:
        for member in src:
            name = member.name.removeprefix("./")
            if not name or name == ".":
                continue
            group = 0 if name.startswith("usr/lib") else 1 if name.startswith("usr") else 2
            member.name = name
            data = src.extractfile(member).read() if member.isreg() else None
            if name == "usr":
                groups[0].raw(member)  # /usr/lib* needs its parent's header too
            if member.islnk():
                # A hard link must live in the same layer as its target.
                target = member.linkname.removeprefix("./")
                tgroup = 0 if target.startswith("usr/lib") else 1 if target.startswith("usr") else 2
                group = tgroup
                member.linkname = target
            groups[group].raw(member, data)
    docs = (TarBuilder().dir("usr").dir("usr/share").dir("usr/share/doc")
            .opaque("usr/share/doc")
            .file("usr/share/doc/README", "docs removed by the top layer\n")
            .file("etc/prun-test-image", "debian minbase for prun tests\n")
            .build())
    tmp = layout.with_name(layout.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_image(tmp, [g.build() for g in groups] + [docs], cmd=("bash",), ref="bookworm")
    tmp.rename(layout)
    return _reload(layout)


def _reload(layout: Path) -> BuiltImage:
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    manifest = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_bytes())
    layers = [d["digest"] for d in manifest["layers"]]
    cfg = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"].split(":")[1])
                     .read_bytes())
    return BuiltImage(layout, desc["digest"], manifest["mediaType"], manifest["config"]["digest"],
                      layers, cfg["rootfs"]["diff_ids"], f"{cfg['os']}/{cfg['architecture']}")
