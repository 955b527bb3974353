"""`prun system init` and `prun system reset` as the user runs them."""

from __future__ import annotations

import json
import subprocess

from tests.support import caps


def prun(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["prun", *args], capture_output=True, text=True, input=input,
                          timeout=120)


def test_init_seeds_busybox_once(private_store):
    caps.require_tool("busybox")
    first = prun("system", "init")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("localhost/busybox:latest seeded (")
    again = prun("system", "init")
    assert again.returncode == 0 and again.stdout.startswith("localhost/busybox:latest present (")
    listed = json.loads(prun("images", "--format", "json").stdout)
    assert [img["Names"] for img in listed] == [["localhost/busybox:latest"]]
