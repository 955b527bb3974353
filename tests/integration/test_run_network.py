"""Networking through `prun run --rootfs` (busybox) as the unprivileged user:
slirp4netns by default, published ports, host loopback opt-in, names, none."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

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


def slirps() -> set[int]:
    uid = os.getuid()
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if (open(f"/proc/{d}/comm").read().strip() == "slirp4netns"
                        and os.stat(f"/proc/{d}").st_uid == uid):
                    out.add(int(d))
            except OSError:
                continue
    return out


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
