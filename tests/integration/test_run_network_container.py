"""`prun run --network container:NAME|ID` as the unprivileged user (busybox
`--rootfs`): the new container shares a detached container's network
namespace (same interfaces, its servers on 127.0.0.1, no slirp4netns of its
own, the same resolv.conf/hosts), and the refusals exit 125."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from netstack.procs import is_live
from tests.integration.run_support import prun
from tests.integration.test_run_network import bb  # noqa: F401 -- the fixture

pytestmark = pytest.mark.integration


def ok(*args: str) -> str:
    out = prun(*args)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def start_httpd(bb: str, www, name: str, network: str) -> None:  # noqa: F811
    www.mkdir()
    (www / "index.html").write_text(f"hello from {name}\n")
    ok("run", "-d", "--name", name, "--network", network, "-v", f"{www}:/www:ro",
       "--rootfs", bb, "httpd", "-f", "-p", "8080", "-h", "/www")


def fetch_joined(bb: str, name: str) -> str:  # noqa: F811
    """wget http://127.0.0.1:8080/ from a new container in ``name``'s network."""
    deadline = time.monotonic() + 20
    while True:
        out = prun("run", "--rm", "--network", f"container:{name}", "--rootfs", bb,
                   "wget", "-q", "-O-", "http://127.0.0.1:8080/")
        if out.returncode == 0 or time.monotonic() > deadline:
            assert out.returncode == 0, out.stderr
            return out.stdout
        # (busybox wget -T segfaults on a refused connection: no timeout flag)
        assert "Connection refused" in out.stderr, out.stderr  # httpd is not up yet
        time.sleep(0.2)


def slirps() -> set[int]:
    """Live slirp4netns processes of this test's containers (by their pid
    files: other test runs may share the user)."""
    runtime = Path(os.environ["PRUN_RUNROOT"])
    pids = {int(f.read_text()) for f in runtime.glob("c/*/net/slirp4netns.pid")}
    return {pid for pid in pids if is_live(pid, "slirp4netns")}


def interfaces(text: str) -> list[str]:
    """Interface names from /proc/net/dev."""
    return sorted(line.split(":")[0].strip() for line in text.splitlines()[2:])


def test_shares_a_slirp4netns_network(bb, tmp_path):  # noqa: F811
    start_httpd(bb, tmp_path / "www", "web", "slirp4netns")
    try:
        with_target = slirps()
        assert len(with_target) == 1
        assert fetch_joined(bb, "web") == "hello from web\n"
        # a detached container in the same network: its own processes,
        # the target's interfaces and /etc files, no slirp4netns of its own
        ok("run", "-d", "--name", "side", "--network", "container:web", "--rootfs", bb,
           "sleep", "1000")
        assert slirps() == with_target
        mine = ok("exec", "side", "cat", "/proc/net/dev")
        assert interfaces(mine) == interfaces(ok("exec", "web", "cat", "/proc/net/dev"))
        assert interfaces(mine) == ["lo", "tap0"]
        assert "inet 10.0.2.100/24" in ok("exec", "side", "ip", "addr", "show", "tap0")
        for path in ("/etc/resolv.conf", "/etc/hosts"):
            assert ok("exec", "side", "cat", path) == ok("exec", "web", "cat", path)
        assert ok("exec", "side", "wget", "-q", "-O-", "http://127.0.0.1:8080/") == \
            "hello from web\n"
        # its own PID namespace: httpd is not among its processes
        assert "httpd" not in ok("exec", "side", "ps")
    finally:
        ok("rm", "-f", "side", "web")
    deadline = time.monotonic() + 5
    while any(is_live(p, "slirp4netns") for p in with_target) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(is_live(p, "slirp4netns") for p in with_target)


def test_shares_a_none_network_by_id(bb, tmp_path):  # noqa: F811
    start_httpd(bb, tmp_path / "www", "lonely", "none")
    try:
        cid = ok("inspect", "--format", "{{.Id}}", "lonely").strip()
        assert fetch_joined(bb, cid[:12]) == "hello from lonely\n"
        out = ok("run", "--rm", "--network", f"container:{cid}", "--rootfs", bb,
                 "sh", "-c", "cat /proc/net/dev; echo ===; ls /sys/class/net; hostname")
        dev, _, rest = out.partition("===\n")
        assert interfaces(dev) == ["lo"]
        names, hostname = rest.split()[:-1], rest.split()[-1]
        assert names == ["lo"]
        assert hostname != ok("exec", "lonely", "hostname").strip()  # its own UTS namespace
    finally:
        ok("rm", "-f", "lonely")


def test_missing_stopped_or_nested_target_fails_125(bb):  # noqa: F811
    out = prun("run", "--rm", "--network", "container:nosuch", "--rootfs", bb, "true")
    assert out.returncode == 125
    assert "no such container 'nosuch'" in out.stderr and "prun ps" in out.stderr
    ok("run", "-d", "--name", "done", "--network", "none", "--rootfs", bb, "true")
    assert ok("wait", "done").strip() == "0"
    out = prun("run", "--rm", "--network", "container:done", "--rootfs", bb, "true")
    assert out.returncode == 125
    assert "container done is not running" in out.stderr and "prun ps" in out.stderr
    ok("rm", "done")
    # a target in a nested user namespace: its network is out of reach
    ok("run", "-d", "--name", "kid", "--userns", "keep-id", "--network", "none", "--rootfs",
       bb, "sleep", "1000")
    try:
        out = prun("run", "--rm", "--network", "container:kid", "--rootfs", bb, "true")
        assert out.returncode == 125
        assert "container kid runs in a nested user namespace" in out.stderr
    finally:
        ok("rm", "-f", "kid")


def test_publish_and_dns_with_container_network_are_refused(bb):  # noqa: F811
    out = prun("run", "--rm", "-p", "8080:80", "--network", "container:web", "--rootfs", bb,
               "true")
    assert out.returncode == 125
    assert "conflicting options: port publishing and the network mode" in out.stderr
    out = prun("run", "--rm", "--dns", "10.0.2.9", "--network", "container:web",
               "--rootfs", bb, "true")
    assert out.returncode == 125 and "conflicting options: dns" in out.stderr
