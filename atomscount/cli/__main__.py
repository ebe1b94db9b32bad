"""``python -m atomscount.cli``: the same as the ``atomscount`` command."""

from .main import run

run()
