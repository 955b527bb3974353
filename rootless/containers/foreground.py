"""A foreground container run without --rm, recorded when it exits.

Rules:
- The supervisor calls ``record`` after the container exited and its hooks
  closed (the cgroup hook then knows whether the OOM killer struck), so
  ``ps -a``, ``inspect`` (ExitCode, OOMKilled, times), ``rm`` and ``start``
  know it like a detached container that exited. ``--rm`` containers and
  runs that failed before the command started are not recorded.
- The record is made like ``run -d``'s (rootless.containers.detach.register:
  the name, volumes and config), then set to exited in one more write.
"""

from __future__ import annotations

from rootless.containers import detach, policy
from rootless.containers.logs import timestamp
from rootless.containers.store import Store


def record(paths, cid: str, req, args: list[str], code: int, started_at: str,
           oom_killed: bool) -> None:
    store = Store(paths)
    c = detach.register(store, cid, req, args)
    store.update(c, status=policy.EXITED, exit_code=code, started_at=started_at,
                 finished_at=timestamp(), oom_killed=oom_killed)
