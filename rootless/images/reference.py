"""Image references, normalised the way docker and podman do.

- ``alpine`` → ``docker.io/library/alpine:latest``; ``user/app`` →
  ``docker.io/user/app:latest``; ``host:5000/a/b@sha256:…`` keeps its host.
  The first path component is a registry host when it holds a ``.`` or a
  ``:`` or is ``localhost``; ``index.docker.io`` is spelled ``docker.io``.
- A reference names a tag, a digest or both (``name:tag@digest`` pulls by
  digest); without either it means ``:latest``.
- Invalid references are rejected with the reason (``UsageError``):
  uppercase letters, bad characters, a tag over 128 characters, a digest that
  is not ``sha256:<64 hex>``, a name over 255 characters.
- A reference written without a host is *short*: ``candidates`` expands it
  to ``localhost/NAME`` (images a user built, imported or loaded without a
  host) and then each search registry from the configuration, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from rootless.errors import UsageError

DOCKER_HUB = "docker.io"
LOCALHOST = "localhost"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*"
                   r"[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?\Z")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str                 # "library/alpine"
    tag: str | None = None
    digest: str | None = None
    short: bool = False       # written without a registry host

    @property
    def name(self) -> str:
        """Repository with its host: docker.io/library/alpine."""
        return f"{self.domain}/{self.path}"

    @property
    def tagged(self) -> str:
        """name:tag (the tag defaults to latest); what a tag row stores."""
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    @property
    def manifest_ref(self) -> str:
        """What to ask the registry for: the digest when given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = self.name
        if self.tag or not self.digest:
            text += f":{self.tag or DEFAULT_TAG}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse and normalise ``text``; UsageError says what is wrong with it."""
    def bad(why: str) -> UsageError:
        return UsageError(f"parse image reference {text!r}: {why}",
                          hint="write it like alpine, alpine:3.19, "
                               "registry.example.com:5000/team/app@sha256:<64 hex>")

    if not text or text != text.strip():
        raise bad("empty or surrounded by spaces")
    rest, digest = text, None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.match(digest):
            raise bad(f"digest {digest!r} is not sha256:<64 lowercase hex digits>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise bad(f"tag {tag!r} is not valid (letters, digits, _ . -; at most 128)")
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == LOCALHOST):
        domain, path, short = first, remainder, False
        if not _HOST.match(domain):
            raise bad(f"registry host {domain!r} is not valid")
    else:
        domain, path, short = DOCKER_HUB, rest, True
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    if not path:
        raise bad("no repository name")
    if path.lower() != path:
        raise bad("repository name must be lowercase")
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise bad(f"repository name component {component!r} is not valid "
                      f"(lowercase letters, digits, separators . _ __ -)")
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(domain) + 1 + len(path) > 255:
        raise bad("repository name longer than 255 characters")
    return Reference(domain, path, tag, digest, short)


def on_registry(ref: Reference, domain: str) -> Reference:
    """A short reference placed on search registry ``domain``."""
    path = ref.path
    if ref.domain == DOCKER_HUB and path.startswith("library/") and domain != DOCKER_HUB:
        path = path.removeprefix("library/")
    elif domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return replace(ref, domain=domain, path=path, short=False)


def candidates(ref: Reference, search: list[str]) -> list[Reference]:
    """Fully qualified references a (possibly short) reference may mean:
    ``localhost/NAME`` first, then each search registry in order."""
    if not ref.short:
        return [ref]
    return [on_registry(ref, LOCALHOST), *(on_registry(ref, d) for d in search)]


def looks_like_id(text: str) -> bool:
    """Whether ``text`` may be an image ID or ID prefix (docker accepts ≥ 1
    hex digits; prun, like podman, wants at least 3)."""
    body = text.removeprefix("sha256:")
    return 3 <= len(body) <= 64 and all(c in "0123456789abcdef" for c in body)


def local_name(text: str) -> Reference:
    """A name prun gives an image itself (tag, import, commit): a short name
    lands under ``localhost/``, as podman does."""
    ref = parse(text)
    if ref.digest:
        raise UsageError(f"name image {text!r}: a name for an image cannot hold a digest",
                         hint="give a name and optionally a tag, e.g. myapp:1.0")
    return on_registry(ref, LOCALHOST) if ref.short else ref
