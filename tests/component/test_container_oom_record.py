"""OOMKilled and Paused from the store to `prun inspect`: the column and its
migration, the keeper's state folded in, the foreground record, the frozen
cgroup."""

from __future__ import annotations

import json
import sqlite3

from rootless import db
from rootless.cgroups import lookup
from rootless.cgroups.v2 import Hierarchy
from rootless.cli import run_cli
from rootless.containers import foreground, keeper, lifecycle, policy, views
from rootless.containers.store import Store
from rootless.paths import Paths
from rootless.runspec import RunRequest

CID = "ab" * 32


def record(name="job", code=137, oom=True):
    paths = Paths.from_env()
    foreground.record(paths, CID, RunRequest(image="busybox", name=name), ["sh"], code,
                      keeper.timestamp(), oom)
    return Store(paths).resolve(name)


def test_foreground_record_is_exited_with_oom_killed(capfd):
    c = record()
    assert (c.status, c.exit_code, c.oom_killed) == (policy.EXITED, 137, True)
    assert c.started_at <= c.finished_at
    assert run_cli(["inspect", "job"]) == 0
    state = json.loads(capfd.readouterr().out)[0]["State"]
    assert (state["OOMKilled"], state["ExitCode"], state["Paused"]) == (True, 137, False)
    assert run_cli(["rm", "job"]) == 0
    assert Store().list() == []


def test_refresh_folds_the_keepers_oom_killed():
    store = Store()
    c = record(code=0, oom=False)
    store.update(c, status=policy.RUNNING)   # as a keeper that just exited leaves it
    rundir = store.run_dir(c.id)
    rundir.mkdir(parents=True)
    keeper.write_state(str(rundir), {**keeper.new_state(), "status": policy.EXITED,
                                     "exit_code": 137, "oom_killed": True})
    lifecycle.refresh(store, c)
    again = store.resolve(c.id)
    assert (again.status, again.exit_code, again.oom_killed) == (policy.EXITED, 137, True)
    assert views.inspect(again)["State"]["OOMKilled"] is True


def test_an_old_database_gains_the_column(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(db.MIGRATIONS["containers"][0])
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, "
                 "version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_versions VALUES ('containers', 1)")
    conn.execute("INSERT INTO containers (id, name, image, image_id, command, created, status, "
                 "config) VALUES (?, 'old', 'busybox', '', '[]', 0, 'exited', '{}')", (CID,))
    conn.commit()
    conn.close()
    row = db.open_db(path).execute("SELECT oom_killed FROM containers").fetchone()
    assert row[0] == 0


def test_paused_is_the_frozen_cgroup(tmp_path):
    paths = Paths.from_env()
    scope = tmp_path / "cg/app.slice/prun-x.scope"
    scope.mkdir(parents=True)
    (paths.runtime / "containers" / CID).mkdir(parents=True)
    lookup.record(paths, CID, "/app.slice/prun-x.scope")
    fs = Hierarchy(tmp_path / "cg")
    (scope / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    assert lookup.frozen(paths, CID, fs)
    (scope / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert not lookup.frozen(paths, CID, fs)
    assert not lookup.frozen(paths, "cd" * 32, fs)   # no record: no cgroup
