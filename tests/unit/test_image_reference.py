"""Image references normalise like docker's and are rejected with the reason."""

from __future__ import annotations

import pytest

from rootless.errors import UsageError
from rootless.images import reference
from rootless.images.reference import candidates, local_name, parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, expected", [
    ("alpine", "docker.io/library/alpine:latest"),
    ("alpine:3.19", "docker.io/library/alpine:3.19"),
    ("user/app", "docker.io/user/app:latest"),
    ("index.docker.io/library/alpine", "docker.io/library/alpine:latest"),
    ("quay.io/team/app:v1", "quay.io/team/app:v1"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/a/b/c:tag", "localhost:5000/a/b/c:tag"),
    ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
    (f"host:5000/a/b@{DIGEST}", f"host:5000/a/b@{DIGEST}"),
    (f"alpine:3@{DIGEST}", f"docker.io/library/alpine:3@{DIGEST}"),
    ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest"),
])
def test_normalises_like_docker(text, expected):
    assert str(parse(text)) == expected


def test_manifest_ref_prefers_the_digest():
    assert parse(f"alpine:3@{DIGEST}").manifest_ref == DIGEST
    assert parse("alpine").manifest_ref == "latest"
    assert parse("alpine").short and not parse("docker.io/alpine").short


@pytest.mark.parametrize("text, why", [
    ("Alpine", "lowercase"),
    ("alpine:", "tag ''"),
    ("alpine:bad/tag", "not valid"),
    ("alpine@sha256:abc", "digest"),
    ("alpine@md5:" + "a" * 32, "digest"),
    ("-alpine", "component '-alpine'"),
    ("a//b", "component ''"),
    ("", "empty"),
    (" alpine", "spaces"),
    ("alpine:" + "t" * 129, "tag"),
    ("example.com/" + "a" * 250, "255"),
    ("bad_host:5000:1/x", "not valid"),
])
def test_rejects_invalid_references_with_the_reason(text, why):
    with pytest.raises(UsageError) as err:
        parse(text)
    assert why in err.value.message
    assert err.value.message.startswith(f"parse image reference {text!r}")
    assert err.value.hint


def test_short_names_try_localhost_first_then_search_registries():
    got = [str(r) for r in candidates(parse("app:1"), ["quay.io", "docker.io"])]
    assert got == ["localhost/app:1", "quay.io/app:1", "docker.io/library/app:1"]
    assert [str(r) for r in candidates(parse("quay.io/x/app"), ["docker.io"])] == \
        ["quay.io/x/app:latest"]


def test_local_names_go_under_localhost():
    assert local_name("myimg").tagged == "localhost/myimg:latest"
    assert local_name("team/img:2").tagged == "localhost/team/img:2"
    assert local_name("quay.io/a/b").tagged == "quay.io/a/b:latest"
    with pytest.raises(UsageError):
        local_name(f"x@{DIGEST}")


def test_id_prefixes():
    assert reference.looks_like_id("48225e6b")
    assert reference.looks_like_id("sha256:" + "0" * 64)
    assert not reference.looks_like_id("ab")
    assert not reference.looks_like_id("alpine")
