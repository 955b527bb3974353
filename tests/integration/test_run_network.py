"""Networking through `prun run --rootfs` (busybox) as the unprivileged user:
slirp4netns by default, published ports, host loopback opt-in, names, none."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from netstack.procs import is_live
from tests.integration.run_support import prun, require_run_host
from tests.support.caps import require_device, require_tool
from tests.support.netns import HostHTTP, free_port, wait_port
from tests.support.rootfs import build_busybox_rootfs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bb(tmp_path_factory):
    require_run_host()
    require_tool("slirp4netns")
    require_device("/dev/net/tun")
    return str(build_busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs"))


def live_procs(*names: str) -> set[int]:
    """Our live processes running one of ``names``."""
    uid = os.getuid()
    out = set()
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if is_live(int(d), *names) and os.stat(f"/proc/{d}").st_uid == uid:
                out.add(int(d))
        except OSError:
            continue
    return out


def slirps() -> set[int]:
    return live_procs("slirp4netns")


def pastas() -> set[int]:
    return live_procs("pasta", "passt")


def test_default_network_is_slirp4netns_and_none_has_only_lo(bb):
    before = slirps()
    out = prun("run", "--rm", "--rootfs", bb, "sh", "-c", "ls /sys/class/net; cat /etc/resolv.conf")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["lo", "tap0"] and "nameserver 10.0.2.3" in out.stdout
    out = prun("run", "--rm", "--network", "none", "--rootfs", bb, "ls", "/sys/class/net")
    assert (out.returncode, out.stdout.split()) == (0, ["lo"]), out.stderr
    assert slirps() == before  # slirp4netns is gone with the container


def test_host_loopback_via_10_0_2_2_only_when_allowed(bb):
    host = HostHTTP()
    try:
        url = f"http://10.0.2.2:{host.port}/"
        out = prun("run", "--rm", "--network", "slirp4netns:allow_host_loopback=true",
                   "--rootfs", bb, "wget", "-q", "-O-", url)
        assert (out.returncode, out.stdout) == (0, "host 127.0.0.1"), out.stderr
        out = prun("run", "--rm", "--network", "slirp4netns:allow_host_loopback=true",
                   "--rootfs", bb, "wget", "-q", "-O-",
                   f"http://host.containers.internal:{host.port}/")
        assert (out.returncode, out.stdout) == (0, "host 127.0.0.1"), out.stderr
        out = prun("run", "--rm", "--rootfs", bb, "wget", "-q", "-T", "3", "-O-", url)
        assert out.returncode != 0 and "host" not in out.stdout
    finally:
        host.close()


def test_published_port_reaches_busybox_httpd_and_sigkill_leaves_nothing(bb, tmp_path):
    before = slirps()
    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello from the container\n")
    proc = subprocess.Popen(["prun", "run", "--rm", "-p", f"127.0.0.1:{port}:80",
                             "-v", f"{tmp_path / 'www'}:/www:ro", "--rootfs", bb,
                             "httpd", "-f", "-p", "80", "-h", "/www"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert body == b"hello from the container\n"
        # the port is busy now: a second container fails before it starts
        out = prun("run", "--rm", "-p", f"127.0.0.1:{port}:80", "--rootfs", bb, "true")
        assert out.returncode == 125
        assert f"cannot bind tcp 127.0.0.1:{port}: Address already in use" in out.stderr
    finally:
        proc.kill()  # the supervisor: slirp4netns must follow through its exit fd
        proc.wait(20)
    deadline = time.monotonic() + 5
    while slirps() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slirps() == before
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    # the killed supervisor left its API socket; the next prun run removes it
    runtime = Path(os.environ["PRUN_RUNROOT"])
    assert list(runtime.glob("c/*/net/slirp4netns.sock"))
    assert prun("run", "--rm", "--network", "none", "--rootfs", bb, "true").returncode == 0
    assert not list(runtime.glob("c/*/net"))


def test_names_and_dns_flags(bb):
    out = prun("run", "--rm", "--hostname", "web1", "--add-host", "db.local:10.0.2.50",
               "--dns", "10.0.2.3", "--dns-search", "corp.example", "--rootfs", bb, "sh", "-c",
               "cat /etc/hostname /etc/resolv.conf; ping -c1 -W1 db.local 2>&1 | head -1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("web1\nsearch corp.example\nnameserver 10.0.2.3\n")
    assert "10.0.2.50" in out.stdout
    out = prun("run", "--rm", "-p", "80:80", "--rootfs", bb, "true")
    assert out.returncode == 125 and "below net.ipv4.ip_unprivileged_port_start" in out.stderr
    out = prun("run", "--rm", "-p", "127.0.0.1::53/udp", "--rootfs", bb, "true")
    assert out.returncode == 0 and "slirp4netns drops replies" in out.stderr


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 15) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.1)


def _published_ports() -> list:
    from netstack.network import read_ports

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for net in Path(os.environ["PRUN_RUNROOT"]).glob("c/*/net"):
            ports = read_ports(net)
            if ports:
                return ports
        time.sleep(0.05)
    raise AssertionError("no ports.json appeared")


def test_publish_all_uses_the_image_expose_list(tmp_path):
    require_run_host()
    require_tool("slirp4netns")
    from tests.support.images import busybox_layers, docker_archive, write_image

    image = write_image(tmp_path / "layout", busybox_layers(tmp_path),
                        extra={"ExposedPorts": {"80/tcp": {}}})
    archive = docker_archive(image, tmp_path / "web.tar", ["netweb:latest"])
    assert prun("load", "-i", str(archive)).returncode == 0
    proc = subprocess.Popen(["prun", "run", "--rm", "-P", "netweb", "httpd", "-f", "-p", "80",
                             "-h", "/etc"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        [m] = _published_ports()
        assert (m.host_ip, m.container_port, m.proto) == ("0.0.0.0", 80, "tcp")
        assert m.host_port >= 1024
        body = _wait_http(f"http://127.0.0.1:{m.host_port}/hostname", proc)
        assert len(body.strip()) == 12  # the short id, the default hostname
    finally:
        proc.kill()
        proc.wait(20)


def test_port_range_and_udp(bb, tmp_path):
    while True:  # two consecutive free ports
        low = free_port()
        if low < 65535 and _bindable(low + 1):
            break
    udp = free_port("udp")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("range\n")
    server = ("import socket; u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "u.bind(('0.0.0.0', 53))\n"
              "while True:\n d, p = u.recvfrom(100); u.sendto(b'echo ' + d, p)")
    # UDP replies to host-loopback clients need allow_host_loopback (podman#4586)
    proc = subprocess.Popen(
        ["prun", "run", "--rm", "--network", "slirp4netns:allow_host_loopback=true",
         "-p", f"127.0.0.1:{low}-{low + 1}:80-81", "-p", f"127.0.0.1:{udp}:53/udp",
         "-v", f"{tmp_path / 'www'}:/www:ro", "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro",
         "-v", "/lib64:/lib64:ro", "--rootfs", bb, "/bin/sh", "-c",
         # the host's /usr hides busybox's /usr applets: call busybox by path
         "/bin/busybox httpd -p 80 -h /www && /bin/busybox httpd -p 81 -h /www && "
         f"exec /usr/bin/python3 -c \"{server}\""],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_http(f"http://127.0.0.1:{low}/", proc) == b"range\n"
        assert _wait_http(f"http://127.0.0.1:{low + 1}/", proc) == b"range\n"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            for _ in range(20):
                s.sendto(b"ping", ("127.0.0.1", udp))
                try:
                    assert s.recvfrom(100)[0] == b"echo ping"
                    break
                except TimeoutError:
                    continue
            else:
                raise AssertionError("no UDP echo through the published port")
    finally:
        proc.kill()
        proc.wait(20)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_host_network_and_no_hosts(bb):
    out = prun("run", "--rm", "--network", "host", "--no-hosts", "--rootfs", bb, "sh", "-c",
               "ls /sys/class/net; cat /etc/hosts")
    assert out.returncode == 0, out.stderr
    assert "eth0" in out.stdout.split() or len(out.stdout.split()) > 1
    assert "host.containers.internal" not in out.stdout
    out = prun("run", "--rm", "--network", "host", "-p", "8080:80", "--rootfs", bb, "true")
    assert out.returncode == 125 and "--network host has no ports to publish" in out.stderr


def test_pasta_publishes_ipv4_and_ipv6_ports_and_stops_with_the_container(bb, tmp_path):
    require_tool("pasta")
    before = pastas()
    v4, v6 = free_port(), free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("via pasta\n")
    proc = subprocess.Popen(["prun", "run", "--rm", "--network", "pasta",
                             "-p", f"127.0.0.1:{v4}:80", "-p", f"[::1]:{v6}:80",
                             "-v", f"{tmp_path / 'www'}:/www:ro", "--rootfs", bb,
                             "httpd", "-f", "-p", "80", "-h", "/www"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_http(f"http://127.0.0.1:{v4}/", proc) == b"via pasta\n"
        assert _wait_http(f"http://[::1]:{v6}/", proc) == b"via pasta\n"
        assert len(pastas() - before) == 1
    finally:
        proc.terminate()  # httpd as PID 1 ignores SIGTERM: prun kills it after the grace time
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # killed or not, a next prun run stops what is left (once the helper,
    # which follows the killed supervisor through PDEATHSIG, is gone too)
    deadline = time.monotonic() + 10
    while True:
        assert prun("run", "--rm", "--network", "none", "--rootfs", bb, "true").returncode == 0
        if pastas() == before or time.monotonic() > deadline:
            break
    assert pastas() == before
