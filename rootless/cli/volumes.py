"""``prun volume``: named volumes (create, ls, inspect, rm, prune).

Rules: a volume is a directory ``<data>/volumes/NAME/_data`` plus a row in
the store; ``rm`` refuses a volume a container uses unless ``-f``; ``prune``
removes the ones no container uses.
"""

from __future__ import annotations

import json

import click

from rootless.errors import ConflictError, PrunError


def _users(store, name: str) -> list[str]:
    return [c.name for c in store.list() if name in c.config.get("volumes", [])]


@click.group(short_help="Manage named volumes.")
def volume() -> None:
    """Create, list, inspect and remove named volumes.

    \b
    Example:
      prun volume create data && prun run --rm -v data:/data busybox ls /data
    """


@volume.command(short_help="Create a volume.")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE")
@click.argument("name", required=False)
def create(labels: tuple[str, ...], name: str | None) -> int:
    """Create volume NAME (a random name when omitted); print its name.

    \b
    Example:
      prun volume create data
    """
    import secrets

    from rootless.containers.store import Store
    store = Store()
    name = name or secrets.token_hex(32)
    store.add_volume(name, dict(label.partition("=")[::2] for label in labels))
    click.echo(name)
    return 0


@volume.command(name="ls", short_help="List volumes.")
@click.option("-q", "--quiet", is_flag=True, help="Only print names.")
@click.option("--format", "fmt", default="table", metavar="table|json")
def ls(quiet: bool, fmt: str) -> int:
    """List volumes.

    \b
    Example:
      prun volume ls -q
    """
    from rootless.containers.store import Store
    vols = Store().volumes()
    if quiet:
        for v in vols:
            click.echo(v["name"])
    elif fmt == "json":
        click.echo(json.dumps([{"Name": v["name"], "Driver": "local"} for v in vols], indent=2))
    else:
        click.echo("DRIVER    VOLUME NAME")
        for v in vols:
            click.echo(f"local     {v['name']}")
    return 0


@volume.command(name="inspect", short_help="Show volumes as JSON.")
@click.argument("names", nargs=-1, required=True)
def inspect_(names: tuple[str, ...]) -> int:
    """Print volumes as JSON (name, mount point, labels, creation time).

    \b
    Example:
      prun volume inspect data
    """
    from rootless.containers.store import Store
    from rootless.containers.views import iso
    store = Store()
    out = []
    for name in names:
        v = store.volume(name)
        out.append({"Name": name, "Driver": "local",
                    "Mountpoint": str(store.volume_dir(name) / "_data"),
                    "CreatedAt": iso(v["created"]), "Labels": v["labels"], "Scope": "local"})
    click.echo(json.dumps(out, indent=4))
    return 0


@volume.command(short_help="Remove volumes.")
@click.option("-f", "--force", is_flag=True, help="Remove even when a container uses it.")
@click.argument("names", nargs=-1, required=True)
def rm(force: bool, names: tuple[str, ...]) -> int:
    """Remove volumes (-f: also when a container uses them).

    \b
    Example:
      prun volume rm data
    """
    from rootless.cli import report
    from rootless.containers.store import Store, remove_tree
    store = Store()
    failed = 0
    for name in names:
        try:
            store.volume(name)
            users = _users(store, name)
            if users and not force:
                raise ConflictError(f"remove volume {name!r}: used by container "
                                    f"{', '.join(users)}",
                                    hint="remove the container first, or use -f")
            remove_tree(store.volume_dir(name))
            store.remove_volume(name)
            click.echo(name)
        except PrunError as exc:
            report(exc)
            failed += 1
    return 125 if failed else 0


@volume.command(short_help="Remove volumes no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask (prun never asks).")
def prune(force: bool) -> int:
    """Remove every volume no container uses.

    \b
    Example:
      prun volume prune -f
    """
    from rootless.containers.store import Store, remove_tree
    store = Store()
    for v in store.volumes():
        if not _users(store, v["name"]):
            remove_tree(store.volume_dir(v["name"]))
            store.remove_volume(v["name"])
            click.echo(v["name"])
    return 0
