"""The HTTP/1.1 connection against scripted servers on loopback sockets:
framing (length, chunked, until close), keep-alive reuse and reconnect,
early EOF reported with what arrived."""

from __future__ import annotations

import socket
import threading

import pytest

from rootless.images.registry import http11


class Scripted:
    """Accepts connections; answers each request with the next canned reply.
    ``close_after`` closes a connection after that many replies."""

    def __init__(self, replies: list[bytes], close_after: int | None = None) -> None:
        self.replies = list(replies)
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.netloc = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.replies:
            conn, _ = self.sock.accept()
            self.connections += 1
            served = 0
            with conn:
                buf = b""
                while self.replies:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    self.requests.append(head)
                    conn.sendall(self.replies.pop(0))
                    served += 1
                    if self.close_after is not None and served >= self.close_after:
                        break


def test_content_length_and_keep_alive_reuse():
    srv = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno"])
    conn = http11.Connection("http", srv.netloc, 5)
    r = conn.request("GET", "/a", {"Accept": "x"})
    assert (r.status, r.read(), r.headers["CONTENT-LENGTH"]) == (200, b"hello", "5")
    r = conn.request("GET", "/b", {})
    assert (r.status, r.read()) == (404, b"no")
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"GET /a HTTP/1.1\r\nHost: " + srv.netloc.encode())
    conn.close()


def test_chunked_body_with_trailers():
    srv = Scripted([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: y\r\n\r\n"])
    conn = http11.Connection("http", srv.netloc, 5)
    assert conn.request("GET", "/", {}).read() == b"abcdefg"
    conn.close()


def test_head_has_no_body_and_close_delimited_bodies_end_the_connection():
    srv = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nDocker-Content-Digest: d\r\n\r\n",
                    b"HTTP/1.0 200 OK\r\n\r\nuntil close"], close_after=2)
    conn = http11.Connection("http", srv.netloc, 5)
    r = conn.request("HEAD", "/", {})
    assert r.headers.get("docker-content-digest") == "d" and r.read() == b""
    r = conn.request("GET", "/", {})
    assert r.read() == b"until close"
    conn.close()


def test_server_closing_an_idle_connection_is_retried_once_on_a_new_one():
    srv = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"], close_after=1)
    conn = http11.Connection("http", srv.netloc, 5)
    assert conn.request("GET", "/", {}).read() == b"a"
    assert conn.request("PUT", "/", {}, b"body").read() == b"b"
    assert srv.connections == 2
    assert srv.requests[1].endswith(b"Content-Length: 4")
    conn.close()


def test_early_eof_reports_the_bytes_that_arrived():
    srv = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"], close_after=1)
    conn = http11.Connection("http", srv.netloc, 5)
    r = conn.request("GET", "/", {})
    with pytest.raises(http11.IncompleteRead) as err:
        r.read(10)
    assert err.value.partial == b"abc"


def test_garbage_is_an_http_error():
    srv = Scripted([b"SSH-2.0-OpenSSH\r\n\r\n"])
    conn = http11.Connection("http", srv.netloc, 5)
    with pytest.raises(http11.HTTPError):
        conn.request("GET", "/", {})
    conn.close()

