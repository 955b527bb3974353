"""A cached ``debootstrap --variant=minbase bookworm`` rootfs, as a tarball.

The rootfs is built once per user and machine and kept under
``/var/tmp/prun-image-cache-<uid>/`` (override: PRUN_IMAGE_CACHE), so test
runs and benchmarks reuse it. The tarball records the owners debootstrap
created (root, shadow's group 42, utmp, ...) by number.

How it is built:
- as root: ``debootstrap`` directly;
- as an unprivileged user: inside ``unshare --map-root-user --map-auto
  --mount`` (the user's /etc/subuid range gives dpkg the uids it chowns to;
  ``container=lxc`` makes debootstrap bind /dev nodes instead of mknod-ing
  them), and the tarball is written from inside the same mapping so it
  records in-namespace ids.
The mirror is the one apt uses (/etc/apt/sources.list*), which is reachable
here; without it, the build fails with debootstrap's own message. A lock
file serialises concurrent builders; the result appears by rename.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
VERSION = "1"  # bump to rebuild caches when the recipe changes


def cache_dir() -> Path:
    path = Path(os.environ.get("PRUN_IMAGE_CACHE") or f"/var/tmp/prun-image-cache-{os.getuid()}")
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    return path


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt is configured with (deb822 or one-line format)."""
    files = sorted(sources.glob("sources.list.d/*.sources")) + [sources / "sources.list"]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if m.group(1).rstrip("/").endswith("/debian"):
                return m.group(1).rstrip("/")
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", text, re.M):
            return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def rootfs_tar(cache: Path | None = None) -> Path:
    """The cached rootfs tarball, built on first use (about 30 s)."""
    cache = cache or cache_dir()
    out = cache / f"{SUITE}-minbase-v{VERSION}.tar"
    if out.exists():
        return out
    with open(cache / f"{SUITE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            _build(cache, out)
    return out


def _in_mapping(argv: list[str]) -> list[str]:
    if os.getuid() == 0:
        return argv
    return ["unshare", "--map-root-user", "--map-auto", "--mount", "--fork", *argv]


def _build(cache: Path, out: Path) -> None:
    target = cache / f"{SUITE}-rootfs.tmp"
    if target.exists():
        subprocess.run(_in_mapping(["rm", "-rf", str(target)]), check=True)
    env = {**os.environ, "container": "lxc",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    log = cache / f"{SUITE}-debootstrap.log"
    with open(log, "w") as logf:
        res = subprocess.run(
            _in_mapping(["debootstrap", "--variant=minbase", SUITE, str(target), apt_mirror()]),
            env=env, stdout=logf, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise RuntimeError(f"debootstrap failed (exit {res.returncode}); see {log}")
    tmp = out.with_suffix(".tar.tmp")
    # Package caches and apt lists are not part of an image (docker's debian
    # images drop them too); /dev holds debootstrap's bind-mount stubs.
    script = (
        f"rm -rf {target}/var/cache/apt/archives/*.deb {target}/var/lib/apt/lists/* "
        f"{target}/dev/* && tar --numeric-owner --sort=name "
        f"--mtime=@1700000000 -C {target} -cf {tmp} . && rm -rf {target}")
    subprocess.run(_in_mapping(["sh", "-ec", script]), check=True)
    tmp.rename(out)
    os.chmod(out, 0o644)

