"""Sphinx configuration for the atomscount user guide and API reference."""

import atomscount

project = "atomscount"
author = "atomscount developers"
release = atomscount.__version__
version = release
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.extlinks",
    "sphinx.ext.mathjax",
    "numpydoc",
]
extlinks = {"doi": ("https://doi.org/%s", "doi:%s")}
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
exclude_patterns = ["_build", "generated/*.rst~"]
html_theme = "alabaster"
nitpicky = False
