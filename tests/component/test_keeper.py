"""Keeper + lifecycle over a plain host process: the state machine for real.

Real keeper processes (spawned detached, like `prun run -d` does), real
control socket, real log files; only the namespaces are left out (the
integration tests cover those with real containers).
"""

import json
import os
import signal
import time

import pytest

from rootless.containers import lifecycle, logs, policy
from rootless.containers.store import Container, Store, alive, new_id
from rootless.errors import ConflictError, NotFoundError
from tests.fakes.keeper_spawn import start


@pytest.fixture
def store():
    return Store()


def make(store, command, name="", **config):
    c = Container(id=new_id(), name=name, image="busybox", image_id="sha256:" + "0" * 64,
                  command=command, created=time.time(), config=config)
    return store.add(c)


def sh(script):
    return ["sh", "-c", script]


def until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_detached_process_logs_and_exit_code(store):
    c = make(store, sh("echo out; echo err >&2; exit 3"), name="job")
    start(store, c)
    assert lifecycle.wait(store, c) == 3
    c = store.resolve("job")
    assert c.status == policy.EXITED and c.exit_code == 3 and c.finished_at >= c.started_at
    entries = logs.read(str(store.log_path(c.id)))
    assert {(e.stream, e.text) for e in entries} == {("stdout", "out\n"), ("stderr", "err\n")}
    assert not store.run_dir(c.id).exists()  # refresh cleaned the socket and state file


def test_stop_honours_timeout_then_sigkill(store):
    c = make(store, sh("trap '' TERM; echo up; while :; do sleep 0.05; done"))
    start(store, c)
    until(lambda: logs.read(str(store.log_path(c.id))))
    t0 = time.monotonic()
    lifecycle.stop(store, c, timeout=1)
    took = time.monotonic() - t0
    assert 0.9 < took < 5
    assert c.status == policy.EXITED and c.exit_code == 128 + signal.SIGKILL


def test_stop_signal_ends_a_cooperative_process_fast(store):
    c = make(store, ["sleep", "100"])
    start(store, c)
    t0 = time.monotonic()
    lifecycle.stop(store, c, timeout=10)
    assert time.monotonic() - t0 < 2
    assert c.exit_code == 128 + signal.SIGTERM


def test_kill_sends_the_signal(store):
    c = make(store, sh("trap 'echo got USR1; exit 7' USR1; while :; do sleep 0.05; done"))
    start(store, c)
    time.sleep(0.2)
    lifecycle.kill(store, c, signal.SIGUSR1)
    assert lifecycle.wait(store, c) == 7
    assert [e.text for e in logs.read(str(store.log_path(c.id)))] == ["got USR1\n"]
    with pytest.raises(ConflictError, match="not running"):
        lifecycle.kill(store, c)


def test_on_failure_restarts_n_times(store):
    c = make(store, sh("echo run; exit 1"), restart="on-failure:2")
    start(store, c)
    assert lifecycle.wait(store, c) == 1
    assert c.restart_count == 2
    assert [e.text for e in logs.read(str(store.log_path(c.id)))] == ["run\n"] * 3


def test_always_restarts_until_stopped(store):
    c = make(store, sh("echo run; exit 0"), restart="always")
    start(store, c)
    until(lambda: len(logs.read(str(store.log_path(c.id)))) >= 3)
    lifecycle.stop(store, c, timeout=1)
    assert c.status == policy.EXITED and c.restart_count >= 2
    n = len(logs.read(str(store.log_path(c.id))))
    time.sleep(0.5)
    assert len(logs.read(str(store.log_path(c.id)))) == n


def test_keeper_killed_with_sigkill_is_noticed_and_cleaned(store):
    c = make(store, ["sleep", "100"])
    start(store, c)
    rundir = store.run_dir(c.id)
    assert (rundir / "ctl.sock").exists()
    child = c.pid
    os.kill(c.keeper_pid, signal.SIGKILL)
    until(lambda: not alive(c.keeper_pid, c.keeper_start))
    c = lifecycle.refresh(store, store.resolve(c.id))
    assert c.status == policy.EXITED and c.exit_code == lifecycle.KEEPER_DIED
    assert "keeper" in c.error
    assert not rundir.exists()
    os.kill(child, signal.SIGKILL)  # a host process has no PID namespace to die with
    lifecycle.remove(store, c)
    assert not store.data_dir(c.id).exists()
    with pytest.raises(NotFoundError):
        store.resolve(c.id)


def test_rm_refuses_running_and_force_removes(store):
    c = make(store, ["sleep", "100"], name="svc")
    start(store, c)
    with pytest.raises(ConflictError, match="remove container svc: it is running"):
        lifecycle.remove(store, c)
    keeper_pid, began = c.keeper_pid, c.keeper_start
    lifecycle.remove(store, c, force=True)
    assert not alive(keeper_pid, began)
    assert not store.run_dir(c.id).exists() and not store.data_dir(c.id).exists()
    assert store.list() == []


def test_state_file_is_docker_shaped_json(store):
    c = make(store, ["sleep", "100"])
    start(store, c)
    state = json.loads((store.run_dir(c.id) / "state.json").read_text())
    assert state["status"] == "running" and state["pid"] == c.pid > 0
    lifecycle.remove(store, c, force=True)


def test_names_unique_and_ids_by_prefix(store):
    a = make(store, ["true"], name="same")
    with pytest.raises(ConflictError, match="'same': the name is already in use"):
        make(store, ["true"], name="same")
    assert store.resolve(a.id[:5]).id == a.id
    assert store.resolve("same").id == a.id
    b = make(store, ["true"])
    assert b.name and b.name != "same"
    with pytest.raises(NotFoundError, match="find container 'nope'"):
        store.resolve("nope")
