"""Detached containers: idle memory, start/rm of 20, `ps` with 50 — real
`prun run -d` next to real `podman run -d`, the same busybox image.

Idle memory sums a container's long-lived processes other than the
container's own: prun's keeper (the helper), FUSE server and slirp4netns;
podman's conmon, fuse-overlayfs and slirp4netns (both with their default
network, slirp4netns). RSS counts shared pages in full, PSS splits them
among the processes sharing them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks._kit import Context, benchmark

REF = "localhost/busybox:bench"


def _env(ctx: Context) -> dict[str, str]:
    return {"PRUN_ROOT": str(ctx.tmp / "store"), "PRUN_RUNROOT": str(ctx.tmp / "run")}


def _prun(ctx: Context, *args: str) -> list[str]:
    return ctx.as_user(["prun", *args], _env(ctx))


def _archive(ctx: Context) -> Path:
    import sys
    sys.path.insert(0, str(ctx.src))
    from tests.support import images as build
    img = build.busybox_image(ctx.tmp / "busybox")
    archive = build.docker_archive(img, ctx.tmp / "busybox.tar", [REF])
    for p in (ctx.tmp, archive):
        ctx.chown(p)
    os.chmod(ctx.tmp, 0o755)
    return archive


def _setup(ctx: Context) -> dict:
    archive = _archive(ctx)
    ctx.run(_prun(ctx, "load", "-q", "-i", str(archive)))
    podman = False
    if ctx.have("podman"):
        loaded = ctx.run(ctx.podman(["load", "-i", str(archive)]), check=False, text=True)
        podman = loaded.returncode == 0
        if not podman:
            ctx.warnings.add(f"podman load failed: {loaded.stderr.strip()[-200:]}")
    return {"podman": podman}


def _rm_all(ctx: Context) -> None:
    ids = ctx.run(_prun(ctx, "ps", "-aq"), text=True).stdout.split()
    if ids:
        ctx.run(_prun(ctx, "rm", "-f", *ids))
    if ctx.state and ctx.state.get("podman"):
        ctx.run(ctx.podman(["rm", "-f", "-a", "-t", "0"]), check=False)


def _run_d(ctx: Context, n: int, tool: str) -> float:
    start = time.perf_counter()
    for _ in range(n):
        if tool == "prun":
            ctx.run(_prun(ctx, "run", "-d", REF, "sleep", "1000"))
        else:
            ctx.run(ctx.podman(["run", "-d", REF, "sleep", "1000"]))
    return time.perf_counter() - start


def _mem(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss / 1024, pss / 1024


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _prun_pids(ctx: Context) -> list[int]:
    cid = ctx.run(_prun(ctx, "ps", "-q", "--no-trunc"), text=True).stdout.split()[0]
    state = json.loads((ctx.tmp / "run" / "c" / cid[:12] / "state.json").read_text())
    keeper = state["keeper_pid"]
    slirp = int((ctx.tmp / "run" / "c" / cid[:12] / "net" / "slirp4netns.pid").read_text())
    return [keeper, slirp] + [c for c in _children(keeper) if c != state["pid"]]


def _slirps(uid: int) -> set[int]:
    found = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid and _comm(int(d)) == "slirp4netns":
                    found.add(int(d))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


def _podman_pids(ctx: Context, slirps_before: set[int]) -> list[int]:
    """This run's container's conmon (from inspect), its fuse-overlayfs
    (the one whose mount options name this benchmark's podman store) and
    the slirp4netns that appeared with it."""
    cid = ctx.run(ctx.podman(["ps", "-q", "--no-trunc"]), text=True).stdout.split()[0]
    conmon = int(ctx.run(ctx.podman(["inspect", "-f", "{{.State.ConmonPid}}", cid]),
                         text=True).stdout.strip())
    store = str(ctx.tmp.parent / "podman-fuse")
    found = [conmon]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if cmd.startswith(b"/usr/bin/fuse-overlayfs") and store.encode() in cmd:
                found.append(int(d))
    return found + sorted(_slirps(ctx.uid) - slirps_before)


def _idle(ctx: Context, which: int) -> dict[str, float]:
    _run_d(ctx, 1, "prun")
    time.sleep(1)
    result = {"prun": sum(_mem(p)[which] for p in _prun_pids(ctx))}
    if ctx.state["podman"]:
        before = _slirps(ctx.uid)
        _run_d(ctx, 1, "podman")
        time.sleep(1)
        result["podman"] = sum(_mem(p)[which] for p in _podman_pids(ctx, before))
    _rm_all(ctx)
    return result


@benchmark("life.idle-rss", unit="MiB", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_rm_all)
def idle_rss(ctx: Context) -> dict[str, float]:
    """RSS of an idle detached container's helpers (keeper+FUSE+slirp4netns vs conmon+fuse-overlayfs+slirp4netns)"""
    return _idle(ctx, 0)


@benchmark("life.idle-pss", unit="MiB", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_rm_all)
def idle_pss(ctx: Context) -> dict[str, float]:
    """PSS of the same processes"""
    return _idle(ctx, 1)


@benchmark("life.start-20", unit="s", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_rm_all)
def start_20(ctx: Context) -> dict[str, float]:
    """start 20 detached `sleep` containers one after the other"""
    result = {"prun": _run_d(ctx, 20, "prun")}
    if ctx.state["podman"]:
        result["podman"] = _run_d(ctx, 20, "podman")
    _rm_all(ctx)
    return result


@benchmark("life.rm-20", unit="s", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_rm_all)
def rm_20(ctx: Context) -> dict[str, float]:
    """`rm -f` of 20 running containers in one command"""
    _run_d(ctx, 20, "prun")
    ids = ctx.run(_prun(ctx, "ps", "-q"), text=True).stdout.split()
    result = {"prun": ctx.time(_prun(ctx, "rm", "-f", *ids))}
    if ctx.state["podman"]:
        _run_d(ctx, 20, "podman")
        result["podman"] = ctx.time(ctx.podman(["rm", "-f", "-a", "-t", "0"]))
    return result


def _setup_50(ctx: Context) -> dict:
    state = _setup(ctx)
    ctx.state = state
    _run_d(ctx, 50, "prun")
    if state["podman"]:
        _run_d(ctx, 50, "podman")
    return state


@benchmark("life.ps-50", unit="ms", higher_is_better=False, repeat=10,
           setup=_setup_50, teardown=_rm_all)
def ps_50(ctx: Context) -> dict[str, float]:
    """`ps -a` wall time with 50 running containers"""
    result = {"prun": ctx.time(_prun(ctx, "ps", "-a")) * 1000}
    if ctx.state["podman"]:
        result["podman"] = ctx.time(ctx.podman(["ps", "-a"])) * 1000
    return result
