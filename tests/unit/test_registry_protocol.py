"""Registry request planning, auth challenges, error wording, media parsing,
platform choice and registries.conf — pure functions."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.images import auth, config, media
from rootless.images.registry import protocol


def test_bearer_challenge_becomes_a_token_request_with_basic_credentials():
    ch = protocol.parse_challenge('Bearer realm="https://auth.example.com/token",'
                                  'service="registry.example.com",'
                                  'scope="repository:team/app:pull"')
    assert ch.scheme == "bearer"
    req = protocol.token_request(ch, [], ("me", "pw"))
    assert req.url == ("https://auth.example.com/token?service=registry.example.com"
                       "&scope=repository%3Ateam%2Fapp%3Apull")
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"me:pw").decode()
    anon = protocol.token_request(ch, ["repository:x:pull,push"], None)
    assert "Authorization" not in anon.headers
    assert anon.url.endswith("scope=repository%3Ax%3Apull%2Cpush")


def test_basic_challenge_and_missing_realm():
    assert protocol.parse_challenge('Basic realm="x"').scheme == "basic"
    assert protocol.parse_challenge(None) is None
    with pytest.raises(ValueError):
        protocol.token_request(protocol.Challenge("bearer", {}), [], None)


def test_registry_error_bodies_become_messages():
    body = json.dumps({"errors": [{"code": "NAME_UNKNOWN",
                                   "message": "repository name not known to registry",
                                   "detail": {"name": "nosuch"}}]}).encode()
    assert protocol.error_text(404, body) == \
        "registry said NAME_UNKNOWN: repository name not known to registry"
    assert protocol.error_text(502, b"<html>bad gateway</html>") == "registry answered HTTP 502"
    assert protocol.error_codes(body) == {"NAME_UNKNOWN"}


def test_docker_hub_is_reached_at_its_api_host():
    assert protocol.endpoint("docker.io") == "registry-1.docker.io"
    assert protocol.endpoint("quay.io") == "quay.io"


def test_request_plans():
    m = protocol.manifest("https://r", "a/b", "latest", "HEAD")
    assert (m.method, m.url) == ("HEAD", "https://r/v2/a/b/manifests/latest")
    assert media.OCI_INDEX in m.headers["Accept"]
    assert protocol.blob("https://r", "a", "sha256:x", 100).headers == {"Range": "bytes=100-"}
    put = protocol.upload_finish("https://r", "/v2/a/blobs/uploads/u?state=s", "sha256:x", 3)
    assert put.url == "https://r/v2/a/blobs/uploads/u?state=s&digest=sha256%3Ax"


def _entry(plat: dict) -> media.Descriptor:
    return media.Descriptor(media.OCI_MANIFEST, "sha256:" + json.dumps(plat), 1, plat)


def test_platform_selection_prefers_exact_variant_and_refuses_other_arches():
    arm7 = _entry({"os": "linux", "architecture": "arm", "variant": "v7"})
    arm6 = _entry({"os": "linux", "architecture": "arm", "variant": "v6"})
    amd = _entry({"os": "linux", "architecture": "amd64"})
    arm64 = _entry({"os": "linux", "architecture": "arm64", "variant": "v8"})
    win = _entry({"os": "windows", "architecture": "amd64"})
    entries = [win, arm6, arm7, arm64, amd]
    assert media.select_platform(entries, "linux/amd64") is amd
    assert media.select_platform(entries, "linux/arm/v7") is arm7
    assert media.select_platform(entries, "linux/arm64") is arm64
    assert media.select_platform([win, arm6], "linux/amd64") is None
    assert media.platforms(entries)[0] == "windows/amd64"


def test_manifest_kinds():
    assert media.kind(b'{"schemaVersion":2,"manifests":[]}') == media.OCI_INDEX
    with pytest.raises(media.MediaError, match="schema 1"):
        media.kind(b'{"schemaVersion":1,"fsLayers":[]}')
    with pytest.raises(media.MediaError):
        media.kind(b"not json")


def test_run_config_defaults():
    rc = media.run_config({"config": {"Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}}}})
    assert (rc.cmd, rc.entrypoint, rc.workdir, rc.exposed_ports) == (["sh"], [], "/",
                                                                      ["80/tcp"])


def test_registries_conf(tmp_path: Path):
    conf = config.parse('unqualified-search-registries = ["quay.io", "docker.io"]\n'
                        '[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n'
                        '[[registry]]\nlocation = "example.com/team"\nblocked = true\n')
    assert conf.search == ["quay.io", "docker.io"]
    assert conf.lookup("127.0.0.1:5000/app").insecure
    assert conf.lookup("example.com/team/app").blocked
    assert conf.lookup("example.com/other") is None
    (tmp_path / "r.toml").write_text("unqualified-search-registries = [")
    with pytest.raises(UsageError, match="read registries configuration"):
        config.load({"PRUN_REGISTRIES_CONF": str(tmp_path / "r.toml"), "HOME": str(tmp_path)})


def test_auth_file_round_trip_is_private(tmp_path: Path):
    env = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"), "HOME": str(tmp_path)}
    path = auth.save("reg.example:5000", "me", "p:w", env)
    assert path.stat().st_mode & 0o777 == 0o600
    assert auth.lookup("reg.example:5000", env) == ("me", "p:w")
    docker = tmp_path / ".docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {
        "auth": base64.b64encode(b"hub:secret").decode()}}}))
    assert auth.lookup("docker.io", env) == ("hub", "secret")
    assert auth.remove("reg.example:5000", env)
    assert auth.lookup("reg.example:5000", env) is None


def test_mirrors_come_first_and_replace_the_location():
    conf = config.parse('[[registry]]\nlocation = "docker.io"\n'
                        '[[registry.mirror]]\nlocation = "mirror.example/cache"\ninsecure = true\n'
                        '[[registry.mirror]]\nlocation = "m2.example"\n')
    got = config.sources("docker.io/library/alpine", conf, None)
    assert got == [config.Source("mirror.example", "cache/library/alpine", False),
                   config.Source("m2.example", "library/alpine", None),
                   config.Source("docker.io", "library/alpine", None)]
    assert config.sources("quay.io/a/b", conf, True) == [config.Source("quay.io", "a/b", True)]
