"""Stage: 3D elemental distributions from HAADF and EDXS tilt series.

Voxel composition from a HAADF reconstruction, an EDXS forward model, and a multimodal
HAADF + EDXS reconstruction (issue 28). Data flow: tilt series (HAADF and one EDXS
series per element) → :class:`ElementalVolumes` (one concentration volume per element
with its uncertainty, the particle mask, the HAADF weights and γ) → figures and exports.
"""

from .composition import composition_from_haadf, fit_interface_width, fit_pure_levels, wedge_elongation
from .denoise import DENOISE_METHODS, DenoisedMaps, denoise_edxs, denoise_series, finetune_denoiser, split_counts
from .forward import XRayLine, default_haadf_weights, haadf_model, simulate_edxs, simulate_haadf, xray_line
from .maps import NonCountDataWarning, estimate_map_noise, is_counts, map_noise_model, reconstruct_maps
from .phantoms import alloy_particle, core_shell_rod, three_element_particle
from .reconstruct import reconstruct_elemental, reconstruct_separate
from .result import FLAG_CLIPPED, FLAG_PARTIAL_VOLUME, ElementalVolumes
from .shapes import random_particle, training_maps

__all__: list[str] = [
    "DENOISE_METHODS",
    "DenoisedMaps",
    "denoise_edxs",
    "denoise_series",
    "finetune_denoiser",
    "split_counts",
    "FLAG_CLIPPED",
    "FLAG_PARTIAL_VOLUME",
    "ElementalVolumes",
    "NonCountDataWarning",
    "XRayLine",
    "alloy_particle",
    "composition_from_haadf",
    "core_shell_rod",
    "default_haadf_weights",
    "estimate_map_noise",
    "fit_interface_width",
    "fit_pure_levels",
    "random_particle",
    "haadf_model",
    "is_counts",
    "map_noise_model",
    "reconstruct_maps",
    "reconstruct_elemental",
    "reconstruct_separate",
    "simulate_edxs",
    "simulate_haadf",
    "three_element_particle",
    "training_maps",
    "wedge_elongation",
    "xray_line",
]
