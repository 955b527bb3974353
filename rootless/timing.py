"""Start-time breakdown marks: ``PRUN_TIMING_T0=<time.monotonic_ns()>``.

Rules: when the variable is set (by scripts/benchmarks' run.breakdown), each
process of a run writes ``prun: timing: <stage> <ms since T0>`` to stderr at
the end of a stage; CLOCK_MONOTONIC is shared by all processes. Unset, a
mark costs one dict lookup. Imported by the helper: os and time only.
"""

from __future__ import annotations

import os
import time

_T0 = int(os.environ.get("PRUN_TIMING_T0", "0"))


def mark(stage: str) -> None:
    if _T0:
        ms = (time.monotonic_ns() - _T0) / 1e6
        os.write(2, f"prun: timing: {stage} {ms:.1f}\n".encode())
