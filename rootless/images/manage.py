"""Local image management: list, remove, tag, inspect, prune, history.

Rules:
- Names are stored fully qualified (docker.io/library/alpine:latest); a name
  the user gives for a new tag puts short names under localhost/.
- ``rmi NAME`` removes that name; the image goes when its last name does.
  ``rmi ID`` of an image with several names, or of an image a container
  uses, is refused without ``force`` (docker/podman semantics).
- A layer, blob or config is deleted only when no remaining image refers to
  it, under the layer's lock (so a concurrent pull of an image sharing it
  either sees it gone and downloads it, or keeps it).
- Containers are found through ``image_users``: the "containers" component
  of rootless.db records ``image_id`` and ``name`` per container.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from rootless import db
from rootless.errors import ConflictError
from rootless.images import reference
from rootless.images.store import Store, hexof, not_found


@dataclass(frozen=True)
class ImageRow:
    id: str
    repository: str
    tag: str
    digest: str
    created: str | None
    added: float
    size: int
    names: list[str]


def find(store: Store, text: str) -> tuple[str, str]:
    hit = store.lookup(text)
    if hit is None:
        raise not_found(text)
    return hit


def names_of(store: Store, image_id: str) -> list[str]:
    return [r["name"] for r in store.db.execute(
        "SELECT name FROM names WHERE image_id = ? ORDER BY name", (image_id,))]


def list_images(store: Store) -> list[ImageRow]:
    """One row per tag (an untagged image: one row with <none>)."""
    out = []
    for img in store.db.execute("SELECT * FROM images ORDER BY added DESC").fetchall():
        names = names_of(store, img["id"])
        tags = [n for n in names if "@" not in n]
        for name in tags or [None]:
            repo, tag = name.rsplit(":", 1) if name else ("<none>", "<none>")
            out.append(ImageRow(img["id"], repo, tag, img["manifest_digest"], img["created"],
                                img["added"], img["size"], names))
    return out


def image_users(store: Store, image_id: str) -> list[str]:
    conn = store.db
    cols = {r["name"] for r in conn.execute("PRAGMA table_info(containers)")}
    if "image_id" not in cols:
        return []
    label = "name" if "name" in cols else "id" if "id" in cols else "rowid"
    return [str(r[0]) for r in conn.execute(
        f"SELECT {label} FROM containers WHERE image_id = ?", (image_id,))]


def remove(store: Store, text: str, force: bool = False) -> list[str]:
    """``prun rmi``: returns lines like podman's ("Untagged: …", "Deleted: …")."""
    image_id, name = find(store, text)
    names = names_of(store, image_id)
    by_name = name != image_id
    out = []
    users = image_users(store, image_id)
    if by_name and len([n for n in names if "@" not in n]) > 1 and not force:
        with store.dblock, db.transaction(store.db) as conn:
            conn.execute("DELETE FROM names WHERE name = ?", (_stored_name(name),))
        return [f"Untagged: {name}"]
    if users and not force:
        raise ConflictError(f"remove image {text}: in use by container(s) {', '.join(users)}",
                            hint="remove the containers first (prun rm), or pass -f")
    if not by_name and len([n for n in names if "@" not in n]) > 1 and not force:
        raise ConflictError(f"remove image {text}: it has several names ({', '.join(names)})",
                            hint="remove it by name, or pass -f to remove all of them")
    out += [f"Untagged: {n}" for n in names if "@" not in n]
    delete_image(store, image_id)
    out.append(f"Deleted: {hexof(image_id)}")
    return out


def _stored_name(name: str) -> str:
    ref = reference.parse(name)
    return f"{ref.name}@{ref.digest}" if ref.digest else ref.tagged


def delete_image(store: Store, image_id: str) -> None:
    layers = store.image_layers(image_id)
    row = store.image_row(image_id)
    with store.dblock, db.transaction(store.db) as conn:
        conn.execute("DELETE FROM names WHERE image_id = ?", (image_id,))
        conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
    for layer in layers:
        _collect_layer(store, layer["diff_id"], layer["blob_digest"])
    for digest in (row["manifest_digest"], image_id) if row else ():
        _collect_blob(store, digest)


def _collect_layer(store: Store, diff_id: str, blob_digest: str) -> None:
    with store.lock(hexof(diff_id)):
        with store.dblock:
            used = store.db.execute("SELECT 1 FROM image_layers WHERE diff_id = ? LIMIT 1",
                                    (diff_id,)).fetchone()
        if used is None:
            with store.dblock, db.transaction(store.db) as conn:
                conn.execute("DELETE FROM layers WHERE diff_id = ?", (diff_id,))
            path = store.layer_dir(diff_id)
            if path.exists():
                shutil.rmtree(path)
        _collect_blob(store, blob_digest)


def _collect_blob(store: Store, digest: str) -> None:
    conn = store.db
    with store.dblock:
        used = conn.execute(
            "SELECT 1 FROM image_layers WHERE blob_digest = ? UNION ALL "
            "SELECT 1 FROM images WHERE id = ? OR manifest_digest = ? LIMIT 1",
            (digest, digest, digest)).fetchone()
    if used is None:
        store.blob_path(digest).unlink(missing_ok=True)


def tag(store: Store, source: str, targets: list[str]) -> str:
    image_id, _ = find(store, source)
    row = store.image_row(image_id)
    refs = [reference.local_name(t) for t in targets]
    with store.dblock, db.transaction(store.db) as conn:
        for ref in refs:
            conn.execute("INSERT OR REPLACE INTO names VALUES (?, ?, ?)",
                         (ref.tagged, image_id, row["manifest_digest"]))
    return image_id


def untag(store: Store, source: str, targets: list[str]) -> None:
    image_id, _ = find(store, source)
    names = names_of(store, image_id) if not targets else \
        [reference.local_name(t).tagged for t in targets]
    with store.dblock, db.transaction(store.db) as conn:
        for name in names:
            conn.execute("DELETE FROM names WHERE name = ? AND image_id = ?", (name, image_id))


def prune(store: Store, all_unused: bool = False) -> list[str]:
    """Remove dangling images (no name); with ``all_unused`` every image no
    container uses. Returns the removed IDs."""
    removed = []
    for img in store.db.execute("SELECT id FROM images").fetchall():
        image_id = img["id"]
        named = [n for n in names_of(store, image_id) if "@" not in n]
        if (named and not all_unused) or image_users(store, image_id):
            continue
        delete_image(store, image_id)
        removed.append(image_id)
    _collect_orphans(store)
    return removed


def _collect_orphans(store: Store) -> None:
    """Layers a killed pull unpacked but no image records."""
    for entry in store.layers.iterdir():
        diff_id = f"sha256:{entry.name}"
        with store.dblock:
            used = store.db.execute("SELECT 1 FROM image_layers WHERE diff_id = ? LIMIT 1",
                                    (diff_id,)).fetchone()
        if used is None:
            with store.lock(entry.name):
                with store.dblock, db.transaction(store.db) as conn:
                    conn.execute("DELETE FROM layers WHERE diff_id = ?", (diff_id,))
                shutil.rmtree(entry)


def inspect(store: Store, text: str) -> dict:
    """podman/docker ``image inspect`` fields."""
    image_id, _ = find(store, text)
    row = store.image_row(image_id)
    cfg = store.config(image_id)
    names = names_of(store, image_id)
    layers = store.image_layers(image_id)
    return {
        "Id": hexof(image_id),
        "Digest": row["manifest_digest"],
        "RepoTags": [n for n in names if "@" not in n],
        "RepoDigests": [n for n in names if "@" in n],
        "Created": cfg.get("created"),
        "Architecture": cfg.get("architecture"),
        "Os": cfg.get("os"),
        "Variant": cfg.get("variant", ""),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Labels": (cfg.get("config") or {}).get("Labels") or {},
        "Size": row["size"],
        "VirtualSize": row["size"],
        "ManifestType": row["manifest_type"],
        "RootFS": {"Type": "layers", "Layers": [r["diff_id"] for r in layers]},
        "History": cfg.get("history") or [],
        "LayerDirs": [str(store.layer_dir(r["diff_id"])) for r in layers],
    }


def history(store: Store, text: str) -> list[dict]:
    """Newest first: id, created, created_by, size, comment."""
    image_id, _ = find(store, text)
    cfg = store.config(image_id)
    layers = [store.layer_size(r["diff_id"]) for r in store.image_layers(image_id)]
    rows, i = [], 0
    hist = cfg.get("history") or [{} for _ in layers]
    for h in hist:
        empty = bool(h.get("empty_layer"))
        size = 0 if empty or i >= len(layers) else layers[i]
        if not empty:
            i += 1
        rows.append({"id": "<missing>", "created": h.get("created"),
                     "created_by": h.get("created_by", ""), "size": size,
                     "comment": h.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["id"] = hexof(image_id)
    return rows


def age(created: str | None, now: float | None = None) -> str:
    """'3 days ago' from an RFC 3339 time."""
    if not created:
        return ""
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return created
    secs = max(0, (now or time.time()) - when)
    for unit, size in (("year", 31536000), ("month", 2592000), ("week", 604800),
                       ("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = int(secs // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago" if secs >= 1 else "Now"


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n:.3g} TB"
