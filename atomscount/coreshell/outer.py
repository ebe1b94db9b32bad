"""The shape stage of the core-shell search without counts: a faceted particle, its core and the SCS scale.

Without the atoms per column, the SCS of two views leave the particle's thickness,
its core's size and the SCS scale trading against each other: a thinner particle
with a larger core, or a lower scale with more core atoms, explains them about as
well. This stage fixes the shape with what nanocrystals are: convex, bounded by
low-index facets (:class:`~atomscount.coreshell.shapes.FacetedShape`), their core
covered by the shell; the site-level annealing of :mod:`.search` then refines it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import differential_evolution

from .forward import CORE, EMPTY, SHELL
from .shapes import CoreShape

#: Fitted SCS scales are kept in this range (as the search's check).
SCALE_RANGE = (0.75, 1.33)


def _inside(x, bounds) -> np.ndarray:
    """``x`` moved just inside ``bounds`` (differential evolution refuses a start on a bound after rounding)."""
    lo, hi = np.transpose(np.asarray(bounds, dtype=np.float64))
    pad = 1e-6 * (hi - lo)
    return np.clip(x, lo + pad, hi - pad)


def interior(inside, adjacency) -> np.ndarray:
    """Sites inside whose twelve neighbours are all inside too (a core site there is covered by the shell)."""
    return inside & (adjacency @ inside.astype(np.float64) >= 11.5)


def common_scale(fm, prior) -> tuple[float, float]:
    """χ² of a ForwardModel with one SCS scale for every view, fitted in closed form under a Gaussian prior.

    ``prior`` is (mean, standard deviation) of the scale; returns (χ² + prior term, scale).
    """
    mean, sd = prior
    num, den = mean / sd**2, 1.0 / sd**2
    for w, y, p in zip(fm.weight, fm.measured, fm.predicted, strict=True):
        num += float(np.sum(w * y * p))
        den += float(np.sum(w * p * p))
    s = float(np.clip(num / den, *SCALE_RANGE))
    chi2 = sum(float(np.sum(w * (y - s * p) ** 2)) + o
               for w, y, p, o in zip(fm.weight, fm.measured, fm.predicted, fm.offset, strict=True))  # fmt: skip
    return chi2 + ((s - mean) / sd) ** 2, s


def fit_outer_shape(xyz, fm, frame, a, adjacency, gen, prior, progress, core="ellipsoid", max_sweeps=40):
    """Stage 0 without counts: the particle's faceted outer shape, a core inside it and the SCS scale.

    The shape is a :class:`FacetedShape` whose facet planes each sit half a layer
    outside a lattice plane, so the search is over an integer per facet. The core is
    held one layer under the surface (a core-shell particle's shell covers its core).
    The energy is the χ² of every view with their one SCS scale profiled out under
    its prior.

    1. A centred polyhedron with one distance per facet family and a core sphere,
       fitted in turn by differential evolution (the two trade off strongly, and each
       alone is a small, well-behaved search).
    2. Each facet alone, a layer at a time, for as long as the energy falls
       (coordinate descent: the χ² is piecewise constant in a facet's distance, which
       defeats continuous optimisers), the core (of family ``core``, started from the
       sphere) refitted by differential evolution after each sweep.

    Returns the occupied sites, the scale, the shape's parameters and the energy.
    """
    from .shapes import FACET_FAMILIES, FacetedShape

    outer = FacetedShape(xyz, frame, a)
    nf = outer.n_facets
    top = outer.max_layers()
    sphere = CoreShape("sphere", xyz, a)
    rich = CoreShape(core, xyz, a)
    family = {"shape": sphere}

    def codes_of(layers, core_p):
        inside = outer.inside(outer.distances(layers))
        is_core = interior(inside, adjacency) & (family["shape"].rho(core_p) <= 1.0)
        return np.where(is_core, CORE, np.where(inside, SHELL, EMPTY)).astype(np.int64), inside

    def energy(layers, core_p):
        fm.set_codes(codes_of(layers, core_p)[0])
        return common_scale(fm, prior)[0]

    def fit_core(layers, core_p, maxiter):
        bounds = family["shape"].bounds()
        res = differential_evolution(lambda p: energy(layers, p), bounds, rng=gen, maxiter=maxiter, popsize=15,
                                     tol=1e-7, polish=False, init="sobol", x0=_inside(core_p, bounds))  # fmt: skip
        return res.x, res.fun, res.nfev

    families = np.concatenate([np.full(len(FACET_FAMILIES[f][0]), i) for i, f in enumerate(outer.families)])
    nfam = len(outer.families)
    fam_top = np.array([top[families == i].max() for i in range(nfam)], dtype=np.float64)

    def layers_of(q):
        return np.minimum(np.rint(np.asarray(q)[families]).astype(np.int64), top)

    core_p = np.concatenate([outer.centre, [sphere.bounds()[-1][0]]])
    q, best, n_eval = fam_top.copy(), np.inf, 0
    for _ in range(4):
        held = core_p
        de = differential_evolution(lambda p, held=held: energy(layers_of(p), held), [(0.0, t + 0.49) for t in fam_top],
                                    rng=gen, maxiter=40, popsize=15, tol=1e-7, polish=False, init="sobol",
                                    x0=q)  # fmt: skip
        q = de.x
        core_p, e, n = fit_core(layers_of(q), core_p, 40)
        n_eval += de.nfev + n
        if e >= best - 1e-6:
            break
        best = e
    layers = layers_of(q)
    if progress:
        print(f"  outer shape, one distance per facet family: layers {np.rint(q).astype(int).tolist()}, "
              f"energy {best:.1f}")  # fmt: skip
    if core != "sphere":
        family["shape"], core_p = rich, rich.from_sphere(core_p)
        core_p, best, n = fit_core(layers, core_p, 60)
        n_eval += n
    best, sweeps = energy(layers, core_p), 0
    for _ in range(max_sweeps):
        sweeps += 1
        start = best
        for k in gen.permutation(nf):
            for step in (-1, 1):
                moved = False
                while 0 <= layers[k] + step <= top[k]:
                    trial = layers.copy()
                    trial[k] += step
                    e = energy(trial, core_p)
                    n_eval += 1
                    if e >= best - 1e-9:
                        break
                    layers, best, moved = trial, e, True
                if moved:
                    break
        p, e, n = fit_core(layers, core_p, 30)
        n_eval += n
        if e < best - 1e-9:
            core_p, best = p, e
        if best >= start - 1e-6:
            break
    codes, inside = codes_of(layers, core_p)
    fm.set_codes(codes)
    energy_final, scale = common_scale(fm, prior)
    if progress:
        print(f"  outer shape: {int(inside.sum())} atoms, {int(np.sum(codes == CORE))} core, SCS scale "
              f"{scale:.3f}, energy {energy_final:.1f} ({sweeps} sweeps, {n_eval} trials)")  # fmt: skip
    info = outer.unpack(outer.distances(layers))
    info["core"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                    for k, v in family["shape"].unpack(core_p).items()}  # fmt: skip
    return inside, scale, info, energy_final
