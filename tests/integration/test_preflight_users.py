"""`prun info` as real unprivileged users on this host (run by scripts/test's
root phase: it needs runuser and a private mount namespace).

The broken-host cases are produced without touching the host for others: a
second user that has no subuid line, and a private mount namespace in which
/dev/fuse is a 0600 node, as it is on a host that did not set it up.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess

import pytest

from tests.support.caps import require

pytestmark = pytest.mark.asroot

USER = os.environ.get("PRUN_TEST_USER", "prun-test")
NOSUB = os.environ.get("PRUN_TEST_NOSUB_USER", "prun-nosub")
VENV = os.environ.get("PRUN_TEST_VENV", "")


def prun_info_as(user: str, *args: str, wrap: list[str] | None = None):
    require(os.getuid() == 0, "runs prun as other users: needs root (scripts/test's root phase)")
    require(bool(VENV), "PRUN_TEST_VENV is set by scripts/test")
    pw = pwd.getpwnam(user)
    env = ["env", "-i", f"HOME={pw.pw_dir}", f"USER={user}", f"PATH={VENV}/bin:/usr/bin:/bin",
           f"XDG_RUNTIME_DIR=/run/user/{pw.pw_uid}"]
    argv = [*(wrap or []), "runuser", "-u", user, "--", *env, "prun", "info", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_test_user_host_is_ready_with_full_subid_ranges():
    out = prun_info_as(USER, "--format", "json")
    assert out.returncode == 0, out.stderr
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["/dev/fuse"]["status"] == "ok"
    assert checks["/etc/subuid range"]["status"] == "ok"
    assert checks["/etc/subuid range"]["detail"].startswith("65536 ids (")
    assert checks["user namespaces"]["status"] == "ok"
    assert checks["slirp4netns"]["status"] == "ok"


def test_user_without_subuid_line_gets_the_usermod_fix():
    out = prun_info_as(NOSUB)
    assert out.returncode == 0, out.stderr  # degraded, still able to run containers
    lines = out.stdout.splitlines()
    sub = next(i for i, line in enumerate(lines) if line.startswith("/etc/subuid range"))
    assert "degraded" in lines[sub] and f"no subuid range for {NOSUB}" in lines[sub]
    assert lines[sub + 1].strip() == f"fix: sudo usermod --add-subuids 100000-165535 {NOSUB}"


def test_dev_fuse_0600_is_reported_missing_with_chmod_fix(tmp_path):
    node = tmp_path / "fuse0600"
    os.mknod(node, 0o600 | 0o020000, os.makedev(10, 229))
    os.chmod(node, 0o600)
    # Bind the 0600 node over /dev/fuse in a private mount namespace only.
    wrap = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            f'mount --bind "{node}" /dev/fuse && exec "$@"', "sh"]
    out = prun_info_as(USER, wrap=wrap)
    assert out.returncode == 1
    line = next(x for x in out.stdout.splitlines() if x.startswith("/dev/fuse"))
    assert "MISSING" in line and "Permission denied" in line
    assert "fix: sudo chmod 0666 /dev/fuse" in out.stdout
    assert "not ready" in out.stderr
