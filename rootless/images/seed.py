"""The image a new store starts with: ``localhost/busybox:latest``.

Machines without a route to a registry (CI runners, air-gapped labs) must
still run the README's first command, so ``prun system init`` (called by
``scripts/install``) seeds one image made from the host's static busybox.

Rules:
- The layer is built from Debian's busybox-static (``/bin/busybox``): the
  binary, one symlink per applet (``busybox --list-full``), ``/etc/passwd``
  and ``/etc/group`` with root and nobody, ``/tmp`` 1777. A dynamically
  linked busybox is refused: it would not run without the host's libc.
- The tar is reproducible (fixed mtime, sorted entries, owner root), so
  every store gets the same layer; seeding is a no-op while the tag exists,
  which makes ``init`` idempotent.
- It enters the store through the ordinary ``prun import`` path
  (``archive.import_rootfs``); ``run`` has no special case for it.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import tarfile
from pathlib import Path

from rootless.errors import HostSetupError
from rootless.images.store import Store

DEFAULT_IMAGE = "localhost/busybox:latest"
BUSYBOX = Path("/bin/busybox")
EPOCH = 1700000000

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
# directory -> mode
DIRS = {"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
        "etc": 0o755, "root": 0o700, "tmp": 0o1777, "home": 0o755, "proc": 0o555,
        "sys": 0o555, "dev": 0o755, "run": 0o755, "var": 0o755}
PT_INTERP = 3
ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_BUSYBOX_HINT = "install Debian's busybox-static: sudo apt-get install busybox-static"


def is_static_elf(data: bytes) -> bool:
    """True for a 64-bit little-endian ELF without a program interpreter."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != PT_INTERP
               for i in range(phnum))


def _read_busybox(busybox: Path) -> bytes:
    try:
        data = busybox.read_bytes()
    except OSError as exc:
        raise HostSetupError(f"seed {DEFAULT_IMAGE} from {busybox}: {exc.strerror}",
                             hint=NO_BUSYBOX_HINT) from exc
    if not is_static_elf(data):
        raise HostSetupError(f"seed {DEFAULT_IMAGE} from {busybox}: not a static binary",
                             hint=NO_BUSYBOX_HINT)
    return data


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True,
                         text=True)
    return sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, linkname
    info.mtime, info.uname, info.gname = EPOCH, "root", "root"
    return info


def busybox_layer(busybox: Path = BUSYBOX) -> bytes:
    """The seed image's one layer, as an uncompressed tar."""
    binary = _read_busybox(busybox)
    files = {"bin/busybox": (binary, 0o755), "etc/passwd": (PASSWD.encode(), 0o644),
             "etc/group": (GROUP.encode(), 0o644)}
    links = {applet: "/bin/busybox" for applet in _applets(busybox)
             if applet != "bin/busybox" and applet not in files}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in sorted(DIRS.items()):
            tar.addfile(_info(name, tarfile.DIRTYPE, mode))
        for name, (data, mode) in sorted(files.items()):
            tar.addfile(_info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
        for name, target in sorted(links.items()):
            tar.addfile(_info(name, tarfile.SYMTYPE, 0o777, linkname=target))
    return buf.getvalue()


def seed(store: Store, busybox: Path = BUSYBOX) -> tuple[str, bool]:
    """Make sure ``localhost/busybox:latest`` exists: (image ID, created now)."""
    from rootless.images import archive

    found = store.lookup(DEFAULT_IMAGE, search=[])
    if found:
        return found[0], False
    layer = busybox_layer(busybox)
    # lookup() opened the store, which creates its tmp dir.
    tmp = store.tmp / f"seed-{os.getpid()}.tar"
    try:
        tmp.write_bytes(layer)
        changes = {"Cmd": ["sh"], "Env": [ENV_PATH]}
        return archive.import_rootfs(tmp, DEFAULT_IMAGE, store, changes=changes,
                                     message="seeded by prun system init"), True
    finally:
        tmp.unlink(missing_ok=True)
