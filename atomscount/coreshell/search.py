"""The core-shell configuration search: a parametric core, then site-level annealing.

1. **Parametric**: a core shape (sphere, ellipsoid with free orientation, or a
   star-shaped region; :mod:`.shapes`) found by differential evolution on the χ² of
   every column of every view, then refined locally (Powell).
2. **Site level**: Metropolis annealing (:mod:`._anneal`, one numba loop) seeded with
   the parametric core: swaps of a core and a shell boundary site, flips of one
   boundary site when the composition is free, and growth or removal of surface
   sites when the shape is fitted, under a compactness penalty (``penalty`` per
   exposed core bond) and a surface penalty (``surface_penalty`` per bond to the
   outside), with an incremental χ² (only the columns a move touches change).
3. **Uncertainty**: the chain is then sampled at temperature 1 (the posterior of a
   Gaussian likelihood times the bond prior); the fraction of samples in which a
   site holds the core element is its probability, and the spread of each
   column's core count over the samples is its uncertainty.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from scipy.optimize import differential_evolution, minimize
from scipy.spatial import cKDTree

from .._checks import check_choice, check_integer, check_positive, check_rng
from . import _anneal
from ._views import _adjacency, _match, _orient
from .forward import CORE, EMPTY, SHELL, ForwardModel, LensingTables
from .model import CoreShellModel
from .outer import SCALE_RANGE, common_scale, fit_outer_shape, interior
from .register import particle_sites
from .shapes import SHAPES, CoreShape
from .sites import group_columns, neighbour_pairs

__all__ = ["search_core_shell", "core_codes", "SearchWarning"]

#: Two views' totals may differ by this fraction (counting errors) before they are refused.
TOTAL_TOLERANCE = 0.03
#: Annealing passes at most: another follows when the scale moved or the sampling beat the annealing.
MAX_PASSES = 3
#: Longest column the search without counts starts from (a particle ~80 nm thick along [001]).
MAX_COLUMN_ATOMS = 400
#: Fitted SCS scales outside SCALE_RANGE (of :mod:`.outer`) mean the image and the lensing model do not belong
#: together.
#: A search whose best χ² per measured column exceeds this does not explain the data.
MAX_REDUCED_CHI2 = 4.0
#: Most annealing and sampling proposals of one search, all chains and passes together (the default of
#: ``max_proposals``): about 8 minutes at 10,000 sites (100,000 a second in bench_coreshell's scaling run),
#: and above the 3 passes of 5 chains that a search without counts makes on 3,600 sites.
MAX_PROPOSALS = 50_000_000


class SearchWarning(UserWarning):
    """The core-shell search did not converge; the model is its best state, with ``converged`` False."""


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
    if len(pos) == 0:
        raise ValueError(f"views[{v}] has no columns")
    if not (np.all(np.isfinite(scs)) and np.all(np.isfinite(err)) and np.all(err > 0)):
        raise ValueError(f"views[{v}]: scs must be finite and scs_error finite and > 0")
    return pos, scs, err, str(axis).strip("[]")


def _lattice_constant(crystal) -> float:
    from ..library import zone_axis_crystal

    return float(zone_axis_crystal(crystal, "001").cell.lengths()[0])


def _estimate_counts(scs, table, scale=1.0, n_max=MAX_COLUMN_ATOMS):
    """Atoms per column of ``scs / scale`` if every column were pure shell (a start for the shape fit); an SCS
    beyond a column of ``n_max`` atoms is refused (the sites, and the search's time, grow with the columns)."""
    from ._kernels import columns_scs

    n = np.arange(n_max + 1)
    start = np.concatenate([[0], np.cumsum(n)]).astype(np.int64)
    order = np.arange(start[-1], dtype=np.int64)
    codes = np.full(start[-1], SHELL, dtype=np.int64)
    out = np.zeros(len(n))
    columns_scs(n.astype(np.int64), start, order, codes, table.element_of_code, table.inc, table.curves, table.lam,
                out)  # fmt: skip
    if np.any(scs > scale * out[-1]):
        j = int(np.argmax(scs))
        raise ValueError(f"views[0]: scs[{j}] = {scs[j]:.4g} Å² is more than a column of {n_max} {table.symbols[1]} "
                         f"atoms gives ({scale * out[-1]:.4g} Å² at an SCS scale of {scale:g}): is the image "
                         "normalised to the incident beam? Give counts for a particle that thick")  # fmt: skip
    return np.clip(np.rint(np.interp(scs / scale, out, n)), 0, n_max).astype(np.int64)


def _mirror_map(xyz, lattice_constant):
    """Each site's image in the best mid-plane z = z_c (or -1), and z_c; z_c on the quarter-lattice grid."""
    tree = cKDTree(xyz)
    best = (-1, None, 0.0)
    centre = xyz[:, 2].mean()
    for k in range(-2, 3):
        zc = np.round(centre / (lattice_constant / 4.0)) * lattice_constant / 4.0 + k * lattice_constant / 4.0
        img = xyz * [1.0, 1.0, -1.0] + [0.0, 0.0, 2.0 * zc]
        d, idx = tree.query(img)
        mirror = np.where(d < 0.1, idx, -1)
        score = int(np.sum(mirror >= 0))
        if score > best[0]:
            best = (score, mirror, zc)
    return best[1].astype(np.int64), float(best[2])


def _profiled(fm):
    """χ² of a ForwardModel with each view's SCS scale fitted in closed form, and the scales."""
    chi2, scales = 0.0, []
    for v in range(len(fm.columns)):
        w, y, p = fm.weight[v], fm.measured[v], fm.predicted[v]
        den = float(np.sum(w * p * p))
        s = float(np.sum(w * y * p)) / den if den > 0 else 1.0
        scales.append(s)
        chi2 += float(np.sum(w * (y - s * p) ** 2)) + fm.offset[v]
    return chi2, np.array(scales)


def search_core_shell(views, lensing, crystal, *, core: str = "ellipsoid", counts=None, symmetric: bool = False,
                      rng=None, core_element: str = "Au", shell_element: str = "Ag", n_core: int | None = None,
                      fit_shape: bool | None = None, penalty: float = 0.5, surface_penalty: float = 1.0,
                      exposed_penalty: float = 2.0,
                      n_anneal: int | None = None, n_sample: int | None = None, start_temperature: float | None = None,
                      n_chains: int | None = None,
                      de_maxiter: int = 60, scs_scale="fit", model_error: float | None = None,
                      beam_directions=None, outer: str = "faceted", scale_prior=(0.94, 0.02),
                      max_proposals: int | None = MAX_PROPOSALS, progress: bool = False) -> CoreShellModel:  # fmt: skip
    """Find which sites of a core-shell particle hold the core element (and, optionally, its shape).

    Parameters
    ----------
    views : list
        One or more views: ``(ColumnFit, zone_axis)`` or ``(positions (n, 2) [Å], scs (n,) [Å²],
        scs_error (n,) [Å²], zone_axis)``. The first view fixes the frame: x and y as in its
        image, z along its beam. A later view's image must have the shared in-plane
        direction ([1-10] for [001] and [110]) along x, as the first; its translation is fitted.
    lensing : LensingModel or dict of zone axis to LensingModel
        One model per zone axis, for the core and shell elements.
    crystal : str or ase.Atoms
        The host lattice (as for :func:`atomscount.library.zone_axis_crystal`).
    core : {"ellipsoid", "sphere", "star"}
        The parametric core of the first stage (see :mod:`atomscount.coreshell.shapes`):
        an ellipsoid with free centre, radii and orientation; a sphere; or a star-shaped
        region whose radius varies with direction (harmonics of degree 1 and 2).
    counts : array_like or list of array_like, optional
        Atoms per column of the first view (the particle's shape), or one array per
        view; later views' totals are checked against the first. Without counts the
        shape is fitted: each column starts with the count of a pure-shell column of
        its SCS and grows or shrinks at its ends.
    symmetric : bool
        Mirror symmetry about the particle's mid-plane (normal to the first view's
        beam): the parametric core is symmetric about it, and every site-level move
        also changes the site's mirror image.
    rng : numpy.random.Generator, int or None
    core_element, shell_element : str
    n_core : int, optional
        Known composition: the number of core atoms. Every state then holds exactly
        this many (the parametric core is the ``n_core`` sites deepest inside the
        shape, and the annealing only swaps).
    fit_shape : bool, optional
        Let the annealing add and remove surface atoms (default: only without counts).
    penalty : float
        Cost added to χ² per exposed core bond (to a shell site or the outside).
    surface_penalty : float
        Cost added to χ² per bond between an atom and an empty site (shape fitting).
    exposed_penalty : float
        Further cost per bond between a core atom and an empty site or the outside: a
        core-shell particle's shell covers its core. Without it, a thinner particle
        with a larger core exposed at the surface explains two views' SCS about as
        well as the true one (a core atom scatters like one to two shell atoms). 0
        allows a bare core.
    n_anneal, n_sample : int, optional
        Proposals in the annealing and in the sampling at temperature 1 (default
        100 and 50 per candidate site, at least 50,000 and 20,000; without counts
        500 per site for the annealing, at least 200,000).
    n_chains : int, optional
        Independent annealing chains from the parametric state (default 1; 5 without
        counts). With several, each site takes the element (or emptiness) that most
        chains' best states give it: without counts the chains end in states of about
        equal energy that differ in a few % of the sites, and the vote is right more
        often than any one chain (on the three benchmark pairs at two noise seeds,
        0.926-0.952 of sites right against 0.890-0.948 for one chain). Its χ² is then a little above
        the chains' (``info["chains"]`` keeps each chain's energy, χ², sites and core).
    start_temperature : float, optional
        Temperature at the start of the annealing (default 20; 1.5 without counts,
        where the faceted shape stage's state only needs refining: a hot start lets
        the shape melt into a thinner particle with a larger core, which explains
        the SCS about as well).
    de_maxiter : int
        Generations of the differential evolution.
    scs_scale : "fit" or float
        The measured SCS are compared with ``scale`` times the lensing model's. With
        "fit" (the default when there are counts) each view gets its own scale, fitted
        in closed form with the parametric core and again after the annealing (which
        is rerun if it moved): an SCS from a Gaussian fit and one integrated in a
        simulation cell differ by a few %. Without counts the scale is 1 unless given,
        since a scale and the atoms per column trade against each other.
    model_error : float, optional
        Relative error of the lensing model itself, added in quadrature to each SCS's
        standard error (default: the model's own fit error, its mean absolute relative
        error times 1.25 to make it a standard deviation, or 0.03).
    beam_directions : list, optional
        For each later view, its beam direction in the first view's frame (x, y of the
        first image, z along its beam), as the goniometer gives it, or None. The crystal
        alone leaves the relative orientation of two views open: rotating the whole
        particle 180° about the shared tilt axis changes the projections only through the
        order of the atoms along the beams (lensing), a weak signal. A known beam keeps
        the orientations within 15° of it. Default: every orientation is tried.
    outer : {"faceted", "columns"}
        Without counts, how the particle's shape starts. ``"faceted"`` (the default)
        first fits a convex polyhedron of {100}, {110} and {111} facets (26 facet
        distances, :class:`~atomscount.coreshell.shapes.FacetedShape`) jointly with a
        spherical core held under a one-layer shell and one SCS scale for all views
        (under ``scale_prior``); the site-level stage then starts from it and may
        still add and remove surface atoms. ``"columns"`` starts from each column
        filled with the atoms a pure-shell column of its SCS holds (the shape is then
        left to the annealing alone, which tends to trade atoms for core atoms).
    scale_prior : (float, float)
        Without counts and with ``scs_scale="fit"``: the mean and standard deviation of
        the measured SCS over the lensing model's. The scale trades against the
        particle's thickness and its core's size (a few % lower scale buys a few more
        core atoms), which the SCS alone hardly tell apart, so it needs a calibration:
        the default, 0.94 ± 0.02, is what :func:`atomscount.fit_columns` gives on
        normalised abTEM multislice images against the integrated SCS of the lensing
        models (0.943 and 0.933 for the two views of the shipped Au@Ag pair with their
        true counts; the Gaussian columns miss the probe's tails). For SCS from another source, pass its own
        (e.g. ``(1.0, 0.02)`` for the lensing model's own SCS). The scale is fitted in
        the shape stage and then held.
    max_proposals : int or None
        Most annealing and sampling proposals, all chains and passes together
        (default :data:`MAX_PROPOSALS`; None: no cap). Each chain has an equal share:
        a first pass that does not fit in it is shortened (``n_anneal`` and
        ``n_sample`` in proportion), and a further pass that would overrun it is not
        run. Either warns (:class:`SearchWarning`, naming ``max_proposals``) and
        leaves ``converged`` False; ``info["n_proposals"]`` counts those made.
    progress : bool
        Print the stages and their timings.

    Returns
    -------
    CoreShellModel
        ``converged`` is False (and a :class:`SearchWarning` names the best χ²) when the
        best χ² per column is over :data:`MAX_REDUCED_CHI2` or the sampling found a
        state much better than the annealing's.

    Raises
    ------
    ValueError
        For a lensing model of other elements, a view without a model, a known
        composition larger than the particle, views that disagree on the particle, or
        (without counts) an SCS beyond a pure-shell column of ``MAX_COLUMN_ATOMS`` (named).

    References
    ----------
    van den Bos et al., PRL 116, 246101 (2016), doi:10.1103/PhysRevLett.116.246101.
    """
    t_start = time.perf_counter()
    check_choice(core, "core", set(SHAPES))
    check_choice(outer, "outer", {"faceted", "columns"})
    if n_chains is not None:
        n_chains = check_integer(n_chains, "n_chains", low=1)
    if max_proposals is not None:
        max_proposals = check_integer(max_proposals, "max_proposals", low=1)
    try:
        scale_prior = (float(scale_prior[0]), float(scale_prior[1]))
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"scale_prior must be (mean, standard deviation), got {scale_prior!r}") from None
    if not (scale_prior[0] > 0 and scale_prior[1] > 0 and np.all(np.isfinite(scale_prior))):
        raise ValueError(f"scale_prior must be a positive mean and standard deviation, got {scale_prior!r}")
    penalty = check_positive(penalty, "penalty", allow_zero=True)
    surface_penalty = check_positive(surface_penalty, "surface_penalty", allow_zero=True)
    exposed_penalty = check_positive(exposed_penalty, "exposed_penalty", allow_zero=True)
    if start_temperature is not None:
        start_temperature = check_positive(start_temperature, "start_temperature")
    de_maxiter = check_integer(de_maxiter, "de_maxiter", low=1)
    gen = check_rng(rng)
    if not isinstance(views, list | tuple) or len(views) == 0:
        raise ValueError("views must be a non-empty list of (ColumnFit, zone_axis) pairs")
    parsed = [_parse_view(view, v) for v, view in enumerate(views)]
    axes = [p[3] for p in parsed]
    models = lensing if isinstance(lensing, dict) else {a: lensing for a in axes}
    models = {str(k).strip("[]"): m for k, m in models.items()}
    from ..library.lensing import LensingModel  # None once gave "holds elements []"

    for a, m in models.items():
        if not isinstance(m, LensingModel):
            raise TypeError(f"lensing must be a LensingModel or a dict of zone axis to LensingModel, got "
                            f"{type(m).__name__}{f' for [{a}]' if isinstance(lensing, dict) else ''}")  # fmt: skip
    tables = []
    for v, a in enumerate(axes):
        if a not in models:
            raise ValueError(f"views[{v}] is along [{a}], but lensing has models for {sorted(models)} only")
        tables.append(LensingTables(models[a], core=core_element, shell=shell_element))

    if model_error is None:
        errs = [getattr(models[a], "provenance", {}).get("fit_mean_abs_rel_error") for a in axes]
        model_error = 1.25 * max(errs) if all(e is not None for e in errs) else 0.03
    model_error = check_positive(model_error, "model_error", allow_zero=True)
    parsed = [(pos, scs, np.sqrt(err**2 + (model_error * scs) ** 2), axis) for pos, scs, err, axis in parsed]
    if isinstance(scs_scale, str):
        check_choice(scs_scale, "scs_scale", {"fit"})
        free_scale = counts is not None
    else:
        free_scale = False
    fixed_scale = 1.0 if free_scale or isinstance(scs_scale, str) else check_positive(scs_scale, "scs_scale")

    shape_stage = counts is None and outer == "faceted"
    if counts is None:
        # with the scale to be fitted, candidates for the smallest scale allowed: every column long enough
        lowest = SCALE_RANGE[0] if shape_stage and isinstance(scs_scale, str) else 1.0
        counts_list = [_estimate_counts(parsed[0][1], tables[0], fixed_scale * lowest)]
        fit_shape = True if fit_shape is None else bool(fit_shape)
    else:
        counts_list = list(counts) if isinstance(counts, list | tuple) else [counts]
        counts_list = [np.asarray(c) for c in counts_list]
        fit_shape = False if fit_shape is None else bool(fit_shape)
    if len(counts_list) > len(parsed):
        raise ValueError(f"counts has {len(counts_list)} arrays for {len(parsed)} views")
    for v, c in enumerate(counts_list):
        if c.shape != (len(parsed[v][0]),):
            raise ValueError(f"counts[{v}] must have one entry per column of view {v} ({len(parsed[v][0])}), "
                             f"got shape {c.shape}")  # fmt: skip
    totals = [int(np.sum(np.clip(c, 0, None))) for c in counts_list]
    if totals[0] == 0:
        raise ValueError("counts of view 0 hold no atoms")
    for v in range(1, len(totals)):
        if abs(totals[v] - totals[0]) > max(3, TOTAL_TOLERANCE * totals[0]):
            raise ValueError(f"views 0 and {v} disagree on the particle: view 0 counts {totals[0]} atoms, "
                             f"view {v} counts {totals[v]}")  # fmt: skip
    if n_core is not None:
        n_core = check_integer(n_core, "n_core", low=0, high=totals[0])

    beams = [None] * (len(parsed) - 1) if beam_directions is None else list(beam_directions)
    if len(beams) != len(parsed) - 1:
        raise ValueError(f"beam_directions needs one entry per later view ({len(parsed) - 1}), got {len(beams)}")
    for k, b in enumerate(beams):
        if b is not None:
            b = np.asarray(b, dtype=np.float64)
            if b.shape != (3,) or not np.all(np.isfinite(b)) or np.linalg.norm(b) == 0:
                raise ValueError(f"beam_directions[{k}] must be a finite, non-zero 3-vector, got {beams[k]!r}")
            beams[k] = b / np.linalg.norm(b)
    a = _lattice_constant(crystal)
    xyz, empty, _, reg0 = particle_sites(parsed[0][0], counts_list[0], a, axes[0], margin=1 if fit_shape else 0)
    m = len(xyz)
    columns, measured, sigma, meas_index, rotations, orientation = [], [], [], [], [np.eye(3)], []
    alternatives = [None]
    for v, (pos, scs, err, _) in enumerate(parsed):
        if v == 0:
            cols = group_columns(xyz)
            idx, _ = _match(cols.xy, pos, v, allow_unmatched=fit_shape)
        elif shape_stage and v == len(parsed) - 1:
            # the last view's orientations are told apart by the shape fit itself (below)
            alternatives = _orient(xyz, empty, parsed, tables, reg0, v, a, fit_shape, gen, beams[v - 1],
                                   all_candidates=True)  # fmt: skip
            alternatives.sort(key=lambda t: -t["rank_correlation"])
            rot, cols, idx = alternatives[0]["rotation"], alternatives[0]["columns"], alternatives[0]["index"]
            rotations.append(rot)
        else:
            rot, cols, idx, scores = _orient(xyz, empty, parsed, tables, reg0, v, a, fit_shape, gen, beams[v - 1])
            rotations.append(rot)
            orientation.append(scores)
        hit = idx >= 0
        # a projected column with no measured column should be empty: SCS 0 within the smallest error
        measured.append(np.where(hit, scs[np.maximum(idx, 0)], 0.0) / fixed_scale)
        sigma.append(np.where(hit, err[np.maximum(idx, 0)], np.min(err)) / fixed_scale)
        columns.append(cols)
        meas_index.append(idx)
    offsets = []
    for v, (pos, scs, err, _) in enumerate(parsed):
        unmatched = np.setdiff1d(np.arange(len(pos)), meas_index[v])
        offsets.append(float(np.sum((scs[unmatched] / err[unmatched]) ** 2)))
    if progress:
        print(f"core-shell search: {m} sites, {[c.n_columns for c in columns]} columns, views {axes}")

    # stage 1: parametric core
    mirror, plane = _mirror_map(xyz, a) if symmetric else (np.full(m, -1, dtype=np.int64), 0.0)
    shape = CoreShape(core, xyz, a, symmetric=symmetric, plane=plane)
    base = np.where(empty, EMPTY, SHELL).astype(np.int64)
    fm = ForwardModel(base, columns, tables, measured, sigma, offsets)
    nbr_start, nbr = _adjacency(neighbour_pairs(xyz, a), m)
    allowed = ~empty  # sites the parametric core may take
    outer_info, scale0 = None, np.ones(len(parsed))
    if shape_stage:
        from scipy.sparse import csr_matrix

        adjacency = csr_matrix((np.ones(len(nbr)), nbr, nbr_start), shape=(m, m))
        # the scale is held at the prior's mean: while the shape is still coarse its χ² (thousands) would pull
        # the scale wherever it hides the misfit, a few % low, and buy a core too large; checked at the end
        prior = (scale_prior[0], 1e-6) if isinstance(scs_scale, str) else (1.0, 1e-6)

        def use_alternative(alt):
            """The last view's columns, SCS and unmatched χ² in orientation ``alt``."""
            v, (pos, scs, err, _) = len(parsed) - 1, parsed[-1]
            hit = alt["index"] >= 0
            columns[v], meas_index[v], rotations[v] = alt["columns"], alt["index"], alt["rotation"]
            measured[v] = np.where(hit, scs[np.maximum(alt["index"], 0)], 0.0) / fixed_scale
            sigma[v] = np.where(hit, err[np.maximum(alt["index"], 0)], np.min(err)) / fixed_scale
            unmatched = np.setdiff1d(np.arange(len(pos)), alt["index"])
            offsets[v] = float(np.sum((scs[unmatched] / err[unmatched]) ** 2))

        fits = []
        for alt in alternatives:
            if alt is not None:  # the last view in this orientation
                use_alternative(alt)
                fm = ForwardModel(base, columns, tables, measured, sigma, offsets)
            fits.append(fit_outer_shape(xyz, fm, reg0["frame"], a, adjacency, gen, prior, progress, core))
            if alt is not None:
                alt["shape_energy"] = fits[-1][3]
        k = int(np.argmin([f[3] for f in fits]))
        inside, s0, outer_info, chi2_outer = fits[k]
        if alternatives[k] is not None:
            use_alternative(alternatives[k])
            orientation.append([{"rank_correlation": t["rank_correlation"], "shape_energy": t["shape_energy"],
                                 "chosen": i == k} for i, t in enumerate(alternatives)])  # fmt: skip
        outer_info["chi2"], outer_info["scs_scale"] = chi2_outer, s0
        empty = ~inside
        allowed = interior(inside, adjacency)
        base = np.where(empty, EMPTY, SHELL).astype(np.int64)
        scale0 = np.full(len(parsed), s0)
        fm = ForwardModel(base, columns, tables, [y / s0 for y in measured], [e / s0 for e in sigma], offsets)

    def state(p, family=shape):
        rho = family.rho(p)
        rho[~allowed] = np.inf
        if n_core is None:
            is_core = rho <= 1.0
        else:
            is_core = np.zeros(m, dtype=bool)
            if n_core:
                is_core[np.argpartition(rho, n_core - 1)[:n_core]] = True
        return np.where(is_core, CORE, base)

    def de_search(family, x0=None):
        def objective(p):
            fm.set_codes(state(p, family))
            return _profiled(fm)[0] if free_scale else fm.chi2()

        bounds = family.bounds()
        if x0 is not None:
            x0 = np.clip(x0, [b[0] for b in bounds], [b[1] for b in bounds])
        de = differential_evolution(objective, bounds, rng=gen, maxiter=de_maxiter, popsize=15, tol=1e-6,
                                    polish=False, init="sobol", x0=x0)  # fmt: skip
        local = minimize(objective, de.x, method="Powell", bounds=bounds, options={"xtol": 1e-2, "ftol": 1e-6})
        return (local.x, local.fun) if local.fun <= de.fun else (de.x, de.fun)

    # a sphere first; a richer family starts from it (it contains the sphere), so it can only do better
    sphere = CoreShape("sphere", xyz, a, symmetric=symmetric, plane=plane)
    best_p, best_f = de_search(sphere)
    if core != "sphere":
        p_rich, f_rich = de_search(shape, shape.from_sphere(best_p))
        best_p = p_rich if f_rich <= best_f else shape.from_sphere(best_p)
    codes0 = state(best_p)
    fm.set_codes(codes0)
    chi2_parametric, scales = _profiled(fm) if free_scale else (fm.chi2(), scale0)
    t_parametric = time.perf_counter() - t_start
    if progress:
        print(f"  parametric {core}: chi2 {chi2_parametric:.1f} in {t_parametric:.1f} s")

    # stage 2 and 3: annealing, then sampling at temperature 1
    if n_anneal is None:
        n_anneal = max(200000, 500 * m) if shape_stage else max(50000, 100 * m)
    n_anneal = check_integer(n_anneal, "n_anneal", low=0)
    n_chains = (5 if shape_stage else 1) if n_chains is None else n_chains
    if start_temperature is None:
        # the shape stage's state is close: refine it (a hot start melts its shape into a thinner, Au-richer one)
        start_temperature = 1.5 if shape_stage else 20.0
    n_sample = max(20000, 50 * m) if n_sample is None else check_integer(n_sample, "n_sample", low=0)
    moves = np.array([1.0, 0.0 if n_core is not None else 1.0, 0.5 if fit_shape else 0.0,
                      0.5 if fit_shape else 0.0])  # fmt: skip
    thin = max(10, n_sample // 2000)
    core_centre = xyz[codes0 == CORE].mean(axis=0) if np.any(codes0 == CORE) else xyz[~empty].mean(axis=0)
    core_ref = _anneal.compact_reference(xyz, core_centre, nbr_start, nbr)
    occ_ref = _anneal.compact_reference(xyz, xyz[~empty].mean(axis=0), nbr_start, nbr)
    scales_start = scales

    budget = None if max_proposals is None else max_proposals // n_chains

    def one_chain():
        """Annealing passes from the parametric state (again while the scale moves), then the sampling."""
        codes, scales, passes, used = codes0.copy(), scales_start, [], 0
        for n_pass in range(MAX_PASSES):
            n_a, n_s = n_anneal, n_sample
            if budget is not None and n_a + n_s > budget:  # the first pass, shortened to fit
                n_a, n_s = int(n_a * budget / (n_a + n_s)), int(n_s * budget / (n_a + n_s))
            used += n_a + n_s
            # the measured SCS over the scale: the lensing model's SCS are compared with them as they are
            y = [mv / sc for mv, sc in zip(measured, scales, strict=True)]
            e = [sv / sc for sv, sc in zip(sigma, scales, strict=True)]
            packed = _anneal.pack(columns, tables, y, e)
            out = _anneal.anneal(
                codes.copy(), np.zeros(m, dtype=np.bool_), mirror, nbr_start, nbr, packed["col_of_site"],
                packed["gstart"], packed["gorder"], packed["view_of_col"], packed["eoc"], packed["inc"],
                packed["nlen"], packed["curves"], packed["lam"], packed["measured"], packed["weight"], penalty,
                surface_penalty, exposed_penalty, core_ref, occ_ref, moves, n_a, n_s,
                start_temperature if n_pass == 0 else min(3.0, start_temperature), thin,
                int(gen.integers(2**31 - 1)))  # fmt: skip
            run = dict(zip(("best_codes", "best_chi2", "best_energy", "p_core", "p_occ", "var_core", "var_occ",
                            "acceptance", "best_chi2_sampling", "energy_anneal"),
                           (out[0], out[1], out[3], out[4], out[5], out[7], out[9], out[10], out[11], out[12]),
                           strict=True))  # fmt: skip
            run["capped"], run["n_proposals"] = (n_a, n_s) != (n_anneal, n_sample), used
            fm.set_codes(run["best_codes"])
            # the sampling at temperature 1 finding a much better state than the annealing: anneal again from it
            run["improved"] = bool(n_sample) and run["energy_anneal"] - run["best_energy"] > max(
                10.0, 0.02 * abs(run["best_energy"])
            )
            new_scales = _profiled(fm)[1] if free_scale else scales
            moved = bool(np.max(np.abs(new_scales / scales - 1.0)) >= 2e-3)
            passes.append({"scales": scales.tolist(), "chi2": run["best_chi2"], "best_energy": run["best_energy"],
                           "best_energy_annealing": run["energy_anneal"],
                           "sampling_improved": run["improved"]})  # fmt: skip
            more = (moved or run["improved"]) and n_pass < MAX_PASSES - 1
            room = budget is None or used + n_anneal + n_sample <= budget
            if not more or not room:
                run["capped"] |= more and not room  # a further pass would overrun max_proposals
                run["scales"], run["passes"] = (scales if moved else new_scales), passes
                return run
            scales, codes = new_scales, run["best_codes"]
        raise AssertionError("unreachable")  # pragma: no cover

    t_anneal = time.perf_counter()
    runs = [one_chain() for _ in range(n_chains)]
    best_run = min(runs, key=lambda r: r["best_energy"])
    scales, passes, improved = best_run["scales"], best_run["passes"], best_run["improved"]
    best_energy, energy_anneal = best_run["best_energy"], best_run["energy_anneal"]
    acceptance, best_chi2_sampling = best_run["acceptance"], best_run["best_chi2_sampling"]
    if n_chains == 1:
        best_codes, p_core, p_occ = best_run["best_codes"], best_run["p_core"], best_run["p_occ"]
        var_core, var_occ = best_run["var_core"], best_run["var_occ"]
    else:
        # each site by the majority of the chains' best states (the maximum posterior marginals): the chains end
        # in states of equal energy that differ in a few % of the sites, and the vote is right more often than any
        occupied_votes = np.mean([r["best_codes"] != EMPTY for r in runs], axis=0)
        core_votes = np.mean([r["best_codes"] == CORE for r in runs], axis=0)
        best_codes = np.where(occupied_votes > 0.5, np.where(core_votes > 0.5, CORE, SHELL), EMPTY).astype(np.int64)
        p_core, p_occ = np.mean([r["p_core"] for r in runs], axis=0), np.mean([r["p_occ"] for r in runs], axis=0)
        var_core = np.mean([r["var_core"] for r in runs], axis=0)
        var_occ = np.mean([r["var_occ"] for r in runs], axis=0)
    chain_summary = [{"best_energy": r["best_energy"], "best_chi2": r["best_chi2"],
                      "n_sites": int(np.sum(r["best_codes"] != EMPTY)), "n_core": int(np.sum(r["best_codes"] == CORE))}
                     for r in runs]  # fmt: skip
    t_anneal = time.perf_counter() - t_anneal
    fm_final = ForwardModel(best_codes, columns, tables, [mv / sc for mv, sc in zip(measured, scales, strict=True)],
                            [sv / sc for sv, sc in zip(sigma, scales, strict=True)], offsets)  # fmt: skip
    chi2_views = fm_final.chi2_per_view()
    if progress:
        print(f"  annealing and sampling: {len(passes)} x ({n_anneal} + {n_sample}) proposals, chi2 "
              f"{chi2_views.sum():.1f} in {t_anneal:.1f} s")  # fmt: skip

    # the result, on the occupied sites of the best state
    occupied = best_codes != EMPTY
    symbols = np.where(best_codes[occupied] == CORE, core_element, shell_element)
    from ase import Atoms

    atoms = Atoms(list(symbols), positions=xyz[occupied])
    offsets_cols = np.cumsum([0] + [c.n_columns for c in columns])
    core_counts, core_std, atom_counts, atom_std, meas_out, pred_out, err_out = [], [], [], [], [], [], []
    for v, cols in enumerate(columns):
        pos, scs, err, _ = parsed[v]
        idx = meas_index[v]
        hit = idx >= 0
        sl = slice(offsets_cols[v], offsets_cols[v + 1])
        n_meas = len(pos)
        per_col_core = np.bincount(cols.column_of_site, weights=best_codes == CORE, minlength=cols.n_columns)
        per_col_atoms = np.bincount(cols.column_of_site, weights=occupied, minlength=cols.n_columns)
        cc, ac = np.zeros(n_meas, dtype=np.int64), np.zeros(n_meas, dtype=np.int64)
        cs_, as_, pred = np.zeros(n_meas), np.zeros(n_meas), np.zeros(n_meas)
        cc[idx[hit]] = np.rint(per_col_core[hit]).astype(np.int64)
        ac[idx[hit]] = np.rint(per_col_atoms[hit]).astype(np.int64)
        cs_[idx[hit]] = np.sqrt(var_core[sl][hit])
        as_[idx[hit]] = np.sqrt(var_occ[sl][hit])
        pred[idx[hit]] = scales[v] * fm_final.predicted[v][hit]
        core_counts.append(cc)
        core_std.append(cs_)
        atom_counts.append(ac)
        atom_std.append(as_)
        meas_out.append(scs)
        pred_out.append(pred)
        err_out.append(err)

    n_meas_total = sum(len(p[0]) for p in parsed)
    reduced = float(chi2_views.sum()) / n_meas_total
    # with several chains, whether the model family explains the data is the best chain's to say (the vote's
    # state mixes equally good states and sits a little above them)
    reduced_best = min(reduced, (best_run["best_chi2"] + sum(offsets)) / n_meas_total)
    reasons = []
    if reduced_best > MAX_REDUCED_CHI2:
        reasons.append(f"chi2 per column {reduced_best:.2f} is over {MAX_REDUCED_CHI2} (the model does not explain "
                       "the SCS: check the counts, the lensing model and the zone axes)")  # fmt: skip
    if np.any((scales < SCALE_RANGE[0]) | (scales > SCALE_RANGE[1])):
        reasons.append(f"the measured SCS are {', '.join(f'{x:.2f}' for x in scales)} times the lensing model's "
                       f"(outside {SCALE_RANGE[0]}-{SCALE_RANGE[1]}): is the image normalised to the incident beam "
                       "and the microscope that of the lensing model?")  # fmt: skip
    if shape_stage and isinstance(scs_scale, str):
        # the scale the final state itself prefers, against the prior it was held at
        s_free = float(scales[0]) * common_scale(fm_final, (1.0, 1e6))[1]
        info_scale_free = s_free
        if abs(s_free - scale_prior[0]) > 3.0 * scale_prior[1]:
            reasons.append(f"the final model fits the SCS best at a scale of {s_free:.3f}, but the search held it "
                           f"at {scale_prior[0]:.3f} (scale_prior {scale_prior[0]:g} ± {scale_prior[1]:g}): the "
                           "image's normalisation or the lensing model does not match; give the scale (scs_scale) "
                           "or counts")  # fmt: skip
    else:
        info_scale_free = None
    n_proposals = sum(r["n_proposals"] for r in runs)
    if any(r["capped"] for r in runs):
        reasons.append(f"the annealing stopped at max_proposals={max_proposals:,} ({n_proposals:,} proposals over "
                       f"{n_chains} chains, {m:,} sites): raise max_proposals to let it finish")  # fmt: skip
    if improved:
        reasons.append(f"after {len(passes)} passes the sampling at temperature 1 still found a state "
                       f"{energy_anneal - best_energy:.1f} below the annealing's best (raise n_anneal)")  # fmt: skip
    converged = not reasons
    if not converged:
        warnings.warn(f"core-shell search did not converge (best chi2 {fm.chi2():.1f} over {n_meas_total} columns): "
                      + "; ".join(reasons), SearchWarning, stacklevel=2)  # fmt: skip

    params = shape.unpack(best_p)
    core_dict = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}
    core_dict["centroid"] = xyz[best_codes == CORE].mean(axis=0).tolist() if np.any(best_codes == CORE) else None
    core_dict["chi2_parametric"] = chi2_parametric
    core_dict["n_core_parametric"] = int(np.sum(codes0 == CORE))
    info = {"penalty": penalty, "surface_penalty": surface_penalty, "exposed_penalty": exposed_penalty,
            "n_anneal": n_anneal, "n_sample": n_sample,
            "lattice_constant": a, "seconds_parametric": t_parametric, "seconds_anneal": t_anneal,
            "seconds_total": time.perf_counter() - t_start, "acceptance_sampling": acceptance,
            "n_views": len(parsed), "n_candidate_sites": m, "fit_shape": fit_shape, "symmetric": symmetric,
            "mirror_plane_z": plane if symmetric else None, "n_core_fixed": n_core, "best_energy": best_energy,
            "best_energy_annealing": energy_anneal,
            "best_chi2_sampling": best_chi2_sampling if np.isfinite(best_chi2_sampling) else None,
            "convergence": "; ".join(reasons) if reasons else "converged", "orientation_candidates": orientation,
            "scs_scale": scales.tolist(),
            "scs_scale_fitted": free_scale or (shape_stage and isinstance(scs_scale, str)),
            "model_error": model_error, "outer_shape": outer_info,
            "scs_scale_preferred": info_scale_free,
            "passes": passes, "n_chains": n_chains, "chains": chain_summary, "n_proposals": n_proposals,
            "max_proposals": max_proposals,
            "registration_rms_angstrom": reg0["rms"]}  # fmt: skip
    return CoreShellModel(atoms, p_core[occupied], core_dict, chi2_views, [len(p[0]) for p in parsed], core_counts,
                          core_std, core_element, shell_element, tuple(axes), converged=converged, info=info,
                          occupancy=p_occ[occupied], atom_counts=tuple(atom_counts), atom_counts_std=tuple(atom_std),
                          measured_scs=tuple(meas_out), predicted_scs=tuple(pred_out),
                          scs_error=tuple(err_out), rotations=tuple(rotations))  # fmt: skip
