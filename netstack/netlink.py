"""Inside the container's network namespace: check tap0 after slirp4netns.

Rules:
- The only module importing pyroute2, and only inside a function: the
  import costs ~270 ms here, more than a container start. The check on the
  start path uses ioctl(2) and /proc/self/net/route (well under 1 ms); the
  pyroute2 dump of links, addresses and routes is built only when the check
  failed, for the error message.
- The supervisor is not in the container's namespaces: ``verify_tap`` forks
  a child that setns(2)es into the target's user and network namespaces
  (the user owns that user namespace, so it may) and reports back over a
  pipe as one JSON line. The parent stays where it was.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import json
import os
import socket
import struct

from rootless.errors import ContainerError

SIOCGIFFLAGS = 0x8913
SIOCGIFADDR = 0x8915
SIOCGIFMTU = 0x8921
IFF_UP = 0x1
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def _setns(path: str, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _ifreq(sock: socket.socket, request: int, name: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, struct.pack("16s16x", name.encode()))


def tap_state(name: str = "tap0") -> dict:
    """In the current network namespace: tap0's flags, IPv4 address, MTU, default route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            flags = struct.unpack_from("H", _ifreq(sock, SIOCGIFFLAGS, name), 16)[0]
        except OSError:
            return {"exists": False}
        try:
            addr = socket.inet_ntoa(_ifreq(sock, SIOCGIFADDR, name)[20:24])
        except OSError:
            addr = None
        mtu = struct.unpack_from("i", _ifreq(sock, SIOCGIFMTU, name), 16)[0]
    gateway = None
    with open("/proc/self/net/route") as f:
        for line in f.readlines()[1:]:
            iface, dest, gw = line.split()[:3]
            if iface == name and dest == "00000000":
                gateway = socket.inet_ntoa(struct.pack("<I", int(gw, 16)))
    return {"exists": True, "up": bool(flags & IFF_UP), "address": addr, "mtu": mtu,
            "gateway": gateway}


def problems(state: dict, address: str, gateway: str, mtu: int) -> list[str]:
    """What differs from what slirp4netns --configure should have set (pure)."""
    if not state.get("exists"):
        return ["tap0 does not exist"]
    out = []
    if not state["up"]:
        out.append("tap0 is down")
    if state["address"] != address:
        out.append(f"tap0 has address {state['address']}, expected {address}")
    if state["mtu"] != mtu:
        out.append(f"tap0 has MTU {state['mtu']}, expected {mtu}")
    if state["gateway"] != gateway:
        out.append(f"default route via {state['gateway']}, expected via {gateway}")
    return out


def describe() -> str:
    """Links, addresses and routes of the current namespace (pyroute2), for errors."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = [f"{ln.get_attr('IFLA_IFNAME')} mtu {ln.get_attr('IFLA_MTU')} "
                 f"{'UP' if ln['flags'] & IFF_UP else 'DOWN'}" for ln in ipr.get_links()]
        addrs = [f"{a.get_attr('IFA_LABEL')} {a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                 for a in ipr.get_addr()]
        routes = [f"{r.get_attr('RTA_DST') or 'default'} via {r.get_attr('RTA_GATEWAY')}"
                  for r in ipr.get_routes(family=socket.AF_INET)]
    return "; ".join(["links: " + ", ".join(links), "addresses: " + ", ".join(addrs),
                      "routes: " + ", ".join(routes)])


def verify_tap(pid: int, address: str, gateway: str, mtu: int) -> None:
    """Check tap0 in ``pid``'s network namespace; raise ContainerError if wrong."""
    ipaddress.ip_address(address)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        code = 0
        try:
            os.close(r)
            _setns(f"/proc/{pid}/ns/user", CLONE_NEWUSER)
            _setns(f"/proc/{pid}/ns/net", CLONE_NEWNET)
            found = problems(tap_state(), address, gateway, mtu)
            report = {"problems": found, "detail": describe() if found else ""}
        except BaseException as exc:  # reported to the parent, which raises it
            report = {"problems": [f"cannot inspect the network namespace: {exc}"],
                      "detail": ""}
            code = 1
        os.write(w, json.dumps(report).encode())
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(child, 0)
    report = json.loads(data or b'{"problems": ["the check exited without a report"]}')
    if report["problems"]:
        detail = f" ({report['detail']})" if report.get("detail") else ""
        raise ContainerError(
            f"configure the container network (pid {pid}): "
            f"{'; '.join(report['problems'])}{detail}",
            hint="slirp4netns did not set up tap0 as expected; rerun with --log-level debug "
                 "and check its log, or run with --network none")
