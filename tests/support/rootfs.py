"""Build a small busybox root filesystem from Debian's busybox-static.

Used by image builders and by tests that need a real rootfs. Ownership is not
applied on disk (tests run unprivileged); ``OWNERS`` lists the owners image
builders put into tar headers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = "/bin/busybox"

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app user:/home/app:/bin/sh
postgres:x:70:70:postgres:/var/lib/postgres:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """root:x:0:
daemon:x:1:
wheel:x:10:app
app:x:1000:
postgres:x:70:
nogroup:x:65534:
"""

# path in the rootfs -> (uid, gid, mode) that image builders record.
OWNERS = {
    "home/app": (1000, 1000, 0o755),
    "home/app/notes.txt": (1000, 1000, 0o644),
    "var/lib/postgres": (70, 70, 0o700),
    "var/lib/postgres/data.txt": (70, 70, 0o600),
    "srv/nobody.txt": (65534, 65534, 0o644),
    "bin/suid-marker": (0, 0, 0o4755),
    "tmp": (0, 0, 0o1777),
}


def applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def build_busybox_rootfs(dest: Path) -> Path:
    """Create a busybox rootfs in ``dest`` (which must not exist yet)."""
    dest.mkdir(parents=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "home/app",
              "var/lib/postgres", "srv", "proc", "sys", "dev", "run"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    for applet in applets():
        link = dest / applet
        if applet == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(dest / "bin/busybox", link.parent)
        link.symlink_to(target)
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    (dest / "etc/hostname").write_text("busybox\n")
    (dest / "home/app/notes.txt").write_text("app's notes\n")
    (dest / "var/lib/postgres/data.txt").write_text("secret\n")
    (dest / "srv/nobody.txt").write_text("nobody's file\n")
    (dest / "bin/suid-marker").write_text("#!/bin/sh\nid\n")
    (dest / "bin/suid-marker").chmod(0o755)
    # A hard link and a symlink the layer tests rely on.
    os.link(dest / "home/app/notes.txt", dest / "srv/notes-link.txt")
    (dest / "srv/latest").symlink_to("/home/app/notes.txt")
    (dest / "tmp").chmod(0o1777)
    return dest
