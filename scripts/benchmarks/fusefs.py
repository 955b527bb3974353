"""The union filesystem: prun-overlayfs vs fuse-overlayfs vs the host directory.

Rules:
- Every tool runs as the test user inside its own ``unshare -rm`` (user
  namespace where that user is root, private mount namespace), mounts one
  read-only layer (the shared data set below) with a fresh upper/work dir,
  and times only the measured command (mount and unmount are not timed).
  "host" runs the same command on the plain directories: the lower dir for
  reads, a fresh dir for writes.
- The data set is built once per bench run (untimed, shared by all fusefs
  benchmarks): a 1 GiB and a 100 MiB file of random bytes, a copy of
  /usr/share (~50,000 entries) and a 5,000-entry tarball. Set
  PRUN_BENCH_FUSEFS_DATA=DIR to build it in DIR and reuse it across runs.
- "cold" drops the host page cache first (needs root; without it the note
  says so) and uses a fresh mount, so neither page cache nor FUSE caches
  help; "warm" repeats the command on the same mount and times the repeat.
- Write benchmarks start with an untimed ``sync``: otherwise a tool pays
  for the write-back of the previous tool's data (the tools take turns).
  The 1 GiB write first writes and deletes 2 GiB on the host: this VM pays
  ~3x for the first touch of a page it has never used, and whichever tool
  needed more memory than the one before it got that bill (measured: the
  same tool 350 MB/s or 1.2 GB/s depending on its turn).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tarfile
from pathlib import Path

from benchmarks._kit import Context, benchmark

GIB = 1 << 30
MIB = 1 << 20
_DATA: dict[str, Path] = {}


def _data(ctx: Context) -> Path:
    """The shared data set (see the module rules), built on first use."""
    if "base" in _DATA:
        return _DATA["base"]
    base = Path(os.environ.get("PRUN_BENCH_FUSEFS_DATA") or ctx.tmp.parent / "fusefs-data")
    if (base / "t5k.tar").exists():
        _DATA["base"] = base
        return base
    lower = base / "lower"
    lower.mkdir(parents=True, exist_ok=True)
    for name, size in (("big", GIB), ("f100m", 100 * MIB)):
        with open("/dev/urandom", "rb") as src, open(lower / name, "wb") as dst:
            left = size
            while left:
                left -= dst.write(src.read(min(left, 8 * MIB)))
    ctx.run(["cp", "-a", "/usr/share", str(lower / "tree")])
    _tarball(base / "t5k.tar")
    ctx.run(["chown", "-R", f"{ctx.user}:{ctx.user}", str(base)] if ctx.user else ["true"])
    os.chmod(base, 0o755)
    _DATA["base"] = base
    return base


def _tarball(path: Path) -> None:
    """5,000 entries: 250 directories of 19 files (1-8 KiB), as root."""
    blob = os.urandom(8192)
    with tarfile.open(path, "w") as tf:
        for d in range(250):
            info = tarfile.TarInfo(f"d{d:03}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
            for f in range(19):
                size = 1024 * (1 + (d + f) % 8)
                info = tarfile.TarInfo(f"d{d:03}/f{f:02}")
                info.size, info.mode = size, 0o644
                tf.addfile(info, _Reader(blob[:size]))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out


def _tools(ctx: Context) -> dict[str, str | None]:
    """tool -> mount program (None: the host directory)."""
    tools: dict[str, str | None] = {
        "prun": str(ctx.venv / "bin/prun-overlayfs") if ctx.venv else
        shutil.which("prun-overlayfs") or "prun-overlayfs"}
    if ctx.have("fuse-overlayfs"):
        tools["fuse-overlayfs"] = shutil.which("fuse-overlayfs")
    tools["host"] = None
    return tools


def _drop_caches(ctx: Context) -> None:
    if os.getuid() == 0:
        subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=True)
    else:
        ctx.warnings.add("not root: 'cold' runs did not drop the page cache")


def _run(ctx: Context, program: str | None, body: str, *, write: bool = False,
         cold: bool = False, settle_mib: int = 0) -> dict[str, float]:
    """Run ``body`` (bash) with $M the union (or host dir); return its values.

    ``body`` reports with ``t NAME CMD...`` (seconds CMD took), ``v NAME
    VALUE`` (a number as is) and ``rss`` (the FUSE server's resident MiB).
    """
    data = _data(ctx)
    run = ctx.tmp / f"run-{os.urandom(4).hex()}"
    if program is None:
        target = f"{run}/host" if write else f"{data}/lower"
        mount = f"mkdir -p {run}/host; cp {data}/lower/f100m {run}/host/" if write else ""
    else:
        target = f"{run}/m"
        mount = (f"mkdir -p {run}/m {run}/u {run}/w\n"
                 f"{shlex.quote(program)} -o lowerdir={data}/lower,upperdir={run}/u,"
                 f"workdir={run}/w {run}/m\n"
                 f"trap 'umount {run}/m' EXIT")
    settle = "sync" if write else ""
    if settle_mib:
        settle = (f"dd if=/dev/zero of={run}/settle bs=1M count={settle_mib} 2>/dev/null; "
                  f"rm {run}/settle; sync")
    script = f"""
        set -euo pipefail
        export M={target} D={data}
        t() {{ local name=$1; shift; local s=$(date +%s%N); "$@" >/dev/null
               echo "T $name $(( $(date +%s%N) - s ))"; }}
        v() {{ echo "V $1 $2"; }}
        rss() {{ local pid; pid=$(pgrep -n -u "$(id -u)" -f -- "-o lowerdir=$D/lower.* $M\\$")
                 echo "V rss $(awk '/VmRSS/ {{print $2 / 1024}}' /proc/$pid/status)"; }}
        {mount}
        {settle}
        {body}
    """
    ctx.chown(ctx.tmp)
    if cold:
        _drop_caches(ctx)
    try:
        res = ctx.run(ctx.as_user(["unshare", "--map-root-user", "--mount", "--propagation",
                                   "private", "bash", "-c", script]), text=True, check=False)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    if res.returncode:
        raise RuntimeError(f"{program or 'host'}: exit {res.returncode}: {res.stderr[-800:]}")
    out: dict[str, float] = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["T"]:
            out[parts[1]] = int(parts[2]) / 1e9
        elif parts[:1] == ["V"]:
            out[parts[1]] = float(parts[2])
    return out


def _each(ctx: Context, fn) -> dict[str, float]:
    result = {}
    for tool, program in _tools(ctx).items():
        try:
            result[tool] = fn(tool, program)
        except RuntimeError as exc:
            if tool == "prun":
                raise
            ctx.warnings.add(f"{tool} failed: {exc}")
    return result


@benchmark("fusefs.read-cold", unit="MiB/s", higher_is_better=True, repeat=3,
           setup=_data)
def read_cold(ctx: Context) -> dict[str, float]:
    """sequential read of a 1 GiB lower file, page cache dropped, fresh mount"""
    return _each(ctx, lambda tool, p: 1024 / _run(
        ctx, p, "t read dd if=$M/big of=/dev/null bs=1M", cold=True)["read"])


@benchmark("fusefs.read-warm", unit="MiB/s", higher_is_better=True, repeat=3, setup=_data)
def read_warm(ctx: Context) -> dict[str, float]:
    """sequential read of a 1 GiB lower file in the page cache (third read on the mount)"""
    # The host's file has been read many times before, so its pages sit on
    # the active LRU list; a mount's second read of a page still pays for
    # promoting it there (per 4 KiB page: FUSE gets no large folios), which
    # fusefs.read-reread shows. Two untimed reads make the comparison even.
    return _each(ctx, lambda tool, p: 1024 / _run(
        ctx, p, "cat $M/big >/dev/null; cat $M/big >/dev/null; "
                "t read dd if=$M/big of=/dev/null bs=1M")["read"])


@benchmark("fusefs.read-reread", unit="MiB/s", higher_is_better=True, repeat=3,
           setup=_data)
def read_reread(ctx: Context) -> dict[str, float]:
    """sequential read of a 1 GiB lower file, second read on the same mount"""
    return _each(ctx, lambda tool, p: 1024 / _run(
        ctx, p, "cat $M/big >/dev/null; t read dd if=$M/big of=/dev/null bs=1M")["read"])


@benchmark("fusefs.read-random-4k", unit="IOPS", higher_is_better=True, repeat=3,
           setup=_data)
def read_random(ctx: Context) -> dict[str, float]:
    """fio randread 4 KiB, psync, 5 s over the 1 GiB lower file (fresh mount)"""
    body = ("v iops $(fio --name=r --filename=$M/big --readonly --rw=randread --bs=4k "
            "--ioengine=psync --runtime=5 --time_based --output-format=terse "
            "--terse-version=3 | cut -d';' -f8)")
    return _each(ctx, lambda tool, p: _run(ctx, p, body)["iops"])


@benchmark("fusefs.write-1g", unit="MiB/s", higher_is_better=True, repeat=3, setup=_data)
def write_1g(ctx: Context) -> dict[str, float]:
    """sequential write of 1 GiB (dd bs=1M) into the upper layer"""
    return _each(ctx, lambda tool, p: 1024 / _run(
        ctx, p, "t write dd if=/dev/zero of=$M/out bs=1M count=1024", write=True,
        settle_mib=2048)["write"])


@benchmark("fusefs.copyup-append", unit="ms", higher_is_better=False, repeat=3, setup=_data)
def copyup_append(ctx: Context) -> dict[str, float]:
    """append 1 byte to a 100 MiB lower file (copy-up), fresh mount"""
    return _each(ctx, lambda tool, p: 1000 * _run(
        ctx, p, "t append sh -c 'printf x >> $M/f100m'", write=True)["append"])


@benchmark("fusefs.create-10k", unit="files/s", higher_is_better=True, repeat=3, setup=_data)
def create_10k(ctx: Context) -> dict[str, float]:
    """create 10,000 small files (bash: echo > file) in a new directory"""
    body = ("mkdir $M/c; t create bash -c 'for i in $(seq 10000); do echo x > $M/c/$i; done'")
    return _each(ctx, lambda tool, p: 10000 / _run(ctx, p, body, write=True)["create"])


@benchmark("fusefs.find-cold", unit="s", higher_is_better=False, repeat=3, setup=_data)
def find_cold(ctx: Context) -> dict[str, float]:
    """find -ls over the ~50k-entry tree, page cache dropped, fresh mount"""
    return _each(ctx, lambda tool, p: _run(ctx, p, "t find find $M/tree -ls",
                                           cold=True)["find"])


@benchmark("fusefs.find-warm", unit="s", higher_is_better=False, repeat=3, setup=_data)
def find_warm(ctx: Context) -> dict[str, float]:
    """find -ls over the ~50k-entry tree, second run on the same mount"""
    return _each(ctx, lambda tool, p: _run(
        ctx, p, "find $M/tree -ls >/dev/null; t find find $M/tree -ls")["find"])


@benchmark("fusefs.tar-x", unit="entries/s", higher_is_better=True, repeat=3, setup=_data)
def tar_x(ctx: Context) -> dict[str, float]:
    """tar x of a 5,000-entry tarball into the upper layer"""
    body = "mkdir $M/x; t tar tar -C $M/x -xf $D/t5k.tar"
    return _each(ctx, lambda tool, p: 5000 / _run(ctx, p, body, write=True)["tar"])


@benchmark("fusefs.rss-after-find", unit="MiB", higher_is_better=False, repeat=2,
           setup=_data)
def rss_after_find(ctx: Context) -> dict[str, float]:
    """resident memory of the FUSE server after find -ls over the 50k tree"""
    tools = {k: v for k, v in _tools(ctx).items() if v is not None}
    result = {}
    for tool, program in tools.items():
        try:
            result[tool] = _run(ctx, program, "find $M/tree -ls >/dev/null; rss")["rss"]
        except (RuntimeError, KeyError) as exc:
            if tool == "prun":
                raise
            ctx.warnings.add(f"{tool} failed: {exc}")
    return result

