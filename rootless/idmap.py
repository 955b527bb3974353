"""User namespace id maps: /etc/subuid parsing, map planning, newuidmap argv.

Rules:
- Planning is pure: ``plan`` takes the user's ids, their subordinate ranges
  and the user's choice (default, ``--userns=keep-id``, ``--uidmap``) and
  returns the lines for /proc/PID/{uid,gid}_map as (inside, outside, count).
- Default (podman's): container root is the user, container 1..N are the
  subordinate ranges in file order.
- keep-id: the user's own id inside equals their host id (so bind-mounted
  files keep their owner); 0..id-1 and id+1.. take the subordinate ranges.
- ``--uidmap CONTAINER:HOST:SIZE`` names HOST ids of the *intermediate*
  namespace, as rootless podman does: 0 is the user, 1.. the subordinate ids.
- Without subordinate ranges only the user's own id can be mapped (written
  directly, no setuid helper); the caller warns once.
- ``apply`` runs newuidmap and newgidmap in parallel; a failure raises
  HostSetupError with the tool's stderr and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rootless.errors import HostSetupError, UsageError

Line = tuple[int, int, int]       # inside, outside, count


@dataclass(frozen=True)
class IdMaps:
    uid: list[Line]
    gid: list[Line]
    single: bool                  # no subordinate ids: one-line maps, setgroups denied

    def inside_uid(self, host: int) -> int | None:
        return _inside(self.uid, host)

    def inside_gid(self, host: int) -> int | None:
        return _inside(self.gid, host)

    def maps_uid(self, inside: int) -> bool:
        return any(i <= inside < i + n for i, _, n in self.uid)

    def maps_gid(self, inside: int) -> bool:
        return any(i <= inside < i + n for i, _, n in self.gid)


def _inside(lines: list[Line], host: int) -> int | None:
    for i, o, n in lines:
        if o <= host < o + n:
            return i + host - o
    return None


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


def _keep_id(own: int, subs: list[tuple[int, int]]) -> list[Line]:
    lines: list[Line] = []
    inside = 0
    for start, count in subs:
        while count:
            if inside == own:
                inside += 1
            # fill up to `own` first, then continue after it
            span = count if inside > own else min(count, own - inside)
            lines.append((inside, start, span))
            inside += span
            start += span
            count -= span
    lines.append((own, own, 1))
    return sorted(lines)


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


def _translate(user_lines: list[Line], via: list[Line], flag: str) -> list[Line]:
    """Map user-given lines whose outside ids are intermediate ids to host ids."""
    out: list[Line] = []
    for inside, outside, count in user_lines:
        while count:
            for i, o, n in via:
                if i <= outside < i + n:
                    span = min(count, i + n - outside)
                    out.append((inside, o + outside - i, span))
                    inside, outside, count = inside + span, outside + span, count - span
                    break
            else:
                raise UsageError(
                    f"apply {flag} {inside}:{outside}:{count}: host id {outside} is outside "
                    f"the ids you own (0..{max(i + n for i, _, n in via) - 1})",
                    hint="host ids in rootless --uidmap/--gidmap count from 0 = you, "
                         "1.. = your /etc/subuid range")
    return out


def plan(uid: int, gid: int, subuids: list[tuple[int, int]], subgids: list[tuple[int, int]],
         userns: str = "", uidmap: Iterable[Line] = (), gidmap: Iterable[Line] = ()) -> IdMaps:
    """The container's maps for the user's choice (see the module rules)."""
    uidmap, gidmap = list(uidmap), list(gidmap)
    single = not subuids or not subgids
    if single:
        if userns == "keep-id":
            return IdMaps([(uid, uid, 1)], [(gid, gid, 1)], True)
        return IdMaps([(0, uid, 1)], [(0, gid, 1)], True)
    if uidmap or gidmap:
        base_u, base_g = _intermediate(uid, subuids), _intermediate(gid, subgids)
        return IdMaps(_translate(uidmap or base_u, base_u, "--uidmap"),
                      _translate(gidmap or uidmap or base_g, base_g, "--gidmap"), False)
    if userns == "keep-id":
        return IdMaps(_keep_id(uid, subuids), _keep_id(gid, subgids), False)
    if userns not in ("", "private", "auto"):
        raise UsageError(f"use --userns {userns}: prun supports keep-id (and the default)",
                         hint="drop --userns, or use --userns=keep-id")
    return IdMaps(_intermediate(uid, subuids), _intermediate(gid, subgids), False)


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
