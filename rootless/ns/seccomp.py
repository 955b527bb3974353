"""Seccomp: the default profile, docker-format JSON profiles, libseccomp load.

Rules:
- A profile is plain data: ``(default_action, rules)`` where a rule is
  ``(syscall_name, action, [(arg_index, op, value, value_two), ...])`` and an
  action is "allow", "errno:N", "kill" or "log". ``default_profile`` and
  ``parse_json`` produce it (pure); ``Filter`` hands it to libseccomp through
  ctypes in the container's init (built before pivot_root, loaded right
  before exec).
- The default profile has the effect of podman's default for what it denies:
  key management (keyctl, add_key, request_key), kernel modules, kexec,
  reboot, clock setting, swap, accounting, bpf, perf_event_open,
  userfaultfd and the mount API, each EPERM unless the container keeps the
  capability podman conditions it on (SYS_ADMIN, SYS_MODULE, SYS_BOOT,
  SYS_TIME, SYS_PACCT, SYS_PTRACE, SYS_RAWIO...). Everything else is
  allowed (podman's allow-list holds every other call); like podman (unlike
  docker) unshare/setns/clone are allowed, so nested user namespaces work.
- Syscalls unknown to this kernel/libseccomp are skipped, as podman does.
- The filter is loaded while the init is still root with all capabilities,
  so no_new_privs is not required for it (``--security-opt
  no-new-privileges=false`` keeps working).
"""

from __future__ import annotations

import errno as _errno

Rule = tuple[str, str, list[tuple[int, str, int, int]]]
EPERM = f"errno:{_errno.EPERM}"

# capability that lifts the block -> syscalls blocked without it
_BY_CAP = {
    None: ["keyctl", "add_key", "request_key", "uselib", "lookup_dcookie", "nfsservctl",
           "create_module", "get_kernel_syms", "query_module", "_sysctl", "sysfs", "ustat",
           "vm86", "vm86old", "userfaultfd"],
    "SYS_ADMIN": ["mount", "umount", "umount2", "pivot_root", "swapon",
                  "swapoff", "quotactl", "quotactl_fd", "open_by_handle_at", "name_to_handle_at",
                  "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
                  "mount_setattr", "bpf", "perf_event_open", "fanotify_init"],
    "SYS_MODULE": ["init_module", "finit_module", "delete_module"],
    "SYS_BOOT": ["reboot", "kexec_load", "kexec_file_load"],
    "SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex",
                 "clock_adjtime", "clock_adjtime64"],
    "SYS_PACCT": ["acct"],
    "SYS_PTRACE": ["process_vm_readv", "process_vm_writev", "kcmp"],
    "SYS_RAWIO": ["iopl", "ioperm"],
    "SYSLOG": ["syslog"],
}


def default_profile(caps: list[str]) -> tuple[str, list[Rule]]:
    """Podman's default denials for a container keeping ``caps`` (names)."""
    kept = set(caps)
    rules: list[Rule] = []
    for cap, names in _BY_CAP.items():
        if cap is None or cap not in kept:
            rules += [(n, EPERM, []) for n in names]
    return "allow", rules


_ACTIONS = {"SCMP_ACT_ALLOW": "allow", "SCMP_ACT_ERRNO": "errno", "SCMP_ACT_KILL": "kill",
            "SCMP_ACT_KILL_PROCESS": "kill", "SCMP_ACT_KILL_THREAD": "kill",
            "SCMP_ACT_LOG": "log", "SCMP_ACT_TRAP": "kill"}
_OPS = {"SCMP_CMP_NE": "ne", "SCMP_CMP_LT": "lt", "SCMP_CMP_LE": "le", "SCMP_CMP_EQ": "eq",
        "SCMP_CMP_GE": "ge", "SCMP_CMP_GT": "gt", "SCMP_CMP_MASKED_EQ": "masked_eq"}


def parse_json(text: str, caps: list[str], source: str) -> tuple[str, list[Rule]]:
    """A docker/podman seccomp.json profile for a container keeping ``caps``."""
    import json

    from rootless.errors import UsageError

    def action(name: str, errno_ret: int | None) -> str:
        if name not in _ACTIONS:
            raise UsageError(f"load seccomp profile {source}: unknown action {name}")
        kind = _ACTIONS[name]
        return f"errno:{errno_ret if errno_ret is not None else _errno.EPERM}" \
            if kind == "errno" else kind

    try:
        data = json.loads(text)
        default = action(data.get("defaultAction", "SCMP_ACT_ALLOW"), data.get("defaultErrnoRet"))
        rules: list[Rule] = []
        kept = set(caps)
        for entry in data.get("syscalls") or []:
            inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
            if inc.get("caps") and not set(inc["caps"]) <= {f"CAP_{c}" for c in kept}:
                continue
            if exc.get("caps") and set(exc["caps"]) & {f"CAP_{c}" for c in kept}:
                continue
            act = action(entry["action"], entry.get("errnoRet"))
            args = [(a["index"], _OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
                    for a in entry.get("args") or []]
            names = entry.get("names") or [entry["name"]]
            rules += [(n, act, args) for n in names]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"load seccomp profile {source}: {exc}",
                         hint="the file must be a docker/podman seccomp.json profile") from exc
    return default, rules


# ---- libseccomp (container init only) ------------------------------------

_ACT = {"allow": 0x7FFF0000, "kill": 0x80000000, "log": 0x7FFC0000}
_CMP = {"ne": 1, "lt": 2, "le": 3, "eq": 4, "ge": 5, "gt": 6, "masked_eq": 7}
_FLTATR_CTL_NNP = 3


def _act(action: str) -> int:
    if action.startswith("errno:"):
        return 0x00050000 | (int(action[6:]) & 0xFFFF)
    return _ACT[action]


class Filter:
    """A libseccomp filter built from a profile (before pivot_root: it loads
    libseccomp from the host) and loaded later with ``load``."""

    def __init__(self, profile: tuple[str, list[Rule]]) -> None:
        import ctypes

        class ArgCmp(ctypes.Structure):
            _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64),
                        ("b", ctypes.c_uint64)]

        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(ArgCmp)]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        self._lib = lib
        default, rules = profile
        self._ctx = lib.seccomp_init(_act(default))
        if not self._ctx:
            raise OSError(_errno.EINVAL, "seccomp_init: cannot create the filter")
        lib.seccomp_attr_set(self._ctx, _FLTATR_CTL_NNP, 0)
        for name, action, args in rules:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr < 0 or action == default:
                continue
            arr = (ArgCmp * max(len(args), 1))(*(ArgCmp(i, _CMP[op], a, b)
                                                  for i, op, a, b in args))
            rc = lib.seccomp_rule_add_array(self._ctx, _act(action), nr, len(args), arr)
            if rc < 0:
                raise OSError(-rc, f"seccomp rule for {name}: {_errno.errorcode.get(-rc, rc)}")

    def load(self) -> None:
        rc = self._lib.seccomp_load(self._ctx)
        self._lib.seccomp_release(self._ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {_errno.errorcode.get(-rc, rc)}")
