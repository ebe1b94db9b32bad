"""Multimodal reconstruction of elemental volumes from EDXS (and HAADF) tilt series.

One objective over all elements (Zhong et al., Ultramicroscopy 174, 35 (2017),
doi:10.1016/j.ultramic.2016.12.008; Schwartz et al., npj Comput. Mater. 8, 16 (2022),
doi:10.1038/s41524-021-00692-5)::

    Σ_e ½ dev(b_e | s_e A u_e)  +  |h - Σ_e w_e (A u_e)^γ - c|² / (2 σ_h²)  +  μ R(u),   u ≥ 0

- ``b_e`` the EDXS counts of element e and ``s_e A u_e`` their expectation: ``A`` the
  projector of :mod:`atomscount.tomo.operators`, ``u_e`` the element's number density in
  units of a reference density, ``s_e`` ∝ the line's X-ray cross-section
  (:func:`~atomscount.elemental.forward.xray_line`, or the ``cross_section_barn`` of the
  series' provenance), the model :func:`~atomscount.elemental.forward.simulate_edxs` uses.
  ``dev`` is the Poisson deviance (the negative log-likelihood up to a constant).
- ``h`` the HAADF series and its model :func:`~atomscount.elemental.forward.haadf_model`
  on the projected densities, plus an offset ``c``; the weights ``w_e``, γ and ``c`` are
  fitted once, in projection space, to the EDXS counts over their scales (4x4-pixel
  blocks, least squares corrected for the counts' Poisson variance, γ by a bounded 1D
  search; :func:`_fit_haadf_counts`), and ``σ_h`` is the noise estimated from the
  images' pixel-to-pixel differences.
- ``R`` the regulariser ("tv", "tnv" or "tgv", :mod:`._objective`), weighted by ``μ``
  chosen by **Poisson-thinning cross-validation** (the default): each pixel's counts
  are split binomially into two halves, independent Poisson series of half the dose; a
  ladder of μ (factors of 3) is fitted to one half and the μ whose prediction leaves
  the smallest deviance on the other is kept (a parabola in log μ), times √2 for the
  full dose (:mod:`._cv`, which says why not the one-standard-error rule). Or by the
  **discrepancy principle** (``weights="discrepancy"``): the EDXS deviance at the
  solution equals the deviance a correct model leaves (about one per pixel; less where
  a pixel expects a few counts), found by a secant search in log μ over rounds that
  each continue from the previous solution. The discrepancy rule over-smooths: its
  deviance is dominated by the bright elements and it ignores the degrees of freedom
  the fit uses, so a thin, faint layer (the Au surface alloy of a Pd@Pt particle, 64³
  at 100 counts per pixel) has an error of 0.18 at its μ (26) and 0.09 at the
  cross-validated μ (5.7).

Concentrations are the ratios ``u_e / Σ u``: the common factor (dose, solid angle) drops
out, so they are absolute wherever the cross-sections' ratios are right. The density
[atoms/Å³] is absolute when the EDXS series carry their dose and solid angle in their
provenance (as :func:`~atomscount.elemental.forward.simulate_edxs` writes them).

The solver is a projected L-BFGS (:mod:`._solver`) on the smoothed objective, with its
exact gradient and a diagonal preconditioner (the data terms' and the regulariser's
curvature per voxel): the projections of each iteration are shared by the EDXS and
HAADF terms, and the single-axis projector works slice by slice. Each round but the last
stops when it has converged (or at its share of ``n_iter``); the last has every
iteration left. Volumes of 64 voxels or more along the tilt axis and the detector (even
sizes) run every round but the last on a grid of twice the voxel (2x2 binned pixels, an
eighth of the unknowns) and the last on the full grid from the trilinearly upsampled
solution: the weight search (the cross-validation's ladder, or the discrepancy rule's
rounds) costs an eighth, and the full grid starts near its solution (for the discrepancy
rule, one more full-grid round corrects μ where the full grid's deviance is over 10 % off
its target). ``pyproximal`` /
``pylops`` are not used: the nonlinear HAADF model (γ ≠ 1) and the joint nuclear norm
would need an inner loop per proximal step, while a quasi-Newton step on the smoothed
objective costs one projection and one back-projection.

Both rules assume Poisson counts: for noise-free expectations (a simulation with
``noise=False``) "auto" takes the discrepancy rule (thinning expectations would choose no
smoothing at all), which over-smooths there; give a small fixed ``weights`` instead.
"""

from __future__ import annotations

import time

import numpy as np

from .._checks import check_bool, check_choice, check_integer, check_real
from ..tomo.operators import backproject_volume, project_volume
from . import _kernels, _solver
from . import _objective as obj
from . import maps as _maps
from ._cv import _CV_DOSE_FACTOR, initial_mu, thinning_cv
from ._shared import (
    _GAMMA_RANGE,
    _concentration_sigma,
    _convergence,
    _element_names,
    _fit_haadf,
    _mask_and_flags,
    _next_log_mu,
    _regulariser_curvature,
    _series,
)
from .forward import default_haadf_weights
from .result import ElementalVolumes

__all__ = ["reconstruct_elemental", "reconstruct_separate"]

_MAX_ROUNDS = 4
#: Volumes with at least this many voxels along the tilt axis and the detector run their first rounds on a
#: grid of twice the voxel (even sizes only).
_COARSE_MIN = 64
_WEIGHT_RULES = ("auto", "cv", "discrepancy")
_RULE_NAMES = {"cv": "Poisson-thinning cross-validation of the EDXS counts",
               "discrepancy": "discrepancy principle on the EDXS Poisson deviance", "given": "given"}  # fmt: skip


# --- inputs ---


def _check_counts(s, name):
    b = s.images
    if (b < 0).any():
        raise ValueError(f"{name} holds counts, which cannot be negative: got minimum {b.min():.6g}")
    expected = s.provenance.get("noise") is False  # a simulation's expected counts need not be whole numbers
    if not expected and not np.allclose(b, np.round(b), rtol=0, atol=1e-6):
        bad = np.abs(b - np.round(b)).argmax()
        raise ValueError(f"{name} must hold whole X-ray counts, got {b.flat[bad]:.6g} (images in counts per pixel; "
                         "a background-subtracted or normalised map is not counts)")  # fmt: skip
    if not b.any():
        raise ValueError(f"{name} is all zeros: no X-ray counts of that element to reconstruct")
    return b


def _inputs(haadf, edxs, elements):
    elements = _element_names(edxs, elements, "counts")
    series = {e: _series(edxs[e], f"edxs[{e!r}]") for e in elements}
    first = series[elements[0]]
    for e, s in series.items():
        if s.shape != first.shape or s.n_projections != first.n_projections:
            raise ValueError(f"edxs[{e!r}] has {s.n_projections} projections of {s.shape}, but "
                             f"edxs[{elements[0]!r}] has {first.n_projections} of {first.shape}")  # fmt: skip
        if not np.allclose(s.angles, first.angles, atol=1e-6):
            raise ValueError(f"edxs[{e!r}] has other tilt angles than edxs[{elements[0]!r}]")
        if not np.isclose(s.pixel_size_angstrom, first.pixel_size_angstrom, rtol=1e-9):
            raise ValueError(f"edxs[{e!r}] has pixel size {s.pixel_size_angstrom:g} Å, edxs[{elements[0]!r}] "
                             f"{first.pixel_size_angstrom:g} Å")  # fmt: skip
    counts = np.stack([_check_counts(series[e], f"edxs[{e!r}]") for e in elements])
    if haadf is not None:
        _series(haadf, "haadf")
        if haadf.shape != first.shape or haadf.n_projections != first.n_projections:
            raise ValueError(f"haadf has {haadf.n_projections} projections of {haadf.shape}, but the EDXS series "
                             f"have {first.n_projections} of {first.shape}")  # fmt: skip
        if not np.allclose(haadf.angles, first.angles, atol=1e-6):
            raise ValueError(
                "haadf has other tilt angles than the EDXS series "
                f"({haadf.angles[:, 1].round(2).tolist()} against {first.angles[:, 1].round(2).tolist()})"
            )
        if not np.isclose(haadf.pixel_size_angstrom, first.pixel_size_angstrom, rtol=1e-9):
            raise ValueError(f"haadf has pixel size {haadf.pixel_size_angstrom:g} Å, the EDXS series "
                             f"{first.pixel_size_angstrom:g} Å")  # fmt: skip
    return elements, series, counts


def _scales(elements, series):
    """Cross-sections [Å²] per element (relative scales of the EDXS signal) and, when every series states its
    dose and solid angle, κ = dose × pixel area × Ω / 4π (counts per atom/Å² per cross-section Å²)."""
    from .forward import xray_line

    sig = []
    for e in elements:
        p = series[e].provenance
        if "cross_section_barn" in p:
            sig.append(float(p["cross_section_barn"]) * 1e-8)
        else:
            sig.append(xray_line(e, beam_energy_ev=float(p.get("beam_energy_ev", 200e3))).cross_section_angstrom2)
    kappa = None
    provs = [series[e].provenance for e in elements]
    if all("dose_e_per_angstrom2" in p and "solid_angle_sr" in p for p in provs):
        px = series[elements[0]].pixel_size_angstrom
        k = {float(p["dose_e_per_angstrom2"]) * px**2 * float(p["solid_angle_sr"]) / (4 * np.pi) for p in provs}
        kappa = k.pop() if len(k) == 1 else None
    return np.array(sig), kappa


def _haadf_noise(h):
    """The HAADF noise's standard deviation from neighbouring pixels' differences (robust), floored at 1e-3 of
    the signal's range so that noise-free data do not make the term infinitely stiff."""
    d = np.diff(h, axis=-1).ravel()
    sd = 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0)
    return max(float(sd), 1e-3 * float(np.percentile(h, 99.9) - np.percentile(h, 0.1)), 1e-12)


def _fit_haadf_counts(counts, s, h, gamma, fit_gamma, prior, *, poisson=True, block=4):
    """``h ≈ Σ w_e p_e^γ + c`` fitted in projection space, with ``p_e`` the EDXS counts over their scale
    ``s_e`` (block-summed over ``block`` x ``block`` pixels), the least squares corrected for the counts'
    Poisson noise.

    Refitting the weights on the reconstruction between rounds cannot correct them: with a nearly
    noise-free HAADF series the volume fits the HAADF under any weights, so the refit returns the weights
    it was given (a Pd core took 3-8 % Pt from weights fitted to the first, smoothed SIRT volume). The
    counts are independent of the HAADF and unbiased for ``p_e`` (``E[b_e] = s_e p_e``), so regressing ``h``
    on them with the noise's known variance taken out of the normal equations (the errors-in-variables
    correction: ``XᵀX - Σ var``) gives unbiased weights for γ = 1; for γ ≠ 1 the variance is propagated to
    first order. The weights are pulled weakly (a ridge of 1e-3 of the features' mean square) towards the
    Z^1.7 ratios ``prior`` (scale free), as :func:`_fit_haadf`'s. ``poisson`` False: the counts are
    expectations (a simulation without noise), nothing to correct.
    """
    from scipy.optimize import minimize_scalar, nnls

    n_el, k, rows, cols = counts.shape
    rb, cb = max(rows // block, 1), max(cols // block, 1)
    by, bx = rows // rb, cols // cb

    def binned(a, mean):
        a = a[..., : rb * by, : cb * bx].reshape(*a.shape[:-2], rb, by, cb, bx).sum(axis=(-3, -1))
        return a / (by * bx) if mean else a

    n_px = by * bx
    bsum = binned(counts, False).reshape(n_el, -1)
    x = bsum / (s[:, None] * n_px)  # the block's mean p_e
    var_x = bsum / (s[:, None] * n_px) ** 2 if poisson else np.zeros_like(x)  # Poisson: var(b) = E[b] ≈ b
    hh = binned(np.asarray(h, dtype=np.float64), True).ravel()
    hc = hh - hh.mean()

    def solve(g):
        xg = np.maximum(x, 0.0) ** g
        var_g = (g * np.maximum(x, 1e-12) ** (g - 1.0)) ** 2 * var_x if g != 1.0 else var_x
        xc = xg - xg.mean(axis=1, keepdims=True)
        a = xc @ xc.T - np.diag(var_g.sum(axis=1) * (1.0 - 1.0 / xg.shape[1]))
        b = xc @ hc
        tau2 = 1e-3 * float(np.mean(np.sum(xg * xg, axis=1)))
        pr = prior / np.linalg.norm(prior)
        a = a + tau2 * (np.eye(n_el) - np.outer(pr, pr))
        lam, vec = np.linalg.eigh(0.5 * (a + a.T))
        lam = np.maximum(lam, 1e-12 * max(float(lam.max()), 1e-300))
        half = vec @ np.diag(np.sqrt(lam)) @ vec.T  # a = half @ half
        w, _ = nnls(half, np.linalg.solve(half, b))
        resid = float(hc @ hc - 2 * b @ w + w @ a @ w)
        c = float(hh.mean() - w @ xg.mean(axis=1))
        return w, c, resid

    def best_gamma(take):
        nonlocal x, var_x, hh, hc
        full = x, var_x, hh
        x, var_x, hh = x[:, take], var_x[:, take], hh[take]
        hc = hh - hh.mean()
        g = float(minimize_scalar(lambda g: solve(g)[2], bounds=_GAMMA_RANGE, method="bounded",
                                  options={"xatol": 1e-3}).x)  # fmt: skip
        x, var_x, hh = full
        hc = hh - hh.mean()
        return g

    if fit_gamma:
        # γ ≠ 1 only where the data show it: at a few counts per pixel the estimate scatters by a few
        # hundredths (a 64³ rod at 10 counts: 1.03 for a true 1.00), and a near noise-free HAADF series
        # turns that into a biased volume. The jackknife over projections gives the estimate's spread.
        n_blocks = rb * cb
        every = np.arange(x.shape[1])
        gamma = best_gamma(every)
        if k >= 4:
            loo = np.array([best_gamma(every[(every // n_blocks) != j]) for j in range(k)])
            se = float(np.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2)))
            if abs(gamma - 1.0) < 2.0 * se:
                gamma = 1.0
    w, c, _ = solve(gamma)
    return w, c, gamma


# --- the objective ---


class _Problem:
    """The objective of the module docstring and its gradient, for a flat vector of unknowns."""

    def __init__(self, counts, s, haadf, angles, voxel, shape, regulariser, mu, eps):
        self.counts, self.s, self.h = counts, s, haadf
        self.angles, self.voxel, self.shape = angles, voxel, shape
        self.reg, self.mu, self.eps = regulariser, mu, eps
        self.n_el = counts.shape[0]
        self.delta = 1e-4 * np.maximum(counts.mean(axis=(1, 2, 3)), 1e-6)[:, None, None, None]
        self.w = self.c = self.sigma_h = None
        self.gamma = 1.0
        self.sum_target = None  # total density a dense alloy keeps inside ``sum_mask``
        self.sum_mask = None
        self.sum_weight = 0.0
        self.n_u = self.n_el * int(np.prod(shape))
        self.work = {}  # the regulariser's work arrays, reused from one evaluation to the next

    def split(self, z):
        u = z[: self.n_u].reshape((self.n_el, *self.shape))
        w = z[self.n_u :].reshape((self.n_el, 3, *self.shape)) if self.reg == "tgv" else None
        return u, w

    def edxs_lambda(self, proj):
        return self.s[:, None, None, None] * proj + self.delta

    def __call__(self, z):
        u, w = self.split(z)
        proj = project_volume(u, self.angles, self.voxel)
        lam = self.edxs_lambda(proj)
        dev, dlam = obj.poisson_deviance_terms(lam, self.counts)
        f = float(dev.sum())
        gproj = self.s[:, None, None, None] * dlam
        if self.h is not None:
            pp = np.maximum(proj, 1e-6 * max(proj.max(), 1e-12))
            pg = pp**self.gamma if self.gamma != 1.0 else pp
            r = np.tensordot(self.w, pg, axes=1) + self.c - self.h
            f += float(np.sum(r * r)) / (2 * self.sigma_h**2)
            dp = self.gamma * pg / pp if self.gamma != 1.0 else 1.0
            gproj = gproj + self.w[:, None, None, None] * dp * (r / self.sigma_h**2)[None]
        grad_u = backproject_volume(gproj, self.angles, self.voxel, self.shape)
        rv, ru, rw = obj.regulariser(self.reg, u, w, self.eps, self.work)
        f += self.mu * rv
        _kernels.add_scaled(grad_u, self.mu, ru)  # grad_u += mu ru
        if self.sum_target is not None and self.sum_weight > 0:
            d = (u.sum(axis=0) - self.sum_target) * self.sum_mask
            f += 0.5 * self.sum_weight * float(np.sum(d * d))
            grad_u += self.sum_weight * d[None]
        g = grad_u.ravel() if rw is None else np.concatenate([grad_u.ravel(), self.mu * rw.ravel()])
        return f, g

    def deviance(self, z):
        """The EDXS deviance and the one a correct model of these expectations would leave."""
        u, _ = self.split(z)
        lam = self.edxs_lambda(project_volume(u, self.angles, self.voxel))
        dev, _ = obj.poisson_deviance_terms(lam, self.counts)
        return 2.0 * float(dev.sum()), float(obj.expected_deviance(lam).sum())


def _lbfgs(problem, z0, lower, n_iter, tol, bar, history, state, min_iter=0):
    def callback(f):
        history.append(float(f))
        bar.update()

    u, _ = problem.split(z0)
    p_u = _fisher_variance(problem, u, _regulariser_curvature(problem, u)).ravel()
    p = p_u if z0.size == p_u.size else np.concatenate([p_u, np.full(z0.size - p_u.size, _tgv_w_precond(problem))])
    z, _, converged = _solver.minimise(problem, z0, lower, max_iter=n_iter, ftol=tol, callback=callback, precond=p,
                                       state=state, memory=5 if problem.reg == "tgv" else 10,
                                       min_iter=min_iter)  # fmt: skip
    return z, converged


def _tgv_w_precond(problem):
    """Inverse curvature of TGV's auxiliary fields: the smoothed norms' curvature is at most μ (1 + 4 α₀/α₁) / ε."""
    return problem.eps / max(problem.mu * (1.0 + 4.0 * obj.TGV_RATIO), 1e-30)


# --- results ---


def _data_curvature(problem, u, haadf=True):
    """Diagonal of the data terms' Hessian (Gauss-Newton, expected Fisher information) per voxel: each ray's
    weight ``a_ij² ≈ (2/3) voxel · a_ij`` (bilinear splatting); with ``haadf`` False the EDXS term alone."""
    proj = project_volume(u, problem.angles, problem.voxel)
    lam = problem.edxs_lambda(proj)
    wgt = problem.s[:, None, None, None] ** 2 / lam  # the expected Fisher information of Poisson counts
    if haadf and problem.h is not None:
        pp = np.maximum(proj, 1e-6 * max(proj.max(), 1e-12))
        dp = problem.gamma * pp ** (problem.gamma - 1.0)
        wgt = wgt + (problem.w[:, None, None, None] * dp) ** 2 / problem.sigma_h**2
    return (2.0 / 3.0) * problem.voxel * backproject_volume(wgt, problem.angles, problem.voxel, problem.shape)


def _fisher_variance(problem, u, mu_curv):
    """Diagonal Laplace approximation of each voxel's variance: the inverse of the data terms' Hessian diagonal
    (:func:`_data_curvature`) plus the regulariser's curvature ``mu_curv``."""
    return 1.0 / np.maximum(_data_curvature(problem, u) + mu_curv, 1e-30)


def _result(elements, u, var_u, voxel, rho_ref, method, **fields):
    total = u.sum(axis=0)
    mask, flags = _mask_and_flags(total)
    conc, sig = _concentration_sigma(u, var_u, mask)
    density = None if rho_ref is None else total * rho_ref
    return ElementalVolumes(elements, conc, sig, density, mask, flags, voxel, method, **fields)


# --- public ---


def reconstruct_elemental(haadf, edxs, elements=None, *, regulariser: str = "tnv", weights="auto", gamma="fit",
                          haadf_weights="fit", sum_to_one: bool = False, n_iter: int = 1000, tol: float = 1e-4,
                          progress: bool = True) -> ElementalVolumes:  # fmt: skip
    """Elemental volumes from EDXS count series and a HAADF series, in one regularised fit.

    Parameters
    ----------
    haadf : TiltSeries or None
        The HAADF series (any linear unit), at the EDXS series' angles and pixel size;
        None fits the EDXS counts alone.
    edxs : dict of str to TiltSeries
        X-ray counts per pixel of each element's line (single-axis series). Where none
        of the series holds whole non-negative counts (processed maps: fractions,
        normalised or background-subtracted maps), the maps go to
        :func:`~atomscount.elemental.maps.reconstruct_maps` (a least-squares likelihood,
        μ by its discrepancy rule for every string ``weights``), with a
        :class:`~atomscount.elemental.maps.NonCountDataWarning`.
    elements : sequence of str, optional
        Which of ``edxs``' elements, in this order (default: all, in the dict's order).
    regulariser : {"tnv", "tv", "tgv"}
        Joint total nuclear variation, per-element total variation, or second-order
        total generalised variation (:mod:`._objective`).
    weights : {"auto", "cv", "discrepancy"} or float
        The regularisation weight μ: "cv" chooses it by Poisson-thinning
        cross-validation (the held-out half of the counts, on the coarse grid where the
        volume has one; half of ``n_iter`` at most; Poisson counts only, not a
        simulation's expectations); "discrepancy" by the
        discrepancy principle on the EDXS deviance (cheaper, smoother); "auto" is "cv"
        for counts and "discrepancy" for a simulation's expectations (``noise=False`` in
        the series' provenance). A number fixes μ (in the objective's units: counts'
        deviance per unit of ``R``).
    gamma : "fit" or float
        The HAADF power γ of :func:`~atomscount.elemental.forward.haadf_model`: fitted
        in [0.4, 1.6], or fixed (1: the linear model of Zhong et al.).
    haadf_weights : "fit" or dict of str to float
        Per-atom HAADF weights: fitted (≥ 0, with an offset), or given [the HAADF unit per
        atom/Å²]; given ones are used as they are, with only the offset fitted.
    sum_to_one : bool
        A dense alloy: the total density is held (by a penalty) at the particle's median,
        so that the elements trade places instead of leaving voids.
    n_iter : int
        At most this many quasi-Newton iterations for the reconstruction: each round of
        the discrepancy rule's search but the last stops when converged (or after
        ``n_iter / 6``), the coarse grid's round after the cross-validation likewise (or
        after ``n_iter / 2``), and the last round has the rest. The cross-validation's
        ladder comes on top, at most ``n_iter / 2`` more (each fit stops when converged,
        or after ``n_iter / 6``). The fit stops when converged, usually long before (at
        64³ about 300-430 in all with the cross-validation, 220 with the discrepancy
        rule; at 128³ 660-1230).
    tol : float
        Converged when the objective's relative change per iteration falls below ``tol``
        three times in a row (the last round; or over its last five iterations).
    progress : bool
        A progress bar over iterations.

    Returns
    -------
    ElementalVolumes
        Concentrations (atomic fractions) in the particle, with a Laplace-approximation
        1-σ; the density [atoms/Å³] when the EDXS series state their dose and solid
        angle (else None); ``regularisation`` holds the regulariser, the rule, the chosen
        μ, the deviance against its target per round, and for "cv" the ladder's
        (μ at half the dose, held-out deviance) pairs, each point's standard error
        against the lowest one (``cross_validation_se``) and the iterations it took.

    Raises
    ------
    TypeError
        For edxs that is not a dict of TiltSeries, or a haadf that is not a TiltSeries.
    ValueError
        For series with different angles, shapes or pixel sizes; negative, non-integer or
        all-zero counts; an element with no X-ray line in range; a reconstruction that
        holds no particle; ``weights="cv"`` on expectations (provenance ``noise=False``).

    Warns
    -----
    RuntimeWarning
        When the objective had not converged after ``n_iter`` iterations (its value and last
        relative change are in the message; the result's ``converged`` is False).
    """
    from tqdm.auto import tqdm

    check_choice(regulariser, "regulariser", obj.REGULARISERS)
    n_iter = check_integer(n_iter, "n_iter", low=1)
    tol = check_real(tol, "tol", low=0.0, open_low=True)
    sum_to_one = check_bool(sum_to_one, "sum_to_one")
    progress = check_bool(progress, "progress")
    if isinstance(weights, str) and weights not in _WEIGHT_RULES:
        raise ValueError(f"weights must be one of {list(_WEIGHT_RULES)} or a number >= 0, got {weights!r}")
    rule = weights if isinstance(weights, str) else "given"
    mu = None if rule != "given" else check_real(weights, "weights", low=0.0)
    fit_gamma = isinstance(gamma, str)
    if fit_gamma and gamma != "fit":
        raise ValueError(f"gamma must be 'fit' or a number in (0, 2], got {gamma!r}")
    gamma0 = 1.0 if fit_gamma else check_real(gamma, "gamma", low=0.0, high=2.0, open_low=True)
    if _maps._processed(edxs):  # processed maps, none of them counts: the least-squares path, said by a warning
        _maps._warn_routed(edxs)
        return _maps.reconstruct_maps(haadf, edxs, elements, regulariser=regulariser,
                                      weights="auto" if rule != "given" else weights, gamma=gamma,
                                      haadf_weights=haadf_weights, sum_to_one=sum_to_one, n_iter=n_iter, tol=tol,
                                      progress=progress)  # fmt: skip
    elements, series, counts = _inputs(haadf, edxs, elements)
    expectations = [e for e in elements if series[e].provenance.get("noise") is False]
    if rule == "auto":  # cross-validation needs counts: a simulation's expectations take the discrepancy rule
        rule = "discrepancy" if expectations else "cv"
    elif rule == "cv" and expectations:
        raise ValueError(f"weights='cv' thins Poisson counts, but edxs[{expectations[0]!r}] holds expectations "
                         "(provenance noise=False): give weights='discrepancy' or a number")  # fmt: skip
    auto = rule == "discrepancy"  # the secant search over rounds
    if isinstance(haadf_weights, str):
        if haadf_weights != "fit":
            raise ValueError(f"haadf_weights must be 'fit' or a dict of element -> weight, got {haadf_weights!r}")
        fixed_w = None
    else:
        missing = [e for e in elements if e not in dict(haadf_weights)]
        if missing:
            raise ValueError(f"haadf_weights has no value for {missing} (it has {sorted(dict(haadf_weights))})")
        fixed_w = np.array([check_real(dict(haadf_weights)[e], f"haadf_weights[{e!r}]", low=0.0) for e in elements])
    t0 = time.perf_counter()
    sig, kappa = _scales(elements, series)
    first = series[elements[0]]
    voxel, angles = first.pixel_size_angstrom, first.angles[:, 1]
    ny, nu = first.shape
    shape = (nu, ny, nu)

    # the first rounds (the weight search's coarse steps) on a grid of twice the voxel: 2x2 binned
    # pixels, an eighth of the unknowns; the later ones on the full grid from the upsampled solution
    n_rounds = min(_MAX_ROUNDS, n_iter) if (auto or rule == "cv" or haadf is not None or sum_to_one) else 1
    coarse = n_rounds >= 3 and min(ny, nu) >= _COARSE_MIN and ny % 2 == 0 and nu % 2 == 0
    if rule == "cv":  # μ is fixed after the cross-validation: one round on the coarse grid (or one to set
        n_rounds = 2 if coarse or sum_to_one or fixed_w is not None else 1  # the sum or offset), the last
    n_coarse = n_rounds - 1 if coarse else 0
    h_img = None if haadf is None else haadf.images
    if coarse:
        c_series = {e: _binned(series[e], True) for e in elements}
        u0, c = _sirt_start(c_series, elements, sig, 2 * voxel)
        c /= 4.0  # the coarse pixel collects four pixels' counts: s_coarse = 4 s on the same u
        levels = [(_bin2(counts, True), 4.0 * c * sig, None if h_img is None else _bin2(h_img, False), 2 * voxel,
                   (nu // 2, ny // 2, nu // 2)), (counts, c * sig, h_img, voxel, shape)]  # fmt: skip
    else:
        u0, c = _sirt_start(series, elements, sig, voxel)
        levels = [(counts, c * sig, h_img, voxel, shape)]
    prob = _Problem(*levels[0][:2], levels[0][2], angles, levels[0][3], levels[0][4], regulariser, 0.0, 0.05)
    if haadf is not None:
        prob.sigma_h = _haadf_noise(prob.h)
        w_u = None if fixed_w is None else fixed_w * (c / kappa) ** gamma0 if kappa else fixed_w
        prior = np.array([default_haadf_weights(elements)[e] for e in elements])
        if fixed_w is None:  # from the counts, once (see _fit_haadf_counts)
            poisson = not any(series[e].provenance.get("noise") is False for e in elements)
            prob.w, prob.c, prob.gamma = _fit_haadf_counts(counts, c * sig, h_img, gamma0, fit_gamma, prior,
                                                           poisson=poisson)  # fmt: skip
        else:
            prob.w, prob.c, prob.gamma = _fit_haadf(project_volume(u0, angles, prob.voxel), prob.h, gamma0, False,
                                                    w_u, prior)  # fmt: skip
    z = u0.ravel() if regulariser != "tgv" else np.concatenate([u0.ravel(), np.zeros(3 * u0.size)])
    # each earlier round stops when converged (or at its share of the iterations); the last one, on the full
    # grid, has all the iterations left. The cross-validation's ladder comes on top: counted in n_iter, it left
    # a 128³ rod's full grid 159 of the 391 iterations it needed (Au/Ag 0.112/0.094 unconverged, 0.070/0.053)
    cap = max(1, n_iter // (2 * (n_rounds - 1))) if n_rounds > 1 else n_iter
    history, rounds, state = [], [], {}
    cv_budget = max(1, n_iter // 2) if rule == "cv" else 0
    bar = tqdm(total=n_iter + cv_budget, desc="elemental", unit="iter", disable=not progress)
    cv, cv_diag, cv_iterations = None, {}, 0
    if rule == "cv":  # on the first level (the coarse grid where there is one), a share of the iterations
        mu_half, z, cv, cv_diag = thinning_cv(prob, z, tol, cv_budget, bar, history, fit=_lbfgs)
        cv_iterations = len(history)
        mu = mu_half * _CV_DOSE_FACTOR
    if mu is None:
        mu = initial_mu(prob, z)
    prob.mu = mu
    log_pts = []
    r, extra = 0, False
    while True:
        last = r == n_rounds - 1
        start = len(history)
        its = n_iter - (start - cv_iterations) - (n_rounds - 1 - r)  # at least one for each later round
        z, stopped = _lbfgs(prob, z, prob.n_u, its if last else min(cap, its), tol, bar, history, state,
                            min_iter=min(30, its) if extra else 0)  # fmt: skip
        dev, target = prob.deviance(z)
        rounds.append({"mu": prob.mu, "deviance": dev, "target_deviance": target, "gamma": prob.gamma,
                       "weights": None if prob.w is None else prob.w.tolist(),
                       "voxel_size_angstrom": prob.voxel, "iterations": len(history) - start,
                       "converged": bool(stopped)})  # fmt: skip
        if last and coarse and auto and r == n_coarse and len(history) < n_iter - 1 and abs(np.log(dev / target)) > 0.1:
            # μ chosen on the coarse grid left the full grid's deviance more than 10 % off its target: one more
            # round on the full grid, a secant step with the coarse rounds' slope (at least 0.3, at most a factor 2)
            slope = 0.3
            if len(log_pts) >= 2 and log_pts[-1][0] != log_pts[-2][0]:
                slope = max(slope, (log_pts[-1][1] - log_pts[-2][1]) / (log_pts[-1][0] - log_pts[-2][0]))
            prob.mu = float(prob.mu * np.exp(np.clip(-np.log(dev / target) / slope, -np.log(2.0), np.log(2.0))))
            state["memory"].clear()  # the curvature pairs of the other μ would stop it after a few small steps
            extra = True
            n_rounds += 1
            r += 1
            continue
        if last:
            break
        r += 1
        if auto:
            log_pts.append((np.log(prob.mu), np.log(dev / target)))
            prob.mu = float(np.exp(_next_log_mu(log_pts)))
            if coarse and r == n_coarse:
                # onto the full grid with no untested step up: the smaller of the secant's next weight and
                # the tried one nearest its target (a 64³ rod at 10 counts went from 8 to 16 on a 3 % miss,
                # and over-smoothed, NRMSE 0.35 against 0.11)
                nearest = min(log_pts, key=lambda p: abs(p[1]))[0]
                prob.mu = float(min(prob.mu, np.exp(nearest)))
        if coarse and r == n_coarse:  # to the full grid
            z = _upsampled(prob, z, shape)
            fine = _Problem(*levels[1][:3], angles, voxel, shape, regulariser, prob.mu, prob.eps)
            fine.w, fine.c, fine.gamma = prob.w, prob.c, prob.gamma
            if haadf is not None:
                fine.sigma_h = _haadf_noise(fine.h)
            prob = fine  # μ carries over: the deviance and the regulariser both scale with the voxel's area
        u, _ = prob.split(z)
        if haadf is not None and fixed_w is not None:  # given weights: only the offset follows the volume
            prob.w, prob.c, prob.gamma = _fit_haadf(project_volume(u, angles, prob.voxel), prob.h, prob.gamma,
                                                    False, prob.w, prior)  # fmt: skip
        if sum_to_one:
            total = u.sum(axis=0)
            m, flags = _mask_and_flags(total)
            m &= flags == 0  # partial-volume surface voxels are not dense: held there, they pull the rest off
            prob.sum_target, prob.sum_mask = float(np.median(total[m])), m.astype(np.float64)
            prob.sum_weight = 10.0 * float(np.median(_fisher_variance(prob, u, 0.0)[:, m]) ** -1)
    bar.close()
    u, _ = prob.split(z)
    hist, converged = _convergence(history, stopped, tol, n_iter, "reconstruct_elemental")
    var_u = _fisher_variance(prob, u, _regulariser_curvature(prob, u))
    rho_ref = c / kappa if kappa else None
    w_phys = None
    if prob.w is not None:
        scale = (kappa / c) ** prob.gamma if kappa else 1.0
        w_phys = dict(zip(elements, (float(v) * scale for v in prob.w), strict=True))
    reg = {"name": regulariser, "mu": prob.mu, "auto": rule != "given", "smoothing_eps": prob.eps,
           "rule": _RULE_NAMES[rule], "cross_validation": cv, "cross_validation_se": cv_diag.get("se"),
           "cross_validation_fit_iterations": cv_diag.get("iterations"),
           "cross_validation_iterations": cv_iterations,
           "final_deviance": rounds[-1]["deviance"], "target_deviance": rounds[-1]["target_deviance"],
           "rounds": rounds}  # fmt: skip
    if regulariser == "tgv":
        reg["alpha0_over_alpha1"] = obj.TGV_RATIO
    prov = {"source": "atomscount.elemental.reconstruct_elemental", "n_iter": n_iter, "tol": tol,
            "seconds": time.perf_counter() - t0, "sum_to_one": sum_to_one, "haadf": haadf is not None,
            "haadf_offset": None if prob.c is None else float(prob.c),
            "haadf_noise_sigma": prob.sigma_h,
            "cross_section_angstrom2": dict(zip(elements, sig.tolist(), strict=True)),
            "density_absolute": kappa is not None}  # fmt: skip
    return _result(elements, u, var_u, voxel, rho_ref, f"multimodal-{regulariser}", haadf_weights=w_phys,
                   gamma=prob.gamma if haadf is not None else None, regularisation=reg, objective=hist,
                   converged=converged, provenance=prov)  # fmt: skip


def _bin2(images, counts):
    """(..., rows, cols) → (..., rows / 2, cols / 2): 2x2 pixels summed (counts) or averaged (HAADF, whose model
    is the mean line integral over a pixel)."""
    *lead, rows, cols = images.shape
    b = images.reshape(*lead, rows // 2, 2, cols // 2, 2).sum(axis=(-3, -1))
    return b if counts else b / 4.0


def _binned(s, counts):
    from ..tomo.geometry import TiltSeries

    return TiltSeries(_bin2(s.images, counts), s.angles, 2 * s.pixel_size_angstrom, dict(s.provenance))


def _upsampled(prob, z, shape):
    """The coarse grid's unknowns on the full grid (trilinear, voxel centres aligned); TGV's fields, in units
    per voxel, halved."""
    from scipy import ndimage

    u, w = prob.split(z)
    up = np.maximum(ndimage.zoom(u, (1, 2, 2, 2), order=1, mode="nearest", grid_mode=True), 0.0)
    if up.shape[1:] != tuple(shape):
        raise RuntimeError(f"upsampled {up.shape[1:]} for the grid {shape}")  # zoom's rounding: cannot happen
    if w is None:
        return up.ravel()
    wu = 0.5 * ndimage.zoom(w, (1, 1, 2, 2, 2), order=1, mode="nearest", grid_mode=True)
    return np.concatenate([up.ravel(), wu.ravel()])


def _sirt_start(series, elements, sig, voxel, n_iter=20, smooth=1.0):
    from scipy import ndimage

    from ..tomo.reconstruct import reconstruct

    vols = []
    for e, s in zip(elements, sig, strict=True):
        v = reconstruct(series[e], n_iter=n_iter, progress=False).data / s
        vols.append(ndimage.gaussian_filter(v, smooth))
    u = np.stack(vols)
    c = float(np.percentile(u.sum(axis=0), 99.5))
    if not c > 0:
        c = float(u.max()) or 1.0
    return np.maximum(u / c, 0.0), c


def reconstruct_separate(edxs, *, n_iter: int = 50) -> ElementalVolumes:
    """The baseline: SIRT of each element's EDXS series on its own, as concentrations.

    Each map is reconstructed by :func:`atomscount.tomo.reconstruct` (positivity, no
    regularisation), divided by its line's cross-section, and the concentrations are
    the ratios, in the mask of the total, as :func:`reconstruct_elemental` makes them;
    σ is the unregularised Laplace approximation.

    Parameters
    ----------
    edxs : dict of str to TiltSeries
        X-ray counts per pixel of each element's line.
    n_iter : int
        SIRT iterations.

    Returns
    -------
    ElementalVolumes
    """
    from ..tomo.reconstruct import reconstruct

    n_iter = check_integer(n_iter, "n_iter", low=1)
    elements, series, counts = _inputs(None, edxs, None)
    sig, kappa = _scales(elements, series)
    first = series[elements[0]]
    voxel, angles = first.pixel_size_angstrom, first.angles[:, 1]
    ny, nu = first.shape
    shape = (nu, ny, nu)
    t0 = time.perf_counter()
    u = np.stack(
        [reconstruct(series[e], n_iter=n_iter, progress=False).data / s for e, s in zip(elements, sig, strict=True)]
    )
    c = float(np.percentile(u.sum(axis=0), 99.5)) or 1.0
    u = u / c
    prob = _Problem(counts, c * sig, None, angles, voxel, shape, "tv", 0.0, 0.05)
    var_u = _fisher_variance(prob, u, 0.0)
    prov = {"source": "atomscount.elemental.reconstruct_separate", "n_iter": n_iter,
            "seconds": time.perf_counter() - t0, "density_absolute": kappa is not None}  # fmt: skip
    return _result(elements, u, var_u, voxel, c / kappa if kappa else None, "sirt-separate",
                   regularisation={"name": "none"}, provenance=prov)  # fmt: skip
