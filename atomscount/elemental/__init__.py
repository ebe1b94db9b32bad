"""Stage: 3D elemental distributions from HAADF and EDXS tilt series.

Voxel composition from a HAADF reconstruction, an EDXS forward model, and a multimodal
HAADF + EDXS reconstruction (issue 28). Data flow: tilt series (HAADF and one EDXS
series per element) → :class:`ElementalVolumes` (one concentration volume per element
with its uncertainty, the particle mask, the HAADF weights and γ) → figures and exports.
"""

__all__: list[str] = []
