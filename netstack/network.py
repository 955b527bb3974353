"""A container's network, from the ``prun run`` flags to torn-down slirp4netns.

Rules:
- ``NetworkRequest`` is what the user wrote (``--network``, ``-p``, ``-P``,
  ``--dns*``, ``--add-host``, ``--no-hosts``); ``plan`` checks it and picks
  host ports BEFORE anything starts (a privileged or busy port fails with
  the fix, nothing is left half-networked).
- Modes: ``slirp4netns[:opts]`` (the default), ``pasta`` (netstack/pasta.py),
  ``none`` (lo only), ``host`` (no network namespace; -p is refused, as
  docker does).
- ``NetworkHook`` plugs into the supervisor's run hooks: ``etc_files``
  writes resolv.conf/hosts/hostname text; ``namespaces_ready`` spawns
  slirp4netns for the helper's namespaces (or runs pasta);
  ``container_created`` (the container waits to exec) waits for slirp4netns's
  ready fd, publishes the ports through its API socket, checks tap0 and
  writes ``ports.json`` (``prun port`` reads it); ``close`` stops the helper
  process and removes that state on every exit path.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from netstack import resolv
from netstack.ports import PortMapping, parse_expose, parse_publish
from netstack.slirp import SlirpOptions, parse_options
from rootless.errors import UsageError

MODES = ("slirp4netns", "pasta", "none", "host")
DEFAULT_MODE = "slirp4netns"
PORTS_FILE = "ports.json"
HOST_RESOLV = Path("/etc/resolv.conf")
UPSTREAM_RESOLV = Path("/run/systemd/resolve/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")
HOST_ROUTES = Path("/proc/net/route")
PORT_MODES = ("slirp4netns", "pasta")


@dataclass
class NetworkRequest:
    network: str = DEFAULT_MODE
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    expose: list[str] = field(default_factory=list)   # the image's EXPOSE entries
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_option: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)
    no_hosts: bool = False
    hostname: str = ""
    name: str = ""


@dataclass(frozen=True)
class NetworkPlan:
    mode: str
    slirp: SlirpOptions | None
    ports: tuple[PortMapping, ...]
    names: resolv.NameConfig


def parse_mode(spec: str) -> tuple[str, SlirpOptions | None]:
    mode, _, opts = spec.partition(":")
    if mode not in MODES:
        raise UsageError(f"use network {spec!r}: unknown network mode",
                         hint="modes: slirp4netns[:allow_host_loopback=true,mtu=N,…], pasta, "
                              "none, host")
    if mode == "slirp4netns":
        return mode, parse_options(opts, spec)
    if opts:
        raise UsageError(f"use network {spec!r}: mode {mode} takes no options")
    return mode, None


def plan(req: NetworkRequest, bind=None, unprivileged_start: int | None = None) -> NetworkPlan:
    """Check the flags and choose host ports (``bind``: the port probe)."""
    from netstack import hostports, ports

    mode, slirp_opts = parse_mode(req.network)
    wanted = [m for spec in req.publish for m in parse_publish(spec)]
    if req.publish_all:
        wanted += parse_expose(req.expose)
    if wanted and mode not in PORT_MODES:
        raise UsageError(f"publish port {wanted[0].spec!r}: --network {mode} has no ports to "
                         "publish", hint="remove -p/-P (with --network host the container's "
                                         "ports are the host's), or use --network slirp4netns")
    chosen = ports.plan(wanted, bind or hostports.probe_bind,
                        hostports.unprivileged_port_start() if unprivileged_start is None
                        else unprivileged_start)
    names = resolv.NameConfig(
        hostname=req.hostname, name=req.name, dns=resolv.validate_dns(req.dns),
        dns_search=tuple(req.dns_search), dns_options=tuple(req.dns_option),
        add_hosts=tuple(resolv.parse_add_host(h) for h in req.add_host), no_hosts=req.no_hosts)
    return NetworkPlan(mode, slirp_opts, tuple(chosen), names)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def etc_files(p: NetworkPlan) -> dict[str, str]:
    """/etc/resolv.conf, /etc/hosts (unless --no-hosts) and /etc/hostname."""
    host_text = _read(HOST_RESOLV)
    host = resolv.parse_resolv(host_text)
    if p.mode == "slirp4netns":
        servers: tuple[str, ...] = (p.slirp.dns,)
        container_ip, host_ip = p.slirp.guest_ip, p.slirp.gateway
    elif p.mode == "pasta":
        # pasta copies the host's addresses in and maps its gateway to the host
        servers = resolv.host_resolvers(host_text, _read(UPSTREAM_RESOLV))
        container_ip = "127.0.1.1"
        host_ip = resolv.default_gateway(_read(HOST_ROUTES)) or "127.0.0.1"
    elif p.mode == "host":
        servers = host.nameservers  # same namespace: loopback resolvers work
        container_ip, host_ip = "127.0.1.1", "127.0.0.1"
    else:
        servers = resolv.host_resolvers(host_text, _read(UPSTREAM_RESOLV))
        container_ip, host_ip = "127.0.1.1", "127.0.0.1"
    files = {"/etc/resolv.conf": resolv.resolv_conf(p.names, servers, host),
             "/etc/hostname": resolv.hostname_file(p.names)}
    if not p.names.no_hosts:
        files["/etc/hosts"] = resolv.hosts(p.names, container_ip, host_ip,
                                           _read(HOST_HOSTS) if p.mode == "host" else None)
    return files


def write_ports(state_dir: Path, mappings: list[PortMapping]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (PORTS_FILE + ".tmp")
    tmp.write_text(json.dumps(ports_records(mappings)))
    tmp.rename(state_dir / PORTS_FILE)


def ports_records(mappings: list[PortMapping]) -> list[dict]:
    """The record form the container store keeps in config["ports"] (ps shows it)."""
    return [{"host_ip": m.host_ip, "host_port": m.host_port, "container_port": m.container_port,
             "proto": m.proto} for m in mappings]


def from_records(rows: list[dict]) -> list[PortMapping]:
    return [PortMapping(r.get("host_ip") or "0.0.0.0", int(r["host_port"]),
                        int(r["container_port"]), r.get("proto", "tcp")) for r in rows]


def read_ports(state_dir: Path) -> list[PortMapping] | None:
    """The published ports of a running container; None when it has no state here."""
    try:
        return from_records(json.loads((state_dir / PORTS_FILE).read_text()))
    except FileNotFoundError:
        return None


class NetworkHook:
    """The supervisor's network hook for one container (see the module rules)."""

    def __init__(self, p: NetworkPlan, state_dir: Path | None,
                 cache_dir: Path | None = None) -> None:
        self.plan = p
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.slirp = None
        self.pasta = None
        self.helper_pid = 0

    def etc_files(self, files: dict[str, str]) -> None:
        new = etc_files(self.plan)
        if self.plan.names.no_hosts:
            files.pop("/etc/hosts", None)
        files.update(new)

    def namespaces_ready(self, helper_pid: int) -> None:
        if self.plan.mode == "pasta":
            from netstack import pasta

            self.pasta = pasta.start(list(self.plan.ports), helper_pid, self.state_dir)
            write_ports(self.state_dir, list(self.plan.ports))
        elif self.plan.mode == "slirp4netns":
            from netstack import slirp

            # Not waited for here: slirp4netns starts while the helper mounts
            # the rootfs; container_created waits before the container execs.
            self.helper_pid = helper_pid
            self.slirp = slirp.spawn(self.plan.slirp, helper_pid, self.state_dir,
                                     cache_dir=self.cache_dir)

    def container_created(self, pid: int) -> None:
        if self.slirp is None:
            return
        from netstack import netlink
        from netstack.slirp_api import SlirpPorts

        opts = self.plan.slirp
        self.slirp.wait_ready()
        SlirpPorts(self.slirp.api_socket, opts.guest_ip).publish(list(self.plan.ports))
        netlink.verify_tap(self.helper_pid, opts.guest_ip, opts.gateway, opts.mtu)
        write_ports(self.state_dir, list(self.plan.ports))

    def keeper_fds(self) -> list[int]:
        return [self.slirp.exit_fd] if self.slirp is not None else []

    def close(self) -> None:
        for helper in (self.slirp, self.pasta):
            if helper is not None:
                helper.stop()
        self.slirp = self.pasta = None
        if self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def hook(req, cid: str, config: dict) -> NetworkHook:
    """The supervisor's factory (rootless.supervisor.NETWORKS): ``req`` is the
    RunRequest, ``config`` the image config (its ExposedPorts feed -P). Ports
    are checked and chosen here, before the helper starts anything."""
    from rootless.paths import Paths

    runtime = Paths.from_env().runtime
    reap_stale(runtime)
    p = plan(NetworkRequest(
        network=req.network, publish=req.publish, publish_all=req.publish_all,
        expose=list((config or {}).get("ExposedPorts") or {}), dns=req.dns,
        dns_search=req.dns_search, dns_option=req.dns_option, add_host=req.add_host,
        no_hosts=req.no_hosts, hostname=req.hostname or cid[:12], name=req.name or ""))
    if (p.mode == "slirp4netns" and not p.slirp.allow_host_loopback
            and any(m.proto == "udp" for m in p.ports)):
        logging.getLogger("prun").warning(
            "published UDP ports: slirp4netns drops replies to clients on this host's "
            "loopback while host loopback is disabled (remote clients are fine); use "
            "--network slirp4netns:allow_host_loopback=true or --network pasta for local ones")
    return NetworkHook(p, runtime / "c" / cid[:12] / "net", cache_dir=runtime)


def reap_stale(runtime: Path) -> list[Path]:
    """Remove the network state of containers whose supervisor was killed
    (``slirp.cleanup`` leaves live ones alone); returns the dirs removed."""
    from netstack import pasta, slirp

    removed = []
    for net in runtime.glob("c/*/net"):
        if slirp.cleanup(net) or pasta.cleanup(net):
            shutil.rmtree(net)
            removed.append(net)
    return removed
