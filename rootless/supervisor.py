"""The supervisor of one foreground container: the handshake as a straight script.

Rules:
- It spawns the helper (``python -S -P -m rootless._helper FD``, a fresh
  single-threaded interpreter), answers it through rootless.protocol,
  plans the nested id maps (keep-id, --uidmap), runs the hooks, relays the
  terminal, forwards signals and returns the container's exit code. It never forks itself into a
  namespace.
- It is synchronous on purpose: ``import trio`` alone costs 150-200 ms on
  the machines we measured, more than podman's whole start; a foreground
  run needs one socket, a pty and signals, which ``selectors`` covers.
- Extension points (``RunHooks``): ``etc_files`` (edit /etc/hosts,
  /etc/resolv.conf before the container sees them), ``wire_spec`` (edit
  the helper's spec before it is sent: ``--network container:`` names the
  namespaces to join there), ``namespaces_ready``
  (the helper's pid: its network namespace exists, the container has not
  started: slirp4netns goes here), ``container_created`` (the container's
  host pid, stopped before exec: cgroup placement goes here), ``close``
  (always, after exit). Modules register factories in ``HOOKS``.
- ``run -d``: the hooks' ``keeper_fds`` travel with Go to the keeper, which
  holds them while it lives; ``close`` is not called (the keeper owns the
  container now).
- Every exit path kills the helper (it takes its children along through
  PR_SET_PDEATHSIG) and removes what ``--rm`` asked to remove; without
  ``--rm`` a container that ran is recorded in the store as exited
  (rootless.containers.foreground), with the hooks' ``oom_killed``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from rootless import idmap, timing
from rootless import protocol as P
from rootless.containers.logs import timestamp
from rootless.errors import (CommandCannotRun, CommandNotFound, ConflictError, ContainerError,
                             PrunError)
from rootless.helper_client import Helper, HelperDied, take
from rootless.paths import Paths, ensure_private_dir
from rootless.runspec import BuildContext, RunRequest, build

# network mode -> "module:factory" of its hook (None: built in)
# (called with the request, the container id and the image config)
NETWORKS: dict[str, str | None] = {"slirp4netns": "netstack.network:hook",
                                   "pasta": "netstack.network:hook",
                                   "none": "netstack.network:hook",
                                   "host": "netstack.network:hook",
                                   "container": "rootless.containers.netjoin:hook"}
DEFAULT_NETWORK = "slirp4netns"
# "module:factory" called like a network's; returns a RunHooks or None
HOOKS: list[str] = ["rootless.cgroups.hook:factory"]
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)


class RunHooks:
    """Extension points of a run (see the module rules); the defaults do nothing."""

    # set by ``close`` when the OOM killer struck the container (hooks that
    # do not derive from RunHooks, like the network's, need not have it)
    oom_killed = False

    def etc_files(self, files: dict[str, str]) -> None:
        """Edit the generated /etc files' contents (key: container path)."""

    def wire_spec(self, spec: dict) -> None:
        """Edit the helper's wire spec (rootless.runspec.build's result)."""

    def namespaces_ready(self, helper_pid: int) -> None:
        """The helper's user/network/... namespaces exist (/proc/PID/ns/*)."""

    def container_created(self, pid: int) -> None:
        """The container's init (host pid) is set up and waits to exec."""

    def keeper_fds(self) -> list[int]:
        """Fds the keeper of a detached container holds until it exits
        (slirp4netns's exit pipe: the network lives as long as the keeper)."""
        return []

    def close(self) -> None:
        """The container is gone (or never started): release resources."""


def _factory(target: str):
    import importlib

    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def load_hooks(req: RunRequest, cid: str, config: dict) -> list[RunHooks]:
    hooks = []
    net = NETWORKS.get(req.network.partition(":")[0])
    if net:
        hooks.append(_factory(net)(req, cid, config))
    for target in HOOKS:
        hook = _factory(target)(req, cid, config)
        if hook is not None:
            hooks.append(hook)
    return hooks


class Conversation:
    """The supervisor's side of the protocol over a helper's socket."""

    def __init__(self, helper: Helper) -> None:
        self.helper = helper
        self.sock = helper.sock

    def send(self, msg: P.Message, fds: list[int] | None = None) -> None:
        self.helper.send(msg, fds)

    def recv(self) -> tuple[P.Message, list[int]]:
        try:
            return self.helper.recv()
        except HelperDied as exc:
            raise ContainerError(f"run the container: {exc}",
                                 hint="rerun with --log-level debug") from None

    def expect(self, kind: type[P.Message]) -> P.Message:
        msg, _ = self.recv()
        if isinstance(msg, P.Failed):
            raise failure(msg)
        if not isinstance(msg, kind):
            raise ContainerError(f"run the container: the helper sent {type(msg).__name__}, "
                                 f"expected {kind.__name__}")
        return msg


def failure(msg: P.Failed) -> PrunError:
    cls = {126: CommandCannotRun, 127: CommandNotFound}.get(msg.exit_code, ContainerError)
    return cls(msg.message, msg.hint)


def _rootfs(req: RunRequest, paths: Paths, cdir: Path, mountpoint: Path) -> tuple[dict, dict]:
    """(image config, rootfs wire spec) for IMAGE or --rootfs DIR[:O]."""
    if req.rootfs:
        path, overlay = (req.image[:-2], True) if req.image.endswith(":O") else (req.image, False)
        src = Path(os.path.abspath(path))
        if not src.is_dir():
            from rootless.errors import NotFoundError
            raise NotFoundError(f"use --rootfs {req.image}: {path} is not a directory")
        if not overlay:
            return {}, {"kind": "dir", "dir": str(src), "mountpoint": str(mountpoint)}
        layers, config = [src], {}
    else:
        from rootless.images.store import resolve_for_run
        image = resolve_for_run(req.image, pull=req.pull, quiet=req.quiet)
        layers = image.layer_dirs
        config = {"Entrypoint": image.entrypoint, "Cmd": image.cmd, "Env": image.env,
                  "WorkingDir": image.workdir, "User": image.user,
                  "ExposedPorts": {p: {} for p in image.exposed_ports}}
    (cdir / "upper").mkdir(exist_ok=True)
    (cdir / "work").mkdir(exist_ok=True)
    return config, {"kind": "fuse", "lowerdirs": [str(p) for p in reversed(layers)],
                    "upperdir": str(cdir / "upper"), "workdir": str(cdir / "work"),
                    "mountpoint": str(mountpoint)}


def _maps(req: RunRequest) -> idmap.IdMaps:
    maps = idmap.for_user(
        req.userns, [x for m in req.uidmap for x in idmap.parse_user_map(m, "--uidmap")],
        [x for m in req.gidmap for x in idmap.parse_user_map(m, "--gidmap")])
    if maps.single:
        print(f"prun: warning: no /etc/subuid and /etc/subgid range for "
              f"{idmap.user_name(os.getuid())}: only your own id is mapped into the container "
              "(`prun info` shows the fix)", file=sys.stderr)
    return maps


def _etc_files(req: RunRequest, hostname: str, hooks: list[RunHooks]) -> dict[str, str]:
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    names = f"{hostname} {req.name}" if req.name else hostname
    files = {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": ("127.0.0.1\tlocalhost localhost.localdomain localhost4 "
                       "localhost4.localdomain4\n::1\tlocalhost localhost.localdomain "
                       f"localhost6 localhost6.localdomain6\n127.0.1.1\t{names}\n"),
        "/etc/resolv.conf": resolv,
    }
    for hook in hooks:
        hook.etc_files(files)
    return files


def _claim_name(paths: Paths, name: str, cid: str) -> Path:
    names = paths.data / "containers" / "names"
    names.mkdir(parents=True, exist_ok=True)
    link = names / name
    try:
        link.symlink_to(cid)
    except FileExistsError:
        raise ConflictError(f"create container {name}: the name is in use by container "
                            f"{os.readlink(link)[:12]}",
                            hint=f"remove it (prun rm {name}) or choose another --name") from None
    return link


def run(req: RunRequest, existing: str | None = None) -> int:
    """Run ``req`` in the foreground; return the container's exit code.

    ``existing``: the id of a created or exited detached container to start
    again (``prun start``): its dir and upper layer are reused, its name is
    already its own.
    """
    import shutil

    if req.network.partition(":")[0] not in NETWORKS:
        from rootless.errors import UsageError
        raise UsageError(f"use --network {req.network}: unknown network mode",
                         hint=f"modes: {', '.join(NETWORKS)}")
    timing.mark("cli")
    if req.detach:
        from rootless.containers.detach import check_request
        check_request(req, paths=Paths.from_env())
    paths = Paths.from_env()
    # --network container: needs a helper that joins, not creates, a user namespace.
    helper = take(detach=req.detach, join=req.network.startswith("container:"))
    cid = existing or os.urandom(32).hex()
    cdir = paths.data / "containers" / cid
    rdir = ensure_private_dir(paths.runtime) / "containers" / cid
    hooks: list[RunHooks] = []
    name_link = None
    detached = False
    code = None   # the exit code of a foreground container that ran
    try:
        if req.name and not existing:
            name_link = _claim_name(paths, req.name, cid)
        cdir.mkdir(parents=True, exist_ok=bool(existing))
        rdir.mkdir(parents=True, exist_ok=bool(existing))
        mountpoint = rdir / "rootfs"
        mountpoint.mkdir()
        config, rootfs = _rootfs(req, paths, cdir, mountpoint)
        timing.mark("image")
        maps = _maps(req)
        hooks = load_hooks(req, cid, config)
        timing.mark("hooks")
        hostname = req.hostname or cid[:12]
        etc = {}
        for path, text in _etc_files(req, hostname, hooks).items():
            host = rdir / path.rsplit("/", 1)[1]
            host.write_text(text)
            etc[path] = str(host)
        ctx = BuildContext(cid=cid, cwd=Path.cwd(), host_env=os.environ,
                           volumes_dir=paths.data / "volumes", rootfs_mountpoint=mountpoint,
                           etc_files=etc, host_uid=os.getuid(), host_gid=os.getgid())
        spec = build(req, config, rootfs, maps, ctx)
        for hook in hooks:
            hook.wire_spec(spec)
        if not req.rm:
            import json
            (cdir / "config.json").write_text(json.dumps(
                {"id": cid, "name": req.name, "image": req.image, "spec": spec}))
        if req.detach:
            from rootless.containers import detach
            store, record = detach.register_spec(paths, cid, req, spec)
            _drive(Conversation(helper), spec, req, hooks)
            detach.handed_over(store, record, helper.pid)
            detached = True
            if not existing:
                print(cid, flush=True)
            return 0
        started_at = timestamp()
        code = _drive(Conversation(helper), spec, req, hooks)
        return code
    finally:
        # -d: the keeper (the helper) now owns the helper, rdir and the hooks.
        if not detached:
            helper.close()
            timing.mark("helper-exited")
            for hook in hooks:
                hook.close()
            shutil.rmtree(rdir, ignore_errors=True)
            if req.rm:
                shutil.rmtree(cdir, ignore_errors=True)
                if name_link is not None:
                    name_link.unlink(missing_ok=True)
            elif code is not None:
                from rootless.containers import foreground
                foreground.record(paths, cid, req, spec["process"]["args"], code, started_at,
                                  any(getattr(hook, "oom_killed", False) for hook in hooks))
        timing.mark("cleanup")


def _drive(helper: Conversation, spec: dict, req: RunRequest, hooks: list[RunHooks]) -> int:
    helper.send(P.Spec(spec))
    ns = helper.expect(P.NamespacesReady)
    for hook in hooks:
        hook.namespaces_ready(ns.pid)
    master = None
    while True:
        msg, fds = helper.recv()
        if isinstance(msg, P.Pty):
            master = fds[0]
        elif isinstance(msg, P.Created):
            break
        elif isinstance(msg, P.Failed):
            raise failure(msg)
    pid = msg.pid
    for hook in hooks:
        hook.container_created(pid)
    previous = {sig: signal.signal(sig, lambda s, _f: _forward(pid, s)) for sig in FORWARDED}
    try:
        # -d: the keeper takes over what would die with this process.
        held = [fd for hook in hooks for fd in hook.keeper_fds()] if req.detach else []
        helper.send(P.Go(), held)
        failed = None
        if master is not None:
            from rootless.ptyrelay import relay
            relay(master, helper.sock, stdin=req.interactive)
        while True:
            msg, _ = helper.recv()
            if isinstance(msg, P.Failed):
                failed = msg
            elif isinstance(msg, (P.Exited, P.Detached)):
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise failure(failed)
    return 0 if isinstance(msg, P.Detached) else msg.code


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return  # it exited between the signal and now; Exited follows
