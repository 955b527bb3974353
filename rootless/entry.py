"""The ``prun`` console entry point.

Rule: for ``prun run …`` the namespace helper is spawned here, before the
CLI (click) is imported, so its start-up runs in parallel with ours
(rootless.helper_client). Everything else goes straight to rootless.cli.
"""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) > 1 and argv[0] == "run" and "--help" not in argv:
        from rootless import helper_client
        # A guess (-d may belong to the container's command); take() corrects it.
        helper_client.prestart(detach="-d" in argv or "--detach" in argv)
    from rootless.cli import main as cli_main
    cli_main()
