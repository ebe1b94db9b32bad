"""The ``atomscount`` command line: the parser, built from one module per stage, and the dispatch.

Each stage module adds its commands with ``add_parser(subparsers, formatter_class)``
and registers each command's handler as the ``handler`` default of its subparser.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .._version import __version__
from . import columns, coreshell, counting, demo, library, tomo
from ._run import Signals, interruption

#: The stage modules, in the order ``atomscount --help`` lists their commands.
STAGES = (demo, columns, counting, coreshell, tomo, library)


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
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
            if isinstance(exc, (ValueError, TypeError, OSError)):
                print(f"atomscount {args.command}: error: {exc}", file=sys.stderr)
                return 2
            raise


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
