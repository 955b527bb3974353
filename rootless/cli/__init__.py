"""The click adapter: ``prun`` and its command groups.

Rules:
- Only modules in this package import click. A command parses flags into
  plain values or request dataclasses and calls into the rest of prun.
- Commands are registered in ``COMMANDS`` by module path and loaded only
  when invoked (or when help lists them), so ``prun run`` never imports the
  image or registry code it does not use: start-up time is a hot path.
- Errors are translated once, in ``main``: a ``PrunError`` becomes
  ``prun: error: <message>`` plus ``hint: <fix>`` and its exit code; a flag
  error exits 125 like docker/podman; an unexpected exception is one line
  (its traceback only with ``--log-level debug``). A command returns its exit
  code (e.g. the container's) as an int.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from rootless import __version__
from rootless.errors import PrunError

log = logging.getLogger("prun")

# section title -> {command name: "module:attribute"}; help lists sections in
# this order, like `podman --help`.
COMMANDS: dict[str, dict[str, str]] = {
    "Manage containers": {
        "run": "rootless.cli.run:run",
        "create": "rootless.cli.create:create",
        "start": "rootless.cli.containers:start",
        "restart": "rootless.cli.containers:restart",
        "ps": "rootless.cli.containers:ps",
        "logs": "rootless.cli.containers:logs",
        "exec": "rootless.cli.containers:exec_",
        "stop": "rootless.cli.containers:stop",
        "kill": "rootless.cli.containers:kill",
        "rm": "rootless.cli.containers:rm",
        "wait": "rootless.cli.containers:wait",
        "inspect": "rootless.cli.containers:inspect",
        "rename": "rootless.cli.containers:rename",
        "container": "rootless.cli.containers:container",
        "volume": "rootless.cli.volumes:volume",
        "port": "rootless.cli.network:port",
        "stats": "rootless.cli.cgroups:stats",
        "pause": "rootless.cli.cgroups:pause",
        "unpause": "rootless.cli.cgroups:unpause",
        "update": "rootless.cli.cgroups:update",
    },
    "Manage images": {
        "pull": "rootless.cli.images:pull",
        "push": "rootless.cli.images:push",
        "images": "rootless.cli.images:images",
        "rmi": "rootless.cli.images:rmi",
        "tag": "rootless.cli.images:tag",
        "untag": "rootless.cli.images:untag",
        "load": "rootless.cli.images:load",
        "save": "rootless.cli.images:save",
        "import": "rootless.cli.images:import_",
        "history": "rootless.cli.images:history",
        "image": "rootless.cli.images:image",
        "login": "rootless.cli.images:login",
        "logout": "rootless.cli.images:logout",
    },
    "System": {
        "info": "rootless.cli.system:info",
        "version": "rootless.cli.system:version",
        "system": "rootless.cli.system:system",
    },
}

LOG_LEVELS = ("debug", "info", "warning", "error")


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for section in COMMANDS.values() for name in section]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for section in COMMANDS.values():
            target = section.get(cmd_name)
            if target:
                module, attr = target.split(":")
                return getattr(importlib.import_module(module), attr)
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, section in COMMANDS.items():
            rows = []
            for name in section:
                cmd = self.get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=formatter.width - 20)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Run 'prun COMMAND --help' for a command's flags and an example.",
)
@click.version_option(__version__, "-v", "--version", prog_name="prun",
                      message="%(prog)s version %(version)s")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None,
              help="Log messages at and above this level to stderr [default: warning; "
                   "env PRUN_LOG_LEVEL].")
def cli(log_level: str | None) -> None:
    """prun: rootless containers for unprivileged users.

    \b
    Example:
      prun run --rm -it busybox sh
    """
    level = log_level or os.environ.get("PRUN_LOG_LEVEL", "warning")
    # Children (supervisor, helper) read the same level from the environment.
    os.environ["PRUN_LOG_LEVEL"] = level
    logging.basicConfig(level=level.upper(), format="prun: %(levelname)s: %(message)s",
                        stream=sys.stderr)


def _debug_enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)


def report(err: PrunError) -> int:
    """Print a PrunError the one way prun prints errors; return its exit code."""
    click.echo(f"prun: error: {err.message}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)
    if _debug_enabled() and err.__cause__ is not None:
        log.debug("caused by", exc_info=err.__cause__)
    return err.exit_code


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the process exit code."""
    code = run_cli(argv)
    sys.exit(code)


def run_cli(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="prun", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.UsageError as exc:
        # Bad flags or arguments: docker and podman exit 125 for these.
        where = exc.ctx.command_path if exc.ctx else "prun"
        click.echo(f"prun: error: {where}: {exc.format_message()}", err=True)
        click.echo(f"hint: see '{where} --help'", err=True)
        return 125
    except click.exceptions.ClickException as exc:
        click.echo(f"prun: error: {exc.format_message()}", err=True)
        return 125
    except click.exceptions.Abort:
        return 130
    except PrunError as exc:
        return report(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `prun ps | head`: the reader went away; not an error worth a message.
        sys.stderr.close()
        return 141
    except Exception as exc:  # the one boundary where an unknown failure becomes a message
        click.echo(f"prun: internal error: {type(exc).__name__}: {exc}", err=True)
        if _debug_enabled():
            log.exception("traceback")
        else:
            click.echo("hint: rerun with --log-level debug for the traceback and report it",
                       err=True)
        return 125
    return result if isinstance(result, int) else 0
