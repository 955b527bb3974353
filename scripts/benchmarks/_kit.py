"""The benchmark kit behind scripts/bench.

Rules:
- A benchmark is a function decorated with ``@benchmark(name, unit=...,
  higher_is_better=...)``. It gets a ``Context`` and returns, for ONE
  repetition, ``{"prun": value, "<peer>": value, ...}``; peers appear only
  when installed and working (a peer that fails is left out of that
  repetition, and its error is printed once).
- The kit repeats each benchmark, prints min and median per tool, and the
  ratio of prun's median to each peer's median, measured in the same run.
- Setup (making a 1 GiB file, building an image) goes in ``setup=``; its
  return value is ``ctx.state``; ``teardown=`` cleans up. Neither is timed.
- Under root the kit runs as root (podman's peers.md trick needs it) and
  benchmarks run prun and peers as the unprivileged test user through
  ``ctx.as_user``; under a normal user, ``as_user`` is the identity.
- Benchmark modules import prun code lazily (inside functions): ``--list``
  must work without the venv.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY: dict[str, Benchmark] = {}


@dataclass
class Benchmark:
    name: str
    fn: Callable[[Context], dict[str, float]]
    unit: str
    higher_is_better: bool
    repeat: int
    setup: Callable[[Context], Any] | None
    teardown: Callable[[Context], None] | None
    doc: str


def benchmark(name: str, *, unit: str, higher_is_better: bool, repeat: int = 3,
              setup: Callable | None = None, teardown: Callable | None = None):
    def register(fn):
        REGISTRY[name] = Benchmark(name, fn, unit, higher_is_better, repeat, setup, teardown,
                                   (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "")
        return fn
    return register


@dataclass
class Context:
    tmp: Path
    user: str | None          # the unprivileged user to run as (None: we are that user)
    uid: int
    venv: Path | None
    src: Path
    state: Any = None
    warnings: set[str] = field(default_factory=set)

    def user_env(self) -> dict[str, str]:
        home = Path(os.path.expanduser(f"~{self.user}")) if self.user else Path.home()
        path = ":".join(p for p in (str(self.venv / "bin") if self.venv else "",
                                    "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin") if p)
        return {"HOME": str(home), "USER": self.user or os.environ.get("USER", ""),
                "PATH": path, "XDG_RUNTIME_DIR": f"/run/user/{self.uid}", "LANG": "C.UTF-8"}

    def as_user(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        """argv that runs ``argv`` as the test user with a clean environment."""
        full = {**self.user_env(), **(env or {})}
        envv = ["env", "-i", *(f"{k}={v}" for k, v in full.items())]
        if self.user is None:
            return [*envv, *argv]
        return ["runuser", "-u", self.user, "--", *envv, *argv]

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("check", True)
        kw.setdefault("capture_output", True)
        return subprocess.run(argv, **kw)

    def time(self, argv: list[str], **kw) -> float:
        """Wall seconds of one run of ``argv`` (which must succeed)."""
        start = time.perf_counter()
        self.run(argv, **kw)
        return time.perf_counter() - start

    @staticmethod
    def have(tool: str) -> bool:
        return shutil.which(tool) is not None

    def chown(self, path: Path) -> Path:
        if self.user is not None:
            shutil.chown(path, self.user, self.user)
        return path

    def podman(self, args: list[str], driver: str = "fuse") -> list[str]:
        """argv running rootless podman as the test user (peers.md trick).

        ``driver`` is "fuse" (fuse-overlayfs) or "native" (kernel overlay);
        each has its own store under ``ctx.tmp/../podman-<driver>``.
        """
        base = self.tmp.parent / f"podman-{driver}"
        opts = ["--root", str(base / "root"), "--runroot", str(base / "run"),
                "--storage-driver", "overlay"]
        if driver == "fuse":
            opts += ["--storage-opt", "overlay.mount_program=/usr/bin/fuse-overlayfs"]
        inner = self.as_user(["podman", *opts, *args])
        if os.getuid() != 0:
            return inner
        base.mkdir(parents=True, exist_ok=True)
        self.chown(base)
        write_podman_config(Path(os.path.expanduser(f"~{self.user}")), self.user)
        # crun refuses the host's v1/v2 hybrid: hide the v2 mount in a private
        # mount namespace so it sees plain v1 (see shared/notes/peers.md).
        script = ("mount --make-rprivate / && umount /sys/fs/cgroup/unified 2>/dev/null; "
                  "mount --make-rshared / && exec \"$@\"")
        return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", script,
                "sh", *inner]


def write_podman_config(home: Path, user: str | None) -> None:
    conf = home / ".config/containers/containers.conf"
    text = ('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n\n'
            '[containers]\ncgroups = "disabled"\n')
    if conf.exists() and conf.read_text() == text:
        return
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text)
    if user:
        for p in (home / ".config", conf.parent, conf):
            shutil.chown(p, user, user)


def select(patterns: list[str]) -> list[Benchmark]:
    if not patterns:
        return list(REGISTRY.values())
    return [b for name, b in REGISTRY.items()
            if any(fnmatch.fnmatch(name, p) or name.startswith(p + ".") for p in patterns)]


def summarize(bench: Benchmark, samples: dict[str, list[float]]) -> list[str]:
    better = "higher" if bench.higher_is_better else "lower"
    lines = [f"{bench.name}  [{bench.unit}, {better} is better]  {bench.doc}"]
    prun = statistics.median(samples["prun"]) if samples.get("prun") else None
    for tool, values in samples.items():
        med = statistics.median(values)
        ratio = ""
        if tool != "prun" and prun is not None and med:
            ratio = f"prun/{tool} = {prun / med:.2f}"
        lines.append(f"  {tool:<22} min {min(values):>10.3f}  median {med:>10.3f}  "
                     f"n={len(values):<3} {ratio}")
    return lines
