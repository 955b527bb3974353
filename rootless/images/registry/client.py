"""The registry client: executes ``protocol`` plans over ``http11``.

Why not httpx (the stack table's choice): importing httpx costs ~185 ms here
(httpcore imports trio when it is installed; httpx imports click and rich
for its own CLI) — more than podman's whole re-pull of a present image —
and http.client costs half of what remains (it parses headers with the
email package). Registry traffic is a few sequential requests per layer:
``http11`` does that with one keep-alive connection per thread and host.
This module and ``http11`` are the only HTTP code, so a swap is local.

Rules:
- ``RegistryClient`` executes ``protocol`` plans for one registry host and
  one operation (``op``, e.g. "pull docker.io/library/alpine:latest"), which
  starts every error message it raises (``RegistryError``, exit 125).
- Transport security: HTTPS verified against the system CAs plus
  ``certs.d/<host>/*.crt``; with ``tls_verify=False`` or an ``insecure``
  registry in registries.conf, HTTPS is tried unverified and plain HTTP
  after it (as podman does) — or plain HTTP first when the caller knows
  (``prefer_http``) that this registry answered it before.
- Auth: the ``/v2/`` ping learns the challenge; Basic sends the stored
  credentials; Bearer fetches one token per scope set and reuses it.
- Reliability: connection failures and 408/429/5xx are retried (3 tries,
  backoff) for requests whose body can be replayed; redirects are followed
  (without the Authorization header when the host changes); a blob download
  that breaks resumes with a Range request from the last byte received.
- Connections are kept per thread, so parallel layer downloads each use
  their own.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import BinaryIO

from rootless.errors import RegistryError
from rootless.images import auth, config
from rootless.images.registry import http11, protocol
from rootless.images.registry.protocol import Request

TIMEOUT = 60
TRIES = 3
BACKOFF = 0.3
BLOCK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)


class Response:
    def __init__(self, status: int, headers: http11.Headers, body: bytes,
                 raw: http11.Response | None = None) -> None:
        self.status, self.headers, self.body, self.raw = status, headers, body, raw


class Transport:
    """Keep-alive connections per (thread, scheme, host)."""

    def __init__(self, ssl_context) -> None:
        self._ssl_context = ssl_context
        self._local = threading.local()

    def _pool(self) -> dict:
        return self._local.__dict__.setdefault("pool", {})

    def connection(self, scheme: str, netloc: str) -> http11.Connection:
        pool = self._pool()
        conn = pool.get((scheme, netloc))
        if conn is None:
            conn = http11.Connection(scheme, netloc, TIMEOUT, self._ssl_context)
            pool[(scheme, netloc)] = conn
        return conn

    def drop(self, scheme: str, netloc: str) -> None:
        conn = self._pool().pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def send(self, req: Request, stream: bool = False,
             body: BinaryIO | None = None) -> Response:
        parts = urllib.parse.urlsplit(req.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self.connection(parts.scheme, parts.netloc)
        try:
            resp = conn.request(req.method, path, req.headers,
                                body if body is not None else req.body)
            if stream and resp.status in (200, 206):
                return Response(resp.status, resp.headers, b"", resp)
            return Response(resp.status, resp.headers, resp.read())
        except BaseException:
            self.drop(parts.scheme, parts.netloc)
            raise

    def close(self) -> None:
        for conn in self._pool().values():
            conn.close()
        self._pool().clear()


class RegistryClient:
    def __init__(self, host: str, *, op: str, tls_verify: bool | None = None,
                 cert_dir: str | None = None, credentials: tuple[str, str] | None = None,
                 registries: config.RegistriesConfig | None = None,
                 env: Mapping[str, str] | None = None, push: bool = False,
                 prefer_http: bool = False, transport: Transport | None = None) -> None:
        self.host, self.op, self.push = host, op, push
        self.prefer_http = prefer_http
        env = os.environ if env is None else env
        conf = (registries or config.RegistriesConfig()).lookup(host)
        self.insecure = (tls_verify is False) or (tls_verify is None and conf is not None
                                                  and conf.insecure)
        self._cas = config.ca_files(host, config.cert_dirs(env, cert_dir), bool(cert_dir))
        self.credentials = credentials if credentials is not None else auth.lookup(host, env)
        self.transport = transport or Transport(self._context)
        self.base: str | None = None
        self._challenge: protocol.Challenge | None = None
        self._auth: dict[str, str] = {}     # scope key -> Authorization header value
        self._lock = threading.Lock()

    # -------------------------------------------------------------- setup

    def _context(self, netloc: str):
        import ssl

        if self.insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx = ssl.create_default_context()
        for ca in self._cas:
            ctx.load_verify_locations(cafile=str(ca))
        return ctx

    def fail(self, cause: str, hint: str | None = None) -> RegistryError:
        return RegistryError(f"{self.op}: {cause}", hint=hint)

    def connect(self) -> None:
        """Ping /v2/ to choose the scheme and learn the auth challenge."""
        if self.base is not None:
            return
        schemes = ("https",)
        if self.insecure:
            # prefer_http: this insecure registry answered plain HTTP before,
            # so try that first (skips loading ssl and a failing handshake).
            schemes = ("http", "https") if self.prefer_http else ("https", "http")
        last: Exception | None = None
        for scheme in schemes:
            base = protocol.base_url(scheme, protocol.endpoint(self.host))
            try:
                resp = self._send_retrying(protocol.ping(base))
            except OSError as exc:
                last = exc
                continue
            if scheme == "http" and resp.status not in (200, 401) and scheme != schemes[-1]:
                continue  # e.g. 400 "client sent an HTTP request to an HTTPS server"
            self.base = base
            if resp.status == 401:
                self._challenge = protocol.parse_challenge(resp.headers.get("WWW-Authenticate"))
            return
        raise self._connect_error(last)

    def _connect_error(self, exc: Exception | None) -> RegistryError:
        if isinstance(exc, http11.TLSError) and exc.verify_message:
            return self.fail(f"TLS certificate of {self.host} not trusted: "
                             f"{exc.verify_message}",
                             hint=f"put its CA in ~/.config/containers/certs.d/{self.host}/ca.crt "
                                  f"or pass --cert-dir; --tls-verify=false skips the check")
        if isinstance(exc, http11.TLSError):
            return self.fail(f"TLS handshake with {self.host} failed: {exc.reason}",
                             hint="if the registry speaks plain HTTP, pass --tls-verify=false "
                                  "or mark it insecure in registries.conf")
        cause = getattr(exc, "strerror", None) or str(exc)
        return self.fail(f"cannot reach registry {self.host}: {cause}",
                         hint="check the host name and port, and that the registry is up")

    # -------------------------------------------------------------- requests

    def _send_retrying(self, req: Request, stream: bool = False,
                       body: BinaryIO | None = None) -> Response:
        for attempt in range(TRIES):
            try:
                resp = self.transport.send(req, stream, body)
            except (http11.TLSError, socket.gaierror):
                raise  # retrying does not fix a certificate or a host name
            except OSError:
                if attempt == TRIES - 1 or (body is not None and not body.seekable()):
                    raise
                if body is not None:
                    body.seek(0)
                time.sleep(BACKOFF * 3 ** attempt)
                continue
            if resp.status in protocol.RETRY_STATUS and attempt < TRIES - 1 and \
                    (body is None or body.seekable()):
                if body is not None:
                    body.seek(0)
                time.sleep(BACKOFF * 3 ** attempt)
                continue
            return resp
        raise AssertionError("unreachable")

    def request(self, req: Request, *, stream: bool = False, body: BinaryIO | None = None,
                what: str = "") -> Response:
        """Send with auth, retries and redirects. Returns any status; the
        caller decides which are errors (see ``check``)."""
        self.connect()
        key = self._scope_key()
        for _ in range(6):
            headers = dict(req.headers)
            if key in self._auth:
                headers["Authorization"] = self._auth[key]
            try:
                resp = self._send_retrying(Request(req.method, req.url, headers, req.body),
                                           stream, body)
            except OSError as exc:
                raise self._connect_error(exc) from exc
            if resp.status == 401 and self._authenticate(resp, key):
                if body is not None:
                    body.seek(0)
                continue
            if resp.status in _REDIRECTS and "Location" in resp.headers:
                target = urllib.parse.urljoin(req.url, resp.headers["Location"])
                same = urllib.parse.urlsplit(target).netloc == protocol.endpoint(self.host)
                hdrs = dict(req.headers) if same else \
                    {k: v for k, v in req.headers.items() if k.lower() != "authorization"}
                if not same:
                    return self._foreign(Request(req.method, target, hdrs), stream)
                req = Request(req.method, target, hdrs, req.body)
                continue
            return resp
        raise self.fail(f"too many redirects or auth retries for {what or req.url}")

    def _foreign(self, req: Request, stream: bool) -> Response:
        # A blob redirected to a storage host: no registry auth goes there.
        try:
            return self._send_retrying(req, stream)
        except OSError as exc:
            raise self._connect_error(exc) from exc

    def _scope_key(self) -> str:
        return "push" if self.push else "pull"

    def _authenticate(self, resp: Response, key: str) -> bool:
        """Set up auth after a 401; False when there is nothing more to try."""
        challenge = protocol.parse_challenge(resp.headers.get("WWW-Authenticate")) \
            or self._challenge
        with self._lock:
            if challenge is None:
                return False
            if challenge.scheme == "basic":
                if self.credentials is None or key in self._auth:
                    return False
                self._auth[key] = protocol.basic_header(*self.credentials)
                return True
            if challenge.scheme == "bearer":
                scope = challenge.params.get("scope")
                tried = self._auth.get(key + ":scope")
                if tried == scope and key in self._auth:
                    return False
                self._auth[key] = "Bearer " + self._token(challenge)
                self._auth[key + ":scope"] = scope or ""
                return True
        return False

    def _token(self, challenge: protocol.Challenge) -> str:
        scopes = [challenge.params["scope"]] if "scope" in challenge.params else []
        try:
            req = protocol.token_request(challenge, scopes, self.credentials)
        except ValueError as exc:
            raise self.fail(f"cannot authenticate: {exc}") from exc
        try:
            resp = self._send_retrying(req)
        except OSError as exc:
            raise self._connect_error(exc) from exc
        if resp.status in (401, 403):
            raise self.fail(f"authentication at {urllib.parse.urlsplit(req.url).netloc} "
                            f"failed: {protocol.error_text(resp.status, resp.body)}",
                            hint=f"check the user name and password: prun login {self.host}")
        if resp.status != 200:
            raise self.fail(f"token server {req.url.split('?')[0]} answered HTTP {resp.status}")
        try:
            return protocol.token_from(resp.body)
        except ValueError as exc:
            raise self.fail(f"token server sent no token: {exc}") from exc

    def check(self, resp: Response, ok: tuple[int, ...], what: str) -> Response:
        if resp.status in ok:
            return resp
        if resp.raw is not None:
            resp.body = resp.raw.read()
        text = protocol.error_text(resp.status, resp.body)
        if resp.status == 401:
            hint = f"log in first: prun login {self.host}" if self.credentials is None else \
                f"check the user name and password: prun login {self.host}"
            raise self.fail(f"{what}: {text}", hint=hint)
        if resp.status == 404 or protocol.error_codes(resp.body) & {"NAME_UNKNOWN",
                                                                      "MANIFEST_UNKNOWN"}:
            raise self.fail(f"{text}", hint="check the image name and tag (prun search is not "
                                            "available; browse the registry)")
        raise self.fail(f"{what}: {text}")

    # -------------------------------------------------------------- API

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str | None]:
        """(body, Content-Type, Docker-Content-Digest) of a manifest or index."""
        self.connect()
        resp = self.check(self.request(protocol.manifest(self.base, repo, ref)), (200,),
                          f"get manifest {ref}")
        return resp.body, resp.headers.get("Content-Type", ""), \
            resp.headers.get("Docker-Content-Digest")

    def head_manifest(self, repo: str, ref: str) -> str | None:
        """The digest the registry has for ``ref`` (None when it does not say)."""
        self.connect()
        resp = self.check(self.request(protocol.manifest(self.base, repo, ref, "HEAD")), (200,),
                          f"check manifest {ref}")
        return resp.headers.get("Docker-Content-Digest")

    def get_blob(self, repo: str, digest: str) -> bytes:
        self.connect()
        return self.check(self.request(protocol.blob(self.base, repo, digest)), (200,),
                          f"get blob {digest}").body

    def open_blob(self, repo: str, digest: str, size: int) -> BlobReader:
        self.connect()
        return BlobReader(self, repo, digest, size)

    def blob_exists(self, repo: str, digest: str) -> bool:
        self.connect()
        resp = self.request(protocol.blob(self.base, repo, digest, method="HEAD"))
        if resp.status == 404:
            return False
        self.check(resp, (200,), f"check blob {digest}")
        return True

    def upload_blob(self, repo: str, digest: str, data: BinaryIO, size: int,
                    mount_from: str | None = None) -> None:
        self.connect()
        start = self.request(protocol.upload_start(
            self.base, repo, (digest, mount_from) if mount_from else None))
        if start.status == 201:
            return  # mounted from another repository
        self.check(start, (202,), f"start upload of {digest}")
        put = protocol.upload_finish(self.base, start.headers["Location"], digest, size)
        self.check(self.request(put, body=data), (201,), f"upload {digest}")

    def put_manifest(self, repo: str, ref: str, media_type: str, body: bytes) -> str | None:
        self.connect()
        resp = self.check(self.request(protocol.manifest_put(self.base, repo, ref, media_type,
                                                             body)), (201,),
                          f"put manifest {ref}")
        return resp.headers.get("Docker-Content-Digest")

    def login_check(self) -> None:
        """Verify the credentials against the registry (``prun login``)."""
        self.connect()
        self.check(self.request(protocol.ping(self.base)), (200,), "log in")

    def close(self) -> None:
        self.transport.close()


class BlobReader:
    """File-like body of a blob download that resumes after a broken
    connection (Range from the last byte received)."""

    def __init__(self, client: RegistryClient, repo: str, digest: str, size: int) -> None:
        self.client, self.repo, self.digest, self.size = client, repo, digest, size
        self.offset = 0
        self._resp: http11.Response | None = None
        self._done = False

    def _open(self) -> None:
        req = protocol.blob(self.client.base, self.repo, self.digest, self.offset)
        resp = self.client.request(req, stream=True)
        self.client.check(resp, (200, 206), f"get blob {self.digest}")
        if resp.status == 200 and self.offset:
            skip = self.offset  # the server ignored Range: discard what we have
            while skip:
                chunk = resp.raw.read(min(skip, BLOCK))
                if not chunk:
                    raise self.client.fail(f"blob {self.digest} is shorter than before")
                skip -= len(chunk)
        self._resp = resp.raw

    def read(self, n: int = BLOCK) -> bytes:
        if self._done:
            return b""
        for attempt in range(TRIES + 1):
            try:
                if self._resp is None:
                    self._open()
                data = self._resp.read(n if n > 0 else BLOCK)
            except http11.IncompleteRead as exc:
                data = exc.partial
                self._reset()
                if data:
                    self.offset += len(data)
                    return data
            except OSError as exc:
                self._reset()
                if attempt == TRIES:
                    raise self.client.fail(f"download {self.digest} failed after "
                                           f"{self.offset} bytes: {exc}") from exc
            else:
                if data:
                    self.offset += len(data)
                    return data
                if self.size < 0 or self.offset >= self.size:
                    self._done = True
                    self._resp = None
                    return b""
                self._reset()  # the connection ended early without an error
            time.sleep(BACKOFF * attempt)
        raise self.client.fail(f"download {self.digest} failed after {self.offset} bytes")

    def _reset(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        parts = urllib.parse.urlsplit(self.client.base)
        self.client.transport.drop(parts.scheme, parts.netloc)

    def close(self) -> None:
        if not self._done and self._resp is not None:
            self._reset()
