"""The one error type tree of prun.

Rules:
- Every failure a user can cause or fix is a ``PrunError``: ``message`` reads
  ``<operation> <object as the user wrote it>: <cause>`` and ``hint`` names
  the fix (and whether it needs root). The CLI prints both and exits with
  ``exit_code``; nothing else in the code base prints errors.
- Raise with ``from exc`` when translating an OSError or a library exception,
  so ``--log-level debug`` can show the chain.
- Exit codes follow docker/podman: 125 for prun's own failures, 126 when the
  container command cannot be executed, 127 when it is not found.
"""

from __future__ import annotations


class PrunError(Exception):
    """A failure with a one-line message and an optional fix."""

    exit_code = 125

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(PrunError):
    """A flag, argument or file given by the user is not valid."""


class HostSetupError(PrunError):
    """The host lacks a prerequisite (see ``prun info``)."""


class NotFoundError(PrunError):
    """An image, container, volume or file named by the user does not exist."""


class ConflictError(PrunError):
    """The request clashes with existing state (name in use, image in use)."""


class RegistryError(PrunError):
    """A registry refused or failed a request."""


class StoreError(PrunError):
    """The local store is damaged, full or locked."""


class ContainerError(PrunError):
    """Setting up or running a container failed."""


class CommandCannotRun(PrunError):
    """The container command exists but cannot be executed (docker: 126)."""

    exit_code = 126


class CommandNotFound(PrunError):
    """The container command does not exist in the image (docker: 127)."""

    exit_code = 127
