"""A user+network namespace made with ``unshare -Urn`` for netstack tests,
before (and independent of) ``prun run``.

``Namespace(script)`` runs ``python3 -c script`` as root of a fresh user
namespace in a fresh network namespace; ``.pid`` is ready for slirp4netns
once it is constructed (and, for a script printing
a line, once that line came: the server is listening). ``run_inside`` runs a command in it
(nsenter). ``SERVER`` is a script serving HTTP on TCP 80 and echoing UDP on
port 53 inside, the container side of the port tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER = textwrap.dedent("""
    import socket, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"inside {self.client_address[0]}".encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body)))
            self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 53))
    def udp():
        while True:
            data, peer = u.recvfrom(2048); u.sendto(b"echo " + data, peer)
    threading.Thread(target=udp, daemon=True).start()
    http = ThreadingHTTPServer(("0.0.0.0", 80), H)
    print("ready", flush=True)
    http.serve_forever()
""")


class Namespace:
    def __init__(self, script: str = "import time; time.sleep(600)") -> None:
        self.proc = subprocess.Popen(["unshare", "-Urn", "--", sys.executable, "-c", script],
                                     stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.wait_unshared()
        if "print(" in script:
            assert self.proc.stdout.readline() == "ready\n"

    def wait_unshared(self, timeout: float = 5.0) -> None:
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # the process may not exist yet
                if os.readlink(f"/proc/{self.pid}/ns/net") != mine:
                    return
            time.sleep(0.005)
        raise RuntimeError(f"unshare -Urn (pid {self.pid}) did not unshare in {timeout} s")

    def run_inside(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 20)
        return subprocess.run(["nsenter", "--preserve-credentials", "-U", "-n", "-t",
                               str(self.pid), *argv], **kw)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fetch_inside(ns: Namespace, url: str, timeout: float = 3.0) -> subprocess.CompletedProcess:
    code = ("import sys, urllib.request; "
            f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout={timeout}).read().decode())")
    return ns.run_inside([sys.executable, "-c", code])


class HostHTTP:
    """An HTTP server on the host's 127.0.0.1 answering ``host <client ip>``."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = f"host {self.client_address[0]}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_port(host: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def free_port(proto: str = "tcp") -> int:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
