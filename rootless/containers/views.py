"""What ``ps`` and ``inspect`` show (pure: records in, rows/dicts out).

Rules:
- ``inspect`` is docker-shaped: Id, Name, Created, Path, Args, State{Status,
  Running, Paused, Restarting, OOMKilled, Dead, Pid, ExitCode, Error,
  StartedAt, FinishedAt}, Image, RestartCount, HostConfig{RestartPolicy,
  PortBindings, LogConfig}, Config{Image, Cmd, Env, WorkingDir, User,
  Hostname, Tty, OpenStdin}, Mounts[], NetworkSettings{Ports}; docker's
  "0001-01-01T00:00:00Z" for times that never happened.
- ``ps`` filters: id, name (substring, like docker), status, exited=N,
  ancestor (the image as written); several values of one key OR, keys AND.
- ``status_text`` is docker's STATUS column: "Up 5 seconds", "Exited (0) 3
  minutes ago", "Created", "Restarting (1) 2 seconds ago".
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from rootless.containers import policy
from rootless.containers.store import Container
from rootless.errors import UsageError

ZERO_TIME = "0001-01-01T00:00:00Z"
FILTER_KEYS = ("id", "name", "status", "exited", "ancestor")


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unix(ts: str) -> float:
    return datetime.fromisoformat(ts[:26].rstrip("Z") + "+00:00").timestamp() if ts else 0.0


def ago(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 1:
        return "Less than a second"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if s >= size:
            n = s // size
            return f"About a {unit}" if n == 1 and unit in ("hour", "minute") else \
                f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{s} seconds"


def status_text(c: Container, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if c.status == policy.RUNNING:
        return f"Up {ago(now - _unix(c.started_at))}"
    if c.status == policy.RESTARTING:
        return f"Restarting ({c.exit_code}) {ago(now - _unix(c.finished_at))} ago"
    if c.status == policy.EXITED:
        return f"Exited ({c.exit_code}) {ago(now - _unix(c.finished_at))} ago"
    return c.status.capitalize()


def ports_text(c: Container) -> str:
    if c.status != policy.RUNNING:
        return ""
    out = []
    for p in c.config.get("ports", []):
        host_ip = p.get("host_ip") or "0.0.0.0"
        out.append(f"{host_ip}:{p['host_port']}->{p['container_port']}/{p.get('proto', 'tcp')}")
    return ", ".join(out)


def command_text(c: Container, width: int = 20) -> str:
    text = " ".join(c.command)
    return f'"{text[:width - 3]}..."' if len(text) > width else f'"{text}"'


def parse_filters(items: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise UsageError(f"parse --filter {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(FILTER_KEYS)}", hint="e.g. --filter status=running")
        out.setdefault(key, []).append(value)
    return out


def matches(c: Container, filters: dict[str, list[str]]) -> bool:
    tests = {
        "id": lambda v: c.id.startswith(v),
        "name": lambda v: v in c.name,
        "status": lambda v: v == c.status,
        "exited": lambda v: c.status == policy.EXITED and str(c.exit_code) == v,
        "ancestor": lambda v: v == c.image or c.image_id.startswith(v) or
        c.image_id.startswith("sha256:" + v),
    }
    return all(any(tests[k](v) for v in vs) for k, vs in filters.items())


def ps_row(c: Container, now: float | None = None) -> dict:
    """One container as `ps --format json` prints it (podman's keys)."""
    return {"Id": c.id, "Names": [c.name], "Image": c.image, "ImageID": c.image_id,
            "Command": c.command, "Created": int(c.created), "CreatedAt": iso(c.created),
            "State": c.status, "Status": status_text(c, now), "ExitCode": c.exit_code,
            "Pid": c.pid, "Ports": c.config.get("ports", []),
            "Restarts": c.restart_count}


def inspect(c: Container, mounts: list[dict] | None = None, paused: bool = False) -> dict:
    """``paused``: the container's cgroup is frozen (prun pause)."""
    cfg = c.config
    running = c.status == policy.RUNNING
    ports: dict[str, list[dict] | None] = {}
    for p in cfg.get("ports", []):
        key = f"{p['container_port']}/{p.get('proto', 'tcp')}"
        ports.setdefault(key, []).append({"HostIp": p.get("host_ip") or "0.0.0.0",
                                          "HostPort": str(p["host_port"])})
    for e in cfg.get("expose", []):
        ports.setdefault(e, None)
    restart = policy.parse_restart(cfg.get("restart", "no"))
    return {
        "Id": c.id,
        "Created": iso(c.created),
        "Path": c.command[0] if c.command else "",
        "Args": c.command[1:],
        "State": {
            "Status": c.status, "Running": running, "Paused": running and paused,
            "Restarting": c.status == policy.RESTARTING, "OOMKilled": bool(c.oom_killed),
            "Dead": c.status == policy.DEAD, "Pid": c.pid if running else 0,
            "ExitCode": c.exit_code, "Error": c.error,
            "StartedAt": c.started_at or ZERO_TIME, "FinishedAt": c.finished_at or ZERO_TIME,
        },
        "Image": c.image_id,
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "HostConfig": {
            "RestartPolicy": {"Name": restart.name, "MaximumRetryCount": restart.max_retries},
            "PortBindings": {k: v for k, v in ports.items() if v},
            "LogConfig": {"Type": "json-file",
                          "Config": {k: str(v) for k, v in (("max-size", cfg.get("log_max_size")),
                                                            ("max-file", cfg.get("log_max_files")))
                                     if v}},
            "NetworkMode": cfg.get("network", "slirp4netns"),
        },
        "Config": {
            "Hostname": cfg.get("hostname", c.id[:12]), "User": cfg.get("user", ""),
            "Env": cfg.get("env", []), "Cmd": c.command, "Image": c.image,
            "WorkingDir": cfg.get("workdir", "/"), "Entrypoint": cfg.get("entrypoint"),
            "Tty": bool(cfg.get("tty")), "OpenStdin": bool(cfg.get("interactive")),
            "Labels": cfg.get("labels", {}), "StopSignal": cfg.get("stop_signal", "SIGTERM"),
        },
        "Mounts": mounts if mounts is not None else cfg.get("mounts_view", []),
        "NetworkSettings": {"Ports": ports},
    }
