"""Media types, manifests, indexes and image configs (pure).

- Docker schema 2 and OCI manifests and their list/index types are accepted;
  schema 1 is refused with a hint (registries convert on request when the
  Accept header lists schema 2 first, which ``ACCEPT`` does).
- ``select_platform`` picks an index entry the way podman does: os and
  architecture must match, a wanted variant must match, and among the rest
  an entry without a variant is preferred over one with another variant.
- ``RunConfig`` is the part of an image config a container needs.
- Layer compression is read from the blob's first bytes when they are at
  hand (some registries mislabel), else from the media type
  (``compression``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


class MediaError(ValueError):
    """A manifest, index or config is malformed or of an unsupported kind."""


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict | None = None
    annotations: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> Descriptor:
        try:
            return cls(d.get("mediaType", ""), d["digest"], int(d.get("size", -1)),
                       d.get("platform"), d.get("annotations") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise MediaError(f"descriptor without a digest: {d!r}") from exc

    def to_json(self) -> dict:
        out = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: list[Descriptor]


def load_json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MediaError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MediaError(f"{what} is not a JSON object")
    return doc


def kind(data: bytes, header_type: str | None = None) -> str:
    """The media type of a manifest document (its own field, else the
    Content-Type the registry sent, else guessed from its shape)."""
    doc = load_json(data, "manifest")
    media = doc.get("mediaType") or (header_type or "").split(";")[0].strip()
    if media in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise MediaError("Docker schema 1 manifests are not supported")
    if media in MANIFESTS or media in INDEXES:
        return media
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    raise MediaError(f"unsupported manifest type {media or 'unknown'!r}")


def parse_manifest(data: bytes) -> Manifest:
    doc = load_json(data, "manifest")
    try:
        return Manifest(doc.get("mediaType") or OCI_MANIFEST,
                        Descriptor.from_json(doc["config"]),
                        [Descriptor.from_json(d) for d in doc["layers"]])
    except (KeyError, TypeError) as exc:
        raise MediaError(f"manifest lacks {exc}") from exc


def parse_index(data: bytes) -> list[Descriptor]:
    doc = load_json(data, "index")
    try:
        return [Descriptor.from_json(d) for d in doc["manifests"]]
    except (KeyError, TypeError) as exc:
        raise MediaError("index has no manifests list") from exc


def host_platform() -> str:
    machine = os.uname().machine
    arch = _ARCH.get(machine, machine)
    if arch == "arm64":
        return "linux/arm64/v8"
    if arch == "arm":
        return "linux/arm/v" + ("6" if machine == "armv6l" else "7")
    return f"linux/{arch}"


def parse_platform(text: str) -> tuple[str, str, str | None]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {text!r} is not os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def select_platform(entries: list[Descriptor], wanted: str) -> Descriptor | None:
    os_, arch, variant = parse_platform(wanted)
    best, best_score = None, -1
    for entry in entries:
        plat = entry.platform or {}
        if plat.get("os") != os_ or plat.get("architecture") != arch:
            continue
        have = plat.get("variant")
        if have == variant:
            score = 2
        elif have is None or variant is None or (arch == "arm64" and {have, variant} <= {"v8"}):
            score = 1
        else:
            continue
        if score > best_score:
            best, best_score = entry, score
    return best


def platforms(entries: list[Descriptor]) -> list[str]:
    out = []
    for e in entries:
        p = e.platform or {}
        if p.get("os") and p.get("architecture"):
            out.append("/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x))
    return out


def compression(media_type: str, head: bytes = b"") -> str | None:
    """"gzip", "zstd" or None (uncompressed), from the first bytes when
    given (they win over the media type), else from the media type."""
    if head:
        if head[:2] == b"\x1f\x8b":
            return "gzip"
        if head[:4] == b"\x28\xb5\x2f\xfd":
            return "zstd"
        return None
    if media_type.endswith("gzip"):
        return "gzip"
    if media_type.endswith("zstd"):
        return "zstd"
    return None


@dataclass(frozen=True)
class RunConfig:
    """What a container takes from an image config (docker's Config object)."""

    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    workdir: str
    user: str
    exposed_ports: list[str]
    labels: dict[str, str]
    stop_signal: str | None
    volumes: list[str]


def run_config(config: dict) -> RunConfig:
    c = config.get("config") or {}
    return RunConfig(entrypoint=list(c.get("Entrypoint") or []), cmd=list(c.get("Cmd") or []),
                     env=list(c.get("Env") or []), workdir=c.get("WorkingDir") or "/",
                     user=c.get("User") or "", exposed_ports=sorted(c.get("ExposedPorts") or {}),
                     labels=dict(c.get("Labels") or {}), stop_signal=c.get("StopSignal"),
                     volumes=sorted(c.get("Volumes") or {}))


def diff_ids(config: dict) -> list[str]:
    try:
        ids = list(config["rootfs"]["diff_ids"])
    except (KeyError, TypeError) as exc:
        raise MediaError("image config has no rootfs.diff_ids") from exc
    return ids
