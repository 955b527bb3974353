"""System commands: info, version."""

from __future__ import annotations

import json
import platform
import sys

import click

from rootless import __version__

FORMATS = click.Choice(["table", "json"])
MARK = {"ok": "ok", "degraded": "degraded", "missing": "MISSING"}


@click.command()
@click.option("--format", "-f", "fmt", type=FORMATS, default="table", show_default=True,
              help="Output format.")
def info(fmt: str) -> int:
    """Check this host for what rootless containers need, with the fix for each gap.

    Exits 0 when everything `prun run` needs is there, 1 otherwise.

    \b
    Example:
      prun info
      prun info --format json | jq '.checks[] | select(.status != "ok")'
    """
    from rootless.preflight import probe

    caps = probe()
    if fmt == "json":
        data = {"version": __version__, "kernel": platform.release(),
                "python": platform.python_version(), **caps.as_dict()}
        click.echo(json.dumps(data, indent=2))
        return 0 if caps.ready else 1
    width = max(len(f.name) for f in caps.findings)
    for f in caps.findings:
        click.echo(f"{f.name:<{width}}  {MARK[f.status]:<8}  {f.detail}")
        if f.fix and f.status != "ok":
            click.echo(f"{'':<{width}}  {'':<8}  fix: {f.fix}")
    verdict = "ready: prun run works on this host" if caps.ready else \
        "not ready: fix the MISSING lines above for prun run to work"
    click.echo(verdict, err=not caps.ready)
    return 0 if caps.ready else 1


@click.command()
def version() -> int:
    """Show prun's version and the Python it runs on.

    \b
    Example:
      prun version
    """
    click.echo(f"prun version {__version__}")
    click.echo(f"python {platform.python_version()} ({sys.executable})")
    return 0


@click.group()
def system() -> None:
    """Manage prun's own state: seed a new store, or wipe it.

    \b
    Example:
      prun system init
      prun system reset -f
    """


@system.command()
def init() -> int:
    """Seed the store with localhost/busybox:latest (from the host's busybox-static).

    `scripts/install` runs this, so `prun run busybox ...` works on a machine
    with no registry in reach. Running it again changes nothing.

    \b
    Example:
      prun system init && prun run --rm busybox echo hello
    """
    from rootless.images import seed
    from rootless.images.store import Store

    image_id, created = seed.seed(Store.default())
    short = image_id.split(":")[1][:12]
    click.echo(f"{seed.DEFAULT_IMAGE} {'seeded' if created else 'present'} ({short})")
    return 0


@system.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def reset(force: bool) -> int:
    """Remove all of your containers, images, volumes and prun state.

    Running containers are killed first; mounts a crash left behind are
    detached. Your data dir ($XDG_DATA_HOME/prun or PRUN_ROOT) and runtime
    dir are left empty.

    \b
    Example:
      prun system reset -f && prun system init
    """
    from rootless.paths import Paths
    from rootless.reset import reset as do_reset

    paths = Paths.from_env()
    if not force:
        click.echo(f"This removes all containers, images, volumes and state in {paths.data} "
                   f"and {paths.runtime}.", err=True)
        try:
            sure = click.confirm("Are you sure you want to continue?", err=True)
        except click.exceptions.Abort:  # no stdin to answer from: that is not a yes
            sure = False
        if not sure:
            click.echo("prun system reset: nothing removed", err=True)
            return 0
    report = do_reset(paths)
    click.echo(f"removed {report.containers} container(s) and all images, volumes and state"
               + (f"; detached {len(report.unmounted)} leftover mount(s)"
                  if report.unmounted else ""))
    return 0
