"""`prun run --network container:NAME|ID`: share a running container's network.

Rules:
- The target is a detached container in the store, found by name, id or
  unique id prefix, refreshed first; one that does not exist or is not
  running fails before the helper starts anything (exit 125, hint ``prun
  ps``).
- A sibling user namespace has no rights over the target's network
  namespace (setns(CLONE_NEWNET) needs CAP_SYS_ADMIN in the user namespace
  that owns it), so the new container's helper joins the target keeper's
  user namespace instead of creating one (no newuidmap: the maps exist) and
  setns()es into its network namespace; everything else (mount, UTS, IPC,
  PID, cgroup) is its own. ``wire_spec`` tells the helper whom to join
  (``join``) and takes the target's ``single_map`` (setgroups is denied in
  a single-id namespace). The keeper is the helper process of the target:
  it lives in the container's user and network namespaces across restarts.
- Flags that would change the shared network are refused as podman does:
  ``-p``/``-P`` ("conflicting options: port publishing and the network
  mode"), ``--dns*``, ``--add-host``; so are ``--userns``/``--uidmap``/
  ``--gidmap`` (the user namespace is the target's), and so is a target
  in a nested user namespace (keep-id, ``--uidmap``).
- /etc/hosts and /etc/resolv.conf are copies of the target's generated ones
  (none when it kept the image's with ``--no-hosts``); /etc/hostname is the
  new container's own. No slirp4netns or pasta is started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rootless.errors import ConflictError, NotFoundError, UsageError
from rootless.supervisor import RunHooks


@dataclass(frozen=True)
class Target:
    name: str
    keeper_pid: int              # the target's helper: its user and network namespaces
    single_map: bool
    etc_dir: Path                # the target's generated /etc files


def check_flags(req) -> None:
    """Refuse what cannot apply to a network namespace shared with another container."""
    mode = req.network
    conflicts = (("port publishing", req.publish or req.publish_all, "-p/-P"),
                 ("dns", req.dns or req.dns_search or req.dns_option, "--dns*"),
                 ("adding host entries", req.add_host, "--add-host"),
                 ("a user namespace", req.userns or req.uidmap or req.gidmap,
                  "--userns/--uidmap/--gidmap"))
    for what, given, flags in conflicts:
        if given:
            raise UsageError(f"use --network {mode}: conflicting options: {what} and the "
                             "network mode", hint=f"drop {flags}: the network (and its user "
                             "namespace) belongs to the other container; set them there")


def find(ref: str, mode: str, paths) -> Target:
    """The running container ``ref`` whose network ``mode`` (as written) joins."""
    from rootless.containers import lifecycle, policy
    from rootless.containers.store import Store, alive

    store = Store(paths)
    try:
        c = store.resolve(ref)
    except NotFoundError:
        raise NotFoundError(f"use --network {mode}: no such container {ref!r}",
                            hint="`prun ps` lists the running containers") from None
    lifecycle.refresh(store, c)
    if c.status != policy.RUNNING or not alive(c.keeper_pid, c.keeper_start):
        raise ConflictError(f"use --network {mode}: container {c.name} is not running",
                            hint=f"start it first (prun start {c.name}); `prun ps` lists "
                                 "the running containers")
    try:
        spec = json.loads((store.data_dir(c.id) / "config.json").read_text())["spec"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConflictError(f"use --network {mode}: the configuration of container "
                            f"{c.name} is unreadable ({exc})") from None
    if spec.get("nested_maps"):
        # Its keeper sits in the first user namespace's child; from there the
        # new helper could not stop its own FUSE server (a host-uid process).
        raise ConflictError(f"use --network {mode}: container {c.name} runs in a nested user "
                            "namespace (--userns/--uidmap), whose network prun cannot share",
                            hint=f"recreate {c.name} without --userns/--uidmap")
    return Target(c.name, c.keeper_pid, bool(spec["single_map"]),
                  paths.runtime / "containers" / c.id)


class JoinedNetwork(RunHooks):
    """The run hook of ``--network container:``: /etc files and the join."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def etc_files(self, files: dict[str, str]) -> None:
        for path in ("/etc/hosts", "/etc/resolv.conf"):
            try:
                files[path] = (self.target.etc_dir / path.rsplit("/", 1)[1]).read_text()
            except FileNotFoundError:
                files.pop(path, None)   # the target kept the image's (--no-hosts)

    def wire_spec(self, spec: dict) -> None:
        spec["join"] = self.target.keeper_pid
        spec["single_map"] = self.target.single_map


def hook(req, cid: str, config: dict) -> JoinedNetwork:
    """The supervisor's factory (rootless.supervisor.NETWORKS["container"])."""
    from rootless.paths import Paths

    ref = req.network.partition(":")[2]
    if not ref:
        raise UsageError(f"use --network {req.network}: the container is missing",
                         hint="--network container:NAME or container:ID")
    check_flags(req)
    return JoinedNetwork(find(ref, req.network, Paths.from_env()))
