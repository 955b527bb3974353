"""The registry fixtures serve the stock images for real: a manifest and its
blobs come back byte-identical (right digests) over plain HTTP, HTTPS with
basic auth, and HTTPS with bearer tokens; auth is really enforced."""

from __future__ import annotations

import hashlib
import json
import ssl

import pytest

from tests.support.images import OCI_MANIFEST
from tests.support.registry import Pusher

pytestmark = pytest.mark.integration


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_image(pusher: Pusher, repo: str, image) -> None:
    status, headers, body = pusher.get(f"/v2/{repo}/manifests/latest", accept=OCI_MANIFEST)
    assert status == 200, body
    assert sha(body) == image.manifest_digest == headers["Docker-Content-Digest"]
    manifest = json.loads(body)
    for desc in [manifest["config"], manifest["layers"][-1]]:
        status, _, blob = pusher.get(f"/v2/{repo}/blobs/{desc['digest']}")
        assert status == 200
        assert sha(blob) == desc["digest"]
        assert len(blob) == desc["size"]


def test_plain_http_registry_serves_the_busybox_image(plain_registry, stock_images):
    check_image(plain_registry.pusher(), "busybox", stock_images["busybox"])


def test_tls_registry_serves_with_basic_auth_and_enforces_it(tls_registry, stock_images):
    check_image(tls_registry.pusher(), "busybox", stock_images["busybox"])
    anonymous = Pusher(tls_registry, user=None)
    status, headers, _ = anonymous.get("/v2/busybox/manifests/latest")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic ")


def test_tls_registry_certificate_is_signed_by_the_test_ca_only(tls_registry):
    import http.client

    conn = http.client.HTTPSConnection(tls_registry.host, context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/v2/")
    conn.close()


def test_token_registry_issues_bearer_tokens(token_registry, stock_images):
    check_image(token_registry.pusher(), "private/busybox", stock_images["busybox"])
    anonymous = Pusher(token_registry, user=None)
    check_image(anonymous, "public/busybox", stock_images["busybox"])
    status, _, _ = anonymous.raw("GET", "/v2/private/busybox/manifests/latest")
    assert status == 401
    users = {r["user"] for r in token_registry.token_server.requests if r["status"] == 200}
    assert users >= {None, "prun-tester"}


def test_multiarch_index_is_served(plain_registry, stock_images):
    index = stock_images["multiarch"]
    status, headers, body = plain_registry.pusher().get(
        "/v2/multiarch/manifests/latest", accept="application/vnd.oci.image.index.v1+json")
    assert status == 200
    assert sha(body) == index.manifest_digest
    platforms = {(m["platform"]["architecture"]) for m in json.loads(body)["manifests"]}
    assert platforms == {"amd64", "arm64"}


def test_debian_image_has_four_layers_with_debian_owners(debian_in_registry):
    import gzip
    import io
    import tarfile

    registry, image = debian_in_registry
    pusher = registry.pusher()
    status, headers, body = pusher.get("/v2/debian/manifests/bookworm", accept=OCI_MANIFEST)
    assert status == 200 and sha(body) == image.manifest_digest
    layers = json.loads(body)["layers"]
    assert len(layers) == 4
    status, _, blob = pusher.get(f"/v2/debian/blobs/{layers[2]['digest']}")
    assert sha(blob) == layers[2]["digest"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar}
    assert owners["etc/shadow"] == (0, 42)     # group shadow, set by dpkg
    assert "usr/bin/bash" not in owners       # /usr went to the lower layers
