"""The one error handler: message format, hints, exit codes."""

from __future__ import annotations

import click
import pytest

from rootless import cli as cli_mod
from rootless.errors import CommandNotFound, NotFoundError


@pytest.fixture
def extra_command(monkeypatch):
    """Register a throwaway command that raises what the test asks for."""

    def install(exc: BaseException):
        @click.command()
        def boom() -> int:
            raise exc

        monkeypatch.setitem(cli_mod.COMMANDS["System"], "boom", "tests.unit.test_cli_errors:_cmd")
        monkeypatch.setattr(__import__(__name__, fromlist=["_cmd"]), "_cmd", boom, raising=False)

    return install


def test_prun_error_is_one_line_with_hint_and_exit_125(extra_command, capsys):
    extra_command(NotFoundError("inspect image nosuch", hint="run 'prun images' to list images"))
    assert cli_mod.run_cli(["boom"]) == 125
    err = capsys.readouterr().err
    assert err == ("prun: error: inspect image nosuch\n"
                   "hint: run 'prun images' to list images\n")


def test_command_not_found_exits_127(extra_command, capsys):
    extra_command(CommandNotFound("run busybox: nosuchcmd: executable file not found in $PATH"))
    assert cli_mod.run_cli(["boom"]) == 127


def test_unexpected_exception_is_one_line_without_traceback(extra_command, capsys):
    extra_command(RuntimeError("kaboom"))
    assert cli_mod.run_cli(["boom"]) == 125
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("prun: internal error: RuntimeError: kaboom\n")


def test_unknown_flag_exits_125_and_names_the_command(capsys):
    assert cli_mod.run_cli(["info", "--bogus"]) == 125
    err = capsys.readouterr().err
    first, hint = err.splitlines()
    # click words the cause ("No such option: --bogus" / "No such option '--bogus'.")
    assert first.startswith("prun: error: prun info: No such option") and "--bogus" in first
    assert hint == "hint: see 'prun info --help'"


def test_version_flag(capsys):
    assert cli_mod.run_cli(["--version"]) == 0
    assert capsys.readouterr().out.startswith("prun version ")
