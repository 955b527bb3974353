"""Restart policies and container status names (pure).

Rules:
- ``--restart`` takes ``no``, ``on-failure[:N]``, ``always`` or
  ``unless-stopped`` like docker; anything else is a UsageError naming what
  the user wrote.
- ``decide_restart`` is the one place that says whether the keeper starts the
  container's process again: never after ``stop``/``kill`` by the user
  (docker's "manually stopped"), ``on-failure`` only for a non-zero exit and
  at most N times when N is given. The delay doubles from 100 ms per restart,
  capped at 10 s, and resets once a run lasted 10 s (docker's back-off).
- Statuses are docker's words: created, running, restarting, exited, dead;
  ``stopping`` is internal (stop signal sent, not yet exited) and shows as
  running.
"""

from __future__ import annotations

from rootless.errors import UsageError

POLICIES = ("no", "on-failure", "always", "unless-stopped")
CREATED, RUNNING, RESTARTING, EXITED, DEAD = "created", "running", "restarting", "exited", "dead"
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET_AFTER = 0.1, 10.0, 10.0


class RestartPolicy:
    """A parsed --restart (a plain class: the keeper must not import dataclasses)."""

    __slots__ = ("name", "max_retries")

    def __init__(self, name: str = "no", max_retries: int = 0) -> None:
        self.name = name
        self.max_retries = max_retries  # on-failure only; 0 = unlimited

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RestartPolicy) and \
            (other.name, other.max_retries) == (self.name, self.max_retries)

    def __repr__(self) -> str:
        return f"RestartPolicy({self.name!r}, {self.max_retries})"

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.max_retries else self.name


def parse_restart(text: str) -> RestartPolicy:
    name, _, count = text.partition(":")
    if name not in POLICIES:
        raise UsageError(f"parse --restart {text!r}: unknown policy",
                         hint="use no, on-failure[:N], always or unless-stopped")
    if count and name != "on-failure":
        raise UsageError(f"parse --restart {text!r}: only on-failure takes a retry count",
                         hint="e.g. --restart on-failure:3")
    try:
        retries = int(count) if count else 0
    except ValueError as exc:
        raise UsageError(f"parse --restart {text!r}: {count!r} is not a number",
                         hint="e.g. --restart on-failure:3") from exc
    if retries < 0:
        raise UsageError(f"parse --restart {text!r}: the retry count must not be negative")
    return RestartPolicy(name, retries)


def decide_restart(policy: RestartPolicy, exit_code: int, restarts: int,
                   manually_stopped: bool) -> bool:
    """Whether the keeper runs the container's process again after it exited."""
    if manually_stopped or policy.name == "no":
        return False
    if policy.name == "on-failure":
        return exit_code != 0 and (policy.max_retries == 0 or restarts < policy.max_retries)
    return True


def backoff(previous: float, ran_for: float) -> float:
    """Delay before the next restart, given the last delay and the last run's length."""
    if previous == 0 or ran_for >= BACKOFF_RESET_AFTER:
        return BACKOFF_START
    return min(previous * 2, BACKOFF_MAX)
