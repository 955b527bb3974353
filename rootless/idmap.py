"""User namespace id maps: /etc/subuid parsing, map planning, newuidmap argv.

Rules:
- Planning is pure: ``plan`` takes the user's ids, their subordinate ranges
  and the user's choice (default, ``--userns=keep-id``, ``--uidmap``) and
  returns the lines for /proc/PID/{uid,gid}_map as (inside, outside, count).
- The helper's first user namespace always has the default map (podman's):
  root is the user, 1..N are the subordinate ranges in file order. The FUSE
  server lives there, so image files read as their owners in every mode.
- keep-id and ``--uidmap`` add a *nested* user namespace whose map is given
  in the first namespace's ids (``nested_uid``/``nested_gid``), as rootless
  podman does: keep-id puts the user's own id inside at their host id (so
  bind-mounted files keep their owner), 0..id-1 and id+1.. on the
  subordinate ids; ``--uidmap CONTAINER:HOST:SIZE`` names HOST ids of that
  first namespace (0 = the user, 1.. = the subordinate ids).
- Without subordinate ranges only the user's own id can be mapped (written
  directly, no setuid helper); the caller warns once.
- ``apply`` runs newuidmap and newgidmap in parallel; a failure raises
  HostSetupError with the tool's stderr and the fix. The first namespace's
  map does not depend on flags, so the helper's FUSE child applies it
  (rootless._helper) while the supervisor is still starting.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from rootless.errors import HostSetupError, UsageError

Line = tuple[int, int, int]       # inside, outside, count


@dataclass(frozen=True, repr=False)
class IdMaps:
    uid: list[Line]               # the first user namespace, in host ids
    gid: list[Line]
    single: bool                  # no subordinate ids: one-line maps, setgroups denied
    nested_uid: list[Line] | None = None   # the container's, in the first's ids
    nested_gid: list[Line] | None = None

    def maps_uid(self, inside: int) -> bool:
        """Whether the container's namespace maps uid ``inside``."""
        return any(i <= inside < i + n for i, _, n in (self.nested_uid or self.uid))

    def maps_gid(self, inside: int) -> bool:
        return any(i <= inside < i + n for i, _, n in (self.nested_gid or self.gid))


def parse_subid(text: str, user: str, uid: int) -> list[tuple[int, int]]:
    """The (start, count) ranges of ``user`` (by name or uid) in a subuid file."""
    ranges = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((start, count))
    return ranges


def read_subid(path: str, user: str, uid: int) -> list[tuple[int, int]]:
    try:
        with open(path) as f:
            return parse_subid(f.read(), user, uid)
    except FileNotFoundError:
        return []


def _intermediate(own: int, subs: list[tuple[int, int]]) -> list[Line]:
    """The default map: 0 -> own id, 1.. -> the subordinate ranges."""
    lines, nxt = [(0, own, 1)], 1
    for start, count in subs:
        lines.append((nxt, start, count))
        nxt += count
    return lines


def _keep_id_nested(own: int, total: int) -> list[Line]:
    """keep-id in the first namespace's ids: ``own`` -> 0 (the user), the
    rest on 1..total around it."""
    lines = [(0, 1, min(own, total))] if min(own, total) else []
    lines.append((own, 0, 1))
    if total > own:
        lines.append((own + 1, own + 1, total - own))
    return lines


def parse_user_map(spec: str, flag: str) -> list[Line]:
    """``--uidmap 0:1:1000`` (repeatable, or joined with ',') -> lines."""
    lines = []
    for part in spec.split(","):
        try:
            inside, outside, count = (int(x) for x in part.split(":"))
        except ValueError:
            raise UsageError(f"parse {flag} {spec}: expected CONTAINER_ID:HOST_ID:SIZE",
                             hint=f"e.g. {flag} 0:1:65536") from None
        if count <= 0 or inside < 0 or outside < 0:
            raise UsageError(f"parse {flag} {spec}: ids must be >= 0 and SIZE > 0")
        lines.append((inside, outside, count))
    return lines


def _check_nested(lines: list[Line], total: int, flag: str) -> list[Line]:
    for inside, outside, count in lines:
        if outside + count - 1 > total:
            raise UsageError(
                f"apply {flag} {inside}:{outside}:{count}: host id {outside + count - 1} is "
                f"outside the ids you own (0..{total})",
                hint="host ids in rootless --uidmap/--gidmap count from 0 = you, "
                     "1.. = your /etc/subuid range")
    return lines


def plan(uid: int, gid: int, subuids: list[tuple[int, int]], subgids: list[tuple[int, int]],
         userns: str = "", uidmap: Iterable[Line] = (), gidmap: Iterable[Line] = ()) -> IdMaps:
    """The user namespaces' maps for the user's choice (see the module rules)."""
    uidmap, gidmap = list(uidmap), list(gidmap)
    single = not subuids or not subgids
    if userns not in ("", "private", "auto", "keep-id"):
        raise UsageError(f"use --userns {userns}: prun supports keep-id (and the default)",
                         hint="drop --userns, or use --userns=keep-id")
    if single:
        first_u, first_g = [(0, uid, 1)], [(0, gid, 1)]
    else:
        first_u, first_g = _intermediate(uid, subuids), _intermediate(gid, subgids)
    total_u = sum(n for _, _, n in first_u) - 1
    total_g = sum(n for _, _, n in first_g) - 1
    if uidmap or gidmap:
        return IdMaps(first_u, first_g, single,
                      _check_nested(uidmap or gidmap, total_u, "--uidmap"),
                      _check_nested(gidmap or uidmap, total_g, "--gidmap"))
    if userns == "keep-id":
        return IdMaps(first_u, first_g, single, _keep_id_nested(uid, total_u),
                      _keep_id_nested(gid, total_g))
    return IdMaps(first_u, first_g, single)


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def for_user(userns: str = "", uidmap: Iterable[Line] = (), gidmap: Iterable[Line] = (),
             subuid: str = "/etc/subuid", subgid: str = "/etc/subgid") -> IdMaps:
    """``plan`` for the calling user, from the subordinate id files."""
    uid, gid = os.getuid(), os.getgid()
    name = user_name(uid)
    return plan(uid, gid, read_subid(subuid, name, uid), read_subid(subgid, name, uid), userns,
                uidmap, gidmap)


def argv(tool: str, pid: int, lines: list[Line]) -> list[str]:
    """newuidmap/newgidmap argv for ``pid``."""
    return [tool, str(pid), *(str(x) for line in lines for x in line)]


def apply(pid: int, maps: IdMaps) -> None:
    """Write the maps of ``pid``'s user namespace (needs only the setuid tools)."""
    if maps.single:
        # One line of one's own id needs no helper; gid_map needs setgroups
        # denied first, or the kernel refuses the write.
        _write(f"/proc/{pid}/uid_map", maps.uid)
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
        _write(f"/proc/{pid}/gid_map", maps.gid)
        return
    import subprocess
    procs = [(tool, subprocess.Popen(argv(tool, pid, lines), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE))
             for tool, lines in (("newuidmap", maps.uid), ("newgidmap", maps.gid))]
    for tool, proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise HostSetupError(
                f"set up the user namespace ids with {tool}: "
                f"{err.decode(errors='replace').strip() or f'exit status {proc.returncode}'}",
                hint="check your lines in /etc/subuid and /etc/subgid (`prun info`), and that "
                     f"{tool} is installed setuid root (Debian package uidmap)")


def _write(path: str, lines: list[Line]) -> None:
    try:
        with open(path, "w") as f:
            f.write("".join(f"{i} {o} {n}\n" for i, o, n in lines))
    except OSError as exc:
        raise HostSetupError(f"write {path}: {exc.strerror}",
                             hint="add a range for you to /etc/subuid and /etc/subgid "
                                  "(usermod --add-subuids, as root)") from exc
