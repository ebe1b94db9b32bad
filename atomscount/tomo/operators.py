"""The single-axis projector of a continuous volume and its exact adjoint, as plain functions.

:func:`project_volume` turns a volume (or a stack of channels, one per element) into
the tilt series :func:`~atomscount.tomo.simulate_tilt_series` would record of it, in
the orientation :func:`~atomscount.tomo.reconstruct` inverts: ``volume[iz, iy, ix]``
is projected along z after a tilt about the y axis (the image rows), so image row
``iy`` is the projection of the slice ``volume[:, iy, :]``. Both functions run the
multi-channel kernels of :mod:`._kernels` (the slice projector SIRT uses, with each
row's geometry shared by the channels and a block of slices), blocks of slices in
parallel; the projector skips voxels that are zero in every channel.

A projection is a line integral: the voxel values times the path length [Å], so a
density in atoms/Å³ projects to atoms/Å² and a unit-free fraction to Å.
:func:`backproject_volume` is the exact adjoint (``<A x, y> = <x, A^T y>`` to rounding).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_positive, check_real_array
from . import _kernels
from .geometry import euler_angles

__all__ = ["backproject_volume", "project_volume"]


def _tilts(angles_degrees) -> np.ndarray:
    """Single-axis tilts [degrees] as (cos, sin) pairs, from (k,) tilts or (k, 3) Euler triples (0, θ, 0)."""
    try:
        ang = euler_angles(angles_degrees)
    except ValueError as exc:
        raise ValueError(f"angles_degrees: {exc}") from None
    if not np.allclose(ang[:, [0, 2]], 0.0, atol=1e-9):
        raise ValueError("angles_degrees must be single-axis tilts (every Euler triple (0, θ, 0)), got "
                         f"{ang[~np.isclose(ang[:, [0, 2]], 0.0, atol=1e-9).all(axis=1)][0].tolist()}")  # fmt: skip
    theta = np.deg2rad(ang[:, 1])
    return np.ascontiguousarray(np.cos(theta)), np.ascontiguousarray(np.sin(theta))


def _prepare(values, name: str, angles_degrees, voxel_size_angstrom, what: str):
    """The checks both operators make: ``values`` a finite 3D or 4D array (``what`` names its axes), the angles
    single-axis tilts, the voxel size positive. Returns (4D float64 stack, whether it was 3D, cos, sin, pixel)."""
    arr = check_real_array(values, name)
    if arr.ndim not in (3, 4) or arr.size == 0:
        raise ValueError(f"{name} must be {what} or (channels, {what[1:]}, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite, got {int(bad.sum())} NaN/inf values of {arr.size}")
    pixel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    cos_t, sin_t = _tilts(angles_degrees)
    stack = np.ascontiguousarray(arr[None] if arr.ndim == 3 else arr)
    return stack, arr.ndim == 3, cos_t, sin_t, pixel


def project_volume(volume, angles_degrees, voxel_size_angstrom: float) -> np.ndarray:
    """Single-axis projections of a volume: line integrals [voxel value × Å].

    Parameters
    ----------
    volume : array_like (nz, ny, nx) or (channels, nz, ny, nx)
        Voxels of side ``voxel_size_angstrom``, centred on the origin (:mod:`._kernels`);
        z is along the beam at zero tilt, y along the tilt axis.
    angles_degrees : array_like (k,) or (k, 3)
        Tilts about the y axis [degrees], or ZYZ Euler triples (0, θ, 0).
    voxel_size_angstrom : float
        Voxel side [Å], also the detector pixel.

    Returns
    -------
    ndarray (k, ny, nx) or (channels, k, ny, nx)
        The projections, in the volume's unit times Å.

    Raises
    ------
    ValueError
        For a volume that is not 3D or 4D or not finite, angles that are not single-axis,
        or a voxel size that is not positive.
    """
    stack, single, cos_t, sin_t, pixel = _prepare(volume, "volume", angles_degrees, voxel_size_angstrom,
                                                  "(nz, ny, nx)")  # fmt: skip
    nc, _, ny, nx = stack.shape
    out = np.empty((nc, len(cos_t), ny, nx))
    _kernels.project_channels(stack, cos_t, sin_t, pixel, out)
    return out[0] if single else out


def backproject_volume(images, angles_degrees, voxel_size_angstrom: float, shape) -> np.ndarray:
    """The exact adjoint of :func:`project_volume`.

    Parameters
    ----------
    images : array_like (k, rows, cols) or (channels, k, rows, cols)
        Values per detector pixel (any unit; the result carries it times Å).
    angles_degrees : array_like (k,) or (k, 3)
        Tilts about the y axis [degrees], or ZYZ Euler triples (0, θ, 0).
    voxel_size_angstrom : float
        Voxel side [Å], also the detector pixel.
    shape : (nz, ny, nx)
        The volume's shape (per channel); ``ny`` must equal the images' rows. The columns
        may differ from ``nx``: volume and detector are both centred on the tilt axis.

    Returns
    -------
    ndarray (nz, ny, nx) or (channels, nz, ny, nx)
        ``A^T images``: so that ``sum(project_volume(x) * y) == sum(x * backproject_volume(y))``.

    Raises
    ------
    ValueError
        For images that are not 3D or 4D or not finite, a number of angles other than k,
        a shape that is not three positive integers or whose ny differs from the rows.
    """
    stack, single, cos_t, sin_t, pixel = _prepare(images, "images", angles_degrees, voxel_size_angstrom,
                                                  "(k, rows, cols)")  # fmt: skip
    nc, nk, nv, _ = stack.shape
    if nk != len(cos_t):
        raise ValueError(f"images has {nk} projections but angles_degrees has {len(cos_t)}")
    shp = tuple(np.atleast_1d(np.asarray(shape)).tolist())
    if len(shp) != 3 or not all(isinstance(s, int) and s > 0 for s in shp):
        raise ValueError(f"shape must be three positive integers (nz, ny, nx), got {shape!r}")
    nz, ny, nx = shp
    if ny != nv:
        raise ValueError(f"shape has ny = {ny} but images have {nv} rows (the tilt axis runs along both)")
    out = np.empty((nc, nz, ny, nx))
    _kernels.backproject_channels(stack, cos_t, sin_t, pixel, out)
    return out[0] if single else out
