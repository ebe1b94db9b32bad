"""The command line's options, defaults and help texts stay as recorded in tests/data/cli_help.json.

The snapshot was taken from the parser before the command line became a package of one
module per stage; rebuilding it must give the same tree. A deliberate change is recorded
by writing ``_tree(_parser())`` to that file again.
"""

import argparse
import json
from pathlib import Path

import pytest

from atomscount.cli import _parser, main

SNAPSHOT = Path(__file__).parent / "data" / "cli_help.json"


def _describe(action: argparse.Action) -> dict:
    return {
        "options": list(action.option_strings),
        "dest": action.dest,
        "action": type(action).__name__,
        "default": repr(action.default),
        "required": action.required,
        "choices": None if action.choices is None else [repr(c) for c in action.choices],
        "nargs": action.nargs,
        "metavar": action.metavar,
        "type": getattr(action.type, "__name__", repr(action.type)),
        "help": action.help,
    }


def _tree(parser: argparse.ArgumentParser, prefix=()) -> dict:
    """{subcommand path: its description and its arguments, sorted}, for the parser and every subparser."""
    tree = {}
    args, subcommands = [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            subcommands.append({"dest": action.dest, "metavar": action.metavar, "required": action.required})
            for name, sub in action.choices.items():  # in the order --help lists them
                subcommands.append([name, helps.get(name)])
                tree.update(_tree(sub, (*prefix, name)))
        else:
            args.append(_describe(action))
    tree[" ".join(prefix)] = {
        "prog": parser.prog,
        "description": parser.description,
        "formatter": parser.formatter_class.__name__,
        "subcommands": subcommands,
        "arguments": sorted(args, key=lambda a: (a["options"], a["dest"])),
    }
    return tree


def test_the_options_defaults_and_help_texts_are_those_recorded():
    recorded = json.loads(SNAPSHOT.read_text())
    now = json.loads(json.dumps(_tree(_parser())))
    assert sorted(now) == sorted(recorded)
    for path in recorded:
        assert now[path] == recorded[path], f"atomscount {path}"


@pytest.mark.parametrize("path", sorted(_tree(_parser())))
def test_help_of_every_subcommand_exits_0(path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*path.split(), "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: atomscount")
