"""prun push: an image from the store to a registry.

Blobs the registry lacks (HEAD says 404) are uploaded from the store as
they are (monolithic POST + PUT with their digest, which the registry
verifies); then the stored manifest is PUT under the tag, byte for byte, so
the pushed image has the same digest it had locally.
"""

from __future__ import annotations

from rootless.errors import UsageError
from rootless.images import config, manage, reference
from rootless.images.progress import Reporter
from rootless.images.pull import PullOptions
from rootless.images.store import Store


def push(source: str, destination: str | None = None, *, store: Store | None = None,
         options: PullOptions | None = None, reporter: Reporter | None = None) -> str:
    """Returns the manifest digest the registry now serves."""
    from rootless.images.registry.client import RegistryClient

    store = store or Store.default()
    options = options or PullOptions()
    reporter = reporter or Reporter(quiet=True)
    image_id, name = manage.find(store, source)
    target = destination or (name if name != image_id else None)
    if target is None:
        raise UsageError(f"push {source}: an image ID needs a destination",
                         hint=f"prun push {source} REGISTRY/REPOSITORY:TAG")
    ref = reference.parse(target)
    op = f"push {ref}"
    if ref.domain == reference.LOCALHOST:
        raise UsageError(f"{op}: localhost/ names only exist in the local store",
                         hint=f"give a registry: prun push {source} HOST[:PORT]/{ref.path}")
    if ref.digest:
        raise UsageError(f"{op}: push to a tag, not a digest")
    row = store.image_row(image_id)
    client = RegistryClient(ref.domain, op=op, tls_verify=options.tls_verify,
                            cert_dir=options.cert_dir, credentials=options.credentials,
                            registries=config.load(), push=True)
    try:
        blobs = [(r["blob_digest"]) for r in store.image_layers(image_id)] + [image_id]
        for digest in dict.fromkeys(blobs):
            if client.blob_exists(ref.path, digest):
                reporter.say(f"Copying blob {digest.split(':')[1][:12]} skipped: already exists")
                continue
            path = store.blob_path(digest)
            with open(path, "rb") as f:
                client.upload_blob(ref.path, digest, f, path.stat().st_size)
            reporter.say(f"Copying blob {digest.split(':')[1][:12]} done")
        manifest = store.read_blob(row["manifest_digest"])
        reporter.say("Writing manifest to image destination")
        digest = client.put_manifest(ref.path, ref.tag or reference.DEFAULT_TAG,
                                     row["manifest_type"], manifest)
    finally:
        client.close()
    return digest or row["manifest_digest"]
