"""Registry credentials in containers' auth.json format (also docker's).

Read order (first file that has the registry wins): ``$REGISTRY_AUTH_FILE``,
``$XDG_RUNTIME_DIR/containers/auth.json`` (podman's default),
``~/.config/containers/auth.json``, ``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``. ``prun login`` writes the first of those
(``$REGISTRY_AUTH_FILE`` or the runtime one), 0600, atomically.

Entries are ``{"auths": {"<host>": {"auth": base64("user:password")}}}``;
Docker Hub is also found under ``https://index.docker.io/v1/``. Credential
helpers (``credHelpers``/``credsStore``) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from pathlib import Path

from rootless.errors import UsageError

_HUB_KEYS = ("docker.io", "index.docker.io", "https://index.docker.io/v1/",
             "registry-1.docker.io")


def auth_files(env: Mapping[str, str]) -> list[Path]:
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers/auth.json")
    xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    files.append(xdg / "containers/auth.json")
    docker = Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else home / ".docker"
    files.append(docker / "config.json")
    return files


def _keys(host: str) -> tuple[str, ...]:
    if host in _HUB_KEYS:
        return _HUB_KEYS
    return (host, f"https://{host}", f"http://{host}")


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"read credentials {path}: {exc}",
                         hint="fix or remove the file, then prun login again") from exc
    return doc if isinstance(doc, dict) else {}


def lookup(host: str, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    env = os.environ if env is None else env
    for path in auth_files(env):
        auths = _read(path).get("auths") or {}
        for key in _keys(host):
            entry = auths.get(key)
            if entry and entry.get("auth"):
                try:
                    user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError) as exc:
                    raise UsageError(f"read credentials for {host} in {path}: not base64 "
                                     f"user:password", hint=f"prun login {host}") from exc
                if sep:
                    return user, password
    return None


def store_file(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return auth_files(env)[0]


def save(host: str, user: str, password: str, env: Mapping[str, str] | None = None) -> Path:
    path = store_file(env)
    doc = _read(path)
    doc.setdefault("auths", {})[host] = {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write(path, doc)
    return path


def remove(host: str, env: Mapping[str, str] | None = None) -> bool:
    """Forget ``host`` in every file prun reads; whether there was an entry."""
    env = os.environ if env is None else env
    found = False
    for path in auth_files(env):
        doc = _read(path)
        auths = doc.get("auths") or {}
        keys = [k for k in _keys(host) if k in auths]
        if keys and path.exists() and os.access(path, os.W_OK):
            for k in keys:
                del auths[k]
            _write(path, doc)
            found = True
    return found


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)
