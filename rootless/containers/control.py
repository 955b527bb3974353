"""The keeper's control socket protocol (client side and message shapes).

Rules:
- A stream unix socket ``<rundir>/ctl.sock``; each request is one JSON
  object on one line, each reply one JSON object on one line. Pathname
  sockets work across network namespaces, so the keeper may live in the
  container's namespaces while the CLI stays on the host.
- Requests: ``{"op": "status"}``, ``{"op": "stop", "timeout": s, "signal": n}``,
  ``{"op": "kill", "signal": n}``, ``{"op": "wait"}`` (the reply comes when the
  container has exited for good, i.e. no restart follows).
- Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": "text"}``; a
  status reply carries the keeper's state (see keeper.State).
- The client raises ``KeeperGone`` when nobody listens (the keeper died:
  the caller reconciles stale state) and ContainerError for an error reply.
"""

from __future__ import annotations

import json
import socket

from rootless.errors import ContainerError

SOCKET_NAME = "ctl.sock"


class KeeperGone(Exception):
    """The control socket does not answer: the keeper is not running."""


def request(path: str, msg: dict, timeout: float | None = 10.0) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise KeeperGone(path) from exc
        s.sendall(json.dumps(msg).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise KeeperGone(path)
            data += chunk
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise KeeperGone(path) from exc
    finally:
        s.close()
    reply = json.loads(data)
    if not reply.get("ok"):
        raise ContainerError(f"{msg.get('op')} container: {reply.get('error')}")
    return reply
