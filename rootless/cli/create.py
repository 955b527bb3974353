"""`prun create`: `prun run -d`'s flags, recorded without starting.

Its own module so that `prun ps` and friends do not import run's options.
"""

from __future__ import annotations

import click


def _create(image: str, command: tuple[str, ...], **opts) -> int:
    """Create a container (as `prun run -d` would) without starting it; print its id.

    \b
    Example:
      prun create --name web busybox httpd -f -p 8080
      prun start web
    """
    from rootless.cli.run import build_request
    from rootless.containers import detach
    opts["detach"] = True
    click.echo(detach.create(build_request(image, command, opts)).id)
    return 0


def _run_params() -> list[click.Parameter]:
    from rootless.cli.run import run
    return [p for p in run.params if p.name != "detach"]


create = click.Command(
    "create", callback=_create, params=_run_params(), help=_create.__doc__,
    short_help="Create a container without starting it.",
    context_settings={"help_option_names": ["--help"], "allow_interspersed_args": False})
