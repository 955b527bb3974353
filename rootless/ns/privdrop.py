"""Give up privileges before exec: the one order a container's init and
``prun exec`` share (one chokepoint for this security rule).

Rules (why the order):
- the bounding set goes first, while CAP_SETPCAP is still held;
- the seccomp filter is loaded next, still as root in the user namespace
  (loading needs CAP_SYS_ADMIN there, or no_new_privs);
- then supplementary groups (only with a real map: setgroups is denied with
  a single-id map), gid, uid;
- then the capability sets the target user keeps, and no_new_privs last.
A failure raises ``DropFailed`` naming the step, so the caller's message says
what could not be done.
Import it before pivot_root, like rootless.ns.caps: afterwards the host's
files (this package among them) are out of reach.
"""

from __future__ import annotations

import os

from rootless.ns import caps


class DropFailed(Exception):
    def __init__(self, step: str, error: OSError) -> None:
        super().__init__(f"{step}: {error.strerror or error}")
        self.step = step
        self.error = error

    @property
    def unmapped_id(self) -> bool:
        """setresuid/setresgid said EINVAL: the id is not mapped into the container."""
        return self.step.startswith("switch to user") and self.error.errno == 22


def drop(proc: dict, user: str, ident, single_map: bool, sfilter, nsys) -> None:
    """Apply ``proc``'s caps/no_new_privs, ``sfilter`` and ``ident`` (users.Identity)."""
    step = "drop capabilities"
    try:
        caps.drop_bounding(proc["caps"], nsys)
        if sfilter is not None:
            step = "load the seccomp profile"
            sfilter.load()
        step = "switch to user " + (user or "root")
        if not single_map:
            os.setgroups(ident.groups)
        os.setresgid(ident.gid, ident.gid, ident.gid)
        os.setresuid(ident.uid, ident.uid, ident.uid)
        step = "set capabilities"
        caps.set_process_caps(proc["caps"], ident.uid == 0, nsys)
        if proc["no_new_privs"]:
            nsys.prctl(nsys.PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise DropFailed(step, exc) from exc
