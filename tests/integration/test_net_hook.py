"""The network hook as the supervisor drives it (etc files, namespaces_ready,
container_created, close) against an unshare -Urn namespace, and `prun port` reading its state."""

from __future__ import annotations

import os
import time
import urllib.request

import pytest

from netstack import network
from rootless.cli import run_cli
from rootless.containers.store import Container, Store, new_id
from rootless.errors import ConflictError, UsageError
from tests.support.caps import require_device, require_non_root, require_tool
from tests.support.netns import SERVER, Namespace, free_port, wait_port

pytestmark = pytest.mark.integration


def test_hook_publishes_ports_writes_etc_files_and_prun_port_lists_them(tmp_path, capfd):
    require_non_root()
    require_tool("slirp4netns")
    require_device("/dev/net/tun")
    store = Store()
    c = store.add(Container(id=new_id(), name="web", image="busybox",
                            image_id="sha256:" + "a" * 64, command=["httpd"],
                            created=time.time()))
    tcp = free_port()
    p = network.plan(network.NetworkRequest(
        publish=[f"127.0.0.1:{tcp}:80", "127.0.0.1::53/udp"], add_host=["db.local:10.0.2.50"],
        hostname="web1", name="web"))
    random_port = p.ports[1].host_port
    assert random_port >= 1024
    hook = network.NetworkHook(p, store.run_dir(c.id) / "net")
    files = {"/etc/hosts": "old"}
    hook.etc_files(files)
    assert "nameserver 10.0.2.3" in files["/etc/resolv.conf"]
    assert "10.0.2.50\tdb.local\n10.0.2.100\tweb1 web\n" \
           "10.0.2.2\thost.containers.internal host.docker.internal\n" in files["/etc/hosts"]
    assert files["/etc/hostname"] == "web1\n"
    with Namespace(SERVER) as ns:
        hook.namespaces_ready(ns.pid)
        hook.container_created(ns.pid)
        slirp_pid = hook.slirp.pid
        try:
            wait_port("127.0.0.1", tcp)
            assert urllib.request.urlopen(f"http://127.0.0.1:{tcp}/", timeout=5).read() \
                == b"inside 10.0.2.2"
            capfd.readouterr()
            assert run_cli(["port", "web"]) == 0
            assert capfd.readouterr().out == (f"80/tcp -> 127.0.0.1:{tcp}\n"
                                              f"53/udp -> 127.0.0.1:{random_port}\n")
            assert run_cli(["port", c.id[:8], "53/udp"]) == 0
            assert capfd.readouterr().out == f"127.0.0.1:{random_port}\n"
            assert run_cli(["port", "web", "81"]) == 125
            assert "find port 81 of container web: it is not published" in capfd.readouterr().err
            # the busy port is refused before anything starts
            with pytest.raises(ConflictError, match=f"cannot bind tcp 127.0.0.1:{tcp}"):
                network.plan(network.NetworkRequest(publish=[f"127.0.0.1:{tcp}:80"]))
        finally:
            hook.close()
    assert not (store.run_dir(c.id) / "net" / network.PORTS_FILE).exists()
    assert not (store.run_dir(c.id) / "net" / "slirp4netns.sock").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(slirp_pid, 0)
    assert run_cli(["port", "web"]) == 0 and capfd.readouterr().out == ""


def test_modes_and_flag_errors():
    assert network.parse_mode("none") == ("none", None)
    mode, opts = network.parse_mode("slirp4netns:allow_host_loopback=true")
    assert mode == "slirp4netns" and opts.allow_host_loopback
    with pytest.raises(UsageError, match="use network 'bridge': unknown network mode"):
        network.parse_mode("bridge")
    with pytest.raises(UsageError, match="--network host has no ports to publish"):
        network.plan(network.NetworkRequest(network="host", publish=["8080:80"]))
    with pytest.raises(ConflictError, match="below net.ipv4.ip_unprivileged_port_start"):
        network.plan(network.NetworkRequest(publish=["127.0.0.1:80:80"]),
                     unprivileged_start=1024)
    p = network.plan(network.NetworkRequest(network="none", hostname="h", dns=["10.0.2.3"],
                                            no_hosts=True))
    files = {"/etc/hosts": "from the supervisor"}
    network.NetworkHook(p, None).etc_files(files)
    assert "/etc/hosts" not in files and files["/etc/resolv.conf"].count("nameserver 10.0.2.3")
