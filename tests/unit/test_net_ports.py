"""-p/-P parsing and host port planning, with an in-memory bind probe."""

from __future__ import annotations

import errno

import pytest

from netstack.ports import PortMapping, format_mapping, parse_expose, parse_publish, plan
from rootless.errors import ConflictError, UsageError


class FakeBinder:
    """Ports in ``busy`` fail with EADDRINUSE; port 0 gets 40000, 40001, ..."""

    def __init__(self, busy=()):
        self.busy = set(busy)
        self.next = 40000

    def __call__(self, ip, port, proto):
        if port == 0:
            self.next += 1
            return self.next - 1
        if (ip, port, proto) in self.busy or port in self.busy:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return port


def ports(spec):
    return [(m.host_ip, m.host_port, m.container_port, m.proto) for m in parse_publish(spec)]


@pytest.mark.parametrize("spec, want", [
    ("80", [("0.0.0.0", 0, 80, "tcp")]),
    ("8080:80", [("0.0.0.0", 8080, 80, "tcp")]),
    ("127.0.0.1:8080:80/udp", [("127.0.0.1", 8080, 80, "udp")]),
    ("127.0.0.1::80", [("127.0.0.1", 0, 80, "tcp")]),
    ("[::1]:8080:80", [("::1", 8080, 80, "tcp")]),
    ("8000-8001:9000-9001/tcp", [("0.0.0.0", 8000, 9000, "tcp"), ("0.0.0.0", 8001, 9001, "tcp")]),
    ("7000-7001", [("0.0.0.0", 0, 7000, "tcp"), ("0.0.0.0", 0, 7001, "tcp")]),
])
def test_publish_grammar(spec, want):
    assert ports(spec) == want


@pytest.mark.parametrize("spec, cause", [
    ("80/sctp", "protocol 'sctp' is not supported"),
    ("1.2.3:80:80", "'1.2.3' is not an IP address"),
    ("8000-8002:80-81", "differ in length"),
    ("http", "'http' is not a number"),
    ("70000:80", "out of range"),
    ("90-80", "reversed"),
    ("::1:8080:80", "too many ':'"),
    ("[::1]8080:80", "[addr]:hostPort:containerPort"),
])
def test_publish_errors_quote_the_spec(spec, cause):
    with pytest.raises(UsageError) as err:
        parse_publish(spec)
    assert err.value.message.startswith(f"publish port {spec!r}: ")
    assert cause in err.value.message
    assert "hostPort" in err.value.hint


def test_random_host_ports_are_chosen_by_the_probe():
    out = plan(parse_publish("127.0.0.1::80") + parse_publish("53/udp"), FakeBinder(), 1024)
    assert [format_mapping(m) for m in out] == ["80/tcp -> 127.0.0.1:40000",
                                                "53/udp -> 0.0.0.0:40001"]


def test_host_range_with_one_container_port_takes_the_first_free_one():
    out = plan(parse_publish("127.0.0.1:8000-8005:80"), FakeBinder(busy={8000, 8001}), 1024)
    assert [(m.host_port, m.container_port) for m in out] == [(8002, 80)]


def test_host_range_all_busy():
    with pytest.raises(ConflictError, match="no free tcp port in 8000-8001"):
        plan(parse_publish("8000-8001:80"), FakeBinder(busy={8000, 8001}), 1024)


def test_port_in_use_names_the_port_and_the_fix():
    with pytest.raises(ConflictError) as err:
        plan(parse_publish("127.0.0.1:8080:80"), FakeBinder(busy={8080}), 1024)
    assert err.value.message == ("publish port '127.0.0.1:8080:80': cannot bind tcp "
                                 "127.0.0.1:8080: Address already in use")
    assert "ss -lntup" in err.value.hint


def test_privileged_port_fails_with_the_sysctl_fix():
    with pytest.raises(ConflictError) as err:
        plan(parse_publish("80:80"), FakeBinder(), 1024)
    assert "below net.ipv4.ip_unprivileged_port_start (1024)" in err.value.message
    assert "sysctl -w net.ipv4.ip_unprivileged_port_start=80" in err.value.hint
    assert [m.host_port for m in plan(parse_publish("80:80"), FakeBinder(), 80)] == [80]


def test_same_host_port_twice_is_a_conflict_but_tcp_and_udp_may_share():
    with pytest.raises(ConflictError, match="published twice"):
        plan(parse_publish("8080:80") + parse_publish("8080:81"), FakeBinder(), 1024)
    out = plan(parse_publish("8080:80/tcp") + parse_publish("8080:80/udp"), FakeBinder(), 1024)
    assert [str(m) for m in out] == ["80/tcp -> 0.0.0.0:8080", "80/udp -> 0.0.0.0:8080"]


def test_expose_list_gets_random_ports():
    out = plan(parse_expose(["80/tcp", "53/udp", "8000-8001"]), FakeBinder(), 1024)
    assert [str(m) for m in out] == ["80/tcp -> 0.0.0.0:40000", "53/udp -> 0.0.0.0:40001",
                                     "8000/tcp -> 0.0.0.0:40002", "8001/tcp -> 0.0.0.0:40003"]


def test_ipv6_format():
    assert format_mapping(PortMapping("::1", 8080, 80)) == "80/tcp -> [::1]:8080"
