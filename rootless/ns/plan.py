"""Mount planning: container spec → the ordered list of mount operations (pure).

Rules:
- Every operation is a tuple of plain data (it crosses the socket to the
  helper): ``(kind, *args)``, paths inside the container absolute. The
  executor is rootless.ns.apply; it resolves each target inside the rootfs
  without leaving it.
- Order matters and is fixed here: /proc, /dev (tmpfs, device binds,
  symlinks, pts, shm, mqueue), /sys, the generated /etc files, the init
  binary, the user's volumes and tmpfs (parents before children, so
  ``-v a:/x -v b:/x/y`` works), then masks and read-only paths (last, so no
  later mount lands on top of a mask), then the read-only root.
- Defaults are podman's: masked and read-only /proc and /sys paths, /dev
  devices, /dev/shm 64m, --read-only-tmpfs on /tmp, /var/tmp, /run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8

MASKED = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
          "/sys/fs/selinux", "/sys/dev/block")
READONLY = ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
            "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"),
             ("pts/ptmx", "/dev/ptmx"), ("/proc/kcore", "/dev/core"))
INIT_PATH = "/run/prun-init"


@dataclass(frozen=True, repr=False)
class Volume:
    source: str          # host path (resolved) for binds; size/mode options for tmpfs
    target: str
    kind: str = "bind"   # bind | tmpfs
    readonly: bool = False
    options: str = ""    # tmpfs data (size=, mode=)
    flags: int = 0       # extra MS_* flags (tmpfs: nosuid,nodev,noexec)
    origin: str = ""     # the flag as the user wrote it, for error messages


@dataclass(frozen=True, repr=False)
class MountInputs:
    volumes: list[Volume] = field(default_factory=list)
    etc_files: dict[str, str] = field(default_factory=dict)   # /etc/hosts -> host file
    read_only: bool = False
    read_only_tmpfs: bool = True
    network: str = "none"
    tty_gid: int | None = 5           # gid= for devpts, None when 5 is not mapped
    masked: tuple[str, ...] = MASKED
    readonly_paths: tuple[str, ...] = READONLY
    init_binary: str | None = None    # host path of catatonit for --init
    workdir: str = "/"


def _norm(path: str) -> str:
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
            continue
        parts.append(p)
    return "/" + "/".join(parts)


def plan_mounts(m: MountInputs) -> list[tuple]:
    nse = MS_NOSUID | MS_NODEV | MS_NOEXEC
    ops: list[tuple] = [("mount", "proc", "/proc", "proc", nse, None)]
    ops.append(("mount", "tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=755,size=65536k"))
    ops += [("dev", name) for name in DEVICES]
    ops += [("symlink", target, link) for target, link in DEV_LINKS]
    pts = "newinstance,ptmxmode=0666,mode=0620" + (f",gid={m.tty_gid}" if m.tty_gid is not None
                                                   else "")
    ops.append(("mount", "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, pts))
    ops.append(("mount", "shm", "/dev/shm", "tmpfs", nse, "mode=1777,size=65536k"))
    ops.append(("mount", "mqueue", "/dev/mqueue", "mqueue", nse, None))
    ops.append(("sys", m.network != "host"))
    if m.read_only and m.read_only_tmpfs:
        for path in ("/tmp", "/var/tmp", "/run"):
            ops.append(("mount", "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
                        "mode=1777" if path != "/run" else "mode=755"))
    for target, source in sorted(m.etc_files.items()):
        ops.append(("bind", source, target, False, False, True))
    if m.init_binary:
        ops.append(("bind", m.init_binary, INIT_PATH, False, True, True))
    for v in sorted(m.volumes, key=lambda v: _norm(v.target).count("/")):
        target = _norm(v.target)
        if v.kind == "tmpfs":
            ops.append(("mount", "tmpfs", target, "tmpfs", v.flags, v.options or None))
        else:
            ops.append(("bind", v.source, target, True, v.readonly, None))
    if m.workdir != "/":
        ops.append(("mkdir", _norm(m.workdir)))
    ops += [("mask", p) for p in m.masked]
    ops += [("ro", p) for p in m.readonly_paths]
    if m.read_only:
        ops.append(("rootfs_ro",))
    return ops
