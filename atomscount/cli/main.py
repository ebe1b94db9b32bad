"""The ``atomscount`` command line: the parser, built from one module per stage, and the dispatch.

Each stage module adds its commands with ``add_parser(subparsers, formatter_class)``
and registers each command's handler as the ``handler`` default of its subparser.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings

from .._version import __version__
from . import columns, coreshell, counting, demo, elemental, lattice, library, ltem, tomo
from ._run import Signals, interruption

#: The stage modules, in the order ``atomscount --help`` lists their commands.
STAGES = (demo, columns, lattice, counting, coreshell, tomo, elemental, ltem, library)


#: Python argument names that the command line spells differently: name -> the option's ``dest``.
#: An error raised from the Python API names the option instead (see :func:`_option_names`);
#: an argument whose ``dest`` is its Python name needs no entry.
API_NAMES = {
    "min_distance_angstrom": "min_distance",
    "pixel_size_angstrom": "pixel_size",
    "exclude_border_angstrom": "exclude_border",
    "dose_e_per_angstrom2": "dose",
    "probe_blur_angstrom": "blur",
    "max_distance_angstrom": "max_distance",
    "n_iter": "iterations",
    "n_components": "components",
    "n_classes": "classes",
    "beam_directions": "beam2",
    "rng": "seed",
    "path": "image",
    "fmt": "format",
    "reference_region": "region",
    "angle_degrees": "angle",
    "voxel_size_angstrom": "voxel_size",
    "solid_angle_sr": "solid_angle",
    "beam_energy_ev": "beam_energy",
    "max_tilt_degrees": "max_tilt",
    "pixel_nm": "pixel_size",
    "dose_e_per_pixel": "dose",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except where there is none to show: a required option, or None
    (whose meaning the help text says, as in "from the file when not given")."""

    def _get_help_string(self, action):
        if action.required or action.default is None:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    fmt = HelpFormatter
    p = argparse.ArgumentParser(
        prog="atomscount", formatter_class=fmt,
        description="Quantitative atomic-resolution HAADF-STEM: column fitting, atom counting and more.",
    )  # fmt: skip
    p.add_argument("--version", action="version", version=f"atomscount {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for stage in STAGES:
        stage.add_parser(sub, fmt)
    return p


def _short_warning(message, category, filename, lineno, line=None):
    return f"atomscount: {category.__name__}: {message}\n"


def main(argv=None) -> int:
    warnings.formatwarning = _short_warning  # users read the message, not our source line
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    with Signals() as signals:
        args.signals = signals
        try:
            return args.handler(args)
        except BaseException as exc:
            code = interruption(exc)
            if code is not None:
                what = "interrupted" if code == 130 else "terminated"
                print(f"atomscount {args.command}: {what}; no output written", file=sys.stderr)
                return code
            if isinstance(exc, (ValueError, TypeError, OSError)) or type(exc) is ImportError:  # an optional extra
                message = _option_names(str(exc), _command_parser(parser, args))
                print(f"atomscount {args.command}: error: {message}", file=sys.stderr)
                return 2
            raise


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command that ``args`` ran, down to its action (``tomo trace``)."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen is None:
            return parser
        parser = subs[0].choices[chosen]


def _option_names(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with the Python argument names of the command's options replaced by the options
    (``min_distance_angstrom`` -> ``--min-distance``), so that an error raised by the API reads as
    one about the command line.

    A name with an underscore is replaced wherever it stands as a word; a plain word
    (``threshold``) only where it opens a requirement (``threshold must ...``, ``path does not exist``), so that
    prose using the same word is left alone.
    """
    options = {}
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            options[action.dest] = max(action.option_strings, key=len)
        elif not action.option_strings:
            options[action.dest] = action.dest  # a positional: its name, as the usage line shows it
    names = {dest: dest for dest in options}
    names.update({api: dest for api, dest in API_NAMES.items() if dest in options})
    for api in sorted(names, key=len, reverse=True):  # the longest first: min_distance_angstrom before min_distance
        option = options[names[api]]
        tail = r"(?![\w-])" if "_" in api else r"(?= must\b| has\b| does\b)"
        message = re.sub(rf"(?<![\w.\-]){re.escape(api)}{tail}", option, message)
    return message


def run() -> None:  # pragma: no cover - the console entry point, run in a process of its own
    """``atomscount`` on the command line: :func:`main`, then exit with its code.

    An interrupted run (130, 143) has cleaned up its output and printed its line
    already; it leaves at once, skipping the interpreter's teardown, where threads
    that the signal caught mid-work (numba, BLAS) once crashed the process (exit
    -11 instead of 143 in a CI run).
    """
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
