"""Stage: Lorentz TEM of magnetic films (forward model, TIE and differentiable phase retrieval).

Lengths are in nm, magnetisation in A/m, beam energy in eV and phases in radians.
JAX is imported by the modules of this stage only, never by ``import atomscount``; it
is an optional dependency (``pip install 'atomscount[ltem]'``), and importing the stage
without it says so.
"""

from ._deps import check_jax

check_jax()

from .constrained import constrain_magnetisation
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
from .register import apply_transform, register_images, register_series
from .result import LTEMSeries, PhaseRetrieval
from .retrieve import FIT_NAMES, retrieve_phase
from .samples import MagneticSample, domain_wall, skyrmion_lattice, vortex_disk
from .spectral import ctf_wiener, fourier_ring_correlation
from .tie import single_image_tie, tie

__all__ = [
    "FIT_NAMES",
    "LTEMSeries",
    "MagneticSample",
    "PhaseRetrieval",
    "apply_transform",
    "colour_wheel",
    "constrain_magnetisation",
    "ctf_wiener",
    "domain_wall",
    "electrostatic_phase",
    "fourier_ring_correlation",
    "fresnel_image",
    "induction_map",
    "interaction_constant",
    "magnetic_phase",
    "register_images",
    "register_series",
    "retrieve_phase",
    "simulate_series",
    "single_image_tie",
    "skyrmion_lattice",
    "tie",
    "transfer_function",
    "vortex_disk",
    "wavelength_nm",
]
