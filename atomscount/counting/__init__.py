"""Atom counting per column: library matching, Gaussian mixtures with ICL, and a hybrid."""

from .counts import ColumnCounts, check_library_settings, count_atoms, count_by_library, count_hybrid, count_time_series
from .gmm import MixtureScan, fit_mixtures, local_minima
from .model3d import model_from_counts, register_lattice, write_model
from .select import Candidate, align_to_library, select_components

__all__ = [
    "Candidate",
    "ColumnCounts",
    "MixtureScan",
    "align_to_library",
    "check_library_settings",
    "count_atoms",
    "count_by_library",
    "count_hybrid",
    "count_time_series",
    "fit_mixtures",
    "local_minima",
    "model_from_counts",
    "register_lattice",
    "write_model",
    "select_components",
]
