"""Host probes: what `prun run` needs, what is there, and the exact fix.

Rules:
- Probes read the host only through a ``Host`` (files, device opens, PATH
  lookups, commands, user identity), so tests inject a fake host and the real
  one is the default; nothing here changes the host.
- Each probe returns one ``Finding``: ``ok``, ``degraded`` (prun works with
  less: a warning) or ``missing`` (``prun run`` cannot work). ``required``
  findings that are missing make ``HostCaps.ready`` false.
- A fix names the command and whether it needs root (``sudo ...``).
- Probes try the real thing where it is cheap (open /dev/fuse, load libfuse,
  create a user namespace in a child), because sysctls alone lie (AppArmor,
  seccomp'd CI containers).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rootless.paths import data_dir, runtime_dir, usable_runtime_base

OK, DEGRADED, MISSING = "ok", "degraded", "missing"

CLONE_NEWUSER = 0x10000000
MIN_SUBIDS = 65536

# statfs f_type of filesystems that break rootless storage (xattrs, locking,
# id mapping): warn, do not refuse.
NETWORK_FS = {0x6969: "nfs", 0x0BD00BD0: "lustre", 0x47504653: "gpfs",
              0xFF534D42: "cifs", 0x65735546: "fuse"}


@dataclass(frozen=True)
class Finding:
    name: str
    status: str
    detail: str
    fix: str | None = None
    required: bool = True


@dataclass
class HostCaps:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not any(f.required and f.status == MISSING for f in self.findings)

    def get(self, name: str) -> Finding:
        return next(f for f in self.findings if f.name == name)

    def as_dict(self) -> dict:
        return {"ready": self.ready, "checks": [asdict(f) for f in self.findings]}


class Host:
    """The real host. Tests pass an object with the same methods."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = os.environ if env is None else env

    def uid(self) -> int:
        return os.getuid()

    def username(self) -> str:
        try:
            return pwd.getpwuid(self.uid()).pw_name
        except KeyError:
            return str(self.uid())

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.env.get("PATH", os.defpath) + ":/usr/sbin:/sbin")

    def stat(self, path: str) -> os.stat_result | None:
        try:
            return os.stat(path)
        except OSError:
            return None

    def has_file_caps(self, path: str) -> bool:
        try:
            return bool(os.getxattr(path, "security.capability"))
        except OSError:
            return False

    def open_rw(self, path: str) -> str | None:
        """None when ``path`` opens read-write, else the error text."""
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def load_library(self, name: str) -> str | None:
        """The library's file name when it loads, else None."""
        found = ctypes.util.find_library(name)
        if not found:
            return None
        try:
            ctypes.CDLL(found)
        except OSError:
            return None
        return found

    def run(self, argv: list[str]) -> tuple[int, str]:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, str(exc)
        return out.returncode, out.stdout + out.stderr

    def can_unshare_user(self) -> str | None:
        """None when a child can create a user namespace, else the error."""
        libc = ctypes.CDLL(None, use_errno=True)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            err = 0 if libc.unshare(CLONE_NEWUSER) == 0 else ctypes.get_errno()
            os.write(w, str(err).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            err = int(f.read() or "1")
        os.waitpid(pid, 0)
        return None if err == 0 else os.strerror(err)

    def fs_type(self, path: str) -> int | None:
        """statfs f_type of the nearest existing ancestor of ``path``."""
        p = Path(path)
        while not p.exists() and p != p.parent:
            p = p.parent
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is the first long
        if libc.statfs(str(p).encode(), buf) != 0:
            return None
        return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF

    def mount_options(self, path: str) -> set[str]:
        """Mount options of the mount holding ``path`` (from mountinfo)."""
        text = self.read("/proc/self/mountinfo") or ""
        p = Path(path)
        while not p.exists() and p != p.parent:
            p = p.parent
        target = str(p.resolve())
        best, opts = "", set()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) > 5:
                mnt = parts[4]
                inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, opts = mnt, set(parts[5].split(","))
        return opts


def probe(host: Host | None = None) -> HostCaps:
    host = host or Host()
    return HostCaps([check(host) for check in CHECKS])


def check_userns(host: Host) -> Finding:
    name = "user namespaces"
    if host.read("/proc/sys/kernel/unprivileged_userns_clone") == "0\n":
        return Finding(name, MISSING, "kernel.unprivileged_userns_clone is 0",
                       "sudo sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)")
    limit = (host.read("/proc/sys/user/max_user_namespaces") or "").strip()
    if limit == "0":
        return Finding(name, MISSING, "user.max_user_namespaces is 0",
                       "sudo sysctl -w user.max_user_namespaces=28633 (persist it in /etc/sysctl.d/)")
    if host.read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1\n":
        err = host.can_unshare_user()
        if err:
            return Finding(name, MISSING,
                           f"AppArmor restricts unprivileged user namespaces ({err})",
                           "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, "
                           "or an AppArmor profile for prun with 'userns,'")
    err = host.can_unshare_user()
    if err:
        return Finding(name, MISSING, f"unshare(CLONE_NEWUSER) failed: {err}",
                       "allow unprivileged user namespaces (a container runtime's seccomp "
                       "profile or a sysctl forbids them); needs root")
    return Finding(name, OK, f"allowed (max_user_namespaces={limit or '?'})")


def _subid_ranges(host: Host, path: str) -> list[tuple[int, int]]:
    user, uid = host.username(), str(host.uid())
    ranges = []
    for line in (host.read(path) or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, uid):
            try:
                ranges.append((int(parts[1]), int(parts[2])))
            except ValueError:
                continue
    if not ranges and host.which("getsubids"):
        # NSS-provided ranges (sssd, LDAP) are only visible through getsubids.
        rc, out = host.run(["getsubids", *(["-g"] if "gid" in path else []), user])
        if rc == 0:
            for line in out.splitlines():
                parts = line.split()
                if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
                    ranges.append((int(parts[2]), int(parts[3])))
    return ranges


def _check_subids(host: Host, kind: str) -> Finding:
    path, flag = (f"/etc/sub{kind}", f"--add-sub{kind}s")
    name = f"/etc/sub{kind} range"
    ranges = _subid_ranges(host, path)
    user = host.username()
    fix = f"sudo usermod {flag} 100000-165535 {user}"
    if not ranges:
        return Finding(name, DEGRADED,
                       f"no sub{kind} range for {user}: containers get a single {kind} "
                       "(images with several owners still work, setuid/setgid inside do not)",
                       fix, required=False)
    total = sum(count for _, count in ranges)
    detail = ", ".join(f"{start}-{start + count - 1}" for start, count in ranges)
    if total < MIN_SUBIDS:
        return Finding(name, DEGRADED, f"{total} ids ({detail}); {MIN_SUBIDS} recommended",
                       fix, required=False)
    return Finding(name, OK, f"{total} ids ({detail})", required=False)


def check_subuid(host: Host) -> Finding:
    return _check_subids(host, "uid")


def check_subgid(host: Host) -> Finding:
    return _check_subids(host, "gid")


def check_idmap_tools(host: Host) -> Finding:
    name = "newuidmap/newgidmap"
    problems = []
    for tool in ("newuidmap", "newgidmap"):
        path = host.which(tool)
        st = host.stat(path) if path else None
        if st is None:
            problems.append(f"{tool} not found")
        elif not (st.st_mode & stat.S_ISUID and st.st_uid == 0) and not host.has_file_caps(path):
            problems.append(f"{path} is neither setuid root nor has file capabilities")
    if problems:
        return Finding(name, DEGRADED, "; ".join(problems) + ": only a single-id mapping is possible",
                       "sudo apt-get install uidmap", required=False)
    return Finding(name, OK, "present, setuid root or with file capabilities", required=False)


def check_dev_fuse(host: Host) -> Finding:
    err = host.open_rw("/dev/fuse")
    if err:
        return Finding("/dev/fuse", MISSING, f"cannot open /dev/fuse read-write: {err}",
                       "sudo chmod 0666 /dev/fuse (distros ship it 0666; 'sudo modprobe fuse' "
                       "if it does not exist)")
    return Finding("/dev/fuse", OK, "read-writable")


def check_libfuse(host: Host) -> Finding:
    lib = host.load_library("fuse3")
    if not lib:
        return Finding("libfuse3", MISSING, "libfuse3.so.3 not found or not loadable",
                       "sudo apt-get install libfuse3-3")
    return Finding("libfuse3", OK, f"{lib} loads")


def check_slirp4netns(host: Host) -> Finding:
    path = host.which("slirp4netns")
    if not path:
        return Finding("slirp4netns", MISSING,
                       "not found: the default network mode needs it ('--network none' works without)",
                       "sudo apt-get install slirp4netns")
    rc, out = host.run([path, "--version"])
    version = out.splitlines()[0].removeprefix("slirp4netns version ").strip() if out else "?"
    _, help_text = host.run([path, "--help"])
    features = [f for f in ("--enable-sandbox", "--enable-seccomp", "--disable-host-loopback",
                            "--api-socket", "--exit-fd", "--ready-fd", "--netns-type")
                if f in help_text]
    return Finding("slirp4netns", OK, f"{version}; features: {' '.join(f[2:] for f in features)}")


def check_dev_net_tun(host: Host) -> Finding:
    err = host.open_rw("/dev/net/tun")
    if err:
        return Finding("/dev/net/tun", MISSING,
                       f"cannot open /dev/net/tun read-write: {err}; slirp4netns needs it",
                       "sudo chmod 0666 /dev/net/tun (distros ship it 0666; 'sudo modprobe tun' "
                       "if it does not exist)")
    return Finding("/dev/net/tun", OK, "read-writable")


def cgroup_layout(host: Host) -> tuple[str, str | None]:
    """('v2'|'hybrid'|'v1', the process's cgroup v2 path or None)."""
    mounts = host.read("/proc/self/mountinfo") or ""
    v2_at = {line.split()[4] for line in mounts.splitlines()
             if " - cgroup2 " in line}
    path = None
    for line in (host.read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            path = line[3:].strip()
    if "/sys/fs/cgroup" in v2_at:
        return "v2", path
    return ("hybrid" if v2_at else "v1"), path


def check_cgroups(host: Host) -> Finding:
    name = "cgroup v2 delegation"
    version, path = cgroup_layout(host)
    if version != "v2":
        return Finding(name, DEGRADED,
                       f"cgroups are {version}, not the unified v2 hierarchy: resource limits "
                       "(--memory, --cpus, --pids-limit) are refused, containers run without them",
                       "boot with systemd.unified_cgroup_hierarchy=1 (needs root), or run with "
                       "--cgroups=disabled", required=False)
    base = f"/sys/fs/cgroup{path or ''}"
    uid = host.uid()
    user_slice = f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service"
    where = user_slice if host.stat(user_slice) else base
    controllers = (host.read(f"{where}/cgroup.controllers") or "").split()
    st = host.stat(where)
    owned = st is not None and st.st_uid == uid
    wanted = ["cpu", "memory", "pids", "io"]
    absent = [c for c in wanted if c not in controllers]
    if not owned or absent:
        missing = ", ".join(absent) if absent else "none delegated to you"
        return Finding(name, DEGRADED,
                       f"controllers available at {where}: {' '.join(controllers) or 'none'}; "
                       f"missing: {missing}",
                       "sudo mkdir -p /etc/systemd/system/user@.service.d && printf "
                       "'[Service]\\nDelegate=cpu cpuset io memory pids\\n' | sudo tee "
                       "/etc/systemd/system/user@.service.d/delegate.conf && sudo systemctl "
                       "daemon-reload, then log in again", required=False)
    return Finding(name, OK, f"delegated: {' '.join(controllers)}", required=False)


def check_systemd_user(host: Host) -> Finding:
    name = "systemd user instance"
    addr = host.env.get("DBUS_SESSION_BUS_ADDRESS", "")
    runtime = host.env.get("XDG_RUNTIME_DIR", "")
    bus = addr.removeprefix("unix:path=").split(",")[0] if addr.startswith("unix:path=") else (
        f"{runtime}/bus" if runtime else "")
    st = host.stat(bus) if bus else None
    if st is None or not stat.S_ISSOCK(st.st_mode):
        return Finding(name, DEGRADED,
                       "no user D-Bus socket: cgroup limits need the systemd user manager",
                       f"sudo loginctl enable-linger {host.username()}, then log in again "
                       "(or use --cgroup-manager=cgroupfs inside a delegated cgroup)",
                       required=False)
    return Finding(name, OK, f"user bus at {bus}", required=False)


def check_runtime_dir(host: Host) -> Finding:
    name = "XDG_RUNTIME_DIR"
    value = host.env.get("XDG_RUNTIME_DIR")
    uid = host.uid()
    fallback = runtime_dir({}, uid)
    if not value:
        return Finding(name, DEGRADED, f"not set: prun uses {fallback}",
                       f"sudo loginctl enable-linger {host.username()} (gives /run/user/{uid})",
                       required=False)
    if not usable_runtime_base(Path(value), uid):
        return Finding(name, DEGRADED,
                       f"{value} is missing, not yours or not writable: prun uses {fallback}",
                       f"log in through a PAM session (systemd-logind creates /run/user/{uid}) "
                       "or set XDG_RUNTIME_DIR to a private directory", required=False)
    return Finding(name, OK, f"{value} usable", required=False)


def check_storage(host: Host) -> Finding:
    name = "storage filesystem"
    where = str(data_dir(host.env))
    kind = host.fs_type(where)
    if kind in NETWORK_FS:
        return Finding(name, DEGRADED,
                       f"{where} is on {NETWORK_FS[kind]}: xattrs, locking and ownership may "
                       "not work there",
                       "set XDG_DATA_HOME (or PRUN_ROOT) to a local disk, e.g. /var/tmp/$USER",
                       required=False)
    if "noexec" in host.mount_options(where):
        return Finding(name, MISSING, f"{where} is on a noexec mount: container binaries cannot run",
                       "set XDG_DATA_HOME (or PRUN_ROOT) to a directory on an exec mount")
    return Finding(name, OK, f"{where} (local filesystem)", required=False)


CHECKS = (check_userns, check_subuid, check_subgid, check_idmap_tools, check_dev_fuse,
          check_libfuse, check_slirp4netns, check_dev_net_tun, check_cgroups,
          check_systemd_user, check_runtime_dir, check_storage)
