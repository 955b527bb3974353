"""slirp4netns driven by netstack against namespaces made with unshare -Urn,
as the unprivileged user: readiness, port forwards over the API socket,
host loopback opt-in, teardown on cancel and after SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from netstack import netlink, slirp, slirp_api
from netstack.ports import parse_publish
from rootless.errors import ContainerError, UsageError
from tests.support.caps import require_device, require_non_root, require_tool
from tests.support.netns import SERVER, HostHTTP, Namespace, fetch_inside, free_port, wait_port

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs():
    require_non_root()
    require_tool("slirp4netns")
    require_tool("nsenter")
    require_device("/dev/net/tun")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def udp_echo(host: str, port: int) -> bytes:
    """Datagrams may be lost (slirp drops the first while it ARPs): retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for _ in range(10):
            s.sendto(b"ping", (host, port))
            try:
                return s.recvfrom(100)[0]
            except TimeoutError:
                continue
    raise AssertionError(f"no UDP answer from {host}:{port}")


def test_published_tcp_and_udp_ports_and_the_api(tmp_path):
    tcp, udp = free_port(), free_port("udp")
    with Namespace(SERVER) as ns:
        # UDP replies to a host-loopback client go to 10.0.2.2, which
        # --disable-host-loopback drops (podman#4586): allow it here.
        opts = slirp.SlirpOptions(allow_host_loopback=True)
        with slirp.start(opts, ns.pid, tmp_path / "net") as h:
            ports = slirp_api.SlirpPorts(h.api_socket, h.options.guest_ip)
            ports.publish(parse_publish(f"127.0.0.1:{tcp}:80") +
                          parse_publish(f"127.0.0.1:{udp}:53/udp"))
            assert [str(m) for m in ports.list()] == [f"80/tcp -> 127.0.0.1:{tcp}",
                                                      f"53/udp -> 127.0.0.1:{udp}"]
            wait_port("127.0.0.1", tcp)
            body = urllib.request.urlopen(f"http://127.0.0.1:{tcp}/", timeout=5).read()
            # slirp4netns shows loopback clients as its gateway, 10.0.2.2.
            assert body == b"inside 10.0.2.2"
            assert udp_echo("127.0.0.1", udp) == b"echo ping"
            entry = slirp_api.list_hostfwd(h.api_socket)[0]
            slirp_api.remove_hostfwd(h.api_socket, entry["id"])
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", tcp), timeout=2)
            with pytest.raises(ContainerError, match="bad arguments.id"):
                slirp_api.remove_hostfwd(h.api_socket, entry["id"])
            with pytest.raises(UsageError, match="IPv4 host addresses only"):
                ports.publish(parse_publish(f"[::1]:{tcp}:80"))
    assert not h.api_socket.exists()
    assert not alive(h.pid)


def test_tap_is_configured_before_start_returns(tmp_path):
    opts = slirp.parse_options("mtu=1500,cidr=10.0.2.0/24", "slirp4netns:mtu=1500")
    with Namespace() as ns:
        with slirp.start(opts, ns.pid, tmp_path / "net"):
            out = ns.run_inside(["ip", "-o", "-4", "addr", "show", "tap0"]).stdout
            assert "inet 10.0.2.100/24" in out
            assert "mtu 1500" in ns.run_inside(["ip", "link", "show", "tap0"]).stdout
            assert "default via 10.0.2.2" in ns.run_inside(["ip", "route"]).stdout


def test_host_loopback_only_when_allowed(tmp_path):
    host = HostHTTP()
    try:
        for allow in (True, False):
            with Namespace() as ns:
                with slirp.start(slirp.SlirpOptions(allow_host_loopback=allow), ns.pid,
                                 tmp_path / f"net-{allow}"):
                    r = fetch_inside(ns, f"http://10.0.2.2:{host.port}/")
                    if allow:
                        assert r.stdout == "host 127.0.0.1", r.stderr
                    else:
                        assert r.returncode != 0 and "host 127.0.0.1" not in r.stdout
    finally:
        host.close()


def test_start_failure_reports_slirp4netns_stderr(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(ContainerError) as info:
        slirp.start(slirp.SlirpOptions(), dead.pid, tmp_path / "net")
    err = info.value
    assert err.message.startswith(f"start slirp4netns for pid {dead.pid}: it exited with code 1: "
                                  f"/proc/{dead.pid}/ns/net: No such file or directory")
    assert "seccomp is experimental" not in err.message
    assert not (tmp_path / "net" / slirp.SOCKET_NAME).exists()


def test_missing_binary_is_a_host_setup_error():
    with pytest.raises(Exception) as err:
        slirp.detect("slirp4netns-not-installed")
    assert "is not installed" in str(err.value)
    assert "apt-get install slirp4netns" in err.value.hint


def test_sigkill_of_the_supervisor_stops_slirp4netns(tmp_path):
    state = tmp_path / "net"
    supervisor = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from netstack import slirp
        h = slirp.start(slirp.SlirpOptions(), int(sys.argv[1]), Path({str(state)!r}))
        print(h.pid, flush=True)
        time.sleep(600)
    """)
    with Namespace() as ns:
        sup = subprocess.Popen([sys.executable, "-c", supervisor, str(ns.pid)],
                               stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
        slirp_pid = int(sup.stdout.readline())
        assert alive(slirp_pid) and (state / slirp.SOCKET_NAME).exists()
        sup.send_signal(signal.SIGKILL)
        sup.wait()
        deadline = time.monotonic() + 5
        while alive(slirp_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(slirp_pid)
        # the next prun command removes what the killed supervisor left
        assert slirp.cleanup(state) is True
        assert not (state / slirp.SOCKET_NAME).exists()
        assert slirp.cleanup(state) is False


def test_verify_tap_passes_after_start_and_names_what_is_wrong(tmp_path):
    with Namespace() as ns:
        with pytest.raises(ContainerError, match=r"tap0 does not exist \(links: lo mtu"):
            netlink.verify_tap(ns.pid, "10.0.2.100", "10.0.2.2", 65520)
        opts = slirp.SlirpOptions()
        with slirp.start(opts, ns.pid, tmp_path / "net"):
            start = time.perf_counter()
            netlink.verify_tap(ns.pid, opts.guest_ip, opts.gateway, opts.mtu)
            assert time.perf_counter() - start < 0.1  # no pyroute2 on the good path
            with pytest.raises(ContainerError, match="tap0 has MTU 65520, expected 1500"):
                netlink.verify_tap(ns.pid, opts.guest_ip, opts.gateway, 1500)


CLIENT_SOURCES = textwrap.dedent("""
    import socket, sys, time, urllib.request
    from pathlib import Path
    from netstack import slirp, slirp_api
    from netstack.ports import parse_publish
    from tests.support.netns import SERVER, Namespace, free_port, wait_port
    port = free_port()
    opts = slirp.SlirpOptions(cidr="10.0.3.0/24")
    with Namespace(SERVER) as ns, slirp.start(opts, ns.pid, Path(sys.argv[1])) as h:
        slirp_api.SlirpPorts(h.api_socket, opts.guest_ip).publish(
            parse_publish(f"0.0.0.0:{port}:80"))
        wait_port("127.0.0.1", port)
        for source in ("10.0.2.77", "127.0.0.1"):
            with socket.create_connection((source, port), timeout=5,
                                          source_address=(source, 0)) as c:
                c.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                print(c.makefile("rb").read().split(b"\\r\\n\\r\\n", 1)[1].decode())
""")


def test_remote_clients_keep_their_source_address(tmp_path):
    # The issue: users see every client as 10.0.2.2. slirp4netns's hostfwd
    # rewrites only loopback sources; a remote client keeps its address.
    # An outer user+network namespace with only lo plays the host, with
    # 10.0.2.77 on lo as the "remote" client's address (nothing can leave it);
    # the container network moves to 10.0.3.0/24 so that address is outside.
    with Namespace() as outer:
        assert outer.run_inside(["ip", "link", "set", "lo", "up"]).returncode == 0
        assert outer.run_inside(["ip", "addr", "add", "10.0.2.77/32", "dev", "lo"]).returncode == 0
        out = outer.run_inside([sys.executable, "-c", CLIENT_SOURCES, str(tmp_path / "net")],
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["inside 10.0.2.77", "inside 10.0.3.2"]
