"""A 3D starting model from the column positions and their atom counts."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from ase import Atoms

from .._checks import check_choice, check_positive, check_real, check_real_array

__all__ = ["model_from_counts", "register_lattice", "write_model"]


def _basis_columns(crystal: Atoms, tol=0.2):
    """Projected columns of one period: xy of each, and the z of its atoms within the period."""
    cell = crystal.cell.lengths()
    xy = crystal.positions[:, :2] % cell[:2]
    cols, zs = [], []
    for p, z in zip(xy, crystal.positions[:, 2] % cell[2], strict=True):
        for k, c in enumerate(cols):
            d = (p - c + cell[:2] / 2) % cell[:2] - cell[:2] / 2
            if np.hypot(*d) < tol:
                zs[k].append(z)
                break
        else:
            cols.append(p)
            zs.append([z])
    return np.array(cols), [np.sort(z) for z in zs], cell


def register_lattice(positions, crystal: Atoms, *, angle_step_deg: float = 0.25):
    """Rotation, mirror and translation that put ``positions`` on the projected lattice of ``crystal``.

    The column nearest the centroid is tied to the crystal's first column; the
    in-plane rotation (and a possible mirror, images often have y pointing down)
    is found by a grid search over angles, minimising the summed distance of
    every column to its nearest lattice column.

    Parameters
    ----------
    positions : array_like (n, 2)
        Column positions (x, y) [Å], finite, n >= 1.
    crystal : ase.Atoms
        One period of the crystal along the beam.
    angle_step_deg : float
        Step of the angle grid [degrees], in (0, 90].

    Returns
    -------
    dict with ``angle_deg``, ``mirror``, ``origin`` (Å), ``basis_index`` (n,), ``lattice_xy`` (n, 2) the ideal
    positions in image coordinates, and ``rms_misfit`` (Å).

    Raises
    ------
    ValueError
        For positions that are not a finite (n, 2) array, or ``angle_step_deg`` outside (0, 90].
    TypeError
        If ``crystal`` is not an ase.Atoms or ``angle_step_deg`` not a real number.
    """
    angle_step_deg = check_real(angle_step_deg, "angle_step_deg", low=0.0, high=90.0, open_low=True)
    pos = check_real_array(positions, "positions")
    if pos.ndim != 2 or pos.shape[1] != 2 or len(pos) == 0 or not np.all(np.isfinite(pos)):
        raise ValueError(f"positions must be a finite (n, 2) array of (x, y) [Å] with n >= 1, got shape {pos.shape}")
    if not isinstance(crystal, Atoms):
        raise TypeError(f"crystal must be an ase.Atoms, got {type(crystal).__name__}")
    cols, _, cell = _basis_columns(crystal)
    ref = int(np.argmin(np.hypot(*(pos - pos.mean(axis=0)).T)))
    d = pos - pos[ref]

    # lattice periods: the cell plus the basis offsets
    def misfit(angle, mirror):
        c, s = np.cos(angle), np.sin(angle)
        u = d.copy()
        if mirror:
            u[:, 1] = -u[:, 1]
        rot = u @ np.array([[c, s], [-s, c]])  # rotate by -angle into the crystal frame
        q = rot + cols[0]
        diff = (q[:, None, :] - cols[None, :, :] + cell[:2] / 2) % cell[:2] - cell[:2] / 2
        dist = np.hypot(diff[..., 0], diff[..., 1])
        return dist.min(axis=1), dist.argmin(axis=1), q - diff[np.arange(len(q)), dist.argmin(axis=1)]

    best = None
    for mirror in (False, True):
        for angle in np.deg2rad(np.arange(0.0, 180.0, angle_step_deg)):
            m = misfit(angle, mirror)[0]
            score = float(np.sum(np.minimum(m, 1.0) ** 2))
            if best is None or score < best[0]:
                best = (score, angle, mirror)
    _, angle, mirror = best
    # refine the angle
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda a: float(np.sum(np.minimum(misfit(a, mirror)[0], 1.0) ** 2)),
                          bounds=(angle - np.deg2rad(angle_step_deg), angle + np.deg2rad(angle_step_deg)),
                          method="bounded")  # fmt: skip
    angle = float(res.x)
    dist, index, ideal_crystal = misfit(angle, mirror)
    c, s = np.cos(angle), np.sin(angle)
    back = (ideal_crystal - cols[0]) @ np.array([[c, -s], [s, c]])
    if mirror:
        back[:, 1] = -back[:, 1]
    lattice = back + pos[ref]
    lattice += np.mean(pos - lattice, axis=0)  # the reference column is noisy too: fit the translation
    dist = np.hypot(*(pos - lattice).T)
    return {"angle_deg": float(np.rad2deg(angle)), "mirror": bool(mirror), "origin": pos[ref].tolist(),
            "basis_index": index, "lattice_xy": lattice, "rms_misfit": float(np.sqrt(np.mean(dist**2)))}  # fmt: skip


def model_from_counts(fit, counts, crystal, zone_axis, *, alignment: str = "centre", positions: str = "lattice",
                      vacuum_angstrom: float = 5.0) -> Atoms:  # fmt: skip
    """Place each column's atoms on the crystal lattice: a 3D starting model.

    Parameters
    ----------
    fit : ColumnFit or array_like (n, 2)
        Column positions (x, y) [Å].
    counts : ColumnCounts or array_like (n,) of int
        Atoms per column; columns with a count below 1 get no atoms.
    crystal : str or ase.Atoms
        Element symbol or bulk unit cell (as for :func:`atomscount.library.zone_axis_crystal`).
    zone_axis : str or tuple
        Viewing direction of the image.
    alignment : {"centre", "top", "bottom"}
        ``"centre"``: every column symmetric about one mid-plane (as near as the
        lattice allows); ``"top"``: all columns start at the entrance surface
        (z = 0, the beam travels along +z); ``"bottom"``: all end at the exit surface.
    positions : {"lattice", "fitted"}
        x, y from the registered ideal lattice, or the fitted positions as measured.
    vacuum_angstrom : float
        Space around the model in its cell.

    Returns
    -------
    ase.Atoms
        With ``atoms.arrays["column"]`` the index of each atom's column and
        ``atoms.info["registration"]`` the lattice registration (angle, mirror, misfit).

    Raises
    ------
    ValueError
        For positions that are not a finite (n, 2) array, counts not one per
        column, no columns, or ``vacuum_angstrom`` below 0.
    TypeError
        If the counts are not integers.
    """
    from ..library import zone_axis_crystal

    check_choice(alignment, "alignment", {"centre", "top", "bottom"})
    check_choice(positions, "positions", {"lattice", "fitted"})
    vacuum_angstrom = check_positive(vacuum_angstrom, "vacuum_angstrom", allow_zero=True)
    pos = check_real_array(getattr(fit, "positions", fit), "fit positions")
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"fit positions must have shape (n, 2), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"fit positions must be finite, got {int((~np.isfinite(pos)).sum())} NaN/inf")
    n = np.asarray(getattr(counts, "counts", counts))
    if n.dtype.kind not in "iu" and n.size:
        raise TypeError(f"counts must hold integers, got dtype {n.dtype}")
    if n.ndim != 1 or len(n) != len(pos):
        raise ValueError(f"counts must be 1D with one entry per column ({len(pos)}), got shape {n.shape}")
    if len(pos) == 0:
        raise ValueError("fit holds no columns")
    if np.any(n < 0):
        warnings.warn(f"{int(np.sum(n < 0))} columns without a count get no atoms", stacklevel=2)
    cryst = zone_axis_crystal(crystal, zone_axis)
    _, zs, cell = _basis_columns(cryst)
    reg = register_lattice(pos, cryst)
    xy = reg["lattice_xy"] if positions == "lattice" else pos
    symbols_by_z = {round(float(z), 3): s for z, s in zip(cryst.positions[:, 2] % cell[2],
                                                        cryst.get_chemical_symbols(), strict=True)}  # fmt: skip
    out_pos, out_sym, out_col = [], [], []
    period = cell[2]
    for i, (p, count) in enumerate(zip(xy, n, strict=True)):
        if count < 1:
            continue
        z_in = zs[reg["basis_index"][i]]
        m = len(z_in)
        k = np.arange(-(count // m) - 2, count // m + 3)
        sites = np.sort((z_in[None, :] + period * k[:, None]).ravel())
        if alignment == "centre":
            starts = np.arange(len(sites) - count + 1)
            centres = np.array([sites[s : s + count].mean() for s in starts])
            s0 = starts[np.argmin(np.abs(centres))]
        elif alignment == "top":
            s0 = int(np.searchsorted(sites, -1e-6))
        else:
            s0 = int(np.searchsorted(sites, 1e-6)) - count
        for z in sites[s0 : s0 + count]:
            out_pos.append([p[0], p[1], z])
            out_sym.append(symbols_by_z.get(round(float(z % period), 3), cryst.get_chemical_symbols()[0]))
            out_col.append(i)
    atoms = Atoms(out_sym, positions=np.array(out_pos).reshape(-1, 3))
    if len(atoms):
        atoms.positions -= atoms.positions.min(axis=0) - vacuum_angstrom
        atoms.set_cell(atoms.positions.max(axis=0) + vacuum_angstrom)
    atoms.arrays["column"] = np.array(out_col, dtype=np.int64)
    atoms.info["registration"] = {k: reg[k] for k in ("angle_deg", "mirror", "rms_misfit")}
    atoms.info["alignment"] = alignment
    return atoms


def write_model(atoms: Atoms, path) -> Path:
    """Write a model to ``.xyz`` (extended XYZ, keeps the column index) or ``.cif``, atomically."""
    from ase.io import write

    from ..io import atomic_path

    path = Path(path)
    fmt = {".xyz": "extxyz", ".cif": "cif"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"path must end in .xyz or .cif, got {str(path)!r}")
    atoms = atoms.copy()
    if fmt == "cif":
        atoms.pbc = True
        atoms.info = {}
    else:
        atoms.info = {k: v for k, v in atoms.info.items() if not isinstance(v, dict)}
    with atomic_path(path) as tmp:
        write(tmp, atoms, format=fmt)
    return path
