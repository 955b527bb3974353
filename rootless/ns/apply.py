"""Execute a mount plan inside the rootfs, then pivot_root into it.

Rules:
- Runs in the container's init (PID 1 of its PID namespace, in its own
  mount namespace copy, root of the user namespace), before exec.
- Every target is resolved by ``resolve`` inside the rootfs: symlinks in the
  image are followed as if the rootfs were /, so an image cannot redirect a
  mount onto a host path. Missing targets are created (dirs, or an empty
  file for a file bind).
- A bind made read-only is remounted with the flags the kernel locked on it
  (nosuid, nodev, noexec from the source mount) or the kernel refuses.
- /sys: a fresh sysfs when the container has its own network namespace,
  else (``--network host``) a read-only recursive bind of the host's.
- Errors raise OSError with the container path; the caller adds which flag
  asked for the mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from rootless.ns import sys as _sys

_MAX_LINKS = 40


def resolve(root: str, path: str) -> str:
    """``path`` (container view) as a host path under ``root``, symlinks
    resolved within ``root``; the last component need not exist."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        cur = os.path.join(root, *done, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, f"resolve {path}: too many symlinks")
            target = os.readlink(cur)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        done.append(part)
    return os.path.join(root, *done)


def _ensure(host: str, is_file: bool) -> None:
    if os.path.lexists(host):
        return
    os.makedirs(os.path.dirname(host), exist_ok=True)
    if is_file:
        os.close(os.open(host, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
    else:
        os.mkdir(host, 0o755)


def _locked_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return f & (_sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC | _sys.MS_RDONLY) | (
        f & (_sys.MS_NOATIME | _sys.MS_NODIRATIME | _sys.MS_RELATIME))


def remount_ro(host: str, sys=_sys) -> None:
    flags = _locked_flags(host) | sys.MS_RDONLY
    sys.mount(None, host, None, sys.MS_BIND | sys.MS_REMOUNT | flags, None)


def bind(source: str, host: str, recursive: bool, readonly: bool, is_file: bool | None,
         sys=_sys) -> None:
    if is_file is None:
        is_file = not os.path.isdir(source)
    _ensure(host, is_file)
    sys.mount(source, host, None, sys.MS_BIND | (sys.MS_REC if recursive else 0), None)
    if readonly:
        remount_ro(host, sys)


def apply_op(root: str, op: tuple, sys=_sys) -> None:
    kind = op[0]
    if kind == "mount":
        _, source, target, fstype, flags, data = op
        host = resolve(root, target)
        _ensure(host, False)
        sys.mount(source, host, fstype, flags, data)
    elif kind == "bind":
        _, source, target, recursive, readonly, is_file = op
        bind(source, resolve(root, target), recursive, readonly, is_file, sys)
    elif kind == "dev":
        bind(f"/dev/{op[1]}", os.path.join(root, "dev", op[1]), False, False, True, sys)
    elif kind == "symlink":
        os.symlink(op[1], resolve(root, op[2]))
    elif kind == "sys":
        host = resolve(root, "/sys")
        _ensure(host, False)
        nse = sys.MS_NOSUID | sys.MS_NODEV | sys.MS_NOEXEC
        if op[1]:
            # Not the owner of the network namespace (PermissionError): bind below.
            with contextlib.suppress(PermissionError):
                sys.mount("sysfs", host, "sysfs", nse | sys.MS_RDONLY, None)
                return
        sys.mount("/sys", host, None, sys.MS_BIND | sys.MS_REC, None)
        remount_ro(host, sys)
    elif kind == "mkdir":
        os.makedirs(resolve(root, op[1]), exist_ok=True)
    elif kind == "mask":
        host = resolve(root, op[1])
        if not os.path.lexists(host):
            return
        if os.path.isdir(host):
            sys.mount("tmpfs", host, "tmpfs", sys.MS_RDONLY, "size=0")
        else:
            sys.mount("/dev/null", host, None, sys.MS_BIND, None)
    elif kind == "ro":
        host = resolve(root, op[1])
        if not os.path.lexists(host):
            return
        sys.mount(host, host, None, sys.MS_BIND | sys.MS_REC, None)
        remount_ro(host, sys)
    elif kind == "rootfs_ro":
        remount_ro(root, sys)
    else:
        raise ValueError(f"unknown mount operation {kind}")


def pivot(root: str, sys=_sys) -> None:
    """Make ``root`` the new / and detach the old one (no chroot escape)."""
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root under the new one; detaching
    # it leaves nothing of the host reachable.
    sys.pivot_root(".", ".")
    sys.umount2(".", sys.MNT_DETACH)
    os.chdir("/")
