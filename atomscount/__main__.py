"""``python -m atomscount``: the same as the ``atomscount`` command."""

import sys

from .cli import main

sys.exit(main())
