"""Client of slirp4netns's API socket: add, list and remove host port forwards.

Rules:
- One request per connection, sent in ONE write: slirp4netns reads a
  request with a single read(2) and answers ``{"return": …}`` or
  ``{"error": {"desc": …}}`` before closing.
- The socket path may be longer than sun_path's 108 bytes (deep runtime
  dirs); we then connect through ``/proc/self/fd/<dirfd>/<name>``.
- slirp4netns's API takes IPv4 host addresses only; an IPv6 host address is
  refused here with the alternative (``--network pasta``).
- ``SlirpPorts`` is the slirp4netns ``PortDriver``: it publishes planned
  ``PortMapping``s and lists what is forwarded, for ``prun port``.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from netstack.ports import PortMapping
from rootless.errors import ContainerError, UsageError

SUN_PATH_MAX = 107


def request(sock_path: Path, payload: dict, timeout: float = 5.0) -> dict:
    """Send one API request and return its ``return`` object."""
    data = json.dumps(payload).encode()
    what = payload.get("execute", "request")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            _connect(sock, sock_path)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        raise ContainerError(f"{what} through slirp4netns API socket {sock_path}: "
                             f"{exc.strerror or exc}",
                             hint="the container's slirp4netns is not running: restart the "
                                  "container") from exc
    try:
        answer = json.loads(b"".join(chunks) or b"{}")
    except ValueError as exc:
        raise ContainerError(f"{what} through slirp4netns API socket {sock_path}: "
                             f"unreadable answer {b''.join(chunks)[:200]!r}") from exc
    if "error" in answer:
        raise ContainerError(f"{what} through slirp4netns API socket {sock_path}: "
                             f"{answer['error'].get('desc', answer['error'])}")
    return answer.get("return", answer)


def _connect(sock: socket.socket, path: Path) -> None:
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        sock.connect(os.fspath(path))
        return
    dirfd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{dirfd}/{path.name}")
    finally:
        os.close(dirfd)


def add_hostfwd(sock_path: Path, mapping: PortMapping, guest_addr: str) -> int:
    if ":" in mapping.host_ip:
        raise UsageError(
            f"publish port {mapping.spec!r}: slirp4netns forwards IPv4 host addresses only",
            hint="publish on an IPv4 address (e.g. 127.0.0.1) or use --network pasta")
    answer = request(sock_path, {"execute": "add_hostfwd", "arguments": {
        "proto": mapping.proto, "host_addr": mapping.host_ip, "host_port": mapping.host_port,
        "guest_addr": guest_addr, "guest_port": mapping.container_port}})
    return int(answer["id"])


def list_hostfwd(sock_path: Path) -> list[dict]:
    return list(request(sock_path, {"execute": "list_hostfwd"}).get("entries", []))


def remove_hostfwd(sock_path: Path, fwd_id: int) -> None:
    request(sock_path, {"execute": "remove_hostfwd", "arguments": {"id": fwd_id}})


class SlirpPorts:
    """PortDriver over one container's slirp4netns API socket."""

    def __init__(self, sock_path: Path, guest_addr: str) -> None:
        self.sock_path = sock_path
        self.guest_addr = guest_addr

    def publish(self, mappings: list[PortMapping]) -> None:
        for m in mappings:
            add_hostfwd(self.sock_path, m, self.guest_addr)

    def list(self) -> list[PortMapping]:
        return [PortMapping(e["host_addr"], int(e["host_port"]), int(e["guest_port"]), e["proto"])
                for e in list_hostfwd(self.sock_path)]
