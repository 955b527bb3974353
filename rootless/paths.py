"""Where prun keeps its data and runtime state.

Rules:
- Persistent data lives in ``$XDG_DATA_HOME/prun`` (default
  ``~/.local/share/prun``); ``PRUN_ROOT`` overrides it (like podman's
  ``--root``), which is how tests and benchmarks use a private store.
- Runtime state (sockets, pid files, mount points) lives in
  ``$XDG_RUNTIME_DIR/prun``; without a usable XDG_RUNTIME_DIR it falls back
  to ``<tmp>/prun-<uid>``, created 0700 and refused if another user owns it
  (a shared /tmp must not let someone plant our sockets). ``PRUN_RUNROOT``
  overrides it.
- The environment is passed in (default ``os.environ``) so tests never need a
  global switch.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rootless.errors import HostSetupError


@dataclass(frozen=True)
class Paths:
    data: Path     # images, layers, containers' upper dirs, volumes, database
    runtime: Path  # sockets, pid files, mount points

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, uid: int | None = None) -> Paths:
        env = os.environ if env is None else env
        uid = os.getuid() if uid is None else uid
        return cls(data=data_dir(env), runtime=runtime_dir(env, uid))


def data_dir(env: Mapping[str, str]) -> Path:
    if env.get("PRUN_ROOT"):
        return Path(env["PRUN_ROOT"])
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME") or os.path.expanduser("~")) / ".local/share"
    return base / "prun"


def runtime_dir(env: Mapping[str, str], uid: int) -> Path:
    if env.get("PRUN_RUNROOT"):
        return Path(env["PRUN_RUNROOT"])
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and usable_runtime_base(Path(xdg), uid):
        return Path(xdg) / "prun"
    return Path(tempfile.gettempdir()) / f"prun-{uid}"


def usable_runtime_base(path: Path, uid: int) -> bool:
    """XDG_RUNTIME_DIR is usable when it exists, is ours and is writable."""
    try:
        st = path.stat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and os.access(path, os.W_OK | os.X_OK)


def ensure_private_dir(path: Path, uid: int | None = None) -> Path:
    """Create ``path`` 0700 if missing and check that ``uid`` owns it."""
    uid = os.getuid() if uid is None else uid
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise HostSetupError(
            f"use runtime directory {path}: it is owned by uid {st.st_uid}, not by you (uid {uid})",
            hint=f"remove it (it may be another user's), or set XDG_RUNTIME_DIR to a private "
                 f"directory of yours, e.g. 'loginctl enable-linger {uid}' gives /run/user/{uid}")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
