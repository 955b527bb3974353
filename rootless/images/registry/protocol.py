"""The registry HTTP API as data: requests to make, answers to read (pure).

Rules:
- Nothing here does I/O; ``client`` executes what these functions plan, so
  the auth flow, error wording and URL building are unit-tested alone.
- Auth follows the distribution spec: a 401 carries ``WWW-Authenticate``;
  ``Basic`` means send the credentials; ``Bearer realm=…,service=…,scope=…``
  means get a token from the realm (with the credentials as Basic auth when
  there are some, anonymously otherwise) and retry with it.
- A registry's error body (``{"errors": [{"code", "message", "detail"}]}``)
  becomes "registry said CODE: message"; other failures say the HTTP status.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass, field

from rootless.images import media

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class Challenge:
    scheme: str                       # "basic" or "bearer"
    params: dict[str, str]


def endpoint(host: str) -> str:
    """The host to connect to: Docker Hub's API is not served at docker.io."""
    return "registry-1.docker.io" if host == "docker.io" else host


def base_url(scheme: str, host: str) -> str:
    return f"{scheme}://{host}"


def ping(base: str) -> Request:
    return Request("GET", f"{base}/v2/")


def manifest(base: str, repo: str, ref: str, method: str = "GET") -> Request:
    return Request(method, f"{base}/v2/{repo}/manifests/{ref}", {"Accept": media.ACCEPT})


def blob(base: str, repo: str, digest: str, offset: int = 0, method: str = "GET") -> Request:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return Request(method, f"{base}/v2/{repo}/blobs/{digest}", headers)


def upload_start(base: str, repo: str, mount_from: tuple[str, str] | None = None) -> Request:
    url = f"{base}/v2/{repo}/blobs/uploads/"
    if mount_from:
        digest, source = mount_from
        url += "?" + urllib.parse.urlencode({"mount": digest, "from": source})
    return Request("POST", url, {"Content-Length": "0"})


def upload_finish(base: str, location: str, digest: str, size: int) -> Request:
    url = urllib.parse.urljoin(base + "/", location)
    sep = "&" if "?" in url else "?"
    return Request("PUT", f"{url}{sep}digest={urllib.parse.quote(digest)}",
                   {"Content-Type": "application/octet-stream", "Content-Length": str(size)})


def manifest_put(base: str, repo: str, ref: str, media_type: str, body: bytes) -> Request:
    return Request("PUT", f"{base}/v2/{repo}/manifests/{ref}", {"Content-Type": media_type},
                   body)


def scope(repo: str, push: bool = False) -> str:
    return f"repository:{repo}:{'pull,push' if push else 'pull'}"


def parse_challenge(header: str | None) -> Challenge | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)\s*=\s*"([^"]*)"', rest)}
    return Challenge(scheme.lower(), params)


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def token_request(challenge: Challenge, scopes: list[str],
                  credentials: tuple[str, str] | None) -> Request:
    realm = challenge.params.get("realm")
    if not realm:
        raise ValueError("Bearer challenge without a realm")
    query = [("service", challenge.params["service"])] if "service" in challenge.params else []
    wanted = scopes or ([challenge.params["scope"]] if "scope" in challenge.params else [])
    query += [("scope", s) for s in wanted]
    sep = "&" if "?" in realm else "?"
    url = realm + (sep + urllib.parse.urlencode(query) if query else "")
    headers = {"Authorization": basic_header(*credentials)} if credentials else {}
    return Request("GET", url, headers)


def token_from(body: bytes) -> str:
    doc = json.loads(body)
    token = doc.get("token") or doc.get("access_token")
    if not token:
        raise ValueError("token response has no token")
    return token


def error_text(status: int, body: bytes) -> str:
    """What the registry said, for an error message."""
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    if errors:
        first = errors[0]
        code, message = first.get("code", ""), first.get("message", "")
        detail = first.get("detail")
        text = f"registry said {code}: {message}" if code else f"registry said: {message}"
        if isinstance(detail, str) and detail and detail not in message:
            text += f" ({detail})"
        return text
    return f"registry answered HTTP {status}"


def error_codes(body: bytes) -> set[str]:
    try:
        return {e.get("code", "") for e in json.loads(body).get("errors") or []}
    except (ValueError, AttributeError):
        return set()
