"""Published ports: parse ``-p``/``-P`` like docker and podman, plan host ports.

Rules:
- Pure: no sockets, no /proc. Choosing a free host port and checking that a
  port is bindable go through a ``bind`` callable the caller injects
  (``netstack.hostports.probe_bind`` in prun; a fake in tests).
- ``-p`` grammar: ``[ip:][hostPort:]containerPort[/proto]``, where each port
  may be a range ``a-b``; ``ip`` may be IPv6 in brackets (``[::1]:8080:80``);
  ``proto`` is ``tcp`` (default) or ``udp``. An empty or missing host port
  means "any free port". A host range with ONE container port picks the
  first free host port of the range (docker). Otherwise host and container
  ranges must have the same length and map pairwise.
- ``-P`` publishes every EXPOSE entry of the image (``"80/tcp"``) on a free
  host port of every address.
- Error messages quote the spec as the user wrote it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rootless.errors import ConflictError, UsageError

PROTOCOLS = ("tcp", "udp")
ANY_V4 = "0.0.0.0"

# bind(host_ip, host_port, proto) -> the bound port (port 0 picks one);
# raises OSError when the port cannot be bound.
BindProbe = Callable[[str, int, str], int]


@dataclass(frozen=True)
class PortMapping:
    """One published port; ``host_port`` 0 means "not chosen yet"."""

    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"
    # For "8000-8010:80": the host range to choose host_port from.
    host_range: tuple[int, int] | None = None
    spec: str = ""

    def __str__(self) -> str:
        return format_mapping(self)


def format_mapping(m: PortMapping) -> str:
    """docker port's format: ``80/tcp -> 127.0.0.1:8080``."""
    ip = f"[{m.host_ip}]" if ":" in m.host_ip else m.host_ip
    return f"{m.container_port}/{m.proto} -> {ip}:{m.host_port}"


def parse_publish(spec: str) -> list[PortMapping]:
    """Parse one ``-p`` value into mappings (one per port of a range)."""
    def bad(cause: str) -> UsageError:
        return UsageError(f"publish port {spec!r}: {cause}",
                          hint="use [ip:][hostPort:]containerPort[/tcp|udp], "
                               "e.g. -p 127.0.0.1:8080:80 or -p 8000-8002:80-82/udp")

    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOCOLS:
        raise bad(f"protocol {proto!r} is not supported (tcp or udp)")
    host_ip, host_part, container_part = _split(body, bad)
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError as exc:
            raise bad(f"{host_ip!r} is not an IP address") from exc
    else:
        host_ip = ANY_V4
    c_lo, c_hi = _port_range(container_part, "container port", bad)
    if not host_part:
        return [PortMapping(host_ip, 0, p, proto, None, spec) for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _port_range(host_part, "host port", bad)
    if c_lo == c_hi and h_hi > h_lo:
        return [PortMapping(host_ip, 0, c_lo, proto, (h_lo, h_hi), spec)]
    if h_hi - h_lo != c_hi - c_lo:
        raise bad(f"host range {host_part} and container range {container_part} "
                  "differ in length")
    return [PortMapping(host_ip, h_lo + i, c_lo + i, proto, None, spec)
            for i in range(c_hi - c_lo + 1)]


def _split(body: str, bad) -> tuple[str, str, str]:
    """``[ip:][host:]container`` → (ip, host, container); IPv6 ip in brackets."""
    if body.startswith("["):
        ip, sep, rest = body[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise bad("an IPv6 address needs the form [addr]:hostPort:containerPort")
        parts = rest[1:].split(":")
        if len(parts) != 2:
            raise bad("expected [addr]:hostPort:containerPort")
        return ip, parts[0], parts[1]
    parts = body.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise bad("too many ':' (write an IPv6 address in brackets: [::1]:8080:80)")


def _port_range(text: str, what: str, bad) -> tuple[int, int]:
    lo_s, dash, hi_s = text.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
    except ValueError as exc:
        raise bad(f"{what} {text!r} is not a number or range") from exc
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise bad(f"{what} {text!r} is out of range 1-65535")
    if hi < lo:
        raise bad(f"{what} range {text!r} is reversed")
    return lo, hi


def parse_expose(exposed: Iterable[str]) -> list[PortMapping]:
    """``-P``: the image's EXPOSE entries (``80``, ``80/tcp``, ``53/udp``,
    ``8000-8002/tcp``) on free host ports of every address."""
    out: list[PortMapping] = []
    for entry in exposed:
        port, _, proto = entry.partition("/")
        for m in parse_publish(f"{port}/{proto or 'tcp'}"):
            out.append(PortMapping(m.host_ip, 0, m.container_port, m.proto, None, entry))
    return out


def plan(mappings: Iterable[PortMapping], bind: BindProbe,
         unprivileged_start: int) -> list[PortMapping]:
    """Choose host ports and check every one is usable, before the container starts.

    Fails with the cause and the fix when a port is below
    ``net.ipv4.ip_unprivileged_port_start``, already in use, or given twice.
    """
    chosen: list[PortMapping] = []
    seen: dict[tuple[str, int, str], PortMapping] = {}
    for m in mappings:
        if m.host_port and m.host_port < unprivileged_start:
            raise ConflictError(
                f"publish port {m.spec!r}: host port {m.host_port} is below "
                f"net.ipv4.ip_unprivileged_port_start ({unprivileged_start}), "
                "so an unprivileged user cannot bind it",
                hint=f"publish on a port >= {unprivileged_start} (e.g. -p "
                     f"{unprivileged_start + m.host_port}:{m.container_port}), or as root: "
                     f"sysctl -w net.ipv4.ip_unprivileged_port_start={m.host_port}")
        port = _choose(m, bind, unprivileged_start, seen)
        final = PortMapping(m.host_ip, port, m.container_port, m.proto, None, m.spec)
        seen[(m.host_ip, port, m.proto)] = final
        chosen.append(final)
    return chosen


def _choose(m: PortMapping, bind: BindProbe, unprivileged_start: int,
            seen: dict[tuple[str, int, str], PortMapping]) -> int:
    if m.host_range is not None:
        lo, hi = m.host_range
        for port in range(max(lo, unprivileged_start), hi + 1):
            if (m.host_ip, port, m.proto) in seen:
                continue
            try:
                return bind(m.host_ip, port, m.proto)
            except OSError:
                continue
        raise ConflictError(f"publish port {m.spec!r}: no free {m.proto} port in "
                            f"{lo}-{hi} on {m.host_ip}",
                            hint="free a port in that range or publish another range")
    if (m.host_ip, m.host_port, m.proto) in seen and m.host_port:
        raise ConflictError(f"publish port {m.spec!r}: host port {m.host_port}/{m.proto} "
                            f"on {m.host_ip} is published twice",
                            hint="give each mapping its own host port")
    try:
        return bind(m.host_ip, m.host_port, m.proto)
    except OSError as exc:
        raise ConflictError(
            f"publish port {m.spec!r}: cannot bind {m.proto} {m.host_ip}:{m.host_port}: "
            f"{exc.strerror or exc}",
            hint="another process (or container) uses that port: pick another host port, "
                 "omit it for a free one (-p CONTAINERPORT), or stop that process "
                 f"(ss -lntup | grep :{m.host_port} shows it)") from exc
