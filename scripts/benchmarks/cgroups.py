"""Start-up cost of the cgroup step of `prun run`, side by side with podman.

On this host (no systemd, a cgroup v1/v2 hybrid) no container can get a
cgroup: prun's default run plans the cgroup step (host probe, manager
choice) and runs without one; podman only runs here with cgroups disabled
(shared/notes/peers.md), so both tools are measured with no cgroup, and the
"refuse" line times how fast each rejects `--memory 64m`. The enforcing path
(a systemd scope with limits) is measured only in the systemd guest (tests/vm)
and not reported here.
"""

from __future__ import annotations

import os
import sys

from benchmarks._kit import Context, benchmark


def _setup(ctx: Context) -> dict:
    sys.path.insert(0, str(ctx.src))
    from benchmarks.life import _podman_ready
    from tests.support.rootfs import build_busybox_rootfs

    os.chmod(ctx.tmp, 0o755)
    bb = build_busybox_rootfs(ctx.tmp / "bb")
    if ctx.user:
        ctx.run(["chown", "-R", f"{ctx.user}:{ctx.user}", str(bb)])
    return {"bb": str(bb), "podman": _podman_ready(ctx)}


def _env(ctx: Context) -> dict[str, str]:
    return {"PRUN_ROOT": str(ctx.tmp / "store"), "PRUN_RUNROOT": str(ctx.tmp / "run")}


def _prun(ctx: Context, *flags: str) -> list[str]:
    return ctx.as_user(["prun", "run", "--rm", *flags, "--rootfs", ctx.state["bb"], "true"],
                       _env(ctx))


def _podman(ctx: Context, *flags: str) -> list[str]:
    return ctx.podman(["run", "--rm", "--network", "none", *flags, "localhost/busybox:bench",
                       "true"])


@benchmark("cgroups.start-default", unit="ms", higher_is_better=False, repeat=10, setup=_setup)
def start_default(ctx: Context) -> dict[str, float]:
    """`run --rm … true` with the default cgroup settings (here: no cgroup possible)"""
    result = {"prun": ctx.time(_prun(ctx)) * 1000}
    if ctx.state["podman"]:
        result["podman (cgroups disabled)"] = ctx.time(_podman(ctx)) * 1000
    return result


@benchmark("cgroups.start-disabled", unit="ms", higher_is_better=False, repeat=10, setup=_setup)
def start_disabled(ctx: Context) -> dict[str, float]:
    """`run --rm --cgroups=disabled … true`: the cost of skipping the cgroup step"""
    result = {"prun": ctx.time(_prun(ctx, "--cgroups=disabled")) * 1000}
    if ctx.state["podman"]:
        result["podman"] = ctx.time(_podman(ctx, "--cgroups=disabled")) * 1000
    return result


@benchmark("cgroups.refuse-limit", unit="ms", higher_is_better=False, repeat=10, setup=_setup)
def refuse_limit(ctx: Context) -> dict[str, float]:
    """time to refuse `run --memory 64m` where no memory controller can be delegated"""
    result = {"prun": ctx.time(_prun(ctx, "--memory", "64m"), check=False) * 1000}
    if ctx.state["podman"]:
        result["podman"] = ctx.time(_podman(ctx, "--memory", "64m"), check=False) * 1000
    return result
