"""Detached containers and their lifecycle, as the unprivileged test user,
with busybox from the loopback registry: run -d, ps, logs (-f), stop -t,
kill, rm -f, restart policies, inspect, keeper SIGKILL clean-up, 20 at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.run_support import prun, require_run_host

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image(plain_registry, tmp_path_factory):
    require_run_host()
    store = tmp_path_factory.mktemp("life-store")
    env = {"PRUN_ROOT": str(store), "PRUN_RUNROOT": str(tmp_path_factory.mktemp("life-run"))}
    ref = f"{plain_registry.host}/busybox"
    out = prun("pull", "-q", "--tls-verify=false", ref, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return ref, env


def p(image, *args, **kw):
    ref, env = image
    args = tuple(ref if a == "IMAGE" else a for a in args)
    return prun(*args, env=env, **kw)


def ok(image, *args, **kw) -> str:
    out = p(image, *args, **kw)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def until(cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def inspect(image, name) -> dict:
    return json.loads(ok(image, "inspect", name))[0]


def procs_of(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def test_run_d_prints_id_and_ps_logs_stop_rm(image):
    cid = ok(image, "run", "-d", "--name", "echoer", "IMAGE", "sh", "-c",
             "echo started; echo oops >&2; while :; do sleep 1; done").strip()
    assert len(cid) == 64
    assert cid[:12] in ok(image, "ps", "-q").split()
    until(lambda: "started" in ok(image, "logs", "echoer"))
    out = p(image, "logs", "echoer")
    assert (out.stdout, out.stderr) == ("started\n", "oops\n")
    doc = inspect(image, "echoer")
    assert doc["State"]["Status"] == "running" and doc["State"]["Running"]
    assert doc["State"]["Pid"] > 0 and doc["Id"] == cid
    t0 = time.monotonic()
    assert ok(image, "stop", "-t", "1", "echoer") == "echoer\n"
    assert time.monotonic() - t0 < 5
    doc = inspect(image, "echoer")
    assert doc["State"]["Status"] == "exited" and not doc["State"]["Running"]
    assert doc["State"]["FinishedAt"] >= doc["State"]["StartedAt"]
    assert ok(image, "rm", "echoer") == "echoer\n"
    assert cid[:12] not in ok(image, "ps", "-aq")


def test_busybox_httpd_session(image):
    root = Path(ok(image, "volume", "create", "site").strip() and
                json.loads(ok(image, "volume", "inspect", "site"))[0]["Mountpoint"])
    (root / "index.html").write_text("hello from prun\n")
    ok(image, "run", "-d", "--name", "web", "-v", "site:/www", "IMAGE",
       "httpd", "-f", "-p", "8080", "-h", "/www")
    fetch = ["exec", "web", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]
    assert until(lambda: p(image, *fetch).stdout) == "hello from prun\n"
    assert "web" in ok(image, "ps")
    ok(image, "stop", "web")
    ok(image, "rm", "web")
    assert ok(image, "volume", "ls", "-q").split() == ["site"]
    ok(image, "volume", "rm", "site")


def test_logs_follow_streams_live(image, tmp_path):
    # The container prints "waiting", then the rest only once the test opens
    # the gate: those lines cannot exist before `logs -f` is running.
    ok(image, "run", "-d", "--name", "ticker", "-v", f"{tmp_path}:/gate", "IMAGE", "sh", "-c",
       "echo waiting; until [ -e /gate/go ]; do sleep 0.05; done; "
       "for i in 1 2 3; do echo tick $i; sleep 0.2; done")
    ref, env = image
    proc = subprocess.Popen(["prun", "logs", "-f", "ticker"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    assert proc.stdout.readline() == "waiting\n"
    (tmp_path / "go").touch()
    assert proc.stdout.read() == "tick 1\ntick 2\ntick 3\n"
    assert proc.wait(10) == 0
    ok(image, "rm", "ticker")


def test_exec_sees_the_containers_processes_hostname_and_mounts(image):
    ok(image, "run", "-d", "--name", "box", "--hostname", "boxhost", "IMAGE", "sleep", "1000")
    assert ok(image, "exec", "box", "hostname") == "boxhost\n"
    ps = ok(image, "exec", "box", "ps", "-o", "pid,comm")
    assert any(line.split() == ["1", "sleep"] for line in ps.splitlines())
    assert "/proc" in ok(image, "exec", "box", "cat", "/proc/mounts")
    assert ok(image, "exec", "-e", "X=42", "-w", "/tmp", "box", "sh", "-c",
              "echo $X $(pwd) $(id -u)") == "42 /tmp 0\n"
    assert ok(image, "exec", "-u", "65534", "box", "id", "-u") == "65534\n"
    out = p(image, "exec", "box", "sh", "-c", "exit 3")
    assert out.returncode == 3
    ok(image, "exec", "box", "touch", "/made-by-exec")
    assert p(image, "exec", "box", "ls", "/made-by-exec").returncode == 0
    ok(image, "rm", "-f", "box")


def test_stop_honours_t_then_sigkill(image):
    ok(image, "run", "-d", "--name", "stubborn", "IMAGE", "sh", "-c",
       "trap '' TERM; while :; do sleep 0.1; done")
    time.sleep(0.5)
    t0 = time.monotonic()
    ok(image, "stop", "-t", "2", "stubborn")
    took = time.monotonic() - t0
    assert 1.8 < took < 6
    assert inspect(image, "stubborn")["State"]["ExitCode"] == 137
    ok(image, "rm", "stubborn")


def test_rm_f_of_a_running_container_and_its_anonymous_volume(image):
    cid = ok(image, "run", "-d", "--name", "doomed", "-v", "/scratch", "IMAGE",
             "sleep", "1000").strip()
    anon = f"{cid[:12]}-scratch"
    assert anon in ok(image, "volume", "ls", "-q").split()
    assert inspect(image, "doomed")["Mounts"][0]["Destination"] == "/scratch"
    out = p(image, "rm", "doomed")
    assert out.returncode == 125 and "it is running" in out.stderr
    ok(image, "rm", "-f", "-v", "doomed")
    assert "doomed" not in ok(image, "ps", "-a")
    assert anon not in ok(image, "volume", "ls", "-q").split()


def test_restart_policies(image):
    ok(image, "run", "-d", "--name", "flaky", "--restart", "on-failure:2", "IMAGE",
       "sh", "-c", "echo try; exit 1")
    assert ok(image, "wait", "flaky") == "1\n"
    doc = inspect(image, "flaky")
    assert doc["RestartCount"] == 2
    assert ok(image, "logs", "flaky") == "try\n" * 3
    ok(image, "run", "-d", "--name", "phoenix", "--restart", "always", "IMAGE",
       "sh", "-c", "echo up; sleep 0.2")
    until(lambda: inspect(image, "phoenix")["RestartCount"] >= 2)
    ok(image, "stop", "phoenix")
    n = inspect(image, "phoenix")["RestartCount"]
    time.sleep(1)
    assert inspect(image, "phoenix")["RestartCount"] == n
    assert inspect(image, "phoenix")["State"]["Status"] == "exited"
    ok(image, "rm", "flaky", "phoenix")


def test_inspect_fields(image):
    ok(image, "run", "-d", "--name", "insp", "-e", "A=1", "--restart", "unless-stopped",
       "IMAGE", "sh", "-c", "exit 4")
    until(lambda: inspect(image, "insp")["RestartCount"] >= 1)
    ok(image, "stop", "insp")
    doc = inspect(image, "insp")
    assert doc["Name"] == "/insp"
    assert doc["Config"]["Cmd"] == ["sh", "-c", "exit 4"] and "A=1" in doc["Config"]["Env"]
    assert doc["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert set(doc["State"]) >= {"Status", "Running", "Pid", "ExitCode", "StartedAt",
                                 "FinishedAt", "OOMKilled"}
    assert doc["State"]["ExitCode"] == 4 and doc["State"]["OOMKilled"] is False
    assert ok(image, "inspect", "-f", "{{.State.Status}}", "insp") == "exited\n"
    ok(image, "rm", "insp")


def test_kill_9_of_the_keeper_leaves_nothing_behind(image):
    ref, env = image
    cid = ok(image, "run", "-d", "--name", "orphan", "IMAGE", "sleep", "1000").strip()
    doc = inspect(image, "orphan")
    pid = doc["State"]["Pid"]
    runroot = Path(env["PRUN_RUNROOT"])
    keeper = int(json.loads((runroot / "c" / cid[:12] / "state.json").read_text())["keeper_pid"])
    children = [int(x) for x in Path(f"/proc/{keeper}/task/{keeper}/children").read_text().split()]
    os.kill(keeper, signal.SIGKILL)
    until(lambda: not procs_of(pid) and not any(procs_of(c) for c in children))
    out = ok(image, "ps", "-a", "--format", "json")
    row = [r for r in json.loads(out) if r["Id"] == cid][0]
    assert row["State"] == "exited"
    assert not (runroot / "c" / cid[:12]).exists()
    assert not (runroot / "containers" / cid).exists()
    ok(image, "rm", "orphan")
    assert not (Path(env["PRUN_ROOT"]) / "containers" / cid).exists()
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()


def test_twenty_concurrent_run_d_then_rm_all(image):
    def start(i):
        return p(image, "run", "-d", "--name", f"many{i}", "IMAGE", "sleep", "1000", timeout=120)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(start, range(20)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    ids = ok(image, "ps", "-q").split()
    assert len([n for n in ok(image, "ps", "--format", "json").split('"many')]) - 1 >= 20
    assert len(ids) >= 20
    ok(image, "rm", "-f", *ok(image, "ps", "-aq").split(), timeout=120)
    assert ok(image, "ps", "-aq") == ""


def test_create_start_restart(image):
    cid = ok(image, "create", "--name", "later", "IMAGE", "sh", "-c",
             "echo run; sleep 1000").strip()
    assert len(cid) == 64
    assert inspect(image, "later")["State"]["Status"] == "created"
    assert cid[:12] not in ok(image, "ps", "-q")
    assert ok(image, "start", "later") == "later\n"
    until(lambda: ok(image, "logs", "later") == "run\n")
    first = inspect(image, "later")["State"]["Pid"]
    ok(image, "exec", "later", "touch", "/kept")
    assert ok(image, "restart", "-t", "1", "later") == "later\n"
    doc = inspect(image, "later")
    assert doc["State"]["Running"] and doc["State"]["Pid"] != first
    until(lambda: ok(image, "logs", "later") == "run\nrun\n")
    assert p(image, "exec", "later", "ls", "/kept").returncode == 0  # same upper layer
    ok(image, "stop", "-t", "0", "later")
    ok(image, "rm", "later")


def test_published_port_survives_the_detach_and_dies_with_the_keeper(image, tmp_path):
    import socket
    import urllib.request
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "index.html").write_text("served detached\n")
    cid = ok(image, "run", "-d", "--name", "pub", "-p", f"127.0.0.1:{port}:80",
             "-v", f"{tmp_path}:/www:ro", "IMAGE", "httpd", "-f", "-p", "80", "-h", "/www").strip()

    def fetch():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
        except OSError:
            return None
    assert until(fetch) == b"served detached\n"
    assert f"127.0.0.1:{port}->80/tcp" in ok(image, "ps")
    assert inspect(image, "pub")["NetworkSettings"]["Ports"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    ref, env = image
    state = Path(env["PRUN_RUNROOT"]) / "c" / cid[:12]
    slirp = int((state / "net" / "slirp4netns.pid").read_text())
    keeper = json.loads((state / "state.json").read_text())["keeper_pid"]
    os.kill(keeper, signal.SIGKILL)
    until(lambda: not procs_of(slirp) or Path(f"/proc/{slirp}/stat").read_text().split()[2] == "Z")
    assert fetch() is None
    ok(image, "rm", "pub")
