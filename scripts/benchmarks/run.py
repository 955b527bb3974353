"""scripts/bench's runner: import the benchmark modules, run, print the table."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pwd
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._kit import REGISTRY, Context, select, summarize  # noqa: E402


def load_all() -> None:
    for path in sorted(HERE.glob("*.py")):
        if not path.name.startswith("_") and path.stem != "run":
            importlib.import_module(f"benchmarks.{path.stem}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    ap.add_argument("--list", action="store_true", help="list benchmarks and exit")
    ap.add_argument("--repeat", type=int, help="repetitions (default: each benchmark's own)")
    ap.add_argument("--json", type=Path, help="also write the samples to this file")
    ap.add_argument("patterns", nargs="*", help="benchmark names or globs (e.g. fusefs.*)")
    args = ap.parse_args(argv)
    load_all()
    chosen = select(args.patterns)
    if args.list:
        for b in REGISTRY.values():
            print(f"{b.name:<32} {b.unit:<10} {b.doc}")
        return 0
    if not chosen:
        print(f"scripts/bench: no benchmark matches {' '.join(args.patterns)}", file=sys.stderr)
        return 2
    user = os.environ.get("PRUN_BENCH_USER") if os.getuid() == 0 else None
    uid = pwd.getpwnam(user).pw_uid if user else os.getuid()
    venv = Path(os.environ["PRUN_BENCH_VENV"]) if os.environ.get("PRUN_BENCH_VENV") else None
    src = Path(os.environ.get("PRUN_BENCH_SRC", HERE.parent.parent))
    base = Path(tempfile.mkdtemp(prefix="prun-bench-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    failed, results = 0, {}
    for bench in chosen:
        tmp = base / bench.name
        tmp.mkdir()
        ctx = Context(tmp=tmp, user=user, uid=uid, venv=venv, src=src)
        ctx.chown(tmp)
        samples: dict[str, list[float]] = {}
        try:
            ctx.state = bench.setup(ctx) if bench.setup else None
            for _ in range(args.repeat or bench.repeat):
                for tool, value in bench.fn(ctx).items():
                    samples.setdefault(tool, []).append(value)
        except Exception:
            failed += 1
            print(f"{bench.name}: FAILED", file=sys.stderr)
            traceback.print_exc()
        finally:
            if bench.teardown:
                bench.teardown(ctx)
        if samples:
            print("\n".join(summarize(bench, samples)), flush=True)
            results[bench.name] = {"unit": bench.unit, "samples": samples}
        for w in sorted(ctx.warnings):
            print(f"  note: {w}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
