"""The ``atomscount`` command line: :func:`main` parses and runs one command, :func:`run` is the console script.

One module per pipeline stage (``columns``, ``counting``, ``library``, ``coreshell``,
``tomo``, and ``demo``) adds its commands to the parser that ``main`` builds; ``_run``
holds what every command shares: the output folder written whole or not at all, and
the handling of Ctrl-C and SIGTERM.
"""

from .main import _parser as _parser  # the tests walk the parser
from .main import main, run

__all__ = ["main", "run"]
