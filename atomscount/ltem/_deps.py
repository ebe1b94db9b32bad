"""The Lorentz TEM stage's optional dependencies: JAX and optax, installed with ``atomscount[ltem]``."""

from __future__ import annotations

import importlib.util

#: What the stage needs beyond the default install, and the command that installs it.
NEEDED = ("jax", "optax")
INSTALL = "pip install 'atomscount[ltem]'"


def check_jax() -> None:
    """Raise an ImportError that says how to install what is missing (the default install has no JAX: jaxlib
    alone is about 350 MB)."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the Lorentz TEM stage (atomscount.ltem) needs {' and '.join(missing)}, which the "
                          f"default install leaves out; install them with: {INSTALL}")  # fmt: skip
