"""Networking: slirp4netns throughput and start cost, prun vs rootless podman.

Setup builds one busybox tree plus the host's iperf3 and its libraries
(ldd); prun runs it with ``--rootfs DIR``, podman as an image imported from
the same tree (``podman import``). Only loopback and 10.0.2.x addresses are
used: the container reaches the host's iperf3 server through
10.0.2.2 (allow_host_loopback), the host reaches the container's through a
port published on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from benchmarks._kit import Context, benchmark

SECONDS = "3"
LOOPBACK_NET = "slirp4netns:allow_host_loopback=true"
IMAGE = "localhost/prun-netbench"


def setup(ctx: Context) -> Path:
    """The iperf3 tree for prun and the same tree as a podman image."""
    sys.path.insert(0, str(ctx.src))
    from tests.support.rootfs import build_busybox_rootfs

    root = build_busybox_rootfs(ctx.tmp / "rootfs")
    iperf3 = shutil.which("iperf3")
    libs = re.findall(r"(/\S+\.so[.\d]*) \(", ctx.run(["ldd", iperf3], text=True).stdout)
    for path in [iperf3, *libs]:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(path), dest)
    for dirpath, _, files in os.walk(root):
        ctx.chown(Path(dirpath))
        for f in files:
            if not os.path.islink(os.path.join(dirpath, f)):
                ctx.chown(Path(dirpath, f))
    if ctx.have("podman"):
        tar = ctx.tmp / "rootfs.tar"
        with tarfile.open(tar, "w") as t:
            t.add(root, arcname=".")
        ctx.chown(tar)
        ctx.run(ctx.podman(["import", str(tar), IMAGE]))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gbits(out: str) -> float:
    end = json.loads(out)["end"]
    return end["sum_received"]["bits_per_second"] / 1e9


def _container_to_host(ctx: Context, runner: list[str]) -> float:
    port = _free_port()
    server = subprocess.Popen(ctx.as_user(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p",
                                           str(port)]), stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        out = ctx.run([*runner, "iperf3", "-c", "10.0.2.2", "-p", str(port), "-t", SECONDS,
                       "-J"], text=True).stdout
        return _gbits(out)
    finally:
        server.kill()
        server.wait()


def _published(ctx: Context, runner_for_port) -> float:
    port = _free_port()
    server = subprocess.Popen(runner_for_port(port) + ["iperf3", "-s", "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            out = ctx.run(ctx.as_user(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t",
                                       SECONDS, "-J"]), check=False, text=True)
            # slirp4netns accepts before the server inside listens: an early
            # client gets an iperf3 "error" record instead of a result.
            if out.returncode == 0 and '"sum_received"' in out.stdout:
                return _gbits(out.stdout)
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"published iperf3 not reachable: {out.stdout[-300:]}")
            time.sleep(0.2)
    finally:
        server.kill()  # the supervisor; its container and slirp4netns follow
        server.wait()


def _peer(ctx: Context, result: dict, name: str, measure) -> None:
    """Measure a peer; one that fails is left out and its error noted once (kit rule)."""
    try:
        result[name] = measure()
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        err = getattr(exc, "stderr", None) or str(exc)
        ctx.warnings.add(f"{name} failed: {str(err).strip()[-300:]}")


def _prun(ctx: Context, *args: str) -> list[str]:
    return ctx.as_user(["prun", "run", "--rm", *args, "--rootfs", str(ctx.state)])


def _podman(ctx: Context, *args: str) -> list[str]:
    return ctx.podman(["run", "--rm", *args, IMAGE])


@benchmark("net.container-to-host", unit="Gbit/s", higher_is_better=True, repeat=3,
           setup=setup)
def container_to_host(ctx: Context) -> dict[str, float]:
    """iperf3 client in the container -> host 127.0.0.1 via 10.0.2.2 (slirp4netns)"""
    result = {"prun": _container_to_host(ctx, _prun(ctx, "--network", LOOPBACK_NET))}
    if ctx.have("podman"):
        _peer(ctx, result, "podman-slirp4netns", lambda: _container_to_host(
            ctx, _podman(ctx, "--network", LOOPBACK_NET)))
    return result


@benchmark("net.published-port", unit="Gbit/s", higher_is_better=True, repeat=3,
           setup=setup)
def published_port(ctx: Context) -> dict[str, float]:
    """iperf3 host client -> -p 127.0.0.1:P:5201 -> iperf3 server in the container"""
    result = {"prun": _published(ctx, lambda p: _prun(ctx, "-p", f"127.0.0.1:{p}:5201"))}
    if ctx.have("podman"):
        _peer(ctx, result, "podman-slirp4netns-ports", lambda: _published(ctx, lambda p: _podman(
            ctx, "--network", "slirp4netns:port_handler=slirp4netns", "-p",
            f"127.0.0.1:{p}:5201")))
        _peer(ctx, result, "podman-rootlessport", lambda: _published(ctx, lambda p: _podman(
            ctx, "--network", "slirp4netns", "-p", f"127.0.0.1:{p}:5201")))
    return result


@benchmark("net.start-overhead", unit="ms", higher_is_better=False, repeat=5, setup=setup)
def start_overhead(ctx: Context) -> dict[str, float]:
    """`run --rm true`: --network slirp4netns minus --network none (median of 3 each)"""
    def cost(make) -> float:
        slirp = sorted(ctx.time(make("slirp4netns")) for _ in range(3))[1]
        none = sorted(ctx.time(make("none")) for _ in range(3))[1]
        return (slirp - none) * 1000
    result = {"prun": cost(lambda mode: _prun(ctx, "--network", mode) + ["true"])}
    if ctx.have("podman"):
        _peer(ctx, result, "podman", lambda: cost(
            lambda mode: _podman(ctx, "--network", mode) + ["true"]))
    return result
