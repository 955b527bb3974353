"""The store's one SQLite database (WAL), with per-component migrations.

Rules:
- ``open_db(path)`` returns a connection with WAL journaling, foreign keys
  on and a busy timeout, after applying every pending migration in
  ``MIGRATIONS`` inside one IMMEDIATE transaction (so two prun processes
  starting at once migrate exactly once).
- ``MIGRATIONS`` maps a component name ("images", "containers", …) to its
  ordered list of SQL scripts; a component's applied count is kept in
  ``schema_versions``. Append new steps; never edit an applied one. Each
  component owns its tables; others read them through that component's
  module, not by SQL.
- ``transaction(conn)`` is the one way to write: BEGIN IMMEDIATE … COMMIT,
  rolled back on any exception, so readers never see half a change.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

MIGRATIONS: dict[str, list[str]] = {
    "images": [
        """
        CREATE TABLE images (
            id TEXT PRIMARY KEY,            -- config digest, sha256:<hex>
            manifest_digest TEXT NOT NULL,  -- the platform manifest we stored
            manifest_type TEXT NOT NULL,
            created TEXT,                   -- from the config
            added REAL NOT NULL,            -- unix time it entered the store
            size INTEGER NOT NULL           -- sum of unpacked layer sizes
        );
        CREATE TABLE image_layers (
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,      -- 0 = bottom
            diff_id TEXT NOT NULL,
            blob_digest TEXT NOT NULL,      -- as in the manifest
            media_type TEXT NOT NULL,
            blob_size INTEGER NOT NULL,
            PRIMARY KEY (image_id, position)
        );
        CREATE INDEX image_layers_diff ON image_layers(diff_id);
        CREATE TABLE layers (
            diff_id TEXT PRIMARY KEY,
            size INTEGER NOT NULL           -- uncompressed tar size
        );
        CREATE TABLE names (
            name TEXT PRIMARY KEY,          -- host/path:tag or host/path@digest
            image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            source_digest TEXT              -- manifest/index digest the name resolved to
        );
        CREATE INDEX names_image ON names(image_id);
        """,
    ],
}


def open_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_versions "
                 "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    if not _pending(conn):
        return
    with transaction(conn):
        for component, steps, version in _pending(conn):
            for script in steps[version:]:
                for statement in _statements(script):
                    conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO schema_versions VALUES (?, ?)",
                         (component, len(steps)))


def _pending(conn: sqlite3.Connection) -> list[tuple[str, list[str], int]]:
    have = dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())
    return [(c, steps, have.get(c, 0)) for c, steps in MIGRATIONS.items()
            if have.get(c, 0) < len(steps)]


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on complete statements.
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
