"""The keeper's control socket protocol (client side and message shapes).

Rules:
- A stream unix socket ``<rundir>/ctl.sock``; one request per connection:
  the client sends ``marshal.dumps(dict)`` and shuts its write side, the
  keeper answers with ``marshal.dumps(dict)`` and closes. marshal, not JSON:
  the keeper must stay lean (the ``json`` package imports ``re``). Pathname
  sockets work across network namespaces, so the keeper may live in the
  container's namespaces while the CLI stays on the host.
- Requests: ``{"op": "status"}``, ``{"op": "stop", "timeout": s, "signal": n}``,
  ``{"op": "kill", "signal": n}``, ``{"op": "wait"}`` (the reply comes when the
  container has exited for good, i.e. no restart follows).
- Replies: ``{"ok": True, ...}`` or ``{"ok": False, "error": "text"}``; a
  status reply carries the keeper's state dict.
- The client raises ``KeeperGone`` when nobody listens (the keeper died:
  the caller reconciles stale state) and ContainerError for an error reply.
"""

from __future__ import annotations

import marshal
import socket

SOCKET_NAME = "ctl.sock"
MAX_MESSAGE = 1 << 16


class KeeperGone(Exception):
    """The control socket does not answer: the keeper is not running."""


def read_all(s: socket.socket) -> bytes:
    data = b""
    while len(data) <= MAX_MESSAGE:
        chunk = s.recv(MAX_MESSAGE)
        if not chunk:
            return data
        data += chunk
    raise ValueError("control message too long")


def request(path: str, msg: dict, timeout: float | None = 10.0) -> dict:
    from rootless.errors import ContainerError
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(marshal.dumps(msg))
        s.shutdown(socket.SHUT_WR)
        data = read_all(s)
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError,
            BrokenPipeError) as exc:
        raise KeeperGone(path) from exc
    finally:
        s.close()
    if not data:
        raise KeeperGone(path)
    reply = marshal.loads(data)
    if not reply.get("ok"):
        raise ContainerError(f"{msg.get('op')} container: {reply.get('error')}")
    return reply
