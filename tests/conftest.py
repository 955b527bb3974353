"""Test-wide rules.

- Under ``PRUN_TESTS_MUST_WORK=1`` (set by scripts/test under CI) every skip
  is turned into a failure: a green CI run means each feature really ran.
  Skip only through ``tests.support.caps.require`` with the reason.
- Every test gets its own store and runtime dir (PRUN_ROOT/PRUN_RUNROOT under
  its tmp_path), so tests, worktrees and the user's real store never meet.
"""

from __future__ import annotations

import os

import pytest

# Registry fixtures (plain/TLS/token docker-registry on loopback, stock images).
pytest_plugins = ["tests.support.registry"]

MUST_WORK = os.environ.get("PRUN_TESTS_MUST_WORK") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if MUST_WORK and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under PRUN_TESTS_MUST_WORK=1: {reason}"


@pytest.fixture(autouse=True)
def private_store(tmp_path, monkeypatch):
    root = tmp_path / "store"
    run = tmp_path / "run"
    monkeypatch.setenv("PRUN_ROOT", str(root))
    monkeypatch.setenv("PRUN_RUNROOT", str(run))
    return root
