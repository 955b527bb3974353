"""slirp4netns options/features/argv and the generated /etc files (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netstack import resolv, slirp
from rootless.errors import HostSetupError, UsageError

HELP_1_2 = ("--configure --exit-fd --ready-fd --mtu --enable-ipv6 --api-socket --cidr "
            "--disable-host-loopback --netns-type --userns-path --enable-sandbox "
            "--enable-seccomp --outbound-addr --outbound-addr6 --disable-dns --macaddress")


def test_default_argv_isolates_host_loopback_and_sandboxes():
    f = slirp.parse_features(HELP_1_2)
    assert slirp.argv("/usr/bin/slirp4netns", f, slirp.SlirpOptions(), 42, Path("/r/s.sock"),
                      5, 6) == [
        "/usr/bin/slirp4netns", "--configure", "--mtu=65520", "--ready-fd=5", "--exit-fd=6",
        "--api-socket=/r/s.sock", "--disable-host-loopback", "--enable-sandbox",
        "--enable-seccomp", "42", "tap0"]


def test_options_reach_the_argv():
    opts = slirp.parse_options("allow_host_loopback=true,mtu=1500,cidr=10.5.0.0/16,"
                               "enable_ipv6=true,outbound_addr=10.0.2.15", "slirp4netns:…")
    args = slirp.argv("s", slirp.parse_features(HELP_1_2), opts, 1, Path("x"), 3, 4)
    assert "--disable-host-loopback" not in args
    assert {"--mtu=1500", "--cidr=10.5.0.0/16", "--enable-ipv6",
            "--outbound-addr=10.0.2.15"} <= set(args)
    assert (opts.gateway, opts.dns, opts.guest_ip) == ("10.5.0.2", "10.5.0.3", "10.5.0.100")


def test_old_slirp4netns_is_refused_and_missing_features_are_not_passed():
    with pytest.raises(HostSetupError, match=r"too old \(no --ready-fd, --exit-fd, --api-socket"):
        slirp.parse_features("--configure --mtu", "slirp4netns")
    old = slirp.parse_features("--configure --mtu --ready-fd --exit-fd --api-socket "
                               "--disable-host-loopback")
    args = slirp.argv("s", old, slirp.SlirpOptions(), 1, Path("x"), 3, 4)
    assert "--enable-sandbox" not in args and "--enable-seccomp" not in args
    with pytest.raises(HostSetupError, match="has no --cidr"):
        slirp.argv("s", old, slirp.SlirpOptions(cidr="10.9.0.0/24"), 1, Path("x"), 3, 4)


@pytest.mark.parametrize("text, cause", [
    ("mtu=10", "mtu '10' is not in 68-65521"),
    ("allow_host_loopback=yes", "must be true or false"),
    ("cidr=10.0.2.0/28", "smaller than a /24"),
    ("port_handler=rootlesskit", "unknown option 'port_handler'"),
    ("mtu", "needs a value"),
])
def test_bad_options(text, cause):
    with pytest.raises(UsageError) as err:
        slirp.parse_options(text, f"slirp4netns:{text}")
    assert err.value.message.startswith(f"use network 'slirp4netns:{text}': ")
    assert cause in err.value.message


HOST_RESOLV = "# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
UPSTREAM = "nameserver 10.1.1.1\nnameserver 10.1.1.2\n"


def test_resolv_conf_for_slirp_and_flags():
    host = resolv.parse_resolv(HOST_RESOLV)
    cfg = resolv.NameConfig(hostname="c1")
    assert resolv.resolv_conf(cfg, ["10.0.2.3"], host) == (
        "search corp.example\nnameserver 10.0.2.3\noptions edns0 trust-ad\n")
    cfg = resolv.NameConfig(hostname="c1", dns=resolv.validate_dns(["10.0.2.3", "::1"]),
                            dns_search=(".",), dns_options=("ndots:2",))
    assert resolv.resolv_conf(cfg, ["x"], host) == (
        "nameserver 10.0.2.3\nnameserver ::1\noptions ndots:2\n")
    with pytest.raises(UsageError, match="use DNS server 'dns.google': not an IP address"):
        resolv.validate_dns(["dns.google"])


def test_loopback_host_resolvers_fall_back_to_the_upstream_list():
    assert resolv.host_resolvers(HOST_RESOLV, UPSTREAM) == ("10.1.1.1", "10.1.1.2")
    assert resolv.host_resolvers("nameserver 10.9.9.9\n", UPSTREAM) == ("10.9.9.9",)


def test_hosts_file():
    cfg = resolv.NameConfig(hostname="abc123", name="web",
                            add_hosts=(resolv.parse_add_host("db.local:10.0.2.50"),
                                       resolv.parse_add_host("gw=host-gateway"),
                                       resolv.parse_add_host("v6:[::1]")))
    assert resolv.hosts(cfg, "10.0.2.100", "10.0.2.2") == (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "10.0.2.50\tdb.local\n10.0.2.2\tgw\n::1\tv6\n10.0.2.100\tabc123 web\n"
        "10.0.2.2\thost.containers.internal host.docker.internal\n")
    kept = resolv.hosts(resolv.NameConfig(hostname="h"), "127.0.1.1", "127.0.0.1",
                        host_text="127.0.0.1 localhost\n10.1.1.1 intranet\n")
    assert kept.startswith("127.0.0.1 localhost\n10.1.1.1 intranet\n127.0.1.1\th\n")
    assert resolv.hostname_file(cfg) == "abc123\n"


@pytest.mark.parametrize("spec", ["nohost", "db:", ":1.2.3.4", "db:1.2.3"])
def test_bad_add_host(spec):
    with pytest.raises(UsageError, match=f"add host {spec!r}"):
        resolv.parse_add_host(spec)


def test_pasta_argv_forwards_exactly_the_planned_ports():
    from netstack import pasta
    from netstack.ports import PortMapping

    maps = [PortMapping("127.0.0.1", 8080, 80), PortMapping("::1", 8443, 443),
            PortMapping("0.0.0.0", 5353, 53, "udp")]
    assert pasta.argv("pasta", maps, 42, Path("/r/pasta.pid")) == [
        "pasta", "--config-net", "--quiet", "--pid", "/r/pasta.pid",
        "-t", "127.0.0.1/8080:80", "-t", "::1/8443:443", "-u", "5353:53",
        "-T", "none", "-U", "none", "42"]
    assert pasta.argv("pasta", [], 7, Path("p"))[5:] == ["-t", "none", "-u", "none", "-T", "none",
                                                        "-U", "none", "7"]


def test_default_gateway_from_proc_net_route():
    text = ("Iface\tDestination\tGateway \tFlags\n"
            "eth0\t0002000A\t00000000\t0001\n"
            "eth0\t00000000\t0202000A\t0003\n")
    assert resolv.default_gateway(text) == "10.0.2.2"
    assert resolv.default_gateway(text.splitlines()[0]) is None
