"""``python -m atomscount``: the same as the ``atomscount`` command."""

from .cli import run

run()
