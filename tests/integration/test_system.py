"""`prun system init` and `prun system reset` as the user runs them."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support import caps


def prun(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["prun", *args], capture_output=True, text=True, input=input,
                          timeout=120)


def test_init_seeds_busybox_once(private_store):
    caps.require_tool("busybox")
    first = prun("system", "init")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("localhost/busybox:latest seeded (")
    again = prun("system", "init")
    assert again.returncode == 0 and again.stdout.startswith("localhost/busybox:latest present (")
    listed = json.loads(prun("images", "--format", "json").stdout)
    assert [img["Names"] for img in listed] == [["localhost/busybox:latest"]]


def _mounts_under(path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def test_reset_without_confirmation_removes_nothing(private_store):
    caps.require_tool("busybox")
    assert prun("system", "init").returncode == 0
    out = prun("system", "reset", input="")
    assert out.returncode == 0 and "nothing removed" in out.stderr
    assert (private_store / "prun.db").exists()


def test_reset_leaves_an_empty_store_and_nothing_running(private_store, tmp_path):
    caps.require_tool("busybox")
    assert prun("system", "init").returncode == 0
    started = prun("run", "-d", "--network", "none", "busybox", "sleep", "1000")
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    keeper = json.loads(prun("inspect", cid).stdout)[0]["State"]["Pid"]
    assert keeper > 0
    # What a crash leaves behind: a union mount of ours under the data dir.
    lower, upper, work, point = (private_store / d for d in ("l", "u", "w", "m"))
    for d in (lower, upper, work, point):
        d.mkdir(parents=True)
    (lower / "file").write_text("x")
    mounted = subprocess.run(["prun-overlayfs", "-o", f"lowerdir={lower},upperdir={upper},"
                              f"workdir={work}", str(point)], capture_output=True, text=True)
    assert mounted.returncode == 0, mounted.stderr
    assert _mounts_under(point)

    out = prun("system", "reset", "-f")
    assert out.returncode == 0, out.stderr
    assert "removed 1 container(s)" in out.stdout and "detached 1 leftover mount" in out.stdout
    assert list(private_store.iterdir()) == []
    assert not _mounts_under(private_store)
    assert not os.path.exists(f"/proc/{keeper}")
    assert prun("ps", "-aq").stdout == ""


def test_bash_completion_completes_commands():
    out = subprocess.run(["prun"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "_PRUN_COMPLETE": "bash_complete",
                              "COMP_WORDS": "prun ru", "COMP_CWORD": "1"})
    assert out.returncode == 0
    assert "plain,run" in out.stdout.splitlines()
