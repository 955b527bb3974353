"""prun pull: a registry image into the store, layers in parallel.

Steps (each a plain function call, the I/O in ``registry.client``):
1. parse the reference; a short one is tried on each search registry;
2. if the store already has this tag, HEAD the manifest: the same digest
   means nothing to do (one round trip, no body);
3. GET the manifest; an index picks the platform (``--platform``, default
   the host's) and GETs that manifest; every manifest and the config are
   checked against their digests;
   (from the registry's mirrors first, if registries.conf lists any);
4. download missing layers in parallel (``WORKERS`` threads, each holding the
   layer's lock so concurrent pulls unpack it once), streaming through
   verify → decompress → unpack (``Store.ingest_layer``);
5. record the image and its names in one transaction (``Store.commit_image``).

Rules: worker threads are daemons and check a cancel flag between reads,
so Ctrl-C or the first failure stops the pull at once; what they leave in
the store's tmp/ is removed by the next prun. Errors read ``pull <ref as
the user wrote it>: <cause>`` with a hint.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field

from rootless.errors import PrunError, RegistryError, StoreError, UsageError
from rootless.images import config, media, reference
from rootless.images.progress import Reporter
from rootless.images.store import LayerRecord, Store, hexof

WORKERS = 4
log = logging.getLogger("prun.pull")


@dataclass
class PullOptions:
    platform: str | None = None
    tls_verify: bool | None = None
    cert_dir: str | None = None
    credentials: tuple[str, str] | None = None


@dataclass
class PullResult:
    image_id: str
    name: str
    digest: str
    downloaded: list[str] = field(default_factory=list)
    up_to_date: bool = False


class _Cancelled(Exception):
    pass


def pull(text: str, *, store: Store | None = None, options: PullOptions | None = None,
         quiet: bool = False, reporter: Reporter | None = None) -> PullResult:
    from rootless.images import progress

    store = store or Store.default()
    options = options or PullOptions()
    ref = reference.parse(text)
    conf = config.load()
    own_reporter = reporter is None
    reporter = reporter or progress.reporter(quiet)
    try:
        candidates = [reference.on_registry(ref, d) for d in conf.search] if ref.short else [ref]
        if not candidates:
            raise UsageError(f"pull {text}: a short name needs a search registry",
                             hint="write the registry host (e.g. docker.io/library/alpine) or "
                                  "set unqualified-search-registries in registries.conf")
        errors: list[PrunError] = []
        for cand in candidates:
            try:
                return _pull_one(text, cand, store, options, conf, reporter)
            except RegistryError as exc:
                errors.append(exc)
                if len(candidates) == 1:
                    raise
        if len(errors) == 1:
            raise errors[0]
        raise RegistryError(f"pull {text}: not found on any search registry: "
                            + "; ".join(e.message for e in errors),
                            hint="write the full name with the registry host")
    finally:
        if own_reporter:
            reporter.close()


def _pull_one(text: str, ref: reference.Reference, store: Store, options: PullOptions,
              conf: config.RegistriesConfig, reporter: Reporter) -> PullResult:
    from rootless.images.registry.client import RegistryClient

    op = f"pull {ref}"
    regconf = conf.lookup(ref.name)
    if regconf is not None and regconf.blocked:
        raise RegistryError(f"{op}: registry {ref.domain} is blocked in {conf.source}")
    wanted = options.platform or media.host_platform()
    try:
        media.parse_platform(wanted)
    except ValueError as exc:
        raise UsageError(f"{op}: {exc}", hint="e.g. --platform linux/amd64") from exc

    if ref.digest:
        hit = store.name_digest(f"{ref.name}@{ref.digest}")
        if hit and _present(store, hit[0], wanted):
            return PullResult(hit[0], str(ref), ref.digest, up_to_date=True)

    last: RegistryError | None = None
    for source in config.sources(ref.name, conf, options.tls_verify):
        client = RegistryClient(source.host, op=op, tls_verify=source.tls_verify,
                                cert_dir=options.cert_dir, credentials=options.credentials,
                                registries=conf, prefer_http=store.answered_http(source.host))
        try:
            result = _pull_from(op, ref, source.repo, client, store, wanted, reporter)
            if client.base.startswith("http:") and not client.prefer_http:
                store.remember_http(source.host)
            return result
        except RegistryError as exc:
            last = exc
            if source.host != ref.domain:
                log.info("mirror %s failed, trying the next source: %s", source.host, exc)
        finally:
            client.close()
    raise last


def _pull_from(op: str, ref: reference.Reference, repo: str, client, store: Store,
               wanted: str, reporter: Reporter) -> PullResult:
    if not ref.digest:
        hit = store.name_digest(ref.tagged)
        if hit and _present(store, hit[0], wanted):
            remote = client.head_manifest(repo, ref.manifest_ref)
            if remote == hit[1]:
                reporter.say(f"Image {ref} is up to date")
                return PullResult(hit[0], str(ref), remote, up_to_date=True)

    body, ctype, header_digest = client.get_manifest(repo, ref.manifest_ref)
    top_digest = _verify(client, body, ref.digest or header_digest, "manifest")
    kind = _kind(client, body, ctype)
    if kind in media.INDEXES:
        entries = media.parse_index(body)
        chosen = media.select_platform(entries, wanted)
        if chosen is None:
            have = ", ".join(media.platforms(entries)) or "none"
            raise RegistryError(f"{op}: no image for platform {wanted} (the index has: "
                                f"{have})", hint="pick one with --platform")
        body, ctype, _ = client.get_manifest(repo, chosen.digest)
        _verify(client, body, chosen.digest, "manifest")
        kind = _kind(client, body, ctype)
        if kind not in media.MANIFESTS:
            raise RegistryError(f"{op}: nested index {chosen.digest} is not supported")
    try:
        manifest = media.parse_manifest(body)
    except media.MediaError as exc:
        raise RegistryError(f"{op}: {exc}") from exc

    cfg_bytes = client.get_blob(repo, manifest.config.digest)
    _verify(client, cfg_bytes, manifest.config.digest, "config")
    try:
        diff_ids = media.diff_ids(media.load_json(cfg_bytes, "image config"))
    except media.MediaError as exc:
        raise RegistryError(f"{op}: {exc}") from exc
    if len(diff_ids) != len(manifest.layers):
        raise RegistryError(f"{op}: the manifest lists {len(manifest.layers)} layers but "
                            f"the config {len(diff_ids)}")

    records, downloaded = _layers(op, client, repo, store, manifest, diff_ids, reporter)
    reporter.say("Writing manifest to image destination")
    names = [f"{ref.name}@{ref.digest}"] if ref.digest else \
        [ref.tagged, f"{ref.name}@{top_digest}"]
    image_id = store.commit_image(body, manifest.media_type, cfg_bytes, records, names,
                                  source_digest=top_digest)
    return PullResult(image_id, str(ref), top_digest, downloaded)


def _present(store: Store, image_id: str, wanted: str) -> bool:
    """The stored image is whole and of the wanted platform."""
    if not all(store.layer_dir(r["diff_id"]).is_dir() for r in store.image_layers(image_id)):
        return False
    cfg = store.config(image_id)
    os_, arch, variant = media.parse_platform(wanted)
    have = cfg.get("variant")
    return cfg.get("os") == os_ and cfg.get("architecture") == arch and \
        (variant is None or have is None or have == variant)


def _kind(client, body: bytes, ctype: str) -> str:
    try:
        return media.kind(body, ctype)
    except media.MediaError as exc:
        raise client.fail(str(exc), hint="the registry serves a format prun cannot read") \
            from exc


def _verify(client, data: bytes, digest: str | None, what: str) -> str:
    import hashlib

    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest and digest.startswith("sha256:") and actual != digest:
        raise client.fail(f"{what} has digest {actual}, expected {digest}",
                          hint="the registry or a proxy sent corrupt data; nothing was "
                               "stored; try again")
    return actual


def _layers(op: str, client, repo: str, store: Store,
            manifest: media.Manifest, diff_ids: list[str],
            reporter: Reporter) -> tuple[list[LayerRecord], list[str]]:
    """Make every layer present; parallel, cancellable, at most once each."""
    import queue
    import threading
    import time

    records: dict[str, LayerRecord] = {}
    todo = []
    for desc, diff_id in zip(manifest.layers, diff_ids):
        hexof(desc.digest)
        hexof(diff_id)
        records.setdefault(diff_id, LayerRecord(diff_id, desc.digest, desc.media_type,
                                                desc.size, 0))
        if diff_id not in [t[1] for t in todo]:
            todo.append((desc, diff_id))
    cancel = threading.Event()
    results: queue.Queue = queue.Queue()
    downloaded: list[str] = []

    def work(desc: media.Descriptor, diff_id: str) -> None:
        try:
            with store.lock(hexof(diff_id)):
                if cancel.is_set():
                    raise _Cancelled
                if store.has_layer(diff_id) and store.has_blob(desc.digest):
                    reporter.layer_done(desc.digest, "skipped: already exists")
                    results.put((diff_id, None, None))
                    return
                advance = reporter.layer(desc.digest, desc.size)

                def step(n: int) -> None:
                    if cancel.is_set():
                        raise _Cancelled
                    advance(n)
                body = client.open_blob(repo, desc.digest, desc.size)
                try:
                    record = store.ingest_layer(body, media_type=desc.media_type,
                                                diff_id=diff_id, blob_digest=desc.digest,
                                                blob_size=desc.size,
                                                progress=step)
                finally:
                    body.close()
                reporter.layer_done(desc.digest, "done")
                results.put((diff_id, record, None))
        except BaseException as exc:  # handed to the main thread, which raises it
            results.put((diff_id, None, exc))

    pending = list(todo)
    running = 0
    failure: BaseException | None = None
    try:
        while pending or running:
            while pending and running < WORKERS and failure is None:
                desc, diff_id = pending.pop(0)
                threading.Thread(target=work, args=(desc, diff_id), daemon=True,
                                 name=f"layer-{hexof(diff_id)[:12]}").start()
                running += 1
            if running == 0:
                break
            diff_id, record, exc = _get(results)
            running -= 1
            if exc is not None and failure is None and not isinstance(exc, _Cancelled):
                failure = exc
                cancel.set()
                pending.clear()
            elif record is not None:
                records[diff_id] = record
                downloaded.append(record.blob_digest)
    except BaseException:
        # Ctrl-C: let workers notice (at their next read) and clean up their
        # temp files; one stuck in a read is left to the next prun's cleanup.
        cancel.set()
        deadline = time.monotonic() + 2
        while running and time.monotonic() < deadline:
            try:
                results.get(timeout=max(0.01, deadline - time.monotonic()))
                running -= 1
            except queue.Empty:
                break
        raise
    if failure is not None:
        raise _translate(op, failure)
    return [records[d] for d in diff_ids], downloaded


def _get(results):
    # A timeout keeps the main thread responsive to Ctrl-C.
    import queue

    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            continue


def _translate(op: str, exc: BaseException) -> BaseException:
    from rootless.images import blobio, unpack

    if isinstance(exc, PrunError):
        return exc
    if isinstance(exc, blobio.CorruptBlob):
        err = RegistryError(f"{op}: {exc}", hint="the registry or a proxy sent corrupt data; "
                                                 "nothing was stored; try again")
    elif isinstance(exc, unpack.UnsafeLayer):
        err = RegistryError(f"{op}: refusing an unsafe layer: {exc}",
                            hint="the image is malformed or hostile; nothing was stored")
    elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        err = StoreError(f"{op}: no space left in the store ({exc.filename or 'store'})",
                         hint="free space (prun image prune) or set PRUN_ROOT elsewhere")
    elif isinstance(exc, OSError):
        err = StoreError(f"{op}: {exc.strerror}: {exc.filename}")
    else:
        return exc
    err.__cause__ = exc
    return err
