"""Detached container lifecycle: idle memory, start/stop 20, `ps` with 50.

prun's side currently measures the keeper over a host process (see
_life_driver.py): the keeper's own memory and the lifecycle machinery's
latency, without the helper's namespaces and FUSE server. podman's side is
a real `podman run -d busybox sleep` (conmon + fuse-overlayfs + slirp4netns).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from benchmarks._kit import Context, benchmark

PEER_PROCS = ("conmon", "fuse-overlayfs", "slirp4netns")


def _env(ctx: Context) -> dict[str, str]:
    return {"PRUN_ROOT": str(ctx.tmp / "store"), "PRUN_RUNROOT": str(ctx.tmp / "run"),
            "PYTHONPATH": str(ctx.src)}


def _python(ctx: Context) -> str:
    return str(ctx.venv / "bin/python") if ctx.venv else "python3"


def _prun(ctx: Context, *args: str) -> list[str]:
    return ctx.as_user(["prun", *args], _env(ctx))


def _start_keepers(ctx: Context, n: int) -> list[int]:
    out = ctx.run(ctx.as_user([_python(ctx), str(ctx.src / "scripts/benchmarks/_life_driver.py"),
                               "start", str(n)], _env(ctx)), text=True, cwd=ctx.src)
    return [int(p) for p in out.stdout.split()]


def _rm_all(ctx: Context) -> None:
    ids = ctx.run(_prun(ctx, "ps", "-aq"), text=True).stdout.split()
    if ids:
        ctx.run(_prun(ctx, "rm", "-f", *ids))


def _mem(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MiB from smaps_rollup."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss / 1024, pss / 1024


def _peer_pids(uid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}").st_uid != uid:
                continue
            name = Path(f"/proc/{d}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if name in PEER_PROCS:
            pids.append(int(d))
    return pids


def _podman_ready(ctx: Context) -> bool:
    if not ctx.have("podman"):
        return False
    images = ctx.run(ctx.podman(["images", "-q", "localhost/busybox:bench"]), check=False,
                     text=True)
    if images.stdout.strip():
        return True
    import sys
    sys.path.insert(0, str(ctx.src))
    from tests.support import images as build
    img = build.busybox_image(ctx.tmp / "busybox")
    archive = build.docker_archive(img, ctx.tmp / "busybox.tar", ["localhost/busybox:bench"])
    ctx.chown(archive)
    os.chmod(ctx.tmp, 0o755)
    loaded = ctx.run(ctx.podman(["load", "-i", str(archive)]), check=False, text=True)
    if loaded.returncode:
        ctx.warnings.add(f"podman load failed: {loaded.stderr.strip()[-200:]}")
    return loaded.returncode == 0


def _podman_rm_all(ctx: Context) -> None:
    ctx.run(ctx.podman(["rm", "-f", "-a", "-t", "0"]), check=False)


def _setup(ctx: Context):
    return {"podman": _podman_ready(ctx)}


def _teardown(ctx: Context) -> None:
    _rm_all(ctx)
    if ctx.state and ctx.state.get("podman"):
        _podman_rm_all(ctx)


def _idle(ctx: Context, which: int) -> dict[str, float]:
    pids = _start_keepers(ctx, 1)
    time.sleep(0.5)
    result = {"prun (keeper only)": sum(_mem(p)[which] for p in pids)}
    _rm_all(ctx)
    if ctx.state["podman"]:
        before = set(_peer_pids(ctx.uid))
        ctx.run(ctx.podman(["run", "-d", "--network", "slirp4netns", "localhost/busybox:bench",
                            "sleep", "1000"]))
        time.sleep(0.5)
        new = [p for p in _peer_pids(ctx.uid) if p not in before]
        result["podman"] = sum(_mem(p)[which] for p in new)
        _podman_rm_all(ctx)
    result["prun"] = result.pop("prun (keeper only)")
    return result


@benchmark("life.idle-rss", unit="MiB", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_teardown)
def idle_rss(ctx: Context) -> dict[str, float]:
    """RSS of one idle detached container's long-lived processes (prun: keeper only)"""
    return _idle(ctx, 0)


@benchmark("life.idle-pss", unit="MiB", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_teardown)
def idle_pss(ctx: Context) -> dict[str, float]:
    """PSS of one idle detached container's long-lived processes (prun: keeper only)"""
    return _idle(ctx, 1)


@benchmark("life.start-stop-20", unit="s", higher_is_better=False, repeat=3,
           setup=_setup, teardown=_teardown)
def start_stop_20(ctx: Context) -> dict[str, float]:
    """start 20 detached containers, then remove them all with rm -f (prun: host keepers)"""
    t0 = time.perf_counter()
    _start_keepers(ctx, 20)
    ids = ctx.run(_prun(ctx, "ps", "-q"), text=True).stdout.split()
    assert len(ids) == 20, ids
    ctx.run(_prun(ctx, "rm", "-f", *ids))
    result = {"prun": time.perf_counter() - t0}
    if ctx.state["podman"]:
        t0 = time.perf_counter()
        procs = [subprocess.Popen(ctx.podman(["run", "-d", "--network", "none",
                                              "localhost/busybox:bench", "sleep", "1000"]),
                                  stdout=subprocess.DEVNULL) for _ in range(20)]
        for p in procs:
            p.wait()
        ctx.run(ctx.podman(["rm", "-f", "-a", "-t", "0"]))
        result["podman"] = time.perf_counter() - t0
    return result


def _setup_50(ctx: Context):
    state = _setup(ctx)
    _start_keepers(ctx, 50)
    if state["podman"]:
        for _ in range(50):
            ctx.run(ctx.podman(["create", "localhost/busybox:bench", "true"]))
    return state


@benchmark("life.ps-50", unit="ms", higher_is_better=False, repeat=10,
           setup=_setup_50, teardown=_teardown)
def ps_50(ctx: Context) -> dict[str, float]:
    """`ps -a` wall time with 50 containers"""
    result = {"prun": ctx.time(_prun(ctx, "ps", "-a")) * 1000}
    if ctx.state["podman"]:
        result["podman"] = ctx.time(ctx.podman(["ps", "-a"])) * 1000
    return result
