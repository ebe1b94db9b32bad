"""Stage 2: simulation libraries from abTEM multislice runs."""

from .lensing import LensingModel, LinearModel, load_default_lensing, load_default_linear
from .mixed import MixedColumns, simulate_mixed_columns
from .scs import (
    ScsLibrary,
    available_defaults,
    build_scs_library,
    load_default,
    read_library,
    resolve_library,
    thickness_curve,
)
from .settings import MicroscopeSettings, electron_wavelength_angstrom
from .simulate import column_cell, simulate_column_scs, zone_axis_crystal

__all__ = [
    "LensingModel",
    "LinearModel",
    "MixedColumns",
    "simulate_mixed_columns",
    "MicroscopeSettings",
    "ScsLibrary",
    "available_defaults",
    "load_default",
    "read_library",
    "resolve_library",
    "load_default_lensing",
    "load_default_linear",
    "build_scs_library",
    "column_cell",
    "electron_wavelength_angstrom",
    "simulate_column_scs",
    "thickness_curve",
    "zone_axis_crystal",
]
