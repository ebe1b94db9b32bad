"""Ground-truth particles on a voxel grid: number densities [atoms/Å³] of each element.

Every phantom is a dict ``element -> (nz, ny, nx)`` array on voxels of side
``voxel_size_angstrom`` centred on the origin (as :mod:`atomscount.tomo.operators`
projects them). The total density inside the particle is the bulk atomic density of
the local composition (Vegard-like mix of the pure elements' fcc densities), and the
particle's outer surface is smooth over about one voxel (the voxel's covered
fraction), so that the surface voxels are partial-volume voxels as in a reconstruction.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_integer, check_positive, check_rng

__all__ = ["ATOMIC_DENSITY", "alloy_particle", "core_shell_rod", "three_element_particle"]

#: Bulk atomic number densities [atoms/Å³] (fcc: 4 / a³, lattice constants at room temperature).
ATOMIC_DENSITY = {"Au": 4 / 4.0782**3, "Ag": 4 / 4.0853**3, "Pt": 4 / 3.9242**3, "Pd": 4 / 3.8907**3,
                  "Cu": 4 / 3.6149**3, "Ni": 4 / 3.5240**3, "Al": 4 / 4.0495**3}  # fmt: skip


def _grid(shape, voxel):
    shape = tuple(check_integer(n, "shape", low=8) for n in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (nz, ny, nx), got {shape}")
    axes = [(np.arange(n) - (n - 1) / 2.0) * voxel for n in shape]
    return shape, np.meshgrid(*axes, indexing="ij")  # z, y, x [Å]


def _density(element):
    if element not in ATOMIC_DENSITY:
        raise ValueError(f"element {element!r} has no bulk density here (known: {sorted(ATOMIC_DENSITY)})")
    return ATOMIC_DENSITY[element]


def _inside(distance_out, voxel):
    """Covered fraction of a voxel at signed distance ``distance_out`` [Å] outside a surface (linear ramp)."""
    return np.clip(0.5 - distance_out / voxel, 0.0, 1.0)


def _mix(fractions, occupancy):
    """Densities [atoms/Å³] from atomic fractions (dict of arrays summing to 1) and the particle's occupancy."""
    inv = sum(f / _density(e) for e, f in fractions.items())  # volume per atom of the mix
    total = occupancy / np.where(inv > 0, inv, 1.0)
    return {e: f * total for e, f in fractions.items()}


def core_shell_rod(*, shape=(128, 128, 128), voxel_size_angstrom: float = 0.75, core: str = "Au", shell: str = "Ag",
                   interface_width_angstrom: float = 6.0) -> dict[str, np.ndarray]:  # fmt: skip
    """A core-shell nanorod with a diffused interface, along the tilt axis (y).

    A cylinder of radius 0.3 × the smaller of nz, nx (in voxels) and length 0.9 × ny,
    with hemispherical caps, and a core of radius 0.55 × the rod's radius. The core
    element's atomic fraction falls across the interface as an error function::

        x_core(r) = (1 - erf((r - r_core) / w)) / 2,   w = interface_width_angstrom

    where r is the distance from the rod's axis segment [Å]. So ``w`` is the erf's length
    scale: the fraction falls from 50 % at ``r_core`` to 7.9 % at ``r_core + w``, and its
    10–90 % width is 1.81 w. This is an abrupt interface after interdiffusion for a time
    t (w = 2 √(D t)).

    Parameters
    ----------
    shape : (nz, ny, nx)
        Voxels (at least 8 each).
    voxel_size_angstrom : float
    core, shell : str
        Elements (with a bulk density in :data:`ATOMIC_DENSITY`).
    interface_width_angstrom : float
        ``w`` above [Å] (0 for an abrupt interface).

    Returns
    -------
    dict of str to ndarray
        ``{core: ..., shell: ...}`` number densities [atoms/Å³].
    """
    from scipy.special import erf

    voxel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    width = check_positive(interface_width_angstrom, "interface_width_angstrom", allow_zero=True)
    if core == shell:
        raise ValueError(f"core and shell must differ, got {core!r} for both")
    _density(core), _density(shell)
    shape, (z, y, x) = _grid(shape, voxel)
    radius = 0.3 * min(shape[0], shape[2]) * voxel
    half = max(0.45 * shape[1] * voxel - radius, 0.0)  # half-length of the axis segment
    r = np.sqrt(z**2 + x**2 + np.clip(np.abs(y) - half, 0.0, None) ** 2)
    occupancy = _inside(r - radius, voxel)
    r_core = 0.55 * radius
    if width > 0:
        xc = 0.5 * (1.0 - erf((r - r_core) / width))
    else:
        xc = (r < r_core).astype(np.float64)
    return _mix({core: xc, shell: 1.0 - xc}, occupancy)


def alloy_particle(*, elements=("Pt", "Au"), shape=(128, 128, 128), voxel_size_angstrom: float = 0.75,
                   fractions=None, grain_size_angstrom: float = 8.0, rng=0) -> dict[str, np.ndarray]:  # fmt: skip
    """A sphere of a random alloy whose composition varies smoothly (near-equal-Z pairs such as Pt–Au).

    The first element's fraction is ``fractions[0]`` plus a smooth random field (Gaussian
    noise filtered to ``grain_size_angstrom``, amplitude ± 0.25), clipped to 0.05..0.95;
    the remaining elements share the rest in the ratio of ``fractions``.

    Parameters
    ----------
    elements : sequence of str
    shape : (nz, ny, nx)
    voxel_size_angstrom : float
    fractions : sequence of float, optional
        Mean atomic fractions (default equal).
    grain_size_angstrom : float
        Correlation length [Å] of the composition.
    rng : numpy.random.Generator, int or None
        The composition field's seed.

    Returns
    -------
    dict of str to ndarray
    """
    from scipy.ndimage import gaussian_filter

    voxel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    grain = check_positive(grain_size_angstrom, "grain_size_angstrom")
    elements = tuple(str(e) for e in elements)
    if len(elements) < 2 or len(set(elements)) != len(elements):
        raise ValueError(f"elements must be two or more distinct elements, got {list(elements)}")
    for e in elements:
        _density(e)
    f = np.full(len(elements), 1.0 / len(elements)) if fractions is None else np.asarray(fractions, float)
    if f.shape != (len(elements),) or (f <= 0).any():
        raise ValueError(f"fractions must hold one positive value per element, got {fractions!r}")
    f = f / f.sum()
    shape, (z, y, x) = _grid(shape, voxel)
    radius = 0.4 * min(shape) * voxel
    occupancy = _inside(np.sqrt(z**2 + y**2 + x**2) - radius, voxel)
    field = gaussian_filter(check_rng(rng).standard_normal(shape), grain / voxel)
    field *= 0.25 / max(np.abs(field).max(), 1e-12)
    first = np.clip(f[0] + field, 0.05, 0.95)
    rest = f[1:] / f[1:].sum()
    fr = {elements[0]: first, **{e: (1.0 - first) * rest[i] for i, e in enumerate(elements[1:])}}
    return _mix(fr, occupancy)


def three_element_particle(*, elements=("Pd", "Pt", "Au"), shape=(128, 128, 128), voxel_size_angstrom: float = 0.75,
                           interface_width_angstrom: float = 3.0, rng=0) -> dict[str, np.ndarray]:  # fmt: skip
    """A sphere with a core of the first element, a shell of the second, and a surface alloy of the second and third.

    Radii: particle 0.4 × the smallest side, core 0.55 and surface layer 0.8 of it. The
    outer layer is a random alloy with 50 % (± 0.2, smooth over 6 Å) of the third
    element. Each boundary is an erf profile of width ``interface_width_angstrom``
    (as in :func:`core_shell_rod`).

    Parameters
    ----------
    elements : (core, shell, surface) str
    shape : (nz, ny, nx)
    voxel_size_angstrom : float
    interface_width_angstrom : float
    rng : numpy.random.Generator, int or None
        Seed of the surface alloy's composition.

    Returns
    -------
    dict of str to ndarray
    """
    from scipy.ndimage import gaussian_filter
    from scipy.special import erf

    voxel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    width = check_positive(interface_width_angstrom, "interface_width_angstrom", allow_zero=True)
    elements = tuple(str(e) for e in elements)
    if len(elements) != 3 or len(set(elements)) != 3:
        raise ValueError(f"elements must be three distinct elements (core, shell, surface), got {list(elements)}")
    for e in elements:
        _density(e)
    shape, (z, y, x) = _grid(shape, voxel)
    radius = 0.4 * min(shape) * voxel
    r = np.sqrt(z**2 + y**2 + x**2)
    occupancy = _inside(r - radius, voxel)

    def step(r0):  # 1 inside r0, 0 outside
        return 0.5 * (1.0 - erf((r - r0) / width)) if width > 0 else (r < r0).astype(np.float64)

    field = gaussian_filter(check_rng(rng).standard_normal(shape), 6.0 / voxel)
    field *= 0.2 / max(np.abs(field).max(), 1e-12)
    core, inner = step(0.55 * radius), step(0.8 * radius)
    surface_third = np.clip(0.5 + field, 0.0, 1.0) * (1.0 - inner)
    fr = {elements[0]: core, elements[1]: (1.0 - core) - surface_third, elements[2]: surface_third}
    fr[elements[1]] = np.clip(fr[elements[1]], 0.0, 1.0)
    return _mix(fr, occupancy)
