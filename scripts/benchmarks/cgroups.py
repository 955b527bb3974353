"""Start-up cost of the cgroup step of `prun run`, side by side with podman.

prun is first in each result; in cgroups.guest-start the "peers" are prun
itself without limits / without a cgroup, so the ratio is the overhead.

On this host (no systemd, a cgroup v1/v2 hybrid) no container can get a
cgroup: prun's default run plans the cgroup step (host probe, manager
choice) and runs without one; podman only runs here with cgroups disabled
(shared/notes/peers.md), so both tools are measured with no cgroup, and the
"refuse" line times how fast each rejects `--memory 64m`. The enforcing path
(a systemd scope with limits) is measured in the systemd guest
(cgroups.guest-start, which boots it: ~2-4 min); podman is not in the guest.
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
    return ctx.as_user(["prun", "run", "--rm", "--network", "none", *flags,
                        "--rootfs", ctx.state["bb"], "true"], _env(ctx))


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


@benchmark("cgroups.guest-start", unit="ms", higher_is_better=False, repeat=1)
def guest_start(ctx: Context) -> dict[str, float]:
    """`run --rm … true` in the UML systemd guest: scope+limits vs scope vs no cgroup

    Medians of 5 per variant, interleaved; UML makes system calls ~30x slower,
    so only the ratios mean something. Needs root (boots the guest).
    """
    import json
    import statistics

    if os.getuid() != 0:
        raise RuntimeError("boots the User-mode Linux guest: run scripts/bench as root")
    out = ctx.run([str(ctx.src / "scripts/vm-test"), "--bench"], text=True)
    line = next(l for l in out.stdout.splitlines() if l.startswith("{"))
    times = {name: statistics.median(values) for name, values in json.loads(line).items()}
    limited = next(name for name in times if name.startswith("scope +"))
    return {"prun": times.pop(limited), **{f"prun, {name}": v for name, v in times.items()}}
