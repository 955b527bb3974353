"""`prun run -d` on the supervisor's side: record, hand over, report.

Rules:
- ``register`` puts the container in the store before the helper starts
  (status created), so a failed start still shows in ``ps -a``; its names
  are unique there (UNIQUE constraint) like the foreground name claim.
- ``keeper_spec`` is what the helper-turned-keeper needs (rundir, log file,
  restart policy, log rotation, stop signal and timeout); it travels in the
  wire spec under "detach".
- ``handed_over`` records the keeper (the helper's pid and /proc start
  time) once the helper sent Detached; from then on the keeper's state.json
  is the truth and lifecycle.refresh reads it.
- Named volumes used with -v NAME:/path are registered in the store, so
  ``prun volume ls`` shows them and ``volume rm`` knows who uses them.
"""

from __future__ import annotations

import signal
import time

from rootless.containers import keeper, logs, policy
from rootless.containers.store import Container, Store, proc_starttime
from rootless.errors import UsageError


def parse_log_opts(opts: list[str]) -> tuple[int, int]:
    size, files = 0, 1
    for opt in opts:
        key, sep, value = opt.partition("=")
        if key == "max-size" and sep:
            size = logs.parse_size(value)
        elif key == "max-file" and sep and value.isdigit() and int(value) > 0:
            files = int(value)
        else:
            raise UsageError(f"parse --log-opt {opt!r}: expected max-size=SIZE or max-file=N",
                             hint="e.g. --log-opt max-size=10m --log-opt max-file=3")
    return size, files


def named_volumes(volumes: list[str]) -> list[str]:
    out = []
    for v in volumes:
        src = v.split(":", 1)[0]
        if ":" in v and src and not src.startswith((".", "/", "~")):
            out.append(src)
    return out


def check_request(req) -> None:
    """Flags -d cannot honour yet, refused before anything starts."""
    if req.tty:
        raise UsageError("run -d -t: a detached container with a terminal is not supported",
                         hint="drop -t (output goes to 'prun logs'), or run in the foreground")
    if req.rm:
        raise UsageError("run -d --rm: removal on exit is not supported for detached containers",
                         hint="drop --rm and remove it with 'prun rm'")
    if req.interactive:
        raise UsageError("run -d -i: stdin of a detached container is not kept open",
                         hint="drop -i; use 'prun exec -i' to talk to it")
    policy.parse_restart(req.restart)
    parse_log_opts(req.log_opt)


def register_spec(paths, cid: str, req, spec: dict) -> tuple[Store, Container]:
    """Record the container and put the keeper's part into the wire ``spec``."""
    store = Store(paths)
    record = register(store, cid, req, spec["process"]["args"])
    spec["detach"] = keeper_spec(store, record)
    return store, record


def register(store: Store, cid: str, req, args: list[str]) -> Container:
    policy.parse_restart(req.restart)
    size, files = parse_log_opts(req.log_opt)
    vols = named_volumes(req.volumes)
    for name in vols:
        store.add_volume(name, exist_ok=True)
    config = {"restart": req.restart, "log_max_size": size, "log_max_files": files,
              "stop_timeout": req.stop_timeout, "hostname": req.hostname or cid[:12],
              "env": req.env, "workdir": req.workdir or "", "user": req.user or "",
              "entrypoint": req.entrypoint, "network": req.network, "volumes": vols,
              "mounts_view": mounts_view(req.volumes, store), "tty": req.tty,
              "interactive": req.interactive}
    return store.add(Container(id=cid, name=req.name or "", image=req.image, image_id="",
                               command=list(args), created=time.time(),
                               status=policy.CREATED, config=config))


def mounts_view(volumes: list[str], store: Store) -> list[dict]:
    """docker inspect's Mounts for -v flags."""
    out = []
    for v in volumes:
        parts = v.split(":")
        if len(parts) < 2:
            continue
        src, dst, mode = parts[0], parts[1], (parts[2] if len(parts) > 2 else "")
        named = src in named_volumes([v])
        out.append({"Type": "volume" if named else "bind",
                    "Name": src if named else "",
                    "Source": str(store.volume_dir(src) / "_data") if named else src,
                    "Destination": dst, "RW": "ro" not in mode.split(","),
                    "Mode": mode})
    return out


def keeper_spec(store: Store, c: Container) -> dict:
    from rootless.cgroups.lookup import record_path
    rundir = store.run_dir(c.id)
    rundir.mkdir(parents=True, mode=0o700, exist_ok=True)
    return {"rundir": str(rundir), "log_path": str(store.log_path(c.id)),
            "restart": c.config["restart"], "log_max_size": c.config["log_max_size"],
            "log_max_files": c.config["log_max_files"],
            "stop_timeout": float(c.config["stop_timeout"]),
            "stop_signal": int(signal.SIGTERM),
            # where the cgroup hook records the container's cgroup (its OOM kills)
            "cgroup_record": str(record_path(store.paths, c.id))}


def handed_over(store: Store, c: Container, keeper_pid: int) -> Container:
    store.update(c, status=policy.RUNNING, keeper_pid=keeper_pid,
                 keeper_start=proc_starttime(keeper_pid))
    st = keeper.read_state(str(store.run_dir(c.id)))
    if st is not None:
        store.update(c, pid=st["pid"], started_at=st["started_at"])
    from netstack.network import ports_records, read_ports
    ports = read_ports(store.run_dir(c.id) / "net")
    if ports:
        store.update(c, config={**c.config, "ports": ports_records(ports)})
    return c
