"""An HTTP proxy in front of a plain loopback registry that injects faults.

Tests of what the network can do to a pull (a flipped byte, a connection
that drops mid-blob, a slow link) put ``FaultProxy`` between prun and the
real ``plain_registry``. Every request is forwarded to the registry as is
(Range headers too) and recorded; faults apply to blob GETs only:

- ``corrupt``: flip one byte in the middle of each blob body over 64 KiB
  (the layers; configs stay intact);
- ``cut_after``: send the headers and this many body bytes, then close the
  connection — once per blob, so a resumed download can finish;
- ``delay``: seconds to sleep per 64 KiB chunk (a slow link, for kill -9);
- ``unavailable``: answer this many blob GETs with 503 first (retries);
- ``redirect``: answer blob GETs with a 307 to the registry itself, as
  registries backed by object storage do.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    status: int = 0
    sent: int = 0


@dataclass
class FaultProxy:
    upstream: str                       # host:port of the registry
    corrupt: bool = False
    cut_after: int | None = None
    delay: float = 0.0
    unavailable: int = 0
    redirect: bool = False
    requests: list[Seen] = field(default_factory=list)
    _cut: set = field(default_factory=set)

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                return None

            def do_GET(self) -> None:
                proxy.forward(self)

            do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def blob_gets(self) -> list[Seen]:
        return [s for s in self.requests if s.method == "GET" and "/blobs/sha256:" in s.path]

    def forward(self, h: http.server.BaseHTTPRequestHandler) -> None:
        seen = Seen(h.command, h.path, h.headers.get("Range"))
        self.requests.append(seen)
        blob_get = h.command == "GET" and "/blobs/sha256:" in h.path
        if blob_get and (self.unavailable or self.redirect):
            if self.unavailable:
                self.unavailable -= 1
                seen.status, location = 503, None
            else:
                seen.status, location = 307, f"http://{self.upstream}{h.path}"
            h.send_response(seen.status)
            if location:
                h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
        up = http.client.HTTPConnection(self.upstream, timeout=60)
        up.request(h.command, h.path, body=body, headers=headers)
        resp = up.getresponse()
        seen.status = resp.status
        is_blob = h.command == "GET" and "/blobs/sha256:" in h.path and resp.status in (200, 206)
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding"):
                h.send_header(k, v)
        data = resp.read()
        up.close()
        if h.command != "HEAD" and not resp.getheader("Content-Length"):
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if is_blob and self.corrupt and len(data) > 65536:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        limit = len(data)
        if is_blob and self.cut_after is not None and h.path not in self._cut \
                and len(data) > self.cut_after:
            self._cut.add(h.path)
            limit = self.cut_after
        for off in range(0, limit, 65536):
            chunk = data[off:min(off + 65536, limit)]
            try:
                h.wfile.write(chunk)
                h.wfile.flush()
            except OSError:
                return
            seen.sent += len(chunk)
            if is_blob and self.delay:
                time.sleep(self.delay)
        if limit < len(data):
            h.close_connection = True
            h.connection.shutdown(2)
