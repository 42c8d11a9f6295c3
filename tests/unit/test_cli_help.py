"""Every option of every ``fedcredit`` command has a help line."""

from __future__ import annotations

import argparse

from fedcredit.cli.main import build_parser


def options_without_help(parser: argparse.ArgumentParser, name: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                missing += options_without_help(child, f"{name} {sub}")
        elif action.dest != "help" and not action.help:
            missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_of_every_command_has_a_help_line() -> None:
    assert options_without_help(build_parser(), "fedcredit") == []


def test_decide_and_invite_are_commands() -> None:
    parser = build_parser()

    decide = parser.parse_args(
        ["decide", "f.toml", "--model", "m", "--ids", "i.csv", "--out", "d.csv", "--json"]
    )
    invite = parser.parse_args(["invite", "f.toml", "--model", "m", "--out", "v.csv",
                                "--deliver-to", "ecommerce"])  # fmt: skip

    assert (decide.command, decide.json) == ("decide", True)
    assert (invite.command, invite.deliver_to, invite.ids) == ("invite", "ecommerce", None)
