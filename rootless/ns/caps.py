"""Capabilities: names, podman's default set, --cap-add/--cap-drop planning.

Rules:
- ``plan_caps`` is pure: names in, the sorted list of capability numbers the
  container keeps (bounding set; for container root also effective and
  permitted). ``ALL`` works in both flags, names with or without ``CAP_``.
- The default is podman's (containers.conf): docker's set minus
  AUDIT_WRITE, MKNOD and NET_RAW.
- ``apply_caps`` (in the container's init, right before exec) drops the rest
  from the bounding set, then sets effective/permitted for root, or leaves
  them empty for other users (the kernel clears them on setuid), like podman.
"""

from __future__ import annotations

NAMES = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
         "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
         "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
         "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
         "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
         "CHECKPOINT_RESTORE").split()
NUMBER = {name: i for i, name in enumerate(NAMES)}

DEFAULT = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP",
           "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")


def _norm(name: str, flag: str) -> str:
    from rootless.errors import UsageError

    n = name.strip().upper().removeprefix("CAP_")
    if n != "ALL" and n not in NUMBER:
        raise UsageError(f"use {flag} {name}: unknown capability",
                         hint="names as in capabilities(7), e.g. NET_ADMIN or CAP_NET_ADMIN")
    return n


def plan_caps(add: list[str], drop: list[str], privileged: bool = False,
              last_cap: int = len(NAMES) - 1) -> list[int]:
    """The capability numbers the container keeps."""
    every = set(range(last_cap + 1))
    if privileged:
        return sorted(every)
    adds = {_norm(a, "--cap-add") for a in add}
    drops = {_norm(d, "--cap-drop") for d in drop}
    keep = {NUMBER[n] for n in DEFAULT}
    if "ALL" in drops:
        keep = set()
    keep -= {NUMBER[n] for n in drops if n != "ALL"}
    if "ALL" in adds:
        keep = set(every)
    keep |= {NUMBER[n] for n in adds if n != "ALL"}
    keep -= {NUMBER[n] for n in drops if n != "ALL" and n not in adds}
    return sorted(c for c in keep if c <= last_cap)


def mask(caps: list[int]) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def drop_bounding(keep: list[int], sys) -> None:
    """Drop every capability not in ``keep`` from the bounding set."""
    kept = set(keep)
    for cap in range(sys.last_cap() + 1):
        if cap not in kept:
            sys.prctl(sys.PR_CAPBSET_DROP, cap)


def set_process_caps(keep: list[int], root: bool, sys) -> None:
    """Effective/permitted = ``keep`` for root; nothing for other users."""
    m = mask(keep) if root else 0
    sys.capset(m, m, 0)
