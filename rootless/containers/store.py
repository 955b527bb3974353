"""Container and volume records in the store's SQLite database.

Rules:
- The "containers" component owns the ``containers`` and ``volumes`` tables
  (migrations registered in rootless.db.MIGRATIONS when this module loads);
  every write goes through ``db.transaction`` so concurrent prun commands
  never see half a change, and a name is unique by a UNIQUE constraint, not
  by a check-then-insert race.
- A container is named by the user as its full 64-hex id, a unique id
  prefix or its name (``resolve``); an unknown or ambiguous reference is a
  NotFoundError / ConflictError that repeats what the user wrote.
- ``config`` is the container's full spec as JSON (what ``run``/``create``
  parsed); the columns hold what ``ps`` filters and sorts on and the last
  known state. The live state of a running container is the keeper's
  state.json; ``rootless.containers.state.refresh`` folds it in.
- Per-container directories: ``<data>/containers/<id>/`` (upper, work, log)
  survives reboots; ``<runtime>/c/<id12>/`` (control socket, state.json,
  keeper pid) does not. The short name keeps unix socket paths short.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from rootless import db
from rootless.errors import ConflictError, NotFoundError, UsageError
from rootless.paths import Paths

db.MIGRATIONS.setdefault("containers", [
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,              -- as the user wrote it
        image_id TEXT NOT NULL,
        command TEXT NOT NULL,            -- JSON list
        created REAL NOT NULL,            -- unix time
        status TEXT NOT NULL,             -- created|running|restarting|exited|dead
        exit_code INTEGER NOT NULL DEFAULT 0,
        pid INTEGER NOT NULL DEFAULT 0,   -- container process, host view
        keeper_pid INTEGER NOT NULL DEFAULT 0,
        keeper_start INTEGER NOT NULL DEFAULT 0,  -- /proc starttime, against pid reuse
        started_at TEXT NOT NULL DEFAULT '',
        finished_at TEXT NOT NULL DEFAULT '',
        restart_count INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL              -- JSON: the parsed run spec
    );
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        created REAL NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 1 when the memory limit's OOM killer struck during the last run
    "ALTER TABLE containers ADD COLUMN oom_killed INTEGER NOT NULL DEFAULT 0;",
])

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ADJ = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
        "merry", "nifty", "proud", "quiet", "sharp", "swift", "witty")
_NOUN = ("ant", "bee", "cat", "dog", "elk", "fox", "gnu", "hen", "ibis", "jay", "koi",
         "lynx", "mole", "newt", "owl", "pika", "yak")
COLUMNS = ("id", "name", "image", "image_id", "command", "created", "status", "exit_code",
           "pid", "keeper_pid", "keeper_start", "started_at", "finished_at", "restart_count",
           "error", "config", "oom_killed")


@dataclass
class Container:
    id: str
    name: str
    image: str
    image_id: str
    command: list[str]
    created: float
    status: str = "created"
    exit_code: int = 0
    pid: int = 0
    keeper_pid: int = 0
    keeper_start: int = 0
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    error: str = ""
    config: dict = field(default_factory=dict)
    oom_killed: bool = False

    @property
    def short_id(self) -> str:
        return self.id[:12]


def new_id() -> str:
    return secrets.token_hex(32)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(f"use name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] is allowed",
                         hint="e.g. --name web-1")
    return name


class Store:
    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths.from_env()
        self.conn = db.open_db(self.paths.data / "prun.db")

    # ---------------------------------------------------------- directories

    def data_dir(self, cid: str) -> Path:
        return self.paths.data / "containers" / cid

    def run_dir(self, cid: str) -> Path:
        return self.paths.runtime / "c" / cid[:12]

    def runtime_dirs(self, cid: str) -> list[Path]:
        """Everything a live container has in the runtime dir: ours and the
        supervisor's (rootfs mount point, generated /etc files)."""
        return [self.run_dir(cid), self.paths.runtime / "containers" / cid]

    def name_link(self, name: str) -> Path:
        """The supervisor's name claim (rootless.supervisor._claim_name)."""
        return self.paths.data / "containers" / "names" / name

    def log_path(self, cid: str) -> Path:
        return self.data_dir(cid) / "ctr.log"

    def volume_dir(self, name: str) -> Path:
        return self.paths.data / "volumes" / name

    # ---------------------------------------------------------- containers

    def add(self, c: Container) -> Container:
        if not c.name:
            c.name = self._free_name()
        check_name(c.name)
        row = self._row(c)
        try:
            with db.transaction(self.conn):
                self.conn.execute(f"INSERT INTO containers ({','.join(COLUMNS)}) VALUES "
                                  f"({','.join('?' * len(COLUMNS))})", row)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                f"create container {c.name!r}: the name is already in use",
                hint=f"remove that container (prun rm -f {c.name}) or choose another --name"
            ) from exc
        return c

    def _free_name(self) -> str:
        used = {r[0] for r in self.conn.execute("SELECT name FROM containers")}
        while True:
            name = f"{secrets.choice(_ADJ)}_{secrets.choice(_NOUN)}"
            if name not in used:
                return name
            name = f"{name}_{secrets.randbelow(1000)}"
            if name not in used:
                return name

    def resolve(self, ref: str) -> Container:
        rows = self.conn.execute(
            "SELECT * FROM containers WHERE name = ? OR id = ?", (ref, ref)).fetchall()
        if not rows and re.fullmatch(r"[0-9a-f]{1,64}", ref):
            rows = self.conn.execute("SELECT * FROM containers WHERE id LIKE ?",
                                     (ref + "%",)).fetchall()
            if len(rows) > 1:
                raise ConflictError(f"find container {ref!r}: the id prefix is ambiguous "
                                    f"({len(rows)} containers match)",
                                    hint="give more characters of the id, or the name")
        if not rows:
            raise NotFoundError(f"find container {ref!r}: no such container",
                                hint="see 'prun ps -a' for the containers you have")
        return self._obj(rows[0])

    def list(self) -> list[Container]:
        return [self._obj(r) for r in
                self.conn.execute("SELECT * FROM containers ORDER BY created DESC")]

    def update(self, c: Container, **changes) -> Container:
        for k, v in changes.items():
            setattr(c, k, v)
        sets = ",".join(f"{k} = ?" for k in changes)
        values = [json.dumps(v) if k in ("command", "config") else v for k, v in changes.items()]
        with db.transaction(self.conn):
            self.conn.execute(f"UPDATE containers SET {sets} WHERE id = ?", (*values, c.id))
        return c

    def rename(self, c: Container, name: str) -> None:
        check_name(name)
        old = self.name_link(c.name)
        try:
            self.update(c, name=name)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"rename container {c.name!r} to {name!r}: "
                                f"the name is already in use") from exc
        if old.is_symlink() and os.readlink(old) == c.id:
            old.rename(self.name_link(name))

    def remove(self, c: Container) -> None:
        with db.transaction(self.conn):
            self.conn.execute("DELETE FROM containers WHERE id = ?", (c.id,))

    @staticmethod
    def _row(c: Container) -> tuple:
        return tuple(json.dumps(getattr(c, k)) if k in ("command", "config") else getattr(c, k)
                     for k in COLUMNS)

    @staticmethod
    def _obj(row: sqlite3.Row) -> Container:
        d = {k: row[k] for k in COLUMNS}
        d["command"] = json.loads(d["command"])
        d["config"] = json.loads(d["config"])
        d["oom_killed"] = bool(d["oom_killed"])
        return Container(**d)

    # ---------------------------------------------------------- volumes

    def add_volume(self, name: str, labels: dict | None = None, exist_ok: bool = False) -> Path:
        check_name(name)
        try:
            with db.transaction(self.conn):
                self.conn.execute("INSERT INTO volumes VALUES (?, ?, ?)",
                                  (name, time.time(), json.dumps(labels or {})))
        except sqlite3.IntegrityError as exc:
            if not exist_ok:
                raise ConflictError(f"create volume {name!r}: a volume with that name exists",
                                    hint=f"use it as is, or 'prun volume rm {name}' first"
                                    ) from exc
        path = self.volume_dir(name) / "_data"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def volumes(self) -> list[dict]:
        return [{"name": r["name"], "created": r["created"], "labels": json.loads(r["labels"])}
                for r in self.conn.execute("SELECT * FROM volumes ORDER BY name")]

    def volume(self, name: str) -> dict:
        row = self.conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"find volume {name!r}: no such volume",
                                hint="see 'prun volume ls'")
        return {"name": row["name"], "created": row["created"], "labels": json.loads(row["labels"])}

    def remove_volume(self, name: str) -> None:
        with db.transaction(self.conn):
            self.conn.execute("DELETE FROM volumes WHERE name = ?", (name,))


def _stat(pid: int) -> list[bytes] | None:
    """/proc/PID/stat fields after the command name (state is [0])."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2:].split()


def proc_starttime(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot (0 when it does not exist)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else 0


def alive(pid: int, starttime: int) -> bool:
    """Whether ``pid`` still is the process that started at ``starttime`` (not a zombie)."""
    fields = _stat(pid) if pid > 0 else None
    return bool(fields) and fields[0] != b"Z" and (not starttime or int(fields[19]) == starttime)


def remove_tree(path: Path) -> None:
    """Delete a container's directory, fixing modes the container left (e.g. 0500 dirs)."""
    import shutil

    def fix(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
        func(p)
    if path.exists():
        shutil.rmtree(path, onerror=fix)
