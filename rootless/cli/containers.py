"""Container lifecycle commands: ps, logs, stop, kill, rm, wait, inspect, rename, prune.

Rules: parse flags, resolve the containers the user named (each through
Store.resolve, so the error repeats what they wrote), call
rootless.containers.lifecycle, print like docker. Commands taking several
containers act on each and report failures at the end (exit 125 if any
failed, after doing the rest), like docker.
"""

from __future__ import annotations

import json
import signal
import sys
import time

import click

from rootless.errors import PrunError, UsageError


def _store():
    from rootless.containers.store import Store
    return Store()


def _each(names: tuple[str, ...], action) -> int:
    from rootless.cli import report
    failed = 0
    for name in names:
        try:
            action(name)
        except PrunError as exc:
            report(exc)
            failed += 1
    return 125 if failed else 0


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                     for r in [header, *rows])


@click.command(short_help="List containers.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers (default: running).")
@click.option("-q", "--quiet", is_flag=True, help="Only print container ids.")
@click.option("--no-trunc", is_flag=True, help="Print full ids and commands.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Filter: id, name, status, exited, ancestor.")
@click.option("--format", "fmt", default="table", metavar="table|json",
              help="Output format.")
def ps(show_all: bool, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str) -> int:
    """List containers (running ones unless -a).

    \b
    Example:
      prun ps -a --filter status=exited
    """
    from rootless.containers import lifecycle, views
    wanted = views.parse_filters(filters)
    if fmt not in ("table", "json"):
        raise UsageError(f"parse --format {fmt!r}: use table or json")
    store = _store()
    rows = []
    for c in store.list():
        lifecycle.refresh(store, c)
        if (show_all or "status" in wanted or lifecycle.is_live(c)) and views.matches(c, wanted):
            rows.append(c)
    if quiet:
        for c in rows:
            click.echo(c.id if no_trunc else c.short_id)
    elif fmt == "json":
        now = time.time()
        click.echo(json.dumps([views.ps_row(c, now) for c in rows], indent=2))
    else:
        now = time.time()
        header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        click.echo(_table([[c.id if no_trunc else c.short_id, c.image,
                            views.command_text(c, 10_000 if no_trunc else 20),
                            views.ago(now - c.created) + " ago", views.status_text(c, now),
                            views.ports_text(c), c.name] for c in rows], header))
    return 0


@click.command(short_help="Print a container's logs.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until it exits.")
@click.option("-n", "--tail", default="all", metavar="N", help="Only the last N lines.")
@click.option("--since", metavar="TIME", help="Only lines since TIME (Unix time, 10m, RFC 3339).")
@click.option("--until", metavar="TIME", help="Only lines before TIME.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.argument("container")
def logs(follow: bool, tail: str, since: str | None, until: str | None, timestamps: bool,
         container: str) -> int:
    """Print the output of CONTAINER (stdout to stdout, stderr to stderr).

    \b
    Example:
      prun logs -f --tail 10 web
    """
    from rootless.containers import lifecycle
    from rootless.containers import logs as logfile
    try:
        n = None if tail == "all" else int(tail)
    except ValueError as exc:
        raise UsageError(f"parse --tail {tail!r}: not a number", hint="e.g. --tail 10") from exc
    since_ts = logfile.parse_since(since) if since else None
    until_ts = logfile.parse_since(until, flag="--until") if until else None
    store = _store()
    c = lifecycle.refresh(store, store.resolve(container))
    path = str(store.log_path(c.id))
    out, err = sys.stdout.buffer, sys.stderr.buffer

    def show(e) -> None:
        stream = err if e.stream == "stderr" else out
        stream.write(((e.time + " ") if timestamps else "").encode() + e.text.encode())
        stream.flush()
    entries, end = logfile.read_to(path, tail=n, since=since_ts, until=until_ts)
    for e in entries:
        show(e)
    if follow and not until_ts:
        def done() -> bool:
            return not lifecycle.is_live(lifecycle.refresh(store, c))
        for e in logfile.follow(path, done, since=since_ts, start=end):
            show(e)
    return 0


@click.command(short_help="Stop running containers.")
@click.option("-t", "--time", "timeout", type=float, default=None, metavar="SECONDS",
              help="Seconds to wait after the stop signal before SIGKILL [default: 10].")
@click.argument("containers", nargs=-1, required=True)
def stop(timeout: float | None, containers: tuple[str, ...]) -> int:
    """Send the stop signal, then SIGKILL after the timeout.

    \b
    Example:
      prun stop -t 2 web
    """
    from rootless.containers import lifecycle
    store = _store()

    def one(name: str) -> None:
        lifecycle.stop(store, store.resolve(name), timeout)
        click.echo(name)
    return _each(containers, one)


def parse_signal(text: str) -> int:
    name = text.upper()
    try:
        return int(name) if name.isdigit() else int(
            signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except (KeyError, ValueError) as exc:
        raise UsageError(f"parse --signal {text!r}: unknown signal",
                         hint="e.g. -s TERM, -s SIGHUP or -s 9") from exc


@click.command(short_help="Send a signal to running containers.")
@click.option("-s", "--signal", "sig", default="KILL", metavar="SIGNAL",
              help="Signal name or number [default: KILL].")
@click.argument("containers", nargs=-1, required=True)
def kill(sig: str, containers: tuple[str, ...]) -> int:
    """Send SIGNAL to the main process of each container.

    \b
    Example:
      prun kill -s HUP web
    """
    from rootless.containers import lifecycle
    number = parse_signal(sig)
    store = _store()

    def one(name: str) -> None:
        lifecycle.kill(store, store.resolve(name), number)
        click.echo(name)
    return _each(containers, one)


@click.command(short_help="Remove containers.")
@click.option("-f", "--force", is_flag=True, help="Kill running containers first.")
@click.option("-v", "--volumes", is_flag=True, help="Also remove their anonymous volumes.")
@click.argument("containers", nargs=-1)
def rm(force: bool, volumes: bool, containers: tuple[str, ...]) -> int:
    """Remove containers, their writable layer, logs and runtime state.

    \b
    Example:
      prun rm -f $(prun ps -aq)
    """
    from rootless.containers import lifecycle
    store = _store()

    def one(name: str) -> None:
        lifecycle.remove(store, store.resolve(name), force=force, volumes=volumes)
        click.echo(name)
    return _each(containers, one)


@click.command(short_help="Wait for containers to exit; print exit codes.")
@click.argument("containers", nargs=-1, required=True)
def wait(containers: tuple[str, ...]) -> int:
    """Block until each container has exited, then print its exit code.

    \b
    Example:
      prun wait job
    """
    from rootless.containers import lifecycle
    store = _store()
    return _each(containers, lambda n: click.echo(lifecycle.wait(store, store.resolve(n))))


@click.command(short_help="Show containers' configuration and state as JSON.")
@click.option("-f", "--format", "fmt", default=None, metavar="TEMPLATE",
              help="Print one field, e.g. '{{.State.Status}}'.")
@click.argument("containers", nargs=-1, required=True)
def inspect(fmt: str | None, containers: tuple[str, ...]) -> int:
    """Print docker-compatible JSON for each container.

    \b
    Example:
      prun inspect -f '{{.State.ExitCode}}' job
    """
    from rootless.cgroups.lookup import frozen
    from rootless.containers import lifecycle, views
    store = _store()
    out: list[dict] = []

    def one(name: str) -> None:
        c = lifecycle.refresh(store, store.resolve(name))
        out.append(views.inspect(c, paused=frozen(store.paths, c.id)))
    code = _each(containers, one)
    if fmt:
        for doc in out:
            click.echo(render_template(fmt, doc))
    else:
        click.echo(json.dumps(out, indent=4))
    return code


def render_template(fmt: str, doc: dict) -> str:
    """The subset of Go templates people use with inspect: {{.A.B}} and {{json .A}}."""
    import re

    def field(match: re.Match) -> str:
        expr = match.group(1).strip()
        as_json = expr.startswith("json ")
        path = expr[5:].strip() if as_json else expr
        value = doc
        for part in [p for p in path.split(".") if p]:
            if not isinstance(value, dict) or part not in value:
                raise UsageError(f"parse --format {fmt!r}: no field {path}")
            value = value[part]
        if as_json:
            return json.dumps(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "<nil>" if value is None else str(value)
    return re.sub(r"\{\{(.*?)\}\}", field, fmt)


@click.command(short_help="Rename a container.")
@click.argument("container")
@click.argument("new_name")
def rename(container: str, new_name: str) -> int:
    """Give CONTAINER the name NEW_NAME.

    \b
    Example:
      prun rename eager_lynx web
    """
    store = _store()
    store.rename(store.resolve(container), new_name)
    return 0


@click.group(short_help="Manage containers (prune).")
def container() -> None:
    """Commands on containers as a group.

    \b
    Example:
      prun container prune
    """


@container.command(short_help="Remove all stopped containers.")
@click.option("-f", "--force", is_flag=True, help="Do not ask (prun never asks; accepted for docker).")
def prune(force: bool) -> int:
    """Remove every container that is not running.

    \b
    Example:
      prun container prune -f
    """
    from rootless.containers import lifecycle
    store = _store()
    for c in store.list():
        if not lifecycle.is_live(lifecycle.refresh(store, c)):
            lifecycle.remove(store, c)
            click.echo(c.id)
    return 0


@click.command(short_help="Run a command in a running container.",
               context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True,
              help="The command uses your terminal (prun passes it through).")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="Set an environment variable.")
@click.option("-u", "--user", default=None, help="User[:group] (name or id) to run as.")
@click.option("-w", "--workdir", default=None, help="Working directory inside the container.")
@click.argument("container_name", metavar="CONTAINER")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(interactive: bool, tty: bool, env: tuple[str, ...], user: str | None,
          workdir: str | None, container_name: str, command: tuple[str, ...]) -> int:
    """Run COMMAND inside CONTAINER's namespaces, with its capabilities and seccomp filter.

    \b
    Example:
      prun exec -it web sh
    """
    import os

    from rootless.containers import lifecycle
    envs = []
    for e in env:
        key, sep, _ = e.partition("=")
        envs.append(e if sep else f"{key}={os.environ.get(key, '')}")
    store = _store()
    return lifecycle.exec_in(store, store.resolve(container_name), list(command), envs, user,
                             workdir, interactive or tty)


@click.command(short_help="Start created or stopped containers.")
@click.option("-a", "--attach", is_flag=True, help="Print its output until it exits; "
                                                  "exit with its code (one container).")
@click.argument("containers", nargs=-1, required=True)
def start(attach: bool, containers: tuple[str, ...]) -> int:
    """Start each container in the background, as `prun run -d` did.

    \b
    Example:
      prun start web
    """
    from rootless.containers import detach, lifecycle
    if attach and len(containers) != 1:
        raise UsageError("start -a: attach to exactly one container")
    store = _store()

    def one(name: str) -> None:
        c = detach.start(store, store.resolve(name))
        if not attach:
            click.echo(name)
        return c
    if not attach:
        return _each(containers, one)
    c = one(containers[0])
    logs.callback(follow=True, tail="all", since=c.started_at, until=None, timestamps=False,
                  container=c.id)
    return lifecycle.wait(store, c)


@click.command(short_help="Restart containers.")
@click.option("-t", "--time", "timeout", type=float, default=None, metavar="SECONDS",
              help="Seconds to wait after the stop signal before SIGKILL [default: 10].")
@click.argument("containers", nargs=-1, required=True)
def restart(timeout: float | None, containers: tuple[str, ...]) -> int:
    """Stop (if running) and start each container again.

    \b
    Example:
      prun restart web
    """
    from rootless.containers import detach, lifecycle
    store = _store()

    def one(name: str) -> None:
        c = store.resolve(name)
        lifecycle.stop(store, c, timeout)
        detach.start(store, c)
        click.echo(name)
    return _each(containers, one)
