"""Helpers for the `prun run` integration tests: run prun, build rootfs trees."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.caps import require, require_device, require_non_root, require_tool


def require_run_host() -> None:
    require_non_root()
    require_tool("newuidmap")
    require_device("/dev/fuse")
    require(os.path.exists("/proc/self/ns/user"), "the kernel has no user namespaces")


def prun(*args: str, input: str | None = None, env: dict | None = None, timeout: int = 60,
         cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["prun", *args], capture_output=True, text=True, input=input,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})
