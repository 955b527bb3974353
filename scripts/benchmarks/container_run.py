"""`prun run` start time, idle memory and its start-time breakdown (run.*).

Peers in the same run: rootless podman with fuse-overlayfs and with native
overlay (same busybox image, `podman load`ed), `crun run` on an OCI bundle of
the same rootfs and `bwrap` over it (both need the peers.md cgroup trick).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._kit import Context, benchmark

REF = "localhost/busybox:bench"


def _env(ctx: Context) -> dict[str, str]:
    return {"PRUN_ROOT": str(ctx.tmp.parent / "run-store"),
            "PRUN_RUNROOT": str(ctx.tmp.parent / "run-runroot")}


def _prun(ctx: Context, *args: str, env: dict | None = None) -> list[str]:
    return ctx.as_user(["prun", *args], {**_env(ctx), **(env or {})})


def _peer_wrap(ctx: Context, argv: list[str]) -> list[str]:
    """argv as the test user inside a mount namespace that hides the host's
    cgroup2 mount (crun refuses the v1/v2 hybrid; shared/notes/peers.md)."""
    inner = ctx.as_user(argv)
    if os.getuid() != 0:
        return inner
    script = ("mount --make-rprivate / && umount /sys/fs/cgroup/unified 2>/dev/null; "
              "exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", script, "sh",
            *inner]


def _setup(ctx: Context) -> dict:
    sys.path.insert(0, str(ctx.src))
    from tests.support import images, rootfs

    base = ctx.tmp.parent
    state: dict = {"peers": {}}
    store = base / "run-store"
    if not store.exists():
        for d in (store, base / "run-runroot"):
            d.mkdir()
            ctx.chown(d)
        img = images.busybox_image(base / "run-image")
        archive = images.docker_archive(img, base / "run-busybox.tar", [REF])
        ctx.chown(archive)
        os.chmod(base, 0o755)
        ctx.run(_prun(ctx, "load", "-q", "-i", str(archive)))
        rootfs.build_busybox_rootfs(base / "run-bundle" / "rootfs")
        subprocess.run(["chown", "-R", f"{ctx.uid}", str(base / "run-bundle")], check=True)
    bundle = base / "run-bundle"
    rfs = bundle / "rootfs"
    state["rootfs"] = rfs
    archive = base / "run-busybox.tar"
    if ctx.have("podman"):
        for driver in ("fuse", "native"):
            out = ctx.run(ctx.podman(["load", "-q", "-i", str(archive)], driver), check=False,
                          text=True)
            if out.returncode == 0:
                state["peers"][f"podman ({driver})"] = ctx.podman(
                    ["run", "--rm", "--network", "none", REF, "true"], driver)
            else:
                ctx.warnings.add(f"podman ({driver}) load failed: {out.stderr.strip()[-200:]}")
    if ctx.have("crun"):
        crun_state = base / "crun-state"
        crun_state.mkdir(exist_ok=True)
        ctx.chown(crun_state)
        cfg = bundle / "config.json"
        if not cfg.exists():
            ctx.run(ctx.as_user(["sh", "-c", f"cd {bundle} && crun spec --rootless"]))
            spec = json.loads(cfg.read_text())
            spec["process"]["args"] = ["true"]
            spec["process"]["terminal"] = False
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                           if n["type"] != "network"] + [{"type": "network"}]
            cfg.write_text(json.dumps(spec))
            ctx.chown(cfg)
        state["peers"]["crun"] = _peer_wrap(ctx, [
            "crun", "--root", str(crun_state), "run", "--bundle",
            str(bundle), f"bench-{os.getpid()}"])
    if ctx.have("bwrap"):
        state["peers"]["bwrap"] = ctx.as_user(
            ["bwrap", "--unshare-all", "--ro-bind", str(rfs), "/", "--proc", "/proc", "--dev",
             "/dev", "true"])
    for name, argv in list(state["peers"].items()):
        if ctx.run(argv, check=False, text=True).returncode:
            err = ctx.run(argv, check=False, text=True).stderr.strip()[-200:]
            ctx.warnings.add(f"{name} left out: {err}")
            del state["peers"][name]
    return state


@benchmark("run.start", unit="ms", higher_is_better=False, repeat=20, setup=_setup)
def start(ctx: Context) -> dict[str, float]:
    """wall time of `prun run --rm --network none busybox true` vs podman/crun/bwrap"""
    result = {"prun": ctx.time(_prun(ctx, "run", "--rm", "--network", "none", REF, "true"))
              * 1000}
    for name, argv in ctx.state["peers"].items():
        result[name] = ctx.time(argv) * 1000
    return result


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return 0.0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _idle_rss(ctx: Context, argv: list[str], skip: tuple[str, ...]) -> float:
    """RSS of the processes started by ``argv`` except the container's own."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        time.sleep(3)
        pids = [p for p in _tree(proc.pid) if _comm(p) not in skip]
        return sum(_rss_mib(p) for p in pids)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@benchmark("run.idle-rss", unit="MiB", higher_is_better=False, repeat=3, setup=_setup)
def idle_rss(ctx: Context) -> dict[str, float]:
    """RSS of the run's own processes while `sleep` idles in the container
    (prun: supervisor + helper + FUSE server; podman: podman + conmon + fuse-overlayfs)"""
    # runuser/env/unshare/sh wrappers and the container's sleep are not counted.
    skip = ("sleep", "runuser", "env", "unshare", "sh", "catatonit")
    result = {"prun": _idle_rss(ctx, _prun(ctx, "run", "--rm", "--network", "none", REF,
                                           "sleep", "30"), skip)}
    if "podman (fuse)" in ctx.state["peers"]:
        result["podman (fuse)"] = _idle_rss(ctx, ctx.podman(
            ["run", "--rm", "--network", "none", REF, "sleep", "30"], "fuse"), skip)
    return result


STAGES = ("id-maps", "fuse-imports", "cli", "image", "hooks", "helper-spec", "rootfs-mount", "container-setup",
          "exec", "container-exited", "cleanup")


@benchmark("run.breakdown", unit="ms", higher_is_better=False, repeat=10, setup=_setup)
def breakdown(ctx: Context) -> dict[str, float]:
    """start-time breakdown: ms since `prun` was spawned when each stage ended
    (id-maps and fuse-imports: the helper's FUSE child, in parallel with
    cli = interpreter + CLI imports + flags; image = store lookup; hooks =
    hook imports; helper-spec = the helper has the spec; rootfs-mount; container-setup = mounts + pivot_root; exec; exit; prun = total)"""
    t0 = time.monotonic_ns()
    out = ctx.run(_prun(ctx, "run", "--rm", "--network", "none", REF, "true",
                        env={"PRUN_TIMING_T0": str(t0)}), text=True)
    total = (time.monotonic_ns() - t0) / 1e6
    marks = {}
    for line in out.stderr.splitlines():
        if line.startswith("prun: timing: "):
            stage, ms = line.split()[2:4]
            marks[stage] = float(ms)
    result = {f"{i}. {s}": marks[s] for i, s in enumerate(STAGES, 1) if s in marks}
    # The "prun" row is the total (scripts/bench's headline row).
    result["prun"] = total
    return result
