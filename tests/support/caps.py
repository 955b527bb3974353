"""Capability probes for tests: skip with a reason, or fail under CI.

``require(ok, why)`` is the only way a test skips for a missing host
capability; with PRUN_TESTS_MUST_WORK=1 the conftest hook turns the skip
into a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require(ok: bool, why: str) -> None:
    if not ok:
        pytest.skip(why)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (scripts/install as root installs it)")
    return path


def require_non_root() -> None:
    require(os.getuid() != 0, "must run as the unprivileged test user (scripts/test does that)")


def require_device(path: str) -> None:
    require(os.access(path, os.R_OK | os.W_OK),
            f"{path} is not read-writable by this user (scripts/test makes it 0666 as root)")
