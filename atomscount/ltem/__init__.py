"""Stage: Lorentz TEM of magnetic films (forward model, TIE and differentiable phase retrieval).

Lengths are in nm, magnetisation in A/m, beam energy in eV and phases in radians.
JAX is imported by the modules of this stage only, never by ``import atomscount``.
"""

from .forward import (
    electrostatic_phase,
    fresnel_image,
    interaction_constant,
    magnetic_phase,
    simulate_series,
    transfer_function,
    wavelength_nm,
)
from .induction import colour_wheel, induction_map
from .result import LTEMSeries, PhaseRetrieval
from .samples import MagneticSample, domain_wall, skyrmion_lattice, vortex_disk
from .tie import single_image_tie, tie

__all__ = [
    "LTEMSeries",
    "MagneticSample",
    "PhaseRetrieval",
    "colour_wheel",
    "domain_wall",
    "electrostatic_phase",
    "fresnel_image",
    "induction_map",
    "interaction_constant",
    "magnetic_phase",
    "simulate_series",
    "single_image_tie",
    "skyrmion_lattice",
    "tie",
    "transfer_function",
    "vortex_disk",
    "wavelength_nm",
]
