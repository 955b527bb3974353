"""Networking: slirp4netns throughput and start cost, prun vs rootless podman.

Both tools run the host's root filesystem as the container's (``--rootfs /``)
so iperf3 is inside without building an image. Only loopback and 10.0.2.x
addresses are used: the container reaches the host's iperf3 server through
10.0.2.2 (allow_host_loopback), the host reaches the container's through a
port published on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

from benchmarks._kit import Context, benchmark

SECONDS = "3"
LOOPBACK_NET = "slirp4netns:allow_host_loopback=true"


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
    return ctx.as_user(["prun", "run", "--rm", *args, "--rootfs", "/"])


def _podman(ctx: Context, *args: str) -> list[str]:
    return ctx.podman(["run", "--rm", *args, "--rootfs", "/"])


@benchmark("net.container-to-host", unit="Gbit/s", higher_is_better=True, repeat=3)
def container_to_host(ctx: Context) -> dict[str, float]:
    """iperf3 client in the container -> host 127.0.0.1 via 10.0.2.2 (slirp4netns)"""
    result = {"prun": _container_to_host(ctx, _prun(ctx, "--network", LOOPBACK_NET))}
    if ctx.have("podman"):
        _peer(ctx, result, "podman-slirp4netns", lambda: _container_to_host(
            ctx, _podman(ctx, "--network", LOOPBACK_NET)))
    return result


@benchmark("net.published-port", unit="Gbit/s", higher_is_better=True, repeat=3)
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


@benchmark("net.start-overhead", unit="ms", higher_is_better=False, repeat=7)
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
