"""prun pull against real registries on loopback (plain HTTP, TLS + basic
auth, TLS + bearer tokens), with a fault-injecting proxy for what networks
do: the image lands in the store verified, or nothing does."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from rootless.images.store import Store, resolve_for_run
from tests.support.faultproxy import FaultProxy
from tests.support.prun import popen, prun
from tests.support.registry import PASSWORD, USER

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def private_auth(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def proxy(plain_registry):
    p = FaultProxy(plain_registry.host).start()
    yield p
    p.stop()


def ok(result) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def store_leftovers(root: Path) -> dict:
    return {d: sorted(os.listdir(root / d)) for d in ("layers", "tmp")
            if (root / d).exists()}


def slow_pull(proxy: FaultProxy, delay: float):
    """A prun pull through a slow link, returned once layer bytes flow."""
    proxy.delay = delay
    child = popen("pull", "--tls-verify=false", f"{proxy.host}/busybox")
    deadline = time.monotonic() + 30
    while not any(s.sent for s in proxy.blob_gets()):
        assert time.monotonic() < deadline, "the pull never started downloading"
        time.sleep(0.05)
    return child


def test_pull_by_tag_gives_the_image_run_needs(plain_registry, stock_images, private_store):
    out = ok(prun("pull", "--tls-verify=false", f"{plain_registry.host}/busybox"))
    image = stock_images["busybox"]
    assert out.strip() == image.id.split(":")[1]
    run = resolve_for_run(f"{plain_registry.host}/busybox")
    assert run.id == image.id and run.cmd == ["sh"]
    assert [p.name for p in run.layer_dirs] == [d.split(":")[1] for d in image.diff_ids]
    assert (run.layer_dirs[0] / "bin/busybox").is_file()
    assert (run.layer_dirs[1] / "etc/motd").read_text() == "hello from layer 2\n"
    assert (run.layer_dirs[1] / "etc/.wh.removed-in-layer2").exists()
    assert run.lowerdirs == run.layer_dirs[::-1]
    listed = ok(prun("images", "--format", "json"))
    assert json.loads(listed)[0]["Names"] == [f"{plain_registry.host}/busybox:latest"]


def test_repull_of_a_present_image_is_one_head_request(proxy, stock_images):
    ok(prun("pull", "-q", "--tls-verify=false", f"{proxy.host}/busybox"))
    proxy.requests.clear()
    result = prun("pull", "--tls-verify=false", f"{proxy.host}/busybox")
    ok(result)
    assert "up to date" in result.stderr
    assert [(s.method, s.path.split("/")[-1]) for s in proxy.requests
            if s.path != "/v2/"] == [("HEAD", "latest")]


@pytest.mark.parametrize("name", ["busybox-zstd", "busybox-plain", "busybox-docker"])
def test_compressions_and_docker_manifests_give_the_same_image(plain_registry, stock_images,
                                                               name):
    out = ok(prun("pull", "-q", "--tls-verify=false", f"{plain_registry.host}/{name}"))
    assert out.strip() == stock_images[name].id.split(":")[1]
    run = resolve_for_run(f"{plain_registry.host}/{name}")
    assert (run.layer_dirs[0] / "bin/busybox").is_file()


def test_pull_by_digest(plain_registry, stock_images):
    digest = stock_images["busybox"].manifest_digest
    ok(prun("pull", "-q", "--tls-verify=false", f"{plain_registry.host}/busybox@{digest}"))
    run = resolve_for_run(f"{plain_registry.host}/busybox@{digest}")
    assert run.id == stock_images["busybox"].id


def test_multiarch_index_picks_linux_amd64_or_the_platform_asked(plain_registry, stock_images):
    ok(prun("pull", "-q", "--tls-verify=false", f"{plain_registry.host}/multiarch"))
    run = resolve_for_run(f"{plain_registry.host}/multiarch")
    assert (run.layer_dirs[-1] / "etc/platform").read_text() == "linux/amd64\n"
    ok(prun("pull", "-q", "--tls-verify=false", "--platform", "linux/arm64",
            f"{plain_registry.host}/multiarch"))
    run = resolve_for_run(f"{plain_registry.host}/multiarch")
    assert (run.layer_dirs[-1] / "etc/platform").read_text() == "linux/arm64/v8\n"
    bad = prun("pull", "--tls-verify=false", "--platform", "linux/s390x",
               f"{plain_registry.host}/multiarch")
    assert bad.returncode == 125
    assert "no image for platform linux/s390x" in bad.stderr and "linux/amd64" in bad.stderr


def test_missing_image_is_one_line_with_the_registry_reason(plain_registry, private_store):
    result = prun("pull", "--tls-verify=false", f"{plain_registry.host}/nosuch")
    assert result.returncode == 125
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"prun: error: pull {plain_registry.host}/nosuch:latest: "
                               f"registry said ")
    assert "UNKNOWN" in lines[0]
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr


def test_plain_http_registry_needs_tls_verify_false(plain_registry):
    result = prun("pull", f"{plain_registry.host}/busybox")
    assert result.returncode == 125
    assert "TLS handshake" in result.stderr and "--tls-verify=false" in result.stderr


def test_tls_registry_with_basic_auth(tls_registry, registry_certs, stock_images):
    host = tls_registry.host
    untrusted = prun("pull", f"{host}/busybox")
    assert untrusted.returncode == 125 and "not trusted" in untrusted.stderr
    certs = str(registry_certs.cert_dir(host))
    anonymous = prun("pull", "--cert-dir", certs, f"{host}/busybox")
    assert anonymous.returncode == 125 and "prun login" in anonymous.stderr
    wrong = prun("pull", "--cert-dir", certs, "--creds", f"{USER}:nope", f"{host}/busybox")
    assert wrong.returncode == 125 and "check the user name and password" in wrong.stderr
    ok(prun("login", "--cert-dir", certs, "-u", USER, "--password-stdin", host,
            input=f"{PASSWORD}\n".encode()))
    out = ok(prun("pull", "-q", "--cert-dir", certs, f"{host}/busybox"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]
    assert oct(Path(os.environ["REGISTRY_AUTH_FILE"]).stat().st_mode & 0o777) == "0o600"
    ok(prun("logout", host))
    again = prun("pull", "--cert-dir", certs, f"{host}/multiarch")
    assert again.returncode == 125


def test_token_registry_anonymous_public_and_authenticated_private(token_registry,
                                                                   registry_certs,
                                                                   stock_images):
    host = token_registry.host
    certs = str(registry_certs.cert_dir(host))
    ok(prun("pull", "-q", "--cert-dir", certs, f"{host}/public/busybox"))
    denied = prun("pull", "--cert-dir", certs, f"{host}/private/busybox")
    assert denied.returncode == 125 and "prun login" in denied.stderr
    out = ok(prun("pull", "-q", "--cert-dir", certs, "--creds", f"{USER}:{PASSWORD}",
                  f"{host}/private/busybox"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]
    assert any(r["user"] == USER and r["status"] == 200
               for r in token_registry.token_server.requests)


def test_corrupt_blob_stores_nothing(proxy, private_store, stock_images):
    proxy.corrupt = True
    result = prun("pull", "--tls-verify=false", f"{proxy.host}/busybox")
    assert result.returncode == 125
    assert "blob has digest sha256:" in result.stderr and ", expected sha256:" in result.stderr
    assert "nothing was stored" in result.stderr
    assert ok(prun("images", "-q")) == ""
    # The damaged (big) layer is not there; an intact small one may be, for reuse.
    left = store_leftovers(private_store)
    assert stock_images["busybox"].diff_ids[0].split(":")[1] not in left["layers"]
    assert left["tmp"] == []


def test_dropped_connection_resumes_with_range(proxy, stock_images):
    proxy.cut_after = 100_000
    out = ok(prun("pull", "-q", "--tls-verify=false", f"{proxy.host}/busybox"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]
    assert any(s.range == "bytes=100000-" for s in proxy.blob_gets())


def test_kill_9_mid_pull_leaves_no_image_and_the_next_pull_works(proxy, private_store,
                                                                 stock_images):
    child = slow_pull(proxy, 0.5)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert ok(prun("images", "-q")) == ""
    assert os.listdir(private_store / "tmp") == []  # the dead pull's work was cleaned up
    proxy.delay = 0
    out = ok(prun("pull", "-q", "--tls-verify=false", f"{proxy.host}/busybox"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]


def test_concurrent_pulls_of_one_image(plain_registry, private_store, stock_images):
    children = [popen("pull", "-q", "--tls-verify=false", f"{plain_registry.host}/busybox")
                for _ in range(3)]
    outs = [c.communicate(timeout=120) for c in children]
    assert [c.returncode for c in children] == [0, 0, 0], outs
    assert {o[0].strip() for o in outs} == {stock_images["busybox"].id.split(":")[1]}
    assert sorted(os.listdir(private_store / "layers")) == \
        sorted(d.split(":")[1] for d in stock_images["busybox"].diff_ids)
    assert os.listdir(private_store / "tmp") == []


def test_push_then_pull_elsewhere_gives_the_same_image(plain_registry, token_registry,
                                                       registry_certs, stock_images,
                                                       private_store, monkeypatch, tmp_path):
    ok(prun("pull", "-q", "--tls-verify=false", f"{plain_registry.host}/busybox"))
    ok(prun("tag", f"{plain_registry.host}/busybox", "mine:1"))
    ok(prun("push", "--tls-verify=false", "mine:1", f"{plain_registry.host}/pushed/mine:1"))
    certs = str(registry_certs.cert_dir(token_registry.host))
    ok(prun("push", "--cert-dir", certs, "--creds", f"{USER}:{PASSWORD}", "mine:1",
            f"{token_registry.host}/private/mine:1"))
    monkeypatch.setenv("PRUN_ROOT", str(tmp_path / "other-store"))
    out = ok(prun("pull", "-q", "--tls-verify=false", f"{plain_registry.host}/pushed/mine:1"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]
    out = ok(prun("pull", "-q", "--cert-dir", certs, "--creds", f"{USER}:{PASSWORD}",
                  f"{token_registry.host}/private/mine:1"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]


def test_debian_image_pull(debian_in_registry, private_store):
    registry, image = debian_in_registry
    out = ok(prun("pull", "-q", "--tls-verify=false", f"{registry.host}/debian:bookworm"))
    assert out.strip() == image.id.split(":")[1]
    run = resolve_for_run(f"{registry.host}/debian:bookworm")
    assert len(run.layer_dirs) == 4 and run.cmd == ["bash"]
    assert Store(private_store).has_layer(image.diff_ids[0])
    assert (run.layer_dirs[-1] / "usr/share/doc/.wh..wh..opq").exists()


def test_short_names_use_the_search_registries_and_mirrors(plain_registry, stock_images,
                                                          tmp_path, monkeypatch):
    conf = tmp_path / "registries.toml"
    conf.write_text(f'unqualified-search-registries = ["{plain_registry.host}"]\n'
                    f'[[registry]]\nlocation = "{plain_registry.host}"\ninsecure = true\n'
                    f'[[registry]]\nlocation = "registry.invalid"\n'
                    f'[[registry.mirror]]\nlocation = "{plain_registry.host}"\n'
                    f'insecure = true\n')
    monkeypatch.setenv("PRUN_REGISTRIES_CONF", str(conf))
    out = ok(prun("pull", "-q", "busybox"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]
    assert resolve_for_run("busybox").name == f"{plain_registry.host}/busybox:latest"
    out = ok(prun("pull", "-q", "registry.invalid/multiarch"))
    assert out.strip() == stock_images["multiarch"].children[1].id.split(":")[1]
    assert resolve_for_run("registry.invalid/multiarch").id == \
        stock_images["multiarch"].children[1].id


def test_resolve_for_run_pulls_when_missing_and_only_then(proxy, stock_images):
    from rootless.images.pull import PullOptions
    from rootless.images.store import ImageNotFound

    ref = f"{proxy.host}/busybox"
    with pytest.raises(ImageNotFound):
        resolve_for_run(ref)
    opts = PullOptions(tls_verify=False)
    run = resolve_for_run(ref, pull="missing", quiet=True, options=opts)
    assert run.id == stock_images["busybox"].id
    proxy.requests.clear()
    assert resolve_for_run(ref, pull="missing", options=opts).id == run.id
    assert proxy.requests == []  # present: no network at all
    assert resolve_for_run(ref, pull="always", quiet=True, options=opts).id == run.id
    assert [s.method for s in proxy.requests if s.path != "/v2/"] == ["HEAD"]


def test_ctrl_c_mid_pull_exits_130_and_leaves_no_image(proxy, private_store):
    child = slow_pull(proxy, 0.2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "Fatal" not in err
    assert ok(prun("images", "-q")) == ""
    assert os.listdir(private_store / "tmp") == []


def test_503_is_retried_and_redirects_are_followed(proxy, stock_images):
    proxy.unavailable = 2
    out = ok(prun("pull", "-q", "--tls-verify=false", f"{proxy.host}/busybox"))
    assert out.strip() == stock_images["busybox"].id.split(":")[1]
    assert [s.status for s in proxy.blob_gets()][:2] == [503, 503]


def test_blob_redirects_to_another_host_are_followed(proxy, stock_images, private_store):
    proxy.redirect = True
    out = ok(prun("pull", "-q", "--tls-verify=false", f"{proxy.host}/busybox-zstd"))
    assert out.strip() == stock_images["busybox-zstd"].id.split(":")[1]
    assert {s.status for s in proxy.blob_gets()} == {307}
