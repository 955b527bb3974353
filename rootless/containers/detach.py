"""`prun run -d` on the supervisor's side: record, hand over, report.

Rules:
- ``register`` puts the container in the store before the helper starts
  (status created), so a failed start still shows in ``ps -a``; its names
  are unique there (UNIQUE constraint) like the foreground name claim.
- ``keeper_spec`` is what the helper-turned-keeper needs (rundir, log file,
  restart policy, log rotation, stop signal and timeout); it travels in the
  wire spec under "detach".
- ``handed_over`` records the keeper (the helper's pid and /proc start
  time) and the published ports the network hook chose, once the helper
  sent Detached; from then on the keeper's state.json
  is the truth and lifecycle.refresh reads it.
- ``create`` records a container with its RunRequest and working dir;
  ``start`` runs that request again through the supervisor with the same
  id (same upper layer, name and log), for created and exited containers.
- Named volumes used with -v NAME:/path (and anonymous ones, -v /path) are
  registered in the store, so ``prun volume ls`` shows them, ``volume rm``
  knows who uses them and ``rm -v`` removes the anonymous ones.
- Lingering: when systemd runs and the user's lingering is off, -d warns
  once per store that containers die at logout.
"""

from __future__ import annotations

import signal
import time

from rootless.containers import keeper, lifecycle, logs, policy
from rootless.containers.store import Container, Store, new_id, proc_starttime, remove_tree
from rootless.errors import NotFoundError, UsageError


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


def volume_names(cid: str, volumes: list[str]) -> tuple[list[str], list[str]]:
    """(named, anonymous) volumes among -v flags, named as runspec names them:
    ``NAME:/path`` is named, ``/path`` alone gets ``<id12>-<path>``."""
    named, anonymous = [], []
    for v in volumes:
        parts = v.split(":")
        if len(parts) == 1:
            anonymous.append(f"{cid[:12]}-{parts[0].strip('/').replace('/', '-')}")
        elif not parts[0].startswith((".", "/")):
            named.append(parts[0])
    return named, anonymous


def warn_lingering(store: Store, user: str, linger_dir: str = "/var/lib/systemd/linger",
                   systemd: str = "/run/systemd/system") -> str | None:
    """The warning, once per store, that detached containers die at logout."""
    import os
    marker = store.paths.data / ".linger-warned"
    if not os.path.isdir(systemd) or os.path.exists(os.path.join(linger_dir, user)) \
            or marker.exists():
        return None
    marker.touch()
    return (f"prun: warning: systemd lingering is off for {user}: detached containers are "
            f"stopped when you log out (fix: loginctl enable-linger {user})")


def check_request(req, paths=None) -> None:
    """Flags -d cannot honour yet, refused before anything starts; the
    lingering warning (with ``paths``: `run -d`, not `create`)."""
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
    if paths is not None:
        import getpass
        import sys
        warning = warn_lingering(Store(paths), getpass.getuser())
        if warning:
            print(warning, file=sys.stderr)


def register_spec(paths, cid: str, req, spec: dict) -> tuple[Store, Container]:
    """Record the container (or find the one being started again) and put
    the keeper's part into the wire ``spec``."""
    store = Store(paths)
    try:
        record = store.resolve(cid)
        store.update(record, command=list(spec["process"]["args"]))
    except NotFoundError:
        record = register(store, cid, req, spec["process"]["args"])
    spec["detach"] = keeper_spec(store, record)
    return store, record


def create(req) -> Container:
    """`prun create`: record the container; `prun start` runs it."""
    check_request(req)
    store = Store()
    return register(store, new_id(), req, req.command)


def start(store: Store, c: Container) -> Container:
    """Start a created or exited container again through the supervisor."""
    import os

    import base64
    import pickle

    from rootless import supervisor
    lifecycle.refresh(store, c)
    if lifecycle.is_live(c):
        return c
    for d in store.runtime_dirs(c.id):
        remove_tree(d)
    req = pickle.loads(base64.b64decode(c.config["request"]))
    here = os.getcwd()
    os.chdir(c.config["cwd"])  # relative -v paths mean what they meant at create time
    try:
        supervisor.run(req, existing=c.id)
    finally:
        os.chdir(here)
    return store.resolve(c.id)


def register(store: Store, cid: str, req, args: list[str]) -> Container:
    policy.parse_restart(req.restart)
    size, files = parse_log_opts(req.log_opt)
    vols, anonymous = volume_names(cid, req.volumes)
    for name in vols + anonymous:
        store.add_volume(name, exist_ok=True)
    config = {"restart": req.restart, "log_max_size": size, "log_max_files": files,
              "stop_timeout": req.stop_timeout, "hostname": req.hostname or cid[:12],
              "env": req.env, "workdir": req.workdir or "", "user": req.user or "",
              "entrypoint": req.entrypoint, "network": req.network, "volumes": vols + anonymous,
              "anonymous_volumes": anonymous, "mounts_view": mounts_view(cid, req.volumes, store), "tty": req.tty,
              "interactive": req.interactive}
    import base64
    import dataclasses
    import os
    import pickle
    # pickle, not JSON: the request nests dataclasses (cgroup limits) that
    # `start` must get back as they were; the store is the user's own.
    config["request"] = base64.b64encode(
        pickle.dumps(dataclasses.replace(req, detach=True))).decode()
    config["cwd"] = os.getcwd()
    return store.add(Container(id=cid, name=req.name or "", image=req.image, image_id="",
                               command=list(args), created=time.time(),
                               status=policy.CREATED, config=config))


def mounts_view(cid: str, volumes: list[str], store: Store) -> list[dict]:
    """docker inspect's Mounts for -v flags."""
    out = []
    for v in volumes:
        parts = v.split(":")
        if len(parts) == 1:
            parts = [volume_names(cid, [v])[1][0], v]
        src, dst, mode = parts[0], parts[1], (parts[2] if len(parts) > 2 else "")
        named = not src.startswith((".", "/"))
        out.append({"Type": "volume" if named else "bind", "Name": src if named else "",
                    "Source": str(store.volume_dir(src) / "_data") if named else src,
                    "Destination": dst, "RW": "ro" not in mode.split(","), "Mode": mode})
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
        lifecycle.fold(store, c, st)
    from netstack.network import ports_records, read_ports
    ports = read_ports(store.run_dir(c.id) / "net")
    if ports:
        store.update(c, config={**c.config, "ports": ports_records(ports)})
    return c
