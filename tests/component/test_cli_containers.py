"""The lifecycle commands through the CLI, over host-process keepers."""

import json
import time

import pytest

from rootless.cli import run_cli
from rootless.containers.store import Container, Store, new_id
from tests.fakes.keeper_spawn import start


def started(command, name, **config):
    store = Store()
    c = store.add(Container(id=new_id(), name=name, image="busybox", image_id="sha256:" + "a" * 64,
                            command=command, created=time.time(), config=config))
    start(store, c)
    return c


def cli(capfd, *args):
    code = run_cli(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def test_ps_quiet_all_and_filters(capfd):
    a = started(["sleep", "100"], "web", ports=[{"host_port": 8080, "container_port": 80}])
    b = started(["sh", "-c", "exit 2"], "job")
    assert cli(capfd, "wait", "job")[1] == "2\n"
    code, out, _ = cli(capfd, "ps", "-q")
    assert code == 0 and out.split() == [a.short_id]
    assert set(cli(capfd, "ps", "-aq")[1].split()) == {a.short_id, b.short_id}
    assert cli(capfd, "ps", "-aq", "--filter", "exited=2")[1].split() == [b.short_id]
    assert cli(capfd, "ps", "-q", "--filter", "status=exited")[1].split() == [b.short_id]
    out = cli(capfd, "ps", "-a")[1]
    assert "0.0.0.0:8080->80/tcp" in out and "Up " in out and "Exited (2)" in out
    rows = json.loads(cli(capfd, "ps", "-a", "--format", "json")[1])
    assert {r["Names"][0]: r["State"] for r in rows} == {"web": "running", "job": "exited"}
    code, _, err = cli(capfd, "ps", "--filter", "colour=red")
    assert code == 125 and "--filter 'colour=red'" in err
    assert cli(capfd, "rm", "-f", a.id[:8], "job")[0] == 0
    assert cli(capfd, "ps", "-aq")[1] == ""


def test_logs_tail_timestamps_and_streams(capfd):
    started(["sh", "-c", "echo one; echo two; echo bad >&2"], "talk")
    cli(capfd, "wait", "talk")
    code, out, err = cli(capfd, "logs", "talk")
    assert (code, out, err) == (0, "one\ntwo\n", "bad\n")
    assert cli(capfd, "logs", "--tail", "1", "talk")[2] == "bad\n"
    out = cli(capfd, "logs", "-t", "talk")[1]
    assert out.splitlines()[0].endswith("Z one")


def test_logs_follow_ends_when_the_container_exits(capfd):
    started(["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.2; done"], "ticker")
    t0 = time.monotonic()
    code, out, _ = cli(capfd, "logs", "-f", "ticker")
    assert code == 0 and out == "tick 1\ntick 2\ntick 3\n"
    assert time.monotonic() - t0 > 0.3


def test_stop_kill_inspect_rename(capfd):
    started(["sleep", "100"], "svc", restart="on-failure:5")
    doc = json.loads(cli(capfd, "inspect", "svc")[1])[0]
    assert doc["State"]["Status"] == "running" and doc["State"]["Running"] is True
    assert doc["State"]["Pid"] > 0 and doc["Name"] == "/svc"
    assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert cli(capfd, "rename", "svc", "svc2")[0] == 0
    assert cli(capfd, "stop", "-t", "1", "svc2")[1] == "svc2\n"
    assert cli(capfd, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}",
               "svc2")[1] == "exited 143 false\n"
    code, _, err = cli(capfd, "kill", "svc2")
    assert code == 125 and "kill container svc2: it is not running" in err
    code, _, err = cli(capfd, "inspect", "nope")
    assert code == 125 and "find container 'nope': no such container" in err


def test_rm_running_needs_force(capfd):
    started(["sleep", "100"], "busy")
    code, _, err = cli(capfd, "rm", "busy")
    assert code == 125 and "remove container busy: it is running" in err
    assert "hint:" in err
    assert cli(capfd, "rm", "-f", "busy")[0] == 0


def test_container_prune_keeps_running(capfd):
    started(["sleep", "100"], "keep")
    started(["true"], "gone")
    cli(capfd, "wait", "gone")
    cli(capfd, "container", "prune", "-f")
    assert cli(capfd, "ps", "-a", "--format", "json")[1].count('"keep"') == 1
    assert "gone" not in cli(capfd, "ps", "-a")[1]
    cli(capfd, "rm", "-f", "keep")


def test_volumes(capfd):
    assert cli(capfd, "volume", "create", "data")[1] == "data\n"
    code, _, err = cli(capfd, "volume", "create", "data")
    assert code == 125 and "create volume 'data'" in err
    assert cli(capfd, "volume", "ls", "-q")[1] == "data\n"
    doc = json.loads(cli(capfd, "volume", "inspect", "data")[1])[0]
    assert doc["Mountpoint"].endswith("volumes/data/_data")
    cli(capfd, "volume", "create", "other")
    assert cli(capfd, "volume", "rm", "other")[0] == 0
    assert cli(capfd, "volume", "prune", "-f")[1] == "data\n"
    assert cli(capfd, "volume", "ls", "-q")[1] == ""
    code, _, err = cli(capfd, "volume", "rm", "data")
    assert code == 125 and "no such volume" in err


@pytest.mark.parametrize("sig", ["HUP", "SIGHUP", "1"])
def test_kill_signal_names(sig):
    from rootless.cli.containers import parse_signal
    assert parse_signal(sig) == 1
