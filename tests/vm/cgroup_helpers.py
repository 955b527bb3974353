"""Shared by the guest tests: a process held before exec until it is in its cgroup."""

from __future__ import annotations

import subprocess
import sys
import uuid

from rootless.cgroups import manager
from rootless.cgroups.limits import parse_limits
from rootless.cgroups.v2 import Hierarchy

HOLD = "import os, sys; os.read(0, 1); os.execvp(sys.argv[1], sys.argv[1:])"


class Held:
    """``argv`` started, but waiting on stdin before it execs."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", HOLD, *argv],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def release(self) -> None:
        self.proc.stdin.write("x")
        self.proc.stdin.close()


def contain(argv, manager_name=None, **opts):
    """(Held process, its ContainerCgroup) with the given limit flags."""
    request = manager.CgroupRequest(parse_limits(opts), manager=manager_name)
    fs = Hierarchy()
    view = manager.host_view()
    if manager_name == "cgroupfs":
        view = manager.HostView(view.layout, view.own, view.uid, view.user, None)
    plan = manager.plan(request, view, fs)
    held = Held(argv)
    cg = manager.create(plan, request, uuid.uuid4().hex, held.proc.pid, fs, view)
    return held, cg
