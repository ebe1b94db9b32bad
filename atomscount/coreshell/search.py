"""The core-shell configuration search: a parametric core, then site-level annealing.

1. **Parametric**: an ellipsoidal (or spherical) core, its centre and radii found by
   differential evolution on the χ² of every column of every view, then refined locally.
2. **Site level**: Metropolis annealing with swaps of a core boundary site and a shell
   boundary site (composition kept), under a compactness penalty (``penalty`` per
   exposed core bond, to a shell site or to the outside), with the incremental χ² of
   :class:`~.forward.ForwardModel`.
3. **Uncertainty**: the chain is then sampled at temperature 1 (the posterior of a
   Gaussian likelihood times the compactness prior); the fraction of samples in which
   a site holds the core element is its probability.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import differential_evolution, minimize

from .._checks import check_choice, check_positive, check_rng
from .forward import CORE, SHELL, ForwardModel, LensingTables
from .model import CoreShellModel
from .sites import group_columns, neighbour_pairs, tilt_rotation

__all__ = ["search_core_shell", "core_codes"]

#: Two views' totals may differ by this fraction (counting errors) before they are refused.
TOTAL_TOLERANCE = 0.03


def core_codes(positions, centre, radii) -> np.ndarray:
    """CORE inside the axis-aligned ellipsoid (centre, radii [Å]), SHELL elsewhere."""
    u = (np.asarray(positions) - np.asarray(centre)) / np.asarray(radii)
    return np.where(np.einsum("ij,ij->i", u, u) <= 1.0, CORE, SHELL).astype(np.int64)


def _parse_view(view, v):
    if not isinstance(view, tuple | list):
        raise TypeError(f"views[{v}] must be (ColumnFit, zone_axis) or (positions, scs, scs_error, zone_axis)")
    if len(view) == 2:
        fit, axis = view
        pos, scs, err = fit.positions, fit.scs, fit.scs_error
    elif len(view) == 4:
        pos, scs, err, axis = view
    else:
        raise ValueError(f"views[{v}] must have 2 or 4 entries, got {len(view)}")
    pos = np.asarray(pos, dtype=np.float64)
    scs, err = np.asarray(scs, dtype=np.float64), np.asarray(err, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or scs.shape != (len(pos),) or err.shape != (len(pos),):
        raise ValueError(f"views[{v}]: positions must be (n, 2) and scs, scs_error (n,), got {pos.shape}, "
                         f"{scs.shape}, {err.shape}")  # fmt: skip
    if not (np.all(np.isfinite(scs)) and np.all(err > 0)):
        raise ValueError(f"views[{v}]: scs must be finite and scs_error > 0")
    return pos, scs, err, str(axis).strip("[]")


def _particle_sites(pos0, counts0, crystal, axis0):
    """Sites of view 0's columns, each filled with its count, centred along the beam."""
    from ..counting import model_from_counts

    atoms = model_from_counts(pos0, counts0, crystal, axis0, alignment="centre", positions="lattice")
    xyz = atoms.positions.copy()
    col = atoms.arrays["column"]
    xyz[:, :2] += np.median(pos0[col] - xyz[:, :2], axis=0)
    xyz[:, 2] -= xyz[:, 2].mean()
    return xyz, _lattice_constant(crystal)


def _lattice_constant(crystal) -> float:
    from ..library import zone_axis_crystal

    return float(zone_axis_crystal(crystal, "001").cell.lengths()[0])


def _match(pred_xy, meas_xy, v, tol=0.6):
    """Index of the measured column under each predicted column, after fitting a translation."""
    from scipy.spatial import cKDTree

    tree = cKDTree(meas_xy)
    shift = meas_xy.mean(axis=0) - pred_xy.mean(axis=0)
    for _ in range(5):
        d, idx = tree.query(pred_xy + shift)
        shift += np.mean(meas_xy[idx] - (pred_xy + shift), axis=0)
    d, idx = tree.query(pred_xy + shift)
    if np.any(d > tol) or len(np.unique(idx)) != len(idx):
        raise ValueError(
            f"view {v}: {int(np.sum(d > tol))} of {len(pred_xy)} projected columns have no measured "
            f"column within {tol} Å (worst {d.max():.2f} Å); the views disagree on the particle"
        )
    return idx, shift


def search_core_shell(views, lensing, crystal, *, core: str = "ellipsoid", counts=None, symmetric: bool = False,
                      rng=None, core_element: str = "Au", shell_element: str = "Ag", penalty: float = 0.5,
                      n_anneal: int = 20000, n_sample: int = 10000, start_temperature: float = 20.0,
                      de_maxiter: int = 60) -> CoreShellModel:  # fmt: skip
    """Find which sites of a core-shell particle hold the core element.

    Parameters
    ----------
    views : list
        One or more views: ``(ColumnFit, zone_axis)`` or ``(positions (n, 2) [Å], scs (n,) [Å²],
        scs_error (n,) [Å²], zone_axis)``. The first view fixes the frame. A later
        view's image must have the shared in-plane direction ([1-10] for [001] and
        [110]) along x, as the first; its translation is fitted.
    lensing : LensingModel or dict of zone axis to LensingModel
    crystal : str or ase.Atoms
        The host lattice (as for :func:`atomscount.library.zone_axis_crystal`).
    core : {"ellipsoid", "sphere"}
        The parametric core (axis-aligned in the first view's frame).
    counts : array_like or list of array_like
        Atoms per column of the first view (the particle's shape), or one array per
        view; later views' totals are checked against the first.
    symmetric : bool
        Keep the core centred on the particle's mid-plane (z = 0) in the parametric stage.
    rng : numpy.random.Generator, int or None
    penalty : float
        Cost added to χ² per exposed core bond (to a shell site or the outside): a compact, buried core.
    n_anneal, n_sample : int
        Proposals in the annealing and in the sampling at temperature 1.

    Raises
    ------
    ValueError
        For a lensing model of other elements, a view without a model, counts
        missing, or views that disagree on the particle (named in the message).

    References
    ----------
    van den Bos et al., PRL 116, 246101 (2016), doi:10.1103/PhysRevLett.116.246101.
    """
    t_start = time.perf_counter()
    check_choice(core, "core", {"ellipsoid", "sphere"})
    penalty = check_positive(penalty, "penalty", allow_zero=True)
    gen = check_rng(rng)
    if not isinstance(views, list | tuple) or len(views) == 0:
        raise ValueError("views must be a non-empty list")
    parsed = [_parse_view(view, v) for v, view in enumerate(views)]
    axes = [p[3] for p in parsed]
    models = lensing if isinstance(lensing, dict) else {a: lensing for a in axes}
    models = {str(k).strip("[]"): m for k, m in models.items()}
    tables = []
    for v, a in enumerate(axes):
        if a not in models:
            raise ValueError(f"views[{v}] is along [{a}], but lensing has models for {sorted(models)} only")
        tables.append(LensingTables(models[a], core=core_element, shell=shell_element))
    if counts is None:
        raise ValueError("counts (atoms per column of the first view) are needed; shape fitting is not built yet")
    counts_list = list(counts) if isinstance(counts, list | tuple) else [counts]
    counts_list = [np.asarray(c) for c in counts_list]
    if len(counts_list) > len(parsed):
        raise ValueError(f"counts has {len(counts_list)} arrays for {len(parsed)} views")
    totals = [int(np.sum(np.clip(c, 0, None))) for c in counts_list]
    for v in range(1, len(totals)):
        if abs(totals[v] - totals[0]) > max(3, TOTAL_TOLERANCE * totals[0]):
            raise ValueError(f"views 0 and {v} disagree on the particle: view 0 counts {totals[0]} atoms, "
                             f"view {v} counts {totals[v]}")  # fmt: skip

    xyz, a = _particle_sites(parsed[0][0], counts_list[0], crystal, axes[0])
    columns, measured, sigma, offsets, meas_index = [], [], [], [], []
    for v, (pos, scs, err, axis) in enumerate(parsed):
        rot = None if v == 0 else tilt_rotation(axes[0], axis)
        cols = group_columns(xyz, rot)
        idx, _ = _match(cols.xy, pos, v)
        unmatched = np.setdiff1d(np.arange(len(pos)), idx)
        columns.append(cols)
        measured.append(scs[idx])
        sigma.append(err[idx])
        offsets.append(float(np.sum((scs[unmatched] / err[unmatched]) ** 2)))
        meas_index.append(idx)

    fm = ForwardModel(np.full(len(xyz), SHELL), columns, tables, measured, sigma, offsets)

    # stage 1: parametric core
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    r_min, r_max = a / 2.0, float(np.max(hi - lo)) / 2.0
    n_r = 1 if core == "sphere" else 3

    def unpack(p):
        centre = np.array([p[0], p[1], 0.0 if symmetric else p[2]])
        radii = np.full(3, p[-1]) if n_r == 1 else np.asarray(p[-3:])
        return centre, radii

    def objective(p):
        fm.set_codes(core_codes(xyz, *unpack(p)))
        return fm.chi2()

    bounds = [(lo[0], hi[0]), (lo[1], hi[1])] + ([] if symmetric else [(lo[2], hi[2])]) + [(r_min, r_max)] * n_r
    de = differential_evolution(objective, bounds, rng=gen, maxiter=de_maxiter, popsize=15, tol=1e-6,
                                polish=False, init="sobol")  # fmt: skip
    local = minimize(objective, de.x, method="Powell", bounds=bounds, options={"xtol": 1e-2, "ftol": 1e-6})
    best_p = local.x if local.fun <= de.fun else de.x
    centre, radii = unpack(best_p)
    fm.set_codes(core_codes(xyz, centre, radii))
    chi2_parametric = fm.chi2()
    t_parametric = time.perf_counter() - t_start

    # stage 2 and 3: annealing, then sampling at temperature 1
    pairs = neighbour_pairs(xyz, a)
    nbr_start, nbr = _adjacency(pairs, len(xyz))
    codes, stats = _anneal(fm, nbr_start, nbr, penalty, gen, n_anneal, n_sample, start_temperature)

    fm.set_codes(codes)
    symbols = np.where(codes == CORE, core_element, shell_element)
    from ase import Atoms

    atoms = Atoms(list(symbols), positions=xyz)
    core_counts, core_std = [], []
    for v, cols in enumerate(columns):
        n_meas = len(parsed[v][0])
        best = np.zeros(n_meas, dtype=np.int64)
        np.add.at(best, meas_index[v][cols.column_of_site], codes == CORE)
        std = np.zeros(n_meas)
        std[meas_index[v]] = stats["column_std"][v]
        core_counts.append(best)
        core_std.append(std)
    core_dict = {"shape": core, "centre": centre.tolist(), "radii": radii.tolist(),
                 "centroid": xyz[codes == CORE].mean(axis=0).tolist() if np.any(codes == CORE) else None,
                 "chi2_parametric": chi2_parametric}  # fmt: skip
    info = {"penalty": penalty, "n_anneal": n_anneal, "n_sample": n_sample, "lattice_constant": a,
            "seconds_parametric": t_parametric, "seconds_total": time.perf_counter() - t_start,
            "acceptance_final": stats["acceptance"], "n_views": len(parsed)}  # fmt: skip
    return CoreShellModel(atoms, stats["probability"], core_dict, fm.chi2_per_view(),
                          [len(p[0]) for p in parsed], core_counts, core_std, core_element, shell_element,
                          tuple(axes), converged=bool(stats["acceptance"] < 0.5), info=info)  # fmt: skip


def _adjacency(pairs, m):
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    start = np.concatenate([[0], np.cumsum(np.bincount(both[:, 0], minlength=m))])
    return start, both[:, 1]


def _contacts_of(codes, nbr_start, nbr, sites):
    """Exposed core bonds (to shell sites or to the outside) touching ``sites`` (a bond between two of them once)."""
    total = 0
    seen = set(int(s) for s in sites)
    for s in seen:
        ns = nbr[nbr_start[s] : nbr_start[s + 1]]
        # a core site's bond to a non-core neighbour or to a missing one (outside the particle) is exposed
        if codes[s] != CORE:
            diff = codes[ns] == CORE
        else:
            total += 12 - len(ns)
            diff = codes[ns] != CORE
        for n_, d in zip(ns, diff, strict=True):
            if d and not (n_ in seen and n_ < s):
                total += 1
    return total


def _boundary(codes, nbr_start, nbr, kind):
    other = CORE if kind == SHELL else SHELL
    is_other = codes == other
    counts = np.add.reduceat(is_other[nbr].astype(np.int64), nbr_start[:-1]) if len(nbr) else np.zeros(len(codes))
    return np.flatnonzero((codes == kind) & (counts > 0))


def _anneal(fm, nbr_start, nbr, penalty, gen, n_anneal, n_sample, t0):
    codes = fm.codes
    energy = fm.chi2()
    best_energy, best_codes = energy + penalty * 0, codes.copy()
    contacts = _contacts_of(codes, nbr_start, nbr, range(len(codes))) // 1
    energy = fm.chi2() + penalty * contacts
    best_energy = energy
    n_total = n_anneal + n_sample
    prob = np.zeros(len(codes))
    col_sum = [np.zeros(c.n_columns) for c in fm.columns]
    col_sq = [np.zeros(c.n_columns) for c in fm.columns]
    n_samples = 0
    accepted_late = 0
    core_b = shell_b = np.empty(0, dtype=np.int64)
    for step in range(n_total):
        if step % 50 == 0:
            core_b = _boundary(codes, nbr_start, nbr, CORE)
            shell_b = _boundary(codes, nbr_start, nbr, SHELL)
        temperature = t0 * (1.0 / t0) ** (step / n_anneal) if step < n_anneal else 1.0
        if len(core_b) and len(shell_b):
            i = core_b[gen.integers(len(core_b))]
            j = shell_b[gen.integers(len(shell_b))]
            if codes[i] == CORE and codes[j] == SHELL:
                before = _contacts_of(codes, nbr_start, nbr, (i, j))
                d_chi2 = fm.change([i, j], [SHELL, CORE])
                d_e = d_chi2 + penalty * (_contacts_of(codes, nbr_start, nbr, (i, j)) - before)
                if d_e <= 0 or gen.random() < np.exp(-d_e / (2.0 * temperature)):
                    energy += d_e
                    if step >= n_anneal:
                        accepted_late += 1
                    if energy < best_energy - 1e-9:
                        best_energy, best_codes = energy, codes.copy()
                else:
                    fm.change([i, j], [CORE, SHELL])
        if step >= n_anneal and (step - n_anneal) % 10 == 0:
            prob += codes == CORE
            for v, c in enumerate(fm.columns):
                per_col = np.bincount(c.column_of_site, weights=(codes == CORE), minlength=c.n_columns)
                col_sum[v] += per_col
                col_sq[v] += per_col**2
            n_samples += 1
    n_samples = max(n_samples, 1)
    mean = [s / n_samples for s in col_sum]
    std = [np.sqrt(np.maximum(q / n_samples - m**2, 0.0)) for q, m in zip(col_sq, mean, strict=True)]
    if n_sample == 0:
        prob = (best_codes == CORE).astype(np.float64)
        n_samples = 1
    return best_codes, {"probability": prob / n_samples, "column_std": std,
                        "acceptance": accepted_late / max(n_sample, 1)}  # fmt: skip
