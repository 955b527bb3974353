"""Commands on a running container's cgroup: stats, pause, unpause, update."""

from __future__ import annotations

import json
import time

import click

from rootless.cli.cgroup_flags import KEYS, limit_options

FORMATS = click.Choice(["table", "json"])


def _size(n: int | None) -> str:
    if n is None:
        return "--"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
    return str(n)


def _net(procs: list[int]) -> tuple[int | None, int | None]:
    """rx/tx bytes of the container's network namespace (all but lo)."""
    for pid in procs:
        try:
            with open(f"/proc/{pid}/net/dev") as f:
                lines = f.read().splitlines()[2:]
        except OSError:
            continue
        rx = tx = 0
        for line in lines:
            name, _, data = line.partition(":")
            if name.strip() != "lo":
                fields = data.split()
                rx, tx = rx + int(fields[0]), tx + int(fields[8])
        return rx, tx
    return None, None


def _sample(targets, fs) -> list[dict]:
    first = {cid: fs.stats(path) for cid, path in targets}
    time.sleep(0.5)
    rows = []
    for cid, path in targets:
        before, now = first[cid], fs.stats(path)
        cpu = None
        if now.cpu_usec is not None and before.cpu_usec is not None:
            cpu = (now.cpu_usec - before.cpu_usec) / (now.taken_at - before.taken_at) / 1e4
        rx, tx = _net(fs.procs(path))
        rows.append({"id": cid, "cgroup": path, "cpu_percent": cpu, **now.as_dict(),
                     "net_rx": rx, "net_tx": tx})
    return rows


def _table(rows: list[dict]) -> str:
    out = [f"{'ID':<12}  {'CPU %':>7}  {'MEM USAGE / LIMIT':>21}  {'MEM %':>6}  {'PIDS':>5}  "
           f"{'BLOCK I/O':>19}  {'NET I/O':>19}"]
    for r in rows:
        cpu = "--" if r["cpu_percent"] is None else f"{r['cpu_percent']:.2f}%"
        limit = r["memory_limit"]
        mem_pct = f"{100 * r['memory'] / limit:.2f}%" if limit and r["memory"] is not None else "--"
        mem = f"{_size(r['memory'])} / {_size(limit) if limit else 'unlimited'}"
        out.append(f"{r['id'][:12]:<12}  {cpu:>7}  {mem:>21}  {mem_pct:>6}  "
                   f"{'--' if r['pids'] is None else r['pids']:>5}  "
                   f"{_size(r['io_read']) + ' / ' + _size(r['io_write']):>19}  "
                   f"{_size(r['net_rx']) + ' / ' + _size(r['net_tx']):>19}")
    return "\n".join(out)


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.option("--format", "-f", "fmt", type=FORMATS, default="table", show_default=True,
              help="Output format.")
@click.argument("containers", nargs=-1)
def stats(no_stream: bool, fmt: str, containers: tuple[str, ...]) -> int:
    """Show live CPU, memory, pids, block and network I/O of running containers.

    Without CONTAINER: every running container that has a cgroup.

    \b
    Example:
      prun stats --no-stream web
      prun stats --no-stream --format json | jq '.[].memory'
    """
    from rootless.cgroups import lookup
    from rootless.cgroups.v2 import Hierarchy
    from rootless.paths import Paths

    fs = Hierarchy()
    if containers:
        targets = [lookup.find(ref) for ref in containers]
    else:
        running = Paths.from_env().runtime / "containers"
        targets = [(p.parent.name, p.read_text().strip())
                   for p in sorted(running.glob(f"*/{lookup.RECORD}"))] if running.is_dir() else []
    while True:
        rows = _sample([(cid, path) for cid, path in targets if fs.exists(path)], fs)
        if fmt == "json":
            click.echo(json.dumps(rows, indent=2))
        else:
            if not no_stream:
                click.echo("\x1b[2J\x1b[H", nl=False)
            click.echo(_table(rows))
        if no_stream or not rows:
            return 0
        time.sleep(0.5)


def _freeze(containers: tuple[str, ...], frozen: bool) -> int:
    from rootless.cgroups import lookup
    from rootless.cgroups.v2 import Hierarchy

    fs = Hierarchy()
    for ref in containers:
        _, path = lookup.find(ref)
        fs.freeze(path, frozen)
        click.echo(ref)
    return 0


@click.command()
@click.argument("containers", nargs=-1, required=True)
def pause(containers: tuple[str, ...]) -> int:
    """Freeze every process of running containers (cgroup.freeze).

    \b
    Example:
      prun pause web
    """
    return _freeze(containers, True)


@click.command()
@click.argument("containers", nargs=-1, required=True)
def unpause(containers: tuple[str, ...]) -> int:
    """Thaw paused containers.

    \b
    Example:
      prun unpause web
    """
    return _freeze(containers, False)


@click.command()
@limit_options
@click.argument("container")
def update(container: str, **opts) -> int:
    """Change the resource limits of a running container.

    \b
    Example:
      prun update --memory 512m --cpus 1.5 web
    """
    from rootless.cgroups import lookup, manager
    from rootless.cgroups.limits import parse_limits
    from rootless.cgroups.v2 import Hierarchy
    from rootless.errors import UsageError

    limits = parse_limits({key: opts[key] for key in KEYS})
    if not limits:
        raise UsageError(f"update {container}: no limit given",
                         hint="e.g. prun update --memory 512m --cpus 1.5 " + container)
    _, path = lookup.find(container)
    manager.update(path, limits, Hierarchy(), manager.host_view())
    click.echo(container)
    return 0
