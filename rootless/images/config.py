"""Registry configuration: search list, insecure registries, mirrors, certs.

Read from the first file that exists of ``$PRUN_REGISTRIES_CONF``,
``~/.config/prun/registries.toml``, ``~/.config/containers/registries.conf``
and ``/etc/containers/registries.conf`` (containers-registries.conf(5) v2
syntax, the part prun honours)::

    unqualified-search-registries = ["docker.io"]
    [[registry]]
    location = "127.0.0.1:5000"
    insecure = true            # plain HTTP / unverified TLS allowed
    blocked = false
    [[registry.mirror]]
    location = "mirror.example.com/prefix"
    insecure = false

Rules:
- Without a file the search list is ``["docker.io"]`` (docker's behaviour).
- A registry's ``location`` matches a reference's host exactly, or a host
  and path prefix (``example.com/team``); the longest match wins.
- CA certificates for a registry come from ``certs.d/<host[:port]>/*.crt``
  under ``--cert-dir`` if given, else ``~/.config/containers/certs.d``,
  ``/etc/containers/certs.d`` and ``/etc/docker/certs.d``.
- Pulls try a registry's mirrors in order, then the registry (``sources``);
  a mirror that fails (unreachable, image missing) passes to the next.
- The environment is injected (``env``) so tests never touch the real files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rootless.errors import UsageError


@dataclass(frozen=True)
class RegistryConf:
    location: str
    insecure: bool = False
    blocked: bool = False
    mirrors: tuple[RegistryConf, ...] = ()


@dataclass(frozen=True)
class RegistriesConfig:
    search: list[str] = field(default_factory=lambda: ["docker.io"])
    registries: tuple[RegistryConf, ...] = ()
    source: Path | None = None

    def lookup(self, name: str) -> RegistryConf | None:
        """The entry for repository ``name`` (host/path), longest match."""
        best = None
        for reg in self.registries:
            loc = reg.location.rstrip("/")
            if name == loc or name.startswith(loc + "/") or name.split("/")[0] == loc:
                if best is None or len(loc) > len(best.location):
                    best = reg
        return best


def config_files(env: Mapping[str, str]) -> list[Path]:
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    xdg = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    files = [xdg / "prun/registries.toml", xdg / "containers/registries.conf",
             Path("/etc/containers/registries.conf")]
    if env.get("PRUN_REGISTRIES_CONF"):
        files.insert(0, Path(env["PRUN_REGISTRIES_CONF"]))
    return files


def load(env: Mapping[str, str] | None = None) -> RegistriesConfig:
    env = os.environ if env is None else env
    for path in config_files(env):
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise UsageError(f"read registries configuration {path}: {exc.strerror}") from exc
        text = data.decode()
        if not any(line.strip() and not line.lstrip().startswith("#")
                   for line in text.splitlines()):
            # Distros ship an all-comments file: skip tomllib (start-up time).
            return RegistriesConfig(source=path)
        return parse(text, path)
    return RegistriesConfig()


def parse(text: str, source: Path | None = None) -> RegistriesConfig:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"read registries configuration {source}: {exc}",
                         hint="see containers-registries.conf(5) for the syntax") from exc
    regs = []
    for entry in data.get("registry", []):
        loc = entry.get("location") or entry.get("prefix")
        if not loc:
            continue
        mirrors = tuple(RegistryConf(m["location"], bool(m.get("insecure")))
                        for m in entry.get("mirror", []) if m.get("location"))
        regs.append(RegistryConf(loc, bool(entry.get("insecure")), bool(entry.get("blocked")),
                                 mirrors))
    search = data.get("unqualified-search-registries")
    return RegistriesConfig(list(search) if search is not None else ["docker.io"], tuple(regs),
                            source)


@dataclass(frozen=True)
class Source:
    """Where to pull a repository from: a mirror or the registry itself."""

    host: str
    repo: str
    tls_verify: bool | None


def sources(name: str, conf: RegistriesConfig, tls_verify: bool | None) -> list[Source]:
    """Mirrors of repository ``name`` (host/path) first, then the registry.

    A mirror's location replaces the matched registry location (host and
    path prefix); an ``insecure`` mirror is reached like --tls-verify=false
    unless the user said otherwise."""
    host, _, repo = name.partition("/")
    out = []
    reg = conf.lookup(name)
    if reg is not None:
        rest = name[len(reg.location.rstrip("/")):].lstrip("/") \
            if name.startswith(reg.location.rstrip("/")) else repo
        for mirror in reg.mirrors:
            m_host, _, m_prefix = mirror.location.rstrip("/").partition("/")
            verify = tls_verify if tls_verify is not None else (False if mirror.insecure
                                                                else None)
            out.append(Source(m_host, f"{m_prefix}/{rest}" if m_prefix else rest, verify))
    return [*out, Source(host, repo, tls_verify)]


def cert_dirs(env: Mapping[str, str], cert_dir: str | None) -> list[Path]:
    if cert_dir:
        return [Path(cert_dir)]
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    return [home / ".config/containers/certs.d", Path("/etc/containers/certs.d"),
            Path("/etc/docker/certs.d")]


def ca_files(host: str, dirs: list[Path], direct: bool = False) -> list[Path]:
    """CA certificates configured for ``host`` (``host:port``) in the first
    directory that has any; with ``direct`` (``--cert-dir``) the directory
    may also hold them itself, as podman's ``--cert-dir`` does."""
    for base in dirs:
        for d in (base / host, base) if direct else (base / host,):
            try:
                found = sorted(p for p in d.iterdir() if p.suffix in (".crt", ".pem")
                               and not p.name.endswith(".key"))
            except (FileNotFoundError, NotADirectoryError):
                continue
            if found:
                return found
    return []
