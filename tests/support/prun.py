"""Run the installed ``prun`` command in tests (as the current user)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def prun_argv() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "prun")
    if os.path.exists(beside):
        return [beside]
    found = shutil.which("prun")
    if found:
        return [found]
    return [sys.executable, "-c", "from rootless.cli import main; main()"]


def prun(*args: str, input: bytes | None = None, timeout: float = 120,
         env: dict | None = None) -> subprocess.CompletedProcess:
    """``prun ARGS``; stdout/stderr as text (bytes when ``input`` is bytes)."""
    return subprocess.run([*prun_argv(), *args], capture_output=True, timeout=timeout,
                          input=input, text=input is None,
                          env={**os.environ, **(env or {})})


def popen(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*prun_argv(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
