"""The README's quick start, run the way a newcomer runs it.

Root phase of scripts/test (it clones and switches users): the repository is
cloned into a temp dir, and the commands are taken from README.md's "Quick
start" section (not copied here), then run as the unprivileged test user with
a brand-new home, so nothing from earlier runs helps: scripts/install builds
the user's venv and seeds localhost/busybox, and `prun run busybox` must work
with no registry reachable. The user's PATH is what Debian's ~/.profile gives
after login once ~/.local/bin exists.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import http.client
from pathlib import Path

import pytest

from tests.support.caps import require

pytestmark = pytest.mark.asroot

USER = os.environ.get("PRUN_TEST_USER", "prun-test")
CHECKOUT = Path(os.environ.get("PRUN_TEST_CHECKOUT", Path(__file__).parents[2]))


def quick_start_commands(readme: Path) -> list[str]:
    """The command lines of the README's "Quick start" code blocks, in order."""
    text = readme.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line[4:].split("  #", 1)[0].strip() for line in section.splitlines()
            if line.startswith("    ") and line.strip()]


@pytest.fixture(scope="module")
def newcomer():
    require(os.getuid() == 0, "clones and switches users: needs root (scripts/test's root phase)")
    pw = pwd.getpwnam(USER)
    # Not under pytest's tmp dir: root's is 0700, and the user needs a home.
    base = Path(tempfile.mkdtemp(prefix="prun-newcomer-", dir="/var/tmp"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    clone = home / "prun"
    (home / ".local/bin").mkdir(parents=True)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home)], check=True)
    # The newcomer clones (the checkout copy is theirs; git refuses it to root).
    subprocess.run(["runuser", "-u", USER, "--", "env", f"HOME={home}", "git", "clone", "-q",
                    str(CHECKOUT), str(clone)],
                   check=True)
    env = {"HOME": str(home), "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8",
           "PATH": f"{home}/.local/bin:/usr/local/bin:/usr/bin:/bin",
           "XDG_RUNTIME_DIR": f"/run/user/{pw.pw_uid}"}

    def run(command: str, **kw) -> subprocess.CompletedProcess:
        argv = ["runuser", "-u", USER, "--", "env", "-i",
                *(f"{k}={v}" for k, v in env.items()), "bash", "-c", command]
        return subprocess.run(argv, cwd=clone, capture_output=True, text=True, **kw)

    yield clone, run
    run("prun system reset -f", timeout=120)
    shutil.rmtree(base)


def test_first_command_runs_a_container_offline(newcomer):
    clone, run = newcomer
    first = quick_start_commands(clone / "README.md")[0]
    assert first.startswith("scripts/install")
    out = run(first, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "hello from prun"


def test_detached_web_server_example_publishes_its_port(newcomer):
    clone, run = newcomer
    example = next(c for c in quick_start_commands(clone / "README.md") if " -d -p " in c)
    host_port = int(re.search(r"-p (\d+):", example).group(1))
    out = run(example, timeout=120)
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", host_port, timeout=2)
                conn.request("GET", "/etc/passwd")
                status = conn.getresponse().status
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert status == 200  # busybox httpd serving the container's /
    finally:
        run(f"prun rm -f {cid}", timeout=60)
