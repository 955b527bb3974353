"""Start-up cost of the prun command itself (before any container work)."""

from __future__ import annotations

import re

from benchmarks._kit import Context, benchmark


def _import_total_us(ctx: Context, module: str) -> float:
    out = ctx.run(ctx.as_user([str(ctx.venv / "bin/python") if ctx.venv else "python3",
                               "-X", "importtime", "-c", f"import {module}"]), text=True)
    # importtime lines: "import time: self [us] | cumulative | imported package";
    # the module's own line carries the cumulative time of everything it
    # pulled in (interpreter start-up and site are not counted).
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S+)$", line)
        if m and m.group(2) == module:
            return int(m.group(1))
    raise RuntimeError(f"no importtime line for {module}")


@benchmark("startup.import-cli", unit="ms", higher_is_better=False, repeat=7)
def import_cli(ctx: Context) -> dict[str, float]:
    """python -X importtime: cumulative import time of rootless.cli (must stay < 60 ms)"""
    return {"prun": _import_total_us(ctx, "rootless.cli") / 1000}


@benchmark("startup.version", unit="ms", higher_is_better=False, repeat=10)
def version(ctx: Context) -> dict[str, float]:
    """wall time of `prun --version` (interpreter + CLI import) vs `podman --version`"""
    result = {"prun": ctx.time(ctx.as_user(["prun", "--version"])) * 1000}
    if ctx.have("podman"):
        result["podman"] = ctx.time(ctx.as_user(["podman", "--version"])) * 1000
    return result
