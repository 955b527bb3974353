"""A small HTTP/1.1 client connection: what registry traffic needs.

Why not http.client or httpx: http.client imports the email package to
parse headers (half of a re-pull's import time), httpx ~185 ms more (see
client.py). Registry traffic is simple: one request at a time per
connection, bodies framed by Content-Length or chunked encoding (or, from
HTTP/1.0 servers, by the connection closing), keep-alive.

Rules:
- ``Connection.request`` sends one request and returns a ``Response`` after
  the headers; its body is read with ``read``. A connection is reused only
  after its last response was read to the end and the server did not say
  ``Connection: close``; a reused connection that turns out closed by the
  server is reconnected once, transparently (the body must be replayable).
- Every failure is an ``OSError``: socket errors as they are, ``TLSError``
  for handshakes and certificates (so callers need not import ssl),
  ``HTTPError`` for malformed answers, ``IncompleteRead`` (with the bytes
  that did arrive) when the body ends early.
- ssl is imported only for https.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import BinaryIO

_MAX_LINE = 65536
_MAX_HEADERS = 200


class HTTPError(OSError):
    """The server's answer is not valid HTTP/1.x."""


class IncompleteRead(HTTPError):
    def __init__(self, partial: bytes, expected: str) -> None:
        super().__init__(f"connection closed with {expected} still to come")
        self.partial = partial


class TLSError(OSError):
    def __init__(self, reason: str, verify_message: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.verify_message = verify_message   # set: the certificate is not trusted


class Headers:
    """Case-insensitive response headers (the first of repeated ones)."""

    def __init__(self) -> None:
        self._d: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        self._d.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._d.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._d[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._d


class Response:
    def __init__(self, conn: Connection, status: int, version: str, headers: Headers,
                 no_body: bool) -> None:
        self.conn, self.status, self.headers = conn, status, headers
        self._chunk_left = 0
        self._chunked = False
        self._left: int | None = None   # None: until the connection closes
        self.done = no_body
        conn_hdr = (headers.get("Connection") or "").lower()
        self.keep_alive = ("close" not in conn_hdr) and \
            (version == "HTTP/1.1" or "keep-alive" in conn_hdr)
        if not no_body:
            if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
                self._chunked = True
            elif headers.get("Content-Length") is not None:
                try:
                    self._left = int(headers["Content-Length"])
                except ValueError as exc:
                    raise HTTPError(f"bad Content-Length {headers['Content-Length']!r}") \
                        from exc
                self.done = self._left == 0
            else:
                self.keep_alive = False
        if self.done:
            conn.finished(self)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the body (all of it for -1); b"" at its end."""
        if self.done:
            return b""
        if n < 0:
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        if self._chunked:
            data = self._read_chunked(n)
        elif self._left is None:
            data = self.conn.rfile.read(n)
            if not data:
                self._finish()
        else:
            want = min(n, self._left)
            data = self.conn.rfile.read(want)
            self._left -= len(data)
            if len(data) < want:
                self.conn.close()
                self.done = True
                raise IncompleteRead(data, f"{self._left} bytes")
            if self._left == 0:
                self._finish()
        return data

    def _read_chunked(self, n: int) -> bytes:
        rfile = self.conn.rfile
        if self._chunk_left == 0:
            line = rfile.readline(_MAX_LINE)
            if not line:
                self.conn.close()
                self.done = True
                raise IncompleteRead(b"", "a chunk")
            try:
                self._chunk_left = int(line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise HTTPError(f"bad chunk size line {line[:40]!r}") from exc
            if self._chunk_left == 0:
                while rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._finish()
                return b""
        data = rfile.read(min(n, self._chunk_left))
        self._chunk_left -= len(data)
        if not data:
            self.conn.close()
            self.done = True
            raise IncompleteRead(b"", "a chunk")
        if self._chunk_left == 0:
            rfile.readline(_MAX_LINE)  # the CRLF after the chunk
        return data

    def _finish(self) -> None:
        self.done = True
        self.conn.finished(self)

    def close(self) -> None:
        """Give up on the rest of the body (the connection is dropped)."""
        if not self.done:
            self.done = True
            self.conn.close()


class Connection:
    def __init__(self, scheme: str, netloc: str, timeout: float,
                 ssl_context: Callable[[str], object] | None = None) -> None:
        self.scheme, self.netloc, self.timeout = scheme, netloc, timeout
        self.ssl_context = ssl_context
        host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
        if not host or not port.isdigit():
            host, port = netloc, ""
        self.host = host.strip("[]")
        self.port = int(port) if port else (443 if scheme == "https" else 80)
        self.sock: socket.socket | None = None
        self.rfile: BinaryIO | None = None
        self._reusable = False

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.scheme == "https":
            import ssl

            try:
                sock = self.ssl_context(self.netloc).wrap_socket(sock,
                                                                 server_hostname=self.host)
            except ssl.SSLCertVerificationError as exc:
                sock.close()
                raise TLSError(str(exc.reason or exc), exc.verify_message) from exc
            except ssl.SSLError as exc:
                sock.close()
                raise TLSError(str(exc.reason or exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=1 << 16)
        self._reusable = False

    def request(self, method: str, path: str, headers: dict[str, str],
                body: bytes | BinaryIO | None = None) -> Response:
        reused = self.sock is not None and self._reusable
        if not reused:
            self.close()
            self._connect()
        self._reusable = False
        try:
            return self._exchange(method, path, headers, body)
        except (ConnectionError, IncompleteRead):
            replayable = body is None or isinstance(body, bytes) or body.seekable()
            if not reused or not replayable:
                raise
            # The server closed the idle keep-alive connection: once more, fresh.
            if body is not None and not isinstance(body, bytes):
                body.seek(0)
            self.close()
            self._connect()
            return self._exchange(method, path, headers, body)

    def _exchange(self, method: str, path: str, headers: dict[str, str],
                  body: bytes | BinaryIO | None) -> Response:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.netloc}",
                 "User-Agent: prun", "Accept-Encoding: identity"]
        names = {k.lower() for k in headers}
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None and "content-length" not in names:
            if not isinstance(body, bytes):
                raise ValueError("a file body needs a Content-Length header")
            lines.append(f"Content-Length: {len(body)}")
        elif body is None and method in ("POST", "PUT", "PATCH") and "content-length" not in names:
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, bytes) and len(body) < 65536:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            if isinstance(body, bytes):
                self.sock.sendall(body)
            elif body is not None:
                while chunk := body.read(1 << 20):
                    self.sock.sendall(chunk)
        return self._response(method)

    def _response(self, method: str) -> Response:
        while True:
            line = self.rfile.readline(_MAX_LINE)
            if not line:
                raise ConnectionResetError("the server closed the connection without answering")
            parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise HTTPError(f"not an HTTP/1.x status line: {line[:60]!r}")
            status = int(parts[1])
            headers = Headers()
            for _ in range(_MAX_HEADERS):
                hline = self.rfile.readline(_MAX_LINE)
                if hline in (b"\r\n", b"\n", b""):
                    break
                name, sep, value = hline.decode("latin-1").partition(":")
                if sep:
                    headers.add(name.strip(), value.strip())
            else:
                raise HTTPError("too many response headers")
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real answer follows
            no_body = method == "HEAD" or status in (204, 304)
            return Response(self, status, parts[0], headers, no_body)

    def finished(self, resp: Response) -> None:
        self._reusable = resp.keep_alive

    def close(self) -> None:
        if self.rfile is not None:
            self.rfile.close()
            self.rfile = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._reusable = False
