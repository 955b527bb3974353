"""The host side of port planning: probe a port by binding it, read the sysctl.

Rules:
- ``probe_bind`` binds and closes at once: it proves the port is free and
  returns the port the kernel chose for port 0. The port driver binds it
  again moments later; the window is the same one docker and podman accept.
- SO_REUSEADDR is set as the port drivers set it, so a port in TIME_WAIT
  counts as free (as it will be for them) but a listening one does not.
"""

from __future__ import annotations

import socket
from pathlib import Path

UNPRIVILEGED_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


def probe_bind(host_ip: str, port: int, proto: str) -> int:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip, port))
        return sock.getsockname()[1]


def unprivileged_port_start(path: Path = UNPRIVILEGED_PORT_START) -> int:
    """The lowest port an unprivileged user may bind (1024 when unreadable)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 1024
