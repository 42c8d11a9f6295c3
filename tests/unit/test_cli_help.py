"""Every option and argument of every `fedcredit` sub-command says what it is for."""

from __future__ import annotations

import argparse

from fedcredit.cli.main import build_parser


def undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                missing += undocumented(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_cli_option_has_a_help_line() -> None:
    assert undocumented(build_parser(), "fedcredit") == []
