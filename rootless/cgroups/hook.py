"""The cgroup step of ``prun run``: a supervisor ``RunHooks`` (see supervisor.py).

Rules:
- The CLI plans (``manager.planned``) before the helper starts, so a limit
  the host cannot enforce fails the run with exit 125 and nothing started
  (the factory plans itself for a request built elsewhere); no cgroup
  wanted or possible (and no limits asked) → no hook.
- ``container_created`` puts the container's init into its cgroup while it
  still waits to exec, so every process it ever starts is inside; ``close``
  records whether the OOM killer struck (``oom_killed``) and removes the
  cgroup / stops the scope.
"""

from __future__ import annotations

import logging

from rootless.cgroups import lookup, manager
from rootless.cgroups.v2 import Hierarchy
from rootless.paths import Paths
from rootless.supervisor import RunHooks

log = logging.getLogger("prun.cgroups")


class CgroupHook(RunHooks):
    def __init__(self, cid: str, request: manager.CgroupRequest, plan: manager.Plan,
                 view: manager.HostView, fs: Hierarchy) -> None:
        self.cid = cid
        self.request, self.plan, self.view, self.fs = request, plan, view, fs
        self.cgroup: manager.ContainerCgroup | None = None
        self.oom_killed = False

    def container_created(self, pid: int) -> None:
        self.cgroup = manager.create(self.plan, self.request, self.cid, pid, self.fs, self.view)
        # prun stats/pause/unpause find it here while it runs.
        lookup.record(Paths.from_env(), self.cid, self.cgroup.path)
        log.debug("container %s in cgroup %s (%s)", self.cid[:12], self.cgroup.path,
                  self.plan.why)

    def close(self) -> None:
        if self.cgroup is not None:
            cg, self.cgroup = self.cgroup, None
            cg.close()
            self.oom_killed = cg.oom_killed


def factory(req, cid: str, config: dict) -> CgroupHook | None:
    request = getattr(req, "cgroup", None) or manager.CgroupRequest()
    fs = Hierarchy()
    view = manager.host_view()
    plan = request.plan or manager.plan(request, view, fs)
    if plan.manager == "none":
        log.debug("no cgroup for this container: %s", plan.why)
        return None
    return CgroupHook(cid, request, plan, view, fs)
