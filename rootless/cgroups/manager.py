"""Which cgroup manager a container gets, and the container's cgroup.

Rules:
- ``plan`` decides from facts (the ``HostView`` of preflight's probes and the
  cgroup files), never by trying: ``systemd`` when the user's systemd
  instance answers on the user bus (the default, like podman), ``cgroupfs``
  when our own cgroup is delegated to us (a ``Delegate=yes`` unit, a CI
  container), otherwise ``none``. ``--cgroup-manager`` forces one.
- A requested limit the host cannot enforce is an error naming the flag as
  written and the missing controller, with the fix (the delegate.conf
  drop-in, lingering, or dropping the limit): never a silently ignored
  limit. Without limits and without a usable manager the container runs
  without a cgroup and we say so at debug level.
- ``--cgroups=disabled`` means no cgroup at all and refuses limits;
  ``no-conmon`` is accepted like podman's (our supervisor is never in the
  container's cgroup anyway) and behaves like ``enabled``.
- systemd: a transient ``prun-<id>.scope`` with Delegate=yes holding the
  container's init; limits are unit properties. cgroupfs: ``<own cgroup>/
  prun-<id>``; the processes already in our cgroup move into ``init/``
  first (no internal processes), then controllers are enabled.
- OOM kills are counted by rootless.cgroups.events (the scope's
  memory.events, or the parent's since the start once systemd removed it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from rootless.cgroups import systemd
from rootless.cgroups.events import OomWatch
from rootless.cgroups.limits import Limits, v2_files
from rootless.cgroups.v2 import Hierarchy, Stats, own_cgroup
from rootless.errors import ContainerError, HostSetupError, UsageError

log = logging.getLogger("prun.cgroups")

MODES = ("enabled", "disabled", "no-conmon")
MANAGERS = ("systemd", "cgroupfs")
PAGE = os.sysconf("SC_PAGE_SIZE")
DELEGATE_FIX = ("as root: mkdir -p /etc/systemd/system/user@.service.d && printf "
                "'[Service]\\nDelegate=cpu cpuset io memory pids\\n' > "
                "/etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload, "
                "then log in again")


@dataclass(frozen=True)
class Plan:
    manager: str                 # "systemd" | "cgroupfs" | "none"
    parent: str | None           # cgroupfs: the cgroup to create under; systemd: the slice
    why: str


@dataclass(frozen=True)
class CgroupRequest:
    """The cgroup flags of ``prun run``."""

    limits: Limits = field(default_factory=Limits)
    mode: str = "enabled"            # --cgroups
    manager: str | None = None       # --cgroup-manager (None: pick)
    parent: str | None = None        # --cgroup-parent: a slice (systemd) or a path (cgroupfs)
    plan: Plan | None = None         # decided up front (``planned``), before anything starts


@dataclass(frozen=True)
class HostView:
    """What ``plan`` needs to know about the host (see ``host_view``)."""

    layout: str                  # "v2" | "hybrid" | "v1" (preflight.cgroup_layout)
    own: str | None              # our cgroup v2 path
    uid: int
    user: str
    bus: str | None              # user bus address when its socket exists


def host_view(env: Mapping[str, str] | None = None) -> HostView:
    """The real host's view, from preflight's probes."""
    from rootless.preflight import Host, cgroup_layout

    host = Host(env)
    layout, own = cgroup_layout(host)
    address = systemd.user_bus_address(host.env)
    bus = None
    if address and address.startswith("unix:path="):
        path = address.removeprefix("unix:path=").split(",")[0]
        bus = address if os.path.exists(path) else None
    elif address:
        bus = address  # abstract socket or another transport: let the connect tell
    return HostView(layout, own, host.uid(), host.username(), bus)


def planned(request: CgroupRequest) -> CgroupRequest:
    """``request`` with its plan for this host: fails before any process starts."""
    return replace(request, plan=plan(request, host_view(), Hierarchy()))


def _require(need: dict[str, list[str]], available: set[str], where: str, label: str,
             hint: str) -> None:
    """Raise for the first controller in ``need`` (controller → flags) not available."""
    for controller in sorted(need):
        if controller not in available:
            raise HostSetupError(
                f"apply {need[controller][0]}: the {controller} controller {where} "
                f"({label}: {' '.join(sorted(available)) or 'none'})", hint=hint)


def plan(request: CgroupRequest, view: HostView, fs: Hierarchy) -> Plan:
    """Pick the manager; raise the user-facing error when limits cannot hold."""
    limits = request.limits
    need = limits.required()
    first_flag = next(iter(f for flags in need.values() for f in flags), "")
    if request.mode not in MODES:
        raise UsageError(f"parse --cgroups {request.mode!r}: must be one of {', '.join(MODES)}")
    if request.manager is not None and request.manager not in MANAGERS:
        raise UsageError(f"parse --cgroup-manager {request.manager!r}: must be systemd or cgroupfs")
    if request.mode == "disabled":
        if limits:
            raise UsageError(f"use {first_flag} with --cgroups=disabled: a limit needs a cgroup",
                             hint="drop --cgroups=disabled, or the limit")
        return Plan("none", None, "--cgroups=disabled")
    if view.layout != "v2":
        why = (f"cgroups on this host are {'a v1/v2 hybrid' if view.layout == 'hybrid' else 'v1'}, "
               "not the unified cgroup v2 hierarchy")
        if limits:
            controller = next(iter(sorted(need)))
            raise HostSetupError(
                f"apply {need[controller][0]}: {why}, so the {controller} controller cannot be "
                "delegated to an unprivileged user",
                hint="boot the host with systemd.unified_cgroup_hierarchy=1 (needs root), or run "
                     "without resource limits (--cgroups=disabled)")
        return Plan("none", None, why)

    manager = request.manager
    if manager is None:
        if view.bus:
            manager = "systemd"
        elif view.own and fs.writable(view.own):
            manager = "cgroupfs"
        else:
            why = (f"no systemd user instance (no user bus) and your cgroup {view.own} is not "
                   "delegated to you")
            if limits:
                raise HostSetupError(
                    f"apply {first_flag}: {why}",
                    hint=f"sudo loginctl enable-linger {view.user}, then log in again (starts "
                         "your systemd user instance); or run inside a delegated cgroup "
                         "(--cgroup-manager=cgroupfs); or run without the limit")
            return Plan("none", None, why)

    if manager == "systemd":
        if not view.bus:
            raise HostSetupError(
                "use --cgroup-manager=systemd: no systemd user bus (DBUS_SESSION_BUS_ADDRESS "
                "unset and no $XDG_RUNTIME_DIR/bus)",
                hint=f"sudo loginctl enable-linger {view.user}, then log in again")
        where = f"/user.slice/user-{view.uid}.slice/user@{view.uid}.service"
        if not fs.exists(where):
            where = view.own or "/"
        _require(need, fs.controllers(where), "is not delegated to your systemd user instance",
                 "delegated", DELEGATE_FIX + "; or run without the limit")
        return Plan("systemd", request.parent, f"systemd user instance, controllers at {where}")

    parent = request.parent or view.own
    if not parent or not fs.exists(parent) or not fs.writable(parent):
        raise HostSetupError(
            f"use --cgroup-manager=cgroupfs: the cgroup {parent} is not delegated to you "
            "(cannot write its cgroup.procs and cgroup.subtree_control)",
            hint="run prun inside a cgroup delegated to you (a 'systemd-run --user -p "
                 "Delegate=yes' unit, a container with a writable cgroup), or use "
                 "--cgroup-manager=systemd")
    _require(need, fs.controllers(parent), f"is not available in your cgroup {parent}",
             "available", "delegate the controller to the enclosing unit (Delegate=yes, or "
             + DELEGATE_FIX + "); or run without the limit")
    return Plan("cgroupfs", parent, f"delegated cgroup {parent}")


class ContainerCgroup:
    """The cgroup of one running container (either manager)."""

    def __init__(self, fs: Hierarchy, path: str, manager: str, unit: str | None = None,
                 bus: str | None = None) -> None:
        self.fs = fs
        self.path = path
        self.manager = manager
        self.unit = unit
        self.bus = bus
        self.oom_kills = 0
        self._oom = OomWatch(path, str(fs.root))

    def stats(self) -> Stats:
        return self.fs.stats(self.path)

    def note_oom(self) -> None:
        """Count OOM kills (rootless.cgroups.events: from our memory.events
        while the cgroup exists, else the parent's since we started)."""
        kills = self._oom.kills()
        if kills is not None:
            self.oom_kills = max(self.oom_kills, kills)

    @property
    def oom_killed(self) -> bool:
        return self.oom_kills > 0

    def close(self) -> None:
        """Remove the cgroup (stop the scope); what is still in it is killed."""
        self.note_oom()
        if self.manager == "systemd":
            systemd.stop_scope(self.bus, self.unit)
        else:
            self.fs.remove(self.path)


def create(plan_: Plan, request: CgroupRequest, container_id: str, pid: int,
           fs: Hierarchy, view: HostView) -> ContainerCgroup | None:
    """Put ``pid`` (the container's init, before it execs) into a new cgroup."""
    if plan_.manager == "none":
        log.debug("container %s runs without a cgroup: %s", container_id[:12], plan_.why)
        return None
    files = v2_files(request.limits)
    if plan_.manager == "systemd":
        unit = systemd.scope_name(container_id)
        props = systemd.scope_properties(request.limits, pid, f"prun container {container_id[:12]}",
                                         plan_.parent)
        path = systemd.start_scope(view.bus, unit, props)
        cg = ContainerCgroup(fs, path, "systemd", unit, view.bus)
        try:
            verify(fs, path, files)
        except ContainerError:
            cg.close()
            raise
        return cg
    parent = plan_.parent
    needed = {name.split(".")[0] for name in files}
    have = set((fs.read(parent, "cgroup.subtree_control") or "").split())
    if needed - have and fs.procs(parent):
        # No internal processes: whoever is in our cgroup (this supervisor
        # included) moves to a leaf before controllers can be enabled.
        fs.create(f"{parent.rstrip('/')}/init")
        for other in fs.procs(parent):
            fs.move(f"{parent.rstrip('/')}/init", other)
    # Also the accounting controllers (prun stats, OOM detection) we may use.
    fs.enable(parent, (needed | {"cpu", "io", "memory", "pids"}) & fs.controllers(parent))
    path = f"{parent.rstrip('/')}/prun-{container_id}"
    fs.create(path)
    try:
        fs.apply(path, files)
        fs.move(path, pid)
    except ContainerError:
        fs.remove(path)
        raise
    return ContainerCgroup(fs, path, "cgroupfs")


def update(path: str, limits: Limits, fs: Hierarchy, view: HostView) -> None:
    """Change the limits of a running container's cgroup (``prun update``)."""
    _require(limits.required(), fs.controllers(path),
             f"is not enabled in the container's cgroup {path}", "enabled", DELEGATE_FIX)
    name = path.rsplit("/", 1)[-1]
    if name.endswith(".scope") and view.bus:
        # systemd owns a scope's own files: change the unit, or a reload undoes it.
        systemd.set_properties(view.bus, name, systemd.limit_properties(limits))
        verify(fs, path, v2_files(limits))
    else:
        fs.apply(path, v2_files(limits))


def verify(fs: Hierarchy, path: str, files: dict[str, str]) -> None:
    """Check that systemd really wrote the limits (it skips properties whose
    controller it lacks, silently)."""
    for name in ("memory.max", "pids.max", "cpu.max", "cpu.weight"):
        if name in files and not files[name].startswith("max"):
            actual = (fs.read(path, name) or "").strip()
            expected = files[name]
            if name == "memory.max" and actual.isdigit():
                actual = str(int(actual) // PAGE * PAGE)
                expected = str(int(expected) // PAGE * PAGE)
            if actual != expected:
                raise ContainerError(
                    f"apply {name}={files[name]} to {path}: systemd set {actual or 'nothing'}",
                    hint="check 'systemctl --user show' for the scope; " + DELEGATE_FIX)


def join(container_pid: int, pid: int, fs: Hierarchy | None = None,
         view: HostView | None = None) -> None:
    """Move ``pid`` (``prun exec``'s process, before it starts the command)
    into the cgroup of the container whose init is ``container_pid``; nothing
    to do when the container has no cgroup prun made for it (no cgroup v2,
    ``--cgroups=disabled``, a host where limits are impossible)."""
    if view is None:
        view = host_view()
    if view.layout == "v1":
        return
    path = cgroup_of(container_pid)
    name = path.rsplit("/", 1)[-1]
    if not name.startswith("prun-") or path == cgroup_of(pid):
        return
    if name.endswith(".scope") and view.bus:
        # The scope's processes may only be moved by its manager (AttachProcessesToUnit).
        systemd.attach(view.bus, name, pid)
    else:
        (fs or Hierarchy()).move(path, pid)


def cgroup_of(pid: int, proc: str = "/proc") -> str:
    """The cgroup v2 path of a running process (``prun stats``/``pause``)."""
    try:
        with open(f"{proc}/{pid}/cgroup") as f:
            return own_cgroup(f.read())
    except OSError as exc:
        raise ContainerError(f"read the cgroup of pid {pid}: {exc.strerror or exc}") from exc
