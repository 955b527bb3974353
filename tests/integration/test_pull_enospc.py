"""A layer that does not fit stops the pull with ENOSPC and the store stays
usable (root phase: a small tmpfs in a private mount namespace, prun run as
the test user inside it)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.support.caps import require
from tests.support.images import TarBuilder, write_image

pytestmark = [pytest.mark.integration, pytest.mark.asroot]

USER = os.environ.get("PRUN_TEST_USER", "prun-test")


def test_full_disk_fails_cleanly_and_keeps_the_store(plain_registry, stock_images, tmp_path):
    require(os.getuid() == 0, "mounts a tmpfs: needs root (scripts/test's root phase)")
    big = TarBuilder().file("big", hashlib.shake_256(b"x").digest(6 << 20)).build()
    plain_registry.push(write_image(tmp_path / "big", [big]), "toobig")
    # Under /var/tmp: root's pytest dirs are 0700, the test user must reach it.
    mnt = tempfile.mkdtemp(prefix="prun-enospc-", dir="/var/tmp")
    os.chmod(mnt, 0o755)
    try:
        _check(plain_registry.host, mnt, stock_images)
    finally:
        shutil.rmtree(mnt)


def _check(host: str, mnt: str, stock_images) -> None:
    prun = os.path.join(os.path.dirname(sys.executable), "prun")
    script = f"""
set -e
mount -t tmpfs -o size=5m,mode=0777 none {mnt}
as_user() {{ runuser -u {USER} -- env -i PATH=/usr/bin:/bin HOME=/tmp PRUN_ROOT={mnt}/store \
    PRUN_RUNROOT={mnt}/run {prun} "$@"; }}
as_user pull -q --tls-verify=false {host}/busybox
set +e
as_user pull -q --tls-verify=false {host}/toobig
echo "rc=$?"
set -e
as_user images -q --no-trunc
ls -A {mnt}/store/tmp
"""
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "rc=125" in lines
    assert "no space left in the store" in result.stderr
    assert "Traceback" not in result.stderr
    # Still there and usable: the image pulled before; nothing half-written.
    assert lines[-1] == stock_images["busybox"].id.split(":")[1]
