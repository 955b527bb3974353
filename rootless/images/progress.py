"""Pull/push progress: rich bars on a terminal, plain lines otherwise.

Rules: output goes to stderr (stdout carries the image ID, like podman);
``quiet`` prints nothing; rich is imported only when bars are drawn; the
per-layer callbacks are called from worker threads.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO


class Reporter:
    """Plain lines, one per finished layer (pipes, logs, CI)."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self.out = out or sys.stderr
        self.quiet = quiet
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        if not self.quiet:
            with self._lock:
                print(text, file=self.out, flush=True)

    def layer(self, digest: str, size: int) -> Callable[[int], None]:
        return _ignore

    def layer_done(self, digest: str, status: str) -> None:
        self.say(f"Copying blob {short(digest)} {status}")

    def close(self) -> None:
        return None


class RichReporter(Reporter):
    """A rich progress bar per layer."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TransferSpeedColumn)

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  DownloadColumn(), TransferSpeedColumn(),
                                  console=Console(file=self.out), transient=False)
        self._tasks: dict[str, int] = {}
        self._progress.start()

    def say(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False)

    def layer(self, digest: str, size: int) -> Callable[[int], None]:
        task = self._progress.add_task(f"blob {short(digest)}", total=size if size > 0 else None)
        self._tasks[digest] = task

        def advance(n: int) -> None:
            self._progress.update(task, advance=n)
        return advance

    def layer_done(self, digest: str, status: str) -> None:
        task = self._tasks.get(digest)
        if task is None:
            task = self._progress.add_task(f"blob {short(digest)}", total=1, completed=1)
        self._progress.update(task, description=f"blob {short(digest)} {status}")

    def close(self) -> None:
        self._progress.stop()


def reporter(quiet: bool = False, out: TextIO | None = None) -> Reporter:
    out = out or sys.stderr
    if quiet:
        return Reporter(out, quiet=True)
    if out.isatty():
        return RichReporter(out)
    return Reporter(out)


def short(digest: str) -> str:
    return digest.split(":")[-1][:12]


def _ignore(n: int) -> None:
    return None
