"""The package version, in one place (read by pyproject.toml and written into result files)."""

__version__ = "0.1.0"
