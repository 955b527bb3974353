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
import signal
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
    # its own process group: runuser/unshare wrappers do not pass a kill on
    server = subprocess.Popen(runner_for_port(port) + ["iperf3", "-s", "-p", "5201"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
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
                why = server.stderr.read()[-300:] if server.poll() is not None else ""
                raise RuntimeError(f"published iperf3 not reachable: {why or out.stdout[-200:]}")
            time.sleep(0.2)
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the group: prun and podman forward it to iperf3, which exits,
    and --rm removes the container (a SIGKILL would orphan podman's)."""
    if server.poll() is not None:
        return  # it failed to start; the caller reports why
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
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
    if ctx.have("pasta"):
        _peer(ctx, result, "prun-pasta", lambda: _published(ctx, lambda p: _prun(
            ctx, "--network", "pasta", "-p", f"127.0.0.1:{p}:5201")))
    if ctx.have("podman") and ctx.have("pasta"):
        _peer(ctx, result, "podman-pasta", lambda: _published(ctx, lambda p: _podman(
            ctx, "--network", "pasta", "-p", f"127.0.0.1:{p}:5201")))
    if ctx.have("podman"):
        _peer(ctx, result, "podman-slirp4netns-ports", lambda: _published(ctx, lambda p: _podman(
            ctx, "--network", "slirp4netns:port_handler=slirp4netns", "-p",
            f"127.0.0.1:{p}:5201")))
        _peer(ctx, result, "podman-rootlessport", lambda: _published(ctx, lambda p: _podman(
            ctx, "--network", "slirp4netns", "-p", f"127.0.0.1:{p}:5201")))
    return result


@benchmark("net.start-overhead", unit="ms", higher_is_better=False, repeat=5, setup=setup)
def start_overhead(ctx: Context) -> dict[str, float]:
    """`run --rm true`: --network slirp4netns minus --network none (best of 8 each)"""
    def cost(make) -> float:
        # best of 5, alternating: on a shared machine the minimum is the
        # stable estimate of each mode's own cost
        slirp, none = [], []
        for _ in range(8):
            slirp.append(ctx.time(make("slirp4netns")))
            none.append(ctx.time(make("none")))
        return (min(slirp) - min(none)) * 1000
    result = {"prun": cost(lambda mode: _prun(ctx, "--network", mode) + ["true"])}
    if ctx.have("podman"):
        _peer(ctx, result, "podman", lambda: cost(
            lambda mode: _podman(ctx, "--network", mode) + ["true"]))
    return result


HOOK_SCRIPT = """
import json, sys, time
from pathlib import Path
from netstack import network
from tests.support.netns import Namespace
best = {}
with Namespace() as ns:
    for i in range(5):
        hook = network.NetworkHook(network.plan(network.NetworkRequest(
            publish=["127.0.0.1::80"], hostname="h")), Path(sys.argv[1]) / str(i),
            cache_dir=Path(sys.argv[1]))
        t0 = time.perf_counter()
        hook.namespaces_ready(ns.pid)
        hook.container_created(ns.pid)
        t1 = time.perf_counter()
        hook.close()
        t2 = time.perf_counter()
        for k, v in (("setup", t1 - t0), ("teardown", t2 - t1)):
            best[k] = min(best.get(k, 1e9), v * 1000)
print(json.dumps(best))
"""


@benchmark("net.hook", unit="ms", higher_is_better=False, repeat=3)
def hook_cost(ctx: Context) -> dict[str, float]:
    """prun's network hook alone: slirp4netns to ready + 1 port + tap0 check (best of 5)"""
    python = str(ctx.venv / "bin/python") if ctx.venv else sys.executable
    out = ctx.run(ctx.as_user([python, "-c", HOOK_SCRIPT, str(ctx.tmp)],
                              env={"PYTHONPATH": str(ctx.src)}), text=True, cwd=ctx.src).stdout
    best = json.loads(out)
    return {"prun": best["setup"], "prun-teardown": best["teardown"]}
