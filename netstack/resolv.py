"""The container's /etc/resolv.conf, /etc/hosts and /etc/hostname, as text.

Rules:
- Pure: the host's resolv.conf and hosts files come in as text; the caller
  writes the result and bind-mounts it (podman does the same).
- resolv.conf: ``--dns`` wins; else the network mode's resolver (slirp4netns
  forwards its DNS address, 10.0.2.3, to the host's resolvers, including
  systemd-resolved's 127.0.0.53, since it runs on the host); else the host's
  resolvers minus loopback ones, which mean nothing inside another network
  namespace (with systemd-resolved, its upstream list in
  /run/systemd/resolve/resolv.conf). Search domains and options: the flag if
  given (``--dns-search .`` means none), else the host's.
- hosts: localhost lines, the ``--add-host`` entries, the container's
  address with its hostname and name, and ``host.containers.internal`` (plus
  ``host.docker.internal``) for the host as the container reaches it. In the
  host network mode the host's own file is kept and the entries appended.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rootless.errors import UsageError

HOST_ALIASES = ("host.containers.internal", "host.docker.internal")


@dataclass(frozen=True)
class Resolv:
    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameConfig:
    """What the user asked for (--hostname, --name, --dns*, --add-host, --no-hosts)."""

    hostname: str
    name: str = ""
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    add_hosts: tuple[tuple[str, str], ...] = field(default=())
    no_hosts: bool = False


def parse_resolv(text: str) -> Resolv:
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            servers.append(args[0])
        elif key in ("search", "domain"):
            search = args  # the last search/domain line wins, as in glibc
        elif key == "options":
            options.extend(args)
    return Resolv(tuple(servers), tuple(search), tuple(options))


def is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_resolvers(host_text: str, upstream_text: str = "") -> tuple[str, ...]:
    """The host's resolvers usable from another network namespace."""
    servers = tuple(s for s in parse_resolv(host_text).nameservers if not is_loopback(s))
    if servers:
        return servers
    return tuple(s for s in parse_resolv(upstream_text).nameservers if not is_loopback(s))


def validate_dns(servers: Iterable[str]) -> tuple[str, ...]:
    out = []
    for s in servers:
        try:
            out.append(str(ipaddress.ip_address(s)))
        except ValueError as exc:
            raise UsageError(f"use DNS server {s!r}: not an IP address",
                             hint="give --dns an IPv4 or IPv6 address, e.g. --dns 10.0.2.3") from exc
    return tuple(out)


def resolv_conf(cfg: NameConfig, mode_servers: Sequence[str], host: Resolv) -> str:
    """``mode_servers``: the network mode's resolver(s), or the host's usable ones."""
    servers = cfg.dns or tuple(mode_servers)
    search = host.search if not cfg.dns_search else (
        () if cfg.dns_search == (".",) else cfg.dns_search)
    options = cfg.dns_options or host.options
    lines = []
    if search:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {s}" for s in servers]
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def parse_add_host(spec: str) -> tuple[str, str]:
    """``--add-host name:ip`` (docker; ``name=ip`` too, as newer docker) → (name, ip)."""
    for sep in ("=", ":"):
        name, found, ip = spec.partition(sep)
        if found:
            break
    ip = ip.strip("[]")
    if not found or not name or not ip:
        raise UsageError(f"add host {spec!r}: expected NAME:IP",
                         hint="e.g. --add-host db.local:10.0.2.2")
    if ip == "host-gateway":
        return name, ip
    try:
        return name, str(ipaddress.ip_address(ip))
    except ValueError as exc:
        raise UsageError(f"add host {spec!r}: {ip!r} is not an IP address",
                         hint="e.g. --add-host db.local:10.0.2.2 or NAME:host-gateway") from exc


def hosts(cfg: NameConfig, container_ip: str, host_ip: str, host_text: str | None = None) -> str:
    """The container's /etc/hosts; ``host_text`` is the host's file (host network mode)."""
    if host_text is not None:
        lines = host_text.rstrip("\n").splitlines()
    else:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{host_ip if ip == 'host-gateway' else ip}\t{name}" for name, ip in cfg.add_hosts]
    names = " ".join(dict.fromkeys(n for n in (cfg.hostname, cfg.name) if n))
    if names:
        lines.append(f"{container_ip}\t{names}")
    lines.append(f"{host_ip}\t{' '.join(HOST_ALIASES)}")
    return "\n".join(lines) + "\n"


def hostname_file(cfg: NameConfig) -> str:
    return cfg.hostname + "\n"


def default_gateway(route_text: str) -> str | None:
    """The IPv4 default gateway in /proc/net/route's format (hex, little endian)."""
    for line in route_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
            gw = int(fields[2], 16)
            return ".".join(str((gw >> shift) & 0xFF) for shift in (0, 8, 16, 24))
    return None
