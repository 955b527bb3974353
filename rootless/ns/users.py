"""``-u user[:group]`` and ``--group-add``: names → ids from the image's files.

Rules (podman's):
- Names are looked up in the container's /etc/passwd and /etc/group (read
  after pivot_root, so they are the image's); a missing name is an error,
  numeric ids are allowed even when unlisted (gid then 0, home /).
- Supplementary groups: every group of /etc/group listing the user by
  name and, when a user was asked for (``-u`` or the image's USER), the
  primary group, plus ``--group-add`` (names or ids); without a user the
  list is empty. That is what podman sets.
- A numeric uid the image's /etc/passwd lacks gets a line there (when the
  rootfs is writable), so ``id`` and shells show a name, as podman does.
- The parsers are pure (``parse_passwd``/``parse_group`` take text).
"""

from __future__ import annotations


class UserError(Exception):
    """A user or group name the image does not know."""


class Identity:
    __slots__ = ("uid", "gid", "groups", "home")

    def __init__(self, uid: int, gid: int, groups: list[int], home: str) -> None:
        self.uid, self.gid, self.groups, self.home = uid, gid, groups, home


def parse_passwd(text: str) -> list[tuple[str, int, int, str]]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[2].isdigit() and f[3].isdigit():
            out.append((f[0], int(f[2]), int(f[3]), f[5]))
    return out


def parse_group(text: str) -> list[tuple[str, int, list[str]]]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[2].isdigit():
            out.append((f[0], int(f[2]), [m for m in f[3].split(",") if m]))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _group_id(name: str, groups: list[tuple[str, int, list[str]]]) -> int:
    if name.isdigit():
        return int(name)
    for gname, gid, _ in groups:
        if gname == name:
            return gid
    raise UserError(f"unable to find group {name}: no matching entries in group file")


def lookup(spec: str, group_add: list[str], passwd: str, group: str) -> Identity:
    users, groups = parse_passwd(passwd), parse_group(group)
    user, _, grp = (spec or "0").partition(":")
    entry = None
    if user.isdigit():
        uid = int(user)
        entry = next((u for u in users if u[1] == uid), None)
    else:
        entry = next((u for u in users if u[0] == user), None)
        if entry is None:
            raise UserError(f"unable to find user {user}: no matching entries in passwd file")
        uid = entry[1]
    gid = entry[2] if entry else 0
    home = entry[3] if entry else "/"
    if grp:
        gid = _group_id(grp, groups)
    extra: list[int] = []
    if entry and not grp:
        extra = [g for name, g, members in groups if entry[0] in members]
    if spec:
        extra.append(gid)
    extra += [_group_id(g, groups) for g in group_add]
    seen: list[int] = []
    for g in extra:
        if g not in seen:
            seen.append(g)
    return Identity(uid, gid, seen, home or "/")


def passwd_line(ident: Identity) -> str:
    """The /etc/passwd entry podman adds for a numeric -u the image lacks."""
    return f"{ident.uid}:*:{ident.uid}:{ident.gid}:container user:{ident.home}:/bin/sh\n"


def resolve(spec: str, group_add: list[str]) -> Identity:
    """The identity for ``-u`` inside the (already pivoted) container."""
    passwd = _read("/etc/passwd")
    ident = lookup(spec, group_add, passwd, _read("/etc/group"))
    if not any(u[1] == ident.uid for u in parse_passwd(passwd)):
        try:
            with open("/etc/passwd", "a") as f:
                f.write(passwd_line(ident))
        except OSError:
            return ident  # read-only rootfs: the id works without a name
    return ident
