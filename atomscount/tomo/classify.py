"""Classification of traced atoms by intensity, and comparison with a true model.

:func:`classify_atoms` follows Yang et al., Nature 542, 75 (2017):

1. a Gaussian mixture with free widths (or k-means) of the integrated intensities
   into K classes, ordered by mean intensity (for K = 3: non-atom, then the light
   and the heavy element), with seeding fixed by ``rng``. Box and fitted integrals
   of the volume are clustered as logarithms (HAADF classes differ by ratios); the
   integrals fitted to the projections (:func:`~.refine.refine_atoms`), which are
   near zero for noise and can be negative, as they are, and then the first class
   (when it is named "non-atom") is held at zero with each atom's own standard
   error, widened by a fitted excess width (the forward model's own error): a
   candidate is a non-atom when its integral is consistent with none;
2. local reclassification: each atom's 3 x 3 x 3 intensity profile (or its fitted
   integral) is compared with the average of each class among its neighbours within
   ``radius`` (its own excluded), and it moves to the nearest class (least squares);
   repeated until no atom moves. This takes out slow variations of the
   reconstruction's intensity across the particle.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from .._checks import check_choice, check_integer, check_positions_3d, check_positive, check_rng
from .trace import TracedAtoms

__all__ = ["classify_atoms", "compare_models"]


def classify_atoms(traced: TracedAtoms, n_classes: int = 3, *, names=None, intensity: str = "auto",
                   method: str = "gmm", local: bool | None = None, radius_angstrom: float = 10.0, max_rounds: int = 50,
                   rng=0) -> TracedAtoms:  # fmt: skip
    """Label each traced atom with one of ``n_classes`` classes, darkest class first.

    Parameters
    ----------
    traced : TracedAtoms
    n_classes : int
        K >= 2.
    names : sequence of str, optional
        One name per class, darkest first (default: "non-atom" and then "class 1"...;
        for an FePt particle ``["non-atom", "Fe", "Pt"]``).
    intensity : {"auto", "strength", "box", "fit"}
        Which integrated intensity is clustered: the integrals fitted to the projections
        ("strength", the default when ``traced`` has them), or the volume's box or
        Gaussian-fit integrals ("box", the default otherwise).
    method : {"gmm", "kmeans"}
        A Gaussian mixture with free widths (default, started from k-means) or k-means alone.
    local : bool, optional
        Run the local reclassification (default: for the volume's intensities, which
        drift across a reconstruction; not for integrals fitted to the projections,
        which do not, and where on the FePt benchmark it moved 4 % of the Fe atoms
        into the non-atom class).
    radius_angstrom : float
        Neighbourhood of the local reclassification [Å].
    max_rounds : int
    rng : int or numpy.random.Generator

    Returns
    -------
    TracedAtoms
        A copy with ``labels`` and ``class_names`` set.

    Raises
    ------
    ValueError
        For K < 2, fewer atoms than classes, or names of the wrong length.
    """
    if not isinstance(traced, TracedAtoms):
        raise TypeError(f"traced must be TracedAtoms, got {type(traced).__name__}")
    k = check_integer(n_classes, "n_classes", low=2)
    check_choice(intensity, "intensity", {"auto", "strength", "box", "fit"})
    if intensity == "auto":
        intensity = "box" if traced.strength is None else "strength"
    if intensity == "strength" and traced.strength is None:
        raise ValueError("intensity='strength' needs fitted integrals: run refine_atoms first")
    check_choice(method, "method", {"kmeans", "gmm"})
    radius = check_positive(radius_angstrom, "radius_angstrom")
    max_rounds = check_integer(max_rounds, "max_rounds", low=0)
    gen = check_rng(rng)
    names = tuple(names) if names is not None else ("non-atom", *[f"class {i}" for i in range(1, k)])
    if len(names) != k:
        raise ValueError(f"names has {len(names)} entries for n_classes = {k}")
    log = intensity != "strength"
    if intensity == "strength":
        values = np.asarray(traced.strength, dtype=np.float64)
        profiles = values[:, None]
    else:
        values = traced.intensity_box if intensity == "box" else traced.intensity_fit
        values = np.where(np.isfinite(values), values, traced.intensity_box)
        profiles = traced.profiles
    if len(values) < k:
        raise ValueError(f"{len(values)} atoms cannot make n_classes = {k} classes")
    if method == "kmeans":
        labels = _kmeans_1d(values, k, gen, log=log)
    else:
        # fitted integrals have standard errors: the non-atom class is "zero within its error"
        null_sd = traced.strength_error if intensity == "strength" and names[0] == "non-atom" else None
        labels = _gmm_1d(values, k, gen, log=log, null_sd=null_sd)
    if local is None:
        local = intensity != "strength"
    if local and k > 1:
        labels = _local_reclassify(traced.positions, profiles, labels, k, radius, max_rounds)
    return dataclasses.replace(traced, labels=labels.astype(np.int64), class_names=names)


def _order_by_mean(values, labels, k):
    means = np.array([values[labels == j].mean() if np.any(labels == j) else np.inf for j in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(means)] = np.arange(k)
    return rank[labels]


def _transform(values, log):
    if not log:
        return np.asarray(values, dtype=np.float64)
    floor = np.min(values[values > 0]) if np.any(values > 0) else 1.0
    return np.log(np.maximum(values, floor))


def _kmeans_1d(values, k, gen, n_starts=10, log=True):
    """k-means of the (log) intensities, best of seeded k-means++ starts."""
    from scipy.cluster.vq import kmeans2

    x = _transform(values, log).reshape(-1, 1)
    best = None
    for _ in range(n_starts):
        centres, labels = kmeans2(x, k, minit="++", iter=100, seed=gen)
        inertia = float(np.sum((x[:, 0] - centres[labels, 0]) ** 2))
        if len(np.unique(labels)) == k and (best is None or inertia < best[0]):
            best = (inertia, labels)
    if best is None:
        raise ValueError(f"the intensities do not split into n_classes = {k} classes")
    return _order_by_mean(values, best[1], k)


def _gmm_1d(values, k, gen, n_iter=200, log=True, null_sd=None):
    """EM for a Gaussian mixture of the (log) intensities with free means, widths and weights, from k-means.

    With ``null_sd`` (one standard error per value) the first class is no atom at all: mean 0 and each
    value's own standard error, widened by one excess width ``tau`` shared by all (variance
    ``sd_i^2 + tau^2``, tau fitted by moments), while the others are fitted. The excess is the
    forward model's own error: on projections that are not sums of Gaussians (multislice
    channelling, probe tails) an empty site next to atoms gets an integral well away from 0 on
    the scale of its statistical error alone, and would otherwise join the lightest element.
    """
    labels = _kmeans_1d(values, k, gen, log=log)
    raw, values = values, _transform(values, log)
    mu = np.array([values[labels == j].mean() for j in range(k)])
    var = np.array([max(values[labels == j].var(), 1e-12 * np.var(values) + 1e-300) for j in range(k)])
    w = np.array([np.mean(labels == j) for j in range(k)])
    null_var = None if null_sd is None else np.maximum(np.asarray(null_sd, dtype=np.float64) ** 2, 1e-300)
    tau2 = 0.0
    if null_var is not None:
        mu[0] = 0.0
    for _ in range(n_iter):
        v = np.broadcast_to(var, (len(values), k)).copy()
        if null_var is not None:
            v[:, 0] = null_var + tau2
        logp = -0.5 * (values[:, None] - mu) ** 2 / v - 0.5 * np.log(2 * np.pi * v) + np.log(w)
        logp -= logp.max(axis=1, keepdims=True)
        resp = np.exp(logp)
        resp /= resp.sum(axis=1, keepdims=True)
        nk = resp.sum(axis=0) + 1e-12
        mu_new = resp.T @ values / nk
        if null_var is not None:
            mu_new[0] = 0.0
            tau2_new = max(0.0, float(resp[:, 0] @ (values**2 - null_var)) / nk[0])
            converged_tau = abs(tau2_new - tau2) <= 1e-9 * (tau2 + np.mean(null_var))
            tau2 = tau2_new
        else:
            converged_tau = True
        var = np.maximum((resp * (values[:, None] - mu_new) ** 2).sum(axis=0) / nk, 1e-12 * np.var(values) + 1e-300)
        w = nk / nk.sum()
        if np.allclose(mu_new, mu, rtol=1e-9, atol=0) and converged_tau:
            mu = mu_new
            break
        mu = mu_new
    return _order_by_mean(raw, np.argmax(resp, axis=1), k)


def _local_reclassify(positions, profiles, labels, k, radius, max_rounds):
    from . import _kernels

    pairs = cKDTree(positions).query_pairs(radius, output_type="ndarray")
    both = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    both = both[np.argsort(both[:, 0], kind="stable")]
    start = np.concatenate([[0], np.cumsum(np.bincount(both[:, 0], minlength=len(positions)))]).astype(np.int64)
    nbr = both[:, 1].astype(np.int64)
    labels = labels.astype(np.int64).copy()
    prof = np.ascontiguousarray(profiles, dtype=np.float64)
    new = np.empty_like(labels)
    for _ in range(max_rounds):
        _kernels.reclassify_round(prof, labels, start, nbr, k, new)
        if np.array_equal(new, labels):
            break
        labels[:] = new
    return labels


def compare_models(traced_positions, traced_elements, truth_positions, truth_elements, *,
                   max_distance_angstrom: float = 1.0, superpose: bool = False) -> dict:  # fmt: skip
    """Match traced atoms to true ones (mutual nearest neighbours within ``max_distance_angstrom``).

    Returns recall (true atoms found), precision (traced atoms that are true),
    position RMSD [pm] over the matches, the fraction of matches with the right
    element overall and per true element, and the counts. With ``superpose`` the
    traced model is first moved onto the truth by the rigid motion (Kabsch) that
    best superposes the matches, matched again, three times: for a reconstruction
    whose frame is only known up to a shift and a rotation (a series aligned on
    its centre of mass, with refined angles); ``superposition`` then holds the
    rotation and the shift.
    """
    tp = check_positions_3d(traced_positions, "traced_positions")
    truth = check_positions_3d(truth_positions, "truth_positions")
    if len(truth) == 0:
        raise ValueError("truth_positions must hold at least one atom, got none")
    te, ue = np.asarray(traced_elements).astype(str), np.asarray(truth_elements).astype(str)
    if len(tp) != len(te) or len(truth) != len(ue):
        raise ValueError("positions and elements need one entry per atom")
    dmax = check_positive(max_distance_angstrom, "max_distance_angstrom")
    if len(tp) == 0:
        return {"recall": 0.0, "precision": 0.0, "rmsd_pm": float("nan"), "classification_accuracy": float("nan"),
                "per_element_accuracy": {}, "n_matched": 0, "n_traced": 0, "n_true": len(truth)}  # fmt: skip
    extra = {}
    if superpose:
        rot, shift = np.eye(3), np.zeros(3)
        for _ in range(3):
            ti, ui, _ = _mutual(tp @ rot.T + shift, truth, dmax)
            if len(ti) < 3:
                break
            rot, shift = _kabsch(tp[ti], truth[ui])
        tp = tp @ rot.T + shift
        extra["superposition"] = {"rotation": rot.tolist(), "shift_angstrom": shift.tolist()}
    ti, ui, d_tt = _mutual(tp, truth, dmax)
    right = te[ti] == ue[ui]
    per = {str(e): float(np.mean(right[ue[ui] == e])) for e in np.unique(ue) if np.any(ue[ui] == e)}
    return {"recall": float(len(ti) / len(truth)), "precision": float(len(ti) / len(tp)),
            "rmsd_pm": float(100.0 * np.sqrt(np.mean(d_tt[ti] ** 2))) if len(ti) else float("nan"),
            "classification_accuracy": float(np.mean(right)) if len(ti) else float("nan"),
            "per_element_accuracy": per, "n_matched": int(len(ti)), "n_traced": int(len(tp)),
            "n_true": int(len(truth)), **extra}  # fmt: skip


def _mutual(tp, truth, dmax):
    """Indices of mutual nearest neighbours within ``dmax`` (traced, true) and every traced atom's distance."""
    d_tt, i_tt = cKDTree(truth).query(tp)  # traced -> truth
    d_ut, i_ut = cKDTree(tp).query(truth)  # truth -> traced
    ti = np.flatnonzero((i_ut[i_tt] == np.arange(len(tp))) & (d_tt <= dmax))
    return ti, i_tt[ti], d_tt


def _kabsch(a, b):
    """The rotation R and shift t that minimise sum |R a + t - b|^2."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    u, _, vt = np.linalg.svd((a - ca).T @ (b - cb))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, cb - rot @ ca
