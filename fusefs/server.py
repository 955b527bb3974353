"""serve(): mount a union and serve it in this process until it is unmounted.

The container runtime calls ``serve(spec, ready_fd)`` in a freshly forked,
single-threaded process inside the container's user+mount namespace, as
uid 0 there (mount(2) of fuse works directly in a user namespace since
Linux 4.18; elsewhere libfuse3 falls back to fusermount3). ``prun-overlayfs``
(fusefs.__main__) calls it too.

Rules:
- ``ready_fd`` gets exactly one message, then is closed: b"1" once the
  kernel answers requests on the mount, or one line b"E <message>\\n"
  (nothing is mounted then, and serve raises FuseMountError).
- The process umask is set to 0: the union core chooses on-disk modes.
- Kernel caching is on: entry/attr/negative-entry timeouts (``timeout``),
  every file's page cache and every directory listing kept across opens,
  symlink targets cached, 1 MiB writes (libfuse3's maximum). That is
  valid because the union
  changes only through the mount while it is served: nothing may write into
  the upper dir or the layers behind its back. ``fuse_options`` is the pure
  planner of libfuse's mount and low-level options.
- ``spec.threads`` threads serve requests. SIGTERM/SIGINT/SIGHUP (when
  serve runs in the main thread) unmount lazily and serve returns once the
  last open file is closed; SIGKILL leaves a dead mount (ENOTCONN) that a
  plain umount removes, and an upper dir without half copies.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rootless.errors import PrunError

# Nothing changes behind the kernel's back (see the rules), so, as in
# fuse-overlayfs, entries and attributes are cached for the mount's lifetime.
DEFAULT_TIMEOUT = 1_000_000.0
# Callbacks hold the GIL, so threads overlap only the C side (spliced read
# replies, blocking syscalls) and cost GIL hand-overs: measured here, find
# over 50k entries and tar x took 1.5-2x longer with two threads than with
# one. Sequential cold reads get their overlap from host read-ahead instead
# (fusefs.ops asks for it), so one thread serves.
DEFAULT_THREADS = 1


class FuseMountError(PrunError):
    """The union filesystem could not be mounted."""


@dataclass(frozen=True)
class MountSpec:
    """One union mount.

    ``lowerdirs`` are the read-only layers, TOP layer FIRST (overlayfs'
    lowerdir order; an image's layers reversed), at least one unless
    ``upperdir`` is given. ``upperdir`` receives every change; ``workdir``
    is scratch space for atomic copy-up and must be on the upper dir's
    filesystem (fusefs creates and empties ``workdir/prun-work``); both None
    make a read-only mount. ``mountpoint`` must exist.
    """

    lowerdirs: list[Path]            # top layer first
    upperdir: Path | None            # None: read-only mount
    workdir: Path | None             # same filesystem as upperdir
    mountpoint: Path
    squash_uid: int | None = None    # serve every file as owned by this uid
    squash_gid: int | None = None
    uid_mapping: list[tuple[int, int, int]] = field(default_factory=list)  # (stored, served,
    gid_mapping: list[tuple[int, int, int]] = field(default_factory=list)  # count): idmapping
    allow_other: bool | None = None  # None: when running as (namespace) root
    suid: bool | None = None         # None: when running as (namespace) root
    timeout: float = DEFAULT_TIMEOUT  # kernel entry/attr cache, seconds
    threads: int = DEFAULT_THREADS   # request-serving threads
    fsname: str = "prun-overlayfs"
    debug: bool = False
    extra: list[str] = field(default_factory=list)   # more libfuse -o options


def fuse_options(spec: MountSpec, euid: int) -> list[str]:
    """The libfuse -o options for ``spec`` (mount, library and kernel ones)."""
    root = euid == 0
    opts = [f"fsname={spec.fsname}", "subtype=prun-overlayfs", "default_permissions",
            "noatime"]
    if spec.allow_other if spec.allow_other is not None else root:
        opts.append("allow_other")
    if spec.suid if spec.suid is not None else root:
        opts.append("suid")
    if spec.upperdir is None:
        opts.append("ro")
    if spec.debug:
        opts.append("debug")
    return opts + list(spec.extra)


def serve(spec: MountSpec, ready_fd: int | None = None) -> None:
    """Mount ``spec`` and serve it until unmounted (see the module rules)."""
    from fusefs import ops
    from fusefs.fs import UnionFS
    from fusefs.idmapping import IdMapping

    reported = threading.Lock()

    def report(error: str | None) -> None:
        if ready_fd is None or not reported.acquire(blocking=False):
            return
        os.write(ready_fd, b"1" if error is None else f"E {error}\n".encode())
        os.close(ready_fd)

    where = str(spec.mountpoint)
    try:
        os.umask(0)
        fs = UnionFS([str(p) for p in spec.lowerdirs],
                     None if spec.upperdir is None else str(spec.upperdir),
                     None if spec.workdir is None else str(spec.workdir),
                     squash_uid=spec.squash_uid, squash_gid=spec.squash_gid,
                     uid_map=IdMapping(spec.uid_mapping) if spec.uid_mapping else None,
                     gid_map=IdMapping(spec.gid_mapping) if spec.gid_mapping else None)
        ops.serve(fs, where, fuse_options(spec, os.geteuid()), timeout=spec.timeout,
                  threads=spec.threads, ready=report)
    except OSError as exc:
        cause = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        report(f"mount {where}: {cause}")
        raise FuseMountError(f"mount {where}: {cause}") from exc
    except (ValueError, ops.MountFailed) as exc:
        report(f"mount {where}: {exc}")
        raise FuseMountError(f"mount {where}: {exc}",
                             hint=_hint(str(exc))) from exc


def _hint(cause: str) -> str | None:
    if "fusermount" in cause or "Operation not permitted" in cause:
        return ("mount from inside a user namespace where you are root (unshare -rm), "
                "or install fusermount3 (fuse3) and make /dev/fuse usable")
    return None
