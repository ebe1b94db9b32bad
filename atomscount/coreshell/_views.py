"""Views after the first: their columns matched to the measured ones and their orientation among the crystal's."""

from __future__ import annotations

import numpy as np
from scipy.optimize import differential_evolution
from scipy.spatial import cKDTree

from . import _anneal
from .forward import CORE, EMPTY, SHELL, ForwardModel
from .register import register_view, view_rotations
from .sites import group_columns, neighbour_pairs


def _refine_shift(tree, pred_xy, meas_xy, shift, tol, n_iter=8):
    for it in range(n_iter):
        d, idx = tree.query(pred_xy + shift)
        near = d < max(tol, 0.5 * np.median(d) + tol) if it == 0 else d < tol
        if not np.any(near):
            near = d <= np.median(d)
        shift = shift + np.mean(meas_xy[idx[near]] - (pred_xy[near] + shift), axis=0)
    return shift


def _match(pred_xy, meas_xy, v, tol=0.6, *, allow_unmatched=False, pred_weight=None, meas_value=None):
    """Index of the measured column under each predicted column, after fitting a translation.

    With ``allow_unmatched``, a predicted column with no measured column within ``tol``
    gets -1 (it should hold no atoms); otherwise it is an error naming the view.

    With ``pred_weight`` (a length per predicted column) and ``meas_value`` (the SCS per
    measured column), the translation is chosen among the column offsets near the
    first guess: the one that leaves fewest measured columns without a predicted one
    and, among those, correlates the lengths best with the SCS. When the candidate
    sites stick out of the particle unevenly (a shape still to be fitted), the mean
    offset alone can put the columns one lattice spacing off.
    """
    tree = cKDTree(meas_xy)
    shift = _refine_shift(tree, pred_xy, meas_xy, meas_xy.mean(axis=0) - pred_xy.mean(axis=0), tol)
    if pred_weight is not None and meas_value is not None and allow_unmatched:
        pred_tree = cKDTree(pred_xy + shift)
        centre = meas_xy[np.argmax(meas_value)]
        _, near_pred = pred_tree.query(centre, k=min(13, len(pred_xy)))
        best = None
        for j in np.atleast_1d(near_pred):
            trial = _refine_shift(tree, pred_xy, meas_xy, shift + centre - (pred_xy[j] + shift), tol, n_iter=2)
            d, idx = tree.query(pred_xy + trial)
            hit = d <= tol
            covered = np.zeros(len(meas_xy), dtype=bool)
            covered[idx[hit]] = True
            w = np.asarray(pred_weight, dtype=np.float64)[hit]
            y = np.asarray(meas_value, dtype=np.float64)[idx[hit]]
            corr = float(np.corrcoef(w, y)[0, 1]) if hit.sum() > 2 and np.ptp(w) > 0 and np.ptp(y) > 0 else -1.0
            key = (int(np.sum(~covered)), -corr)
            if best is None or key < best[0]:
                best = (key, trial)
        shift = best[1]
    d, idx = tree.query(pred_xy + shift)
    far = d > tol
    if (np.any(far) and not allow_unmatched) or len(np.unique(idx[~far])) != int(np.sum(~far)):
        raise ValueError(
            f"view {v}: {int(np.sum(far))} of {len(pred_xy)} projected columns have no measured "
            f"column within {tol} Å (worst {d.max():.2f} Å); the views disagree on the particle"
        )
    return np.where(far, -1, idx), shift


#: A given beam direction picks the orientations whose beam lies within this angle of it [degrees].
BEAM_TOLERANCE_DEGREES = 15.0


def _orient(xyz, empty, parsed, tables, reg0, v, a, fit_shape, gen, beam=None, *, all_candidates=False):
    """The rotation from view 0's frame to view ``v``'s among the crystal-symmetric candidates.

    With ``beam`` (view ``v``'s beam in view 0's frame) only the candidates whose beam
    lies within :data:`BEAM_TOLERANCE_DEGREES` of it are kept. Each candidate must put
    every projected column on a measured one; those left are ranked by the rank
    correlation of their atoms per column with the measured SCS, and the close ones by
    the χ² of a quick search over views 0 and ``v`` (a spherical core, then a short
    annealing). With ``all_candidates`` there is no ranking: the list of every candidate
    that fits (dicts of rotation, columns, index, rank_correlation) is returned, for the
    caller to score with a full shape fit.
    """
    from scipy.stats import spearmanr

    pos, scs, err, axis = parsed[v]
    reg = register_view(pos, a, axis)
    candidates = view_rotations(reg0["frame"], reg["frame"], parsed[0][3], axis)
    if beam is not None:
        cos = np.cos(np.radians(BEAM_TOLERANCE_DEGREES))
        kept = [r for r in candidates if float(r[2] @ beam) >= cos]
        if not kept:
            options = sorted({tuple(np.round(r[2], 3).tolist()) for r in candidates})
            raise ValueError(f"beam_directions[{v - 1}] = {np.round(beam, 3).tolist()}: no orientation of the "
                             f"crystal puts the [{axis}] beam of view {v} within {BEAM_TOLERANCE_DEGREES:g}° of it; "
                             f"the lattices of views 0 and {v} allow {options} (x, y of view 0's image, z along "
                             f"its beam)")  # fmt: skip
        candidates = kept
    tried = []
    for rot in candidates:
        cols = group_columns(xyz, rot)
        try:
            idx, _ = _match(cols.xy, pos, v, allow_unmatched=fit_shape,
                            pred_weight=np.bincount(cols.column_of_site, weights=~empty, minlength=cols.n_columns),
                            meas_value=scs)  # fmt: skip
        except ValueError:
            continue
        hit = idx >= 0
        n_atoms = np.bincount(cols.column_of_site, weights=~empty, minlength=cols.n_columns)[hit]
        rho = spearmanr(n_atoms, scs[idx[hit]]).statistic if hit.sum() > 2 and np.ptp(n_atoms) > 0 else 0.0
        tried.append({"rotation": rot, "columns": cols, "index": idx, "rank_correlation": float(np.nan_to_num(rho))})
    if not tried:
        raise ValueError(f"view {v}: no orientation of the particle of view 0 along [{axis}] puts its columns on the "
                         f"measured ones; the views disagree on the particle")  # fmt: skip
    if all_candidates:
        return tried
    best_rho = max(t["rank_correlation"] for t in tried)
    close = [t for t in tried if t["rank_correlation"] >= best_rho - 0.02]
    if len(close) > 1:
        cols0 = group_columns(xyz)
        idx0, _ = _match(cols0.xy, parsed[0][0], 0, allow_unmatched=fit_shape)
        for t in close:
            t["chi2_quick"] = _quick_chi2(xyz, empty, [cols0, t["columns"]], [idx0, t["index"]],
                                                  [parsed[0], parsed[v]], [tables[0], tables[v]], a, gen)  # fmt: skip
        best = min(close, key=lambda t: t["chi2_quick"])
    else:
        best = close[0]
    scores = [{"rank_correlation": t["rank_correlation"], "chi2_quick": t.get("chi2_quick"),
               "chosen": t is best} for t in tried]  # fmt: skip
    return best["rotation"], best["columns"], best["index"], scores


def _quick_chi2(xyz, empty, columns, indices, views, tables, a, gen):
    """χ² of a quick search (a spherical core, then a short annealing) with these columns: a candidate's score."""
    from .shapes import CoreShape

    measured = [np.where(i >= 0, vw[1][np.maximum(i, 0)], 0.0) for i, vw in zip(indices, views, strict=True)]
    sigma = [np.where(i >= 0, vw[2][np.maximum(i, 0)], np.min(vw[2])) for i, vw in zip(indices, views, strict=True)]
    base = np.where(empty, EMPTY, SHELL).astype(np.int64)
    fm = ForwardModel(base, columns, tables, measured, sigma)
    sphere = CoreShape("sphere", xyz, a)

    def codes_of(p):
        rho = sphere.rho(p)
        rho[empty] = np.inf
        return np.where(rho <= 1.0, CORE, base)

    def objective(p):
        fm.set_codes(codes_of(p))
        return fm.chi2()

    res = differential_evolution(objective, sphere.bounds(), rng=gen, maxiter=15, popsize=10, polish=False,
                                 init="sobol")  # fmt: skip
    m = len(xyz)
    codes = codes_of(res.x)
    nbr_start, nbr = _adjacency(neighbour_pairs(xyz, a), m)
    ref = _anneal.compact_reference(xyz, xyz[codes == CORE].mean(axis=0) if np.any(codes == CORE) else
                                    xyz.mean(axis=0), nbr_start, nbr)  # fmt: skip
    packed = _anneal.pack(columns, tables, measured, sigma)
    out = _anneal.anneal(codes, np.zeros(m, dtype=np.bool_), np.full(m, -1, dtype=np.int64), nbr_start, nbr,
                         packed["col_of_site"], packed["gstart"], packed["gorder"], packed["view_of_col"],
                         packed["eoc"], packed["inc"], packed["nlen"], packed["curves"], packed["lam"],
                         packed["measured"], packed["weight"], 0.5, 0.0, 0.0, ref, np.zeros(m + 1),
                         np.array([1.0, 1.0, 0.0, 0.0]), max(20000, 20 * m), 0, 10.0, 10,
                         int(gen.integers(2**31 - 1)))  # fmt: skip
    return float(out[1])


def _adjacency(pairs, m):
    if len(pairs) == 0:
        return np.zeros(m + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    start = np.concatenate([[0], np.cumsum(np.bincount(both[:, 0], minlength=m))])
    return start.astype(np.int64), both[:, 1].astype(np.int64)
