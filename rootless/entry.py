"""The ``prun`` console entry point.

Rules:
- For ``prun run …`` the namespace helper is spawned here, before the CLI
  (click) is imported, so its start-up runs in parallel with ours
  (rootless.helper_client). Everything else goes straight to rootless.cli.
- ``prun run`` leaves with os._exit once stdout/stderr are flushed: by then
  the container is gone and everything is cleaned up, and tearing down the
  interpreter (every imported module) would only add to the wall time.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    argv = sys.argv[1:]
    run = len(argv) > 1 and argv[0] == "run" and "--help" not in argv
    if run:
        from rootless import helper_client
        # A guess (-d may belong to the container's command); take() corrects it.
        helper_client.prestart(detach="-d" in argv or "--detach" in argv,
                               join=any(a.startswith(("container:", "--network=container:",
                                                      "--net=container:")) for a in argv))
    from rootless.cli import main as cli_main
    try:
        cli_main()
    except SystemExit as exc:
        if not run:
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            code = code or 141
        os._exit(code)
