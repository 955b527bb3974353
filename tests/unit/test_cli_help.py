"""Help that teaches: every command, and every subcommand of a group, shows
an example in its --help, and `prun --help` groups commands like podman."""

from __future__ import annotations

import click
import pytest

from rootless import cli as cli_mod


def _all_commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli_mod.cli)
    out = []
    for name in cli_mod.cli.list_commands(ctx):
        cmd = cli_mod.cli.get_command(ctx, name)
        out.append((name, cmd))
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", cmd.get_command(ctx, sub))
                    for sub in cmd.list_commands(ctx)]
    return out


@pytest.mark.parametrize("name,cmd", _all_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_shows_an_example(name, cmd):
    assert "Example" in (cmd.help or ""), f"prun {name} --help has no example"


def test_top_level_help_groups_commands(capsys):
    assert cli_mod.run_cli(["--help"]) == 0
    out = capsys.readouterr().out
    for section in cli_mod.COMMANDS:
        assert f"{section}:" in out
