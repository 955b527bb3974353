"""Image pulls from a loopback registry, prun vs podman (and skopeo copy).

The registry is Debian's docker-registry on 127.0.0.1 (plain HTTP), holding
the four-layer debootstrap minbase image (tests/support/images.py) and a
synthetic image of 10 layers × 20 MiB of incompressible data. Every pull
goes into an empty store (prun: a fresh PRUN_ROOT; podman: `rmi -af`
first, untimed); skopeo copies to a fresh OCI layout dir (no unpacking, so
it is the floor for the download + verify part).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks._kit import Context, benchmark


def _setup(ctx: Context) -> dict:
    sys.path.insert(0, str(ctx.src))
    from tests.support import images
    from tests.support.registry import Registry, free_port

    cache = Path(f"/var/tmp/prun-image-cache-{ctx.uid}")
    debian = images.debian_image(cache if cache.is_dir() else None)
    synthetic = images.synthetic_image(ctx.tmp.parent / "synthetic-10x20")
    reg = Registry(ctx.tmp / "registry", free_port(), tls=False).start()
    reg.push(debian, "debian", "bookworm")
    reg.push(synthetic, "synthetic", "latest")
    n = {"count": 0}
    return {"registry": reg, "n": n}


def _teardown(ctx: Context) -> None:
    if ctx.state:
        ctx.state["registry"].stop()


def _fresh_store(ctx: Context) -> dict:
    ctx.state["n"]["count"] += 1
    root = ctx.tmp / f"store-{ctx.state['n']['count']}"
    root.mkdir()
    ctx.chown(root)
    return {"PRUN_ROOT": str(root), "PRUN_RUNROOT": str(ctx.tmp / "run")}


def _podman_clean(ctx: Context) -> None:
    ctx.run(ctx.podman(["rmi", "-af"]), check=False)


def _pull_pair(ctx: Context, image: str) -> dict[str, float]:
    host = ctx.state["registry"].host
    ref = f"{host}/{image}"
    env = _fresh_store(ctx)
    result = {"prun": ctx.time(ctx.as_user(["prun", "pull", "-q", "--tls-verify=false", ref],
                                           env)) * 1000}
    shutil.rmtree(env["PRUN_ROOT"])
    if ctx.have("podman"):
        _podman_clean(ctx)
        try:
            result["podman"] = ctx.time(ctx.podman(["pull", "-q", "--tls-verify=false",
                                                    ref])) * 1000
        except subprocess.CalledProcessError as exc:
            ctx.warnings.add(f"podman pull failed: {exc.stderr.decode()[-300:]}")
    if ctx.have("skopeo"):
        dest = ctx.tmp / "skopeo-oci"
        shutil.rmtree(dest, ignore_errors=True)
        try:
            result["skopeo copy"] = ctx.time(ctx.as_user(
                ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                 f"oci:{dest}:x"])) * 1000
        except subprocess.CalledProcessError as exc:
            ctx.warnings.add(f"skopeo copy failed: {exc.stderr.decode()[-300:]}")
        shutil.rmtree(dest, ignore_errors=True)
    return result


@benchmark("images.pull-debian", unit="ms", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_teardown)
def pull_debian(ctx: Context) -> dict[str, float]:
    """pull of the 4-layer debootstrap minbase image (~120 MiB) into an empty store"""
    return _pull_pair(ctx, "debian:bookworm")


@benchmark("images.pull-synthetic", unit="ms", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_teardown)
def pull_synthetic(ctx: Context) -> dict[str, float]:
    """pull of 10 layers x 20 MiB (incompressible) into an empty store"""
    return _pull_pair(ctx, "synthetic:latest")


def _repull_setup(ctx: Context) -> dict:
    state = _setup(ctx)
    ctx.state = state
    ref = f"{state['registry'].host}/debian:bookworm"
    state["env"] = _fresh_store(ctx)
    ctx.run(ctx.as_user(["prun", "pull", "-q", "--tls-verify=false", ref], state["env"]))
    if ctx.have("podman"):
        _podman_clean(ctx)
        ctx.run(ctx.podman(["pull", "-q", "--tls-verify=false", ref]), check=False)
    return state


@benchmark("images.repull", unit="ms", higher_is_better=False, repeat=10,
           setup=_repull_setup, teardown=_teardown)
def repull(ctx: Context) -> dict[str, float]:
    """pull of an image already in the store (one manifest HEAD round trip)"""
    ref = f"{ctx.state['registry'].host}/debian:bookworm"
    result = {"prun": ctx.time(ctx.as_user(["prun", "pull", "-q", "--tls-verify=false", ref],
                                           ctx.state["env"])) * 1000}
    if ctx.have("podman"):
        result["podman"] = ctx.time(ctx.podman(["pull", "-q", "--tls-verify=false",
                                                ref])) * 1000
    return result


def _max_rss_kib(ctx: Context, argv: list[str]) -> float:
    out = ctx.run(["/usr/bin/time", "-f", "MAXRSS %M", *argv], text=True)
    for line in out.stderr.splitlines()[::-1]:
        if line.startswith("MAXRSS "):
            return float(line.split()[1])
    raise RuntimeError("no MAXRSS line from /usr/bin/time")


@benchmark("images.pull-rss", unit="MiB", higher_is_better=False, repeat=2,
           setup=_setup, teardown=_teardown)
def pull_rss(ctx: Context) -> dict[str, float]:
    """peak RSS of the pull of 10 layers x 20 MiB (largest single process)"""
    ref = f"{ctx.state['registry'].host}/synthetic:latest"
    env = _fresh_store(ctx)
    result = {"prun": _max_rss_kib(ctx, ctx.as_user(["prun", "pull", "-q",
                                                     "--tls-verify=false", ref], env)) / 1024}
    shutil.rmtree(env["PRUN_ROOT"])
    if ctx.have("podman"):
        _podman_clean(ctx)
        result["podman"] = _max_rss_kib(ctx, ctx.podman(["pull", "-q", "--tls-verify=false",
                                                         ref])) / 1024
    return result
