"""Sparse Levenberg-Marquardt for the joint Gaussian-column fit.

The normal equations ``J^T W J`` of the whole image are assembled by a numba kernel
without ever storing ``J``: column parameters couple only to columns whose
Gaussians overlap, so the local-local part ``A`` is block-sparse, while the few
global parameters (background, shared widths) couple to everything and are
eliminated by a Schur complement. ``A`` is solved by preconditioned conjugate
gradients (block-Jacobi), all right-hand sides at once.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from .._checks import check_memory
from . import _kernels
from .model import CUTOFF_SIGMAS, _image_centre, exp_tables, render_bands


@dataclasses.dataclass
class Problem:
    data: np.ndarray
    weights: np.ndarray
    pixel: float
    types: np.ndarray
    n_types: int
    free_width: bool
    n_bg: int
    poisson: bool = False
    mask: np.ndarray | None = None  # 1 for pixels that count; weights derive from it
    floor: float = 0.0
    jacobian_sigmas: float = CUTOFF_SIGMAS  # where the Jacobian is cut (the model always uses CUTOFF_SIGMAS)
    bounds: tuple | None = None  # (xmin, xmax, ymin, ymax) [Å] the column centres are kept within
    max_width: float = math.inf  # [Å] a step to a wider Gaussian is rejected

    @property
    def b(self) -> int:
        return 4 if self.free_width else 3

    @property
    def n_global(self) -> int:
        return self.n_bg + (0 if self.free_width else self.n_types)

    @property
    def centre(self):
        return _image_centre(self.data.shape, self.pixel)


@dataclasses.dataclass
class State:
    x: np.ndarray
    y: np.ndarray
    eta: np.ndarray
    rho: np.ndarray  # per column when free, per type when shared
    bg: np.ndarray  # always 3 coefficients; unused ones stay 0

    def copy(self) -> State:
        return State(*(a.copy() for a in dataclasses.astuple(self)))

    def rho_per_column(self, prob: Problem) -> np.ndarray:
        return self.rho if prob.free_width else self.rho[prob.types]


@dataclasses.dataclass
class NormalEquations:
    indptr: np.ndarray
    indices: np.ndarray
    blocks: np.ndarray  # full (both triangles), (nnzb, b, b)
    diag_loc: np.ndarray
    cross: np.ndarray  # (n, b, G)
    glob: np.ndarray  # (G, G)
    grad_local: np.ndarray  # (n, b)
    grad_global: np.ndarray  # (G,)
    chi2: float


def _pattern(x, y, radius):
    """Column-level CSR pattern (with diagonal) of pairs closer than ``radius``."""
    n = x.size
    pairs = cKDTree(np.column_stack([x, y])).query_pairs(radius, output_type="ndarray")
    rows = np.concatenate([np.arange(n), pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([np.arange(n), pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((cols, rows))
    rows = rows[order]
    cols = cols[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int64)
    return indptr, cols.astype(np.int64), rows


def objective(prob: Problem, st: State):
    """The merit function at ``st`` and the model image.

    Weighted sum of squared residuals, or for Poisson noise the negative
    log-likelihood ``sum(m - y ln m)``. Fisher scoring on the latter uses the same
    normal equations as least squares with weights ``1/m``, which
    :func:`poisson_weights` sets.
    """
    model = render_state(prob, st)
    if prob.poisson:
        return float(_kernels.poisson_merit(prob.data, prob.mask, model, prob.floor)), model
    return float(_kernels.weighted_chi2(prob.data, prob.weights, model)), model


def poisson_weights(prob: Problem, model: np.ndarray) -> None:
    """Set the Fisher-scoring weights ``mask / max(model, floor)``."""
    prob.weights = prob.mask / np.maximum(model, prob.floor)


def memory_estimate(prob: Problem, rho: np.ndarray, *, normal_equations: bool) -> float:
    """Bytes the kernels will allocate for one model image (and its normal equations).

    The pair count assumes columns spread evenly over the image, within the
    coupling radius of :func:`assemble`.
    """
    ny, nx = prob.data.shape
    n = rho.size
    rmax = float(np.max(rho, initial=0.0))
    width = 2.0 * CUTOFF_SIGMAS * rmax / prob.pixel + 2
    total = 2.0 * n * width * 8 + 2.0 * ny * nx * 8
    if normal_equations:
        radius = 2.0 * min(prob.jacobian_sigmas, CUTOFF_SIGMAS) * rmax
        area = max(ny * nx * prob.pixel**2, 1e-300)
        per_column = min(n, 1.0 + n * math.pi * radius**2 / area)
        G = prob.n_global
        b = prob.b
        total += 4.0 * n * per_column * (b * b + 3) * 8 + n * b * G * 8
        if not prob.free_width:
            total += prob.n_types * ny * nx * 8.0
    return total


def render_state(prob: Problem, st: State) -> np.ndarray:
    rho = np.ascontiguousarray(st.rho_per_column(prob))
    check_memory(memory_estimate(prob, rho, normal_equations=False), "rendering the column model")
    cut = CUTOFF_SIGMAS * rho
    xc, yc = prob.centre
    return _kernels.render_columns(
        prob.data.shape[0], prob.data.shape[1], prob.pixel, st.x, st.y, st.eta, cut**2, st.bg, xc, yc,
        *exp_tables(st.x, st.y, rho, cut, prob.pixel), render_bands(prob.data.shape[0]),
    )  # fmt: skip


def assemble(prob: Problem, st: State, model: np.ndarray | None = None) -> NormalEquations:
    """Normal equations ``J^T W J`` and ``J^T W r`` at ``st``; ``model`` is its rendered image, if at hand.

    Column pairs are coupled within ``prob.jacobian_sigmas`` widths only.
    """
    if model is None:
        model = render_state(prob, st)
    rho = np.ascontiguousarray(st.rho_per_column(prob))
    check_memory(memory_estimate(prob, rho, normal_equations=True), "the normal equations of the fit")
    cut = CUTOFF_SIGMAS * rho
    cutj = np.minimum(prob.jacobian_sigmas, CUTOFF_SIGMAS) * rho
    indptr, indices, rows = _pattern(st.x, st.y, 2.0 * float(cutj.max()) * (1 + 1e-9))
    xc, yc = prob.centre
    ny, nx = prob.data.shape
    tables = exp_tables(st.x, st.y, rho, cut, prob.pixel)
    if prob.free_width:
        dwidth = np.zeros((0, 1, 1))
    else:
        dwidth = _kernels.width_derivative_images(ny, nx, prob.pixel, st.x, st.y, st.eta, rho, cut**2, prob.types,
                                                  prob.n_types, *tables, render_bands(ny))  # fmt: skip
    upper, cross, glob, gl, gg, c2 = _kernels.normal_equations(
        prob.data, model, prob.weights, prob.pixel, st.x, st.y, st.eta, rho, cut**2, cutj**2, st.bg, xc, yc,
        prob.free_width, prob.n_bg, prob.n_types, dwidth, indptr, indices, _kernels.REDUCTION_CHUNKS, *tables,
    )  # fmt: skip
    # mirror the upper triangle: block (j, i) = block (i, j)^T
    key = rows * st.x.size + indices
    tkey = indices * st.x.size + rows
    tloc = np.searchsorted(key, tkey)
    lower = indices < rows
    full = upper.copy()
    full[lower] = upper[tloc[lower]].transpose(0, 2, 1)
    diag_loc = np.flatnonzero(indices == rows)
    return NormalEquations(indptr, indices, full, diag_loc, cross, glob, gl, gg, float(c2))


def _bsr(neq: NormalEquations, blocks=None):
    blocks = neq.blocks if blocks is None else blocks
    n = neq.indptr.size - 1
    b = blocks.shape[1]
    return sp.bsr_matrix((blocks, neq.indices, neq.indptr), shape=(n * b, n * b))


def _block_jacobi(diag_blocks):
    n, b, _ = diag_blocks.shape
    d = diag_blocks.copy()
    scale = np.maximum(np.abs(np.einsum("nii->n", d)) / b, 1e-300)
    d += (1e-12 * scale)[:, None, None] * np.eye(b)
    inv = np.linalg.inv(d)
    return sp.bsr_matrix((inv, np.arange(n), np.arange(n + 1)), shape=(n * b, n * b))


def pcg(A, Minv, rhs, *, rtol=1e-11, maxiter=2000):
    """Preconditioned conjugate gradients for SPD ``A`` and several right-hand sides."""
    X = np.zeros_like(rhs)
    R = rhs.copy()
    Z = Minv @ R
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    bnorm = np.linalg.norm(rhs, axis=0)
    bnorm[bnorm == 0] = 1.0
    for _ in range(maxiter):
        AP = A @ P
        pap = np.einsum("ij,ij->j", P, AP)
        alpha = np.divide(rz, pap, out=np.zeros_like(rz), where=pap > 0)
        X += alpha * P
        R -= alpha * AP
        if np.all(np.linalg.norm(R, axis=0) <= rtol * bnorm):
            return X, True
        Z = Minv @ R
        rz_new = np.einsum("ij,ij->j", R, Z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz != 0)
        P = Z + beta * P
        rz = rz_new
    return X, False


def solve(neq: NormalEquations, lam: float):
    """Solve ``(H + lam diag H) delta = g`` by Schur complement on the global parameters."""
    n, b, G = neq.cross.shape
    blocks = neq.blocks
    if lam:
        blocks = blocks.copy()
        idx = np.arange(b)
        blocks[neq.diag_loc[:, None], idx, idx] *= 1.0 + lam
    A = _bsr(neq, blocks)
    Minv = _block_jacobi(blocks[neq.diag_loc])
    Bm = neq.cross.reshape(n * b, G)
    rhs = np.column_stack([neq.grad_local.reshape(-1), Bm])
    # an LM step needs no more than a few digits (inexact Newton); near-duplicate columns
    # (a detector's trial starts) make A ill-conditioned, and full precision would cost
    # thousands of iterations
    Z, _ = pcg(A, Minv, rhs, rtol=1e-6, maxiter=300)
    zl, ZB = Z[:, 0], Z[:, 1:]
    C = neq.glob.copy()
    C[np.diag_indices(G)] *= 1.0 + lam
    S = C - Bm.T @ ZB
    dg = np.linalg.solve(S, neq.grad_global - Bm.T @ zl)
    dl = zl - ZB @ dg
    return dl.reshape(n, b), dg


def covariance(neq: NormalEquations):
    """Blocks of ``H^{-1}``: per-column ``(n, b, b)``, column-global ``(n, b, G)``, global ``(G, G)``.

    A column whose own block is singular (it covers no pixel, or its height is
    zero so that its position has no curvature) gets NaN errors; it is taken out
    of the inversion so that the other columns' errors stay defined.
    """
    n, b, G = neq.cross.shape
    dead = _singular_columns(neq)
    if dead.any():
        neq = _without_columns(neq, dead)
    A = _bsr(neq)
    Minv = _block_jacobi(neq.blocks[neq.diag_loc])
    Bm = neq.cross.reshape(n * b, G)
    X, _ = pcg(A, Minv, Bm.copy()) if G else (np.zeros((n * b, 0)), True)
    S = neq.glob - Bm.T @ X
    if G and not np.all(np.isfinite(S)):
        S = np.full_like(S, np.nan)
        Sinv = S
    else:
        Sinv = np.linalg.pinv(S) if G else np.zeros((0, 0))
    ainv = _kernels.local_inverse_blocks(neq.indptr, neq.indices, neq.blocks, neq.diag_loc)
    Xb = X.reshape(n, b, G)
    XS = Xb @ Sinv
    local = ainv + np.einsum("nig,njg->nij", XS, Xb)
    local[dead] = np.nan
    cross = -XS
    cross[dead] = np.nan
    return local, cross, Sinv


def _singular_columns(neq: NormalEquations) -> np.ndarray:
    """Columns whose diagonal block is (numerically) singular."""
    d = neq.blocks[neq.diag_loc]
    diag = np.einsum("nii->ni", d)
    typical = np.median(diag, axis=0)
    small = np.any(diag <= 1e-10 * np.maximum(typical, 1e-300), axis=1) | ~np.all(np.isfinite(d), axis=(1, 2))
    with np.errstate(all="ignore"):
        cond = np.linalg.cond(np.where(np.isfinite(d), d, 0.0))
    return small | ~(cond < 1e12)


def _without_columns(neq: NormalEquations, dead: np.ndarray) -> NormalEquations:
    """The normal equations with ``dead`` columns decoupled (identity blocks, no coupling)."""
    n = dead.size
    b = neq.blocks.shape[1]
    rows = np.repeat(np.arange(n), np.diff(neq.indptr))
    blocks = neq.blocks.copy()
    blocks[dead[rows] | dead[neq.indices]] = 0.0
    blocks[neq.diag_loc[dead]] = np.eye(b)
    cross = neq.cross.copy()
    cross[dead] = 0.0
    return dataclasses.replace(neq, blocks=blocks, cross=cross)


def apply_step(prob: Problem, st: State, dl, dg) -> State:
    """Take the step, limiting each column's move to half its width per iteration.

    The damping ``lam * diag(H)`` barely restrains faint columns, whose position
    curvature scales with their height squared; without this cap a faint column can
    jump onto a bright neighbour in one step. Heights may shrink at most tenfold per
    step, so a spurious column fades rather than flipping sign.
    """
    dl = dl.copy()
    rho = st.rho_per_column(prob)
    move = np.hypot(dl[:, 0], dl[:, 1])
    cap = 0.5 * rho
    scale = np.where(move > cap, cap / np.maximum(move, 1e-300), 1.0)
    dl[:, 0] *= scale
    dl[:, 1] *= scale
    dl[:, 2] = np.maximum(dl[:, 2], -0.9 * st.eta)
    new = st.copy()
    new.x += dl[:, 0]
    new.y += dl[:, 1]
    if prob.bounds is not None:
        # a column with no pixels left has no curvature at all: keep every centre near the image
        np.clip(new.x, prob.bounds[0], prob.bounds[1], out=new.x)
        np.clip(new.y, prob.bounds[2], prob.bounds[3], out=new.y)
    new.eta += dl[:, 2]
    nb_ = prob.n_bg
    new.bg[:nb_] += dg[:nb_]
    if prob.free_width:
        new.rho += dl[:, 3]
    else:
        new.rho += dg[nb_:]
    return new


def step_is_small(neq: NormalEquations, dl, dg, dof: int, rtol: float = 1e-3):
    """Per column: is the last step below ``rtol`` of each parameter's standard error?

    Uses the diagonal estimate ``sigma^2 ~ s^2 / H_ii``, which is all we need to judge
    that further iterations would change nothing that the noise does not swamp.
    """
    s2 = neq.chi2 / max(dof, 1)
    hd = np.einsum("nii->ni", neq.blocks[neq.diag_loc])
    sig = np.sqrt(s2 / np.maximum(hd, 1e-300))
    cols = np.all(np.abs(dl) <= rtol * sig + 1e-12, axis=1)
    G = neq.glob.shape[0]
    glob_ok = True
    if G:
        sg = np.sqrt(s2 / np.maximum(np.diag(neq.glob), 1e-300))
        glob_ok = bool(np.all(np.abs(dg) <= rtol * sg + 1e-12))
    return cols, glob_ok


def levenberg_marquardt(prob: Problem, st: State, *, max_iter=100, rtol=0.1, stall=1e-4, progress=None):
    """Minimise the merit function from ``st``.

    Stops when every parameter's last step is below ``rtol`` of its standard
    error, when the merit function stalls (two accepted steps in a row that
    lower ``-2 log L`` by less than ``stall`` per parameter, in units of the
    noise), or when no downhill step is left at any damping (the minimum to
    machine precision). A model that does not describe the data exactly (real
    columns are not Gaussians) leaves a large residual, and Gauss-Newton then
    converges only linearly: a criterion far below the noise is never met, though
    nothing that matters still changes.

    Returns the final state, the normal equations there, a per-column flag (last
    step below ``rtol`` of its errors), the number of iterations, whether the
    fit met one of the stopping criteria before ``max_iter``, and whether it
    stopped because every step was blocked away from a stationary point (then
    the columns whose flag is False are stuck, not converged).
    """
    lam = 1e-3
    f_cur, model = objective(prob, st)
    if prob.poisson:
        poisson_weights(prob, model)
    neq = assemble(prob, st, model)
    n = st.x.size
    dof = int(np.count_nonzero(prob.weights)) - n * prob.b - prob.n_global
    n_par = n * prob.b + prob.n_global
    col_ok = np.zeros(n, dtype=bool)
    converged = False
    it = 0
    slow = 0
    min_rho = 0.25 * prob.pixel
    # a width beyond half the image describes no column, and its kernels' memory grows with it
    max_rho = min(0.5 * max(prob.data.shape) * prob.pixel, prob.max_width)
    stuck = False
    for it in range(1, max_iter + 1):  # noqa: B007 (it is returned)
        accepted = False
        blocked = False  # was the last (most damped) trial refused by a bound rather than uphill?
        while lam < 1e8:
            dl, dg = solve(neq, lam)
            trial = apply_step(prob, st, dl, dg)
            rho = trial.rho_per_column(prob)
            blocked = not (np.all(np.isfinite(dl)) and np.all(rho > min_rho) and np.all(rho < max_rho))
            if not blocked:
                try:
                    f_new, trial_model = objective(prob, trial)
                except FloatingPointError:
                    f_new = math.inf
                if f_new <= f_cur:
                    accepted = True
                    break
            lam *= 10.0
        if progress is not None:
            progress.update(1)
            progress.set_postfix(chi2=f"{neq.chi2:.6g}", lam=f"{lam:.1e}")
        if not accepted:
            if blocked:
                # even the smallest step leaves the allowed widths or gives a non-finite
                # model: the columns at a width bound (all, if none is) are stuck there
                rho = st.rho_per_column(prob)
                at_bound = (rho <= 1.05 * min_rho) | (rho >= 0.95 * max_rho)
                col_ok = ~at_bound if at_bound.any() else np.zeros(n, dtype=bool)
                stuck = True
            else:  # no downhill step at any damping: the minimum to machine precision
                col_ok[:] = True
                converged = True
            break
        col_ok, glob_ok = step_is_small(neq, trial_step(st, trial, prob), trial_global(st, trial, prob), dof, rtol)
        gain = _deviance_change(prob, f_cur - f_new, neq.chi2, dof)
        slow = slow + 1 if gain < stall * n_par else 0
        st = trial
        f_cur = f_new
        model = trial_model
        if prob.poisson:
            poisson_weights(prob, model)
        neq = assemble(prob, st, model)
        lam = max(lam / 10.0, 1e-9)
        if (col_ok.all() and glob_ok) or slow >= 2:
            converged = True
            break
    return st, neq, col_ok, it, converged, stuck


def _deviance_change(prob: Problem, df: float, chi2: float, dof: int) -> float:
    """A drop ``df`` of the merit function as a change of ``-2 log L`` in units of the noise.

    Least squares: ``df / s^2`` with ``s^2`` the reduced chi-square. Poisson (merit
    ``sum m - y ln m`` in image units): the counts are ``y / s^2`` with ``s^2`` the
    Pearson reduced chi-square, so ``-2 log L`` changes by ``2 df / s^2``.
    """
    s2 = chi2 / max(dof, 1)
    if not s2 > 0:
        return math.inf
    return (2.0 if prob.poisson else 1.0) * df / s2


def trial_step(st: State, new: State, prob: Problem) -> np.ndarray:
    """The per-column step actually taken (after the caps in :func:`apply_step`)."""
    cols = [new.x - st.x, new.y - st.y, new.eta - st.eta]
    if prob.free_width:
        cols.append(new.rho - st.rho)
    return np.column_stack(cols)


def trial_global(st: State, new: State, prob: Problem) -> np.ndarray:
    d = list(new.bg[: prob.n_bg] - st.bg[: prob.n_bg])
    if not prob.free_width:
        d += list(new.rho - st.rho)
    return np.asarray(d)


def unit_scale(values) -> float:
    """A power of two that brings the 99.9th percentile of ``|values|`` into [0.5, 1) (1 for an all-zero image)."""
    top = float(np.percentile(np.abs(values), 99.9)) if values.size else 0.0
    if not (np.isfinite(top) and top > 0):
        return 1.0
    return float(2.0 ** -np.frexp(top)[1])


def unscale(prob, st, local, cross, glob, unit):
    """State and covariance blocks of a fit to ``unit`` times the image, in the image's units.

    Heights and background coefficients scale with the image; positions and widths do not.
    """
    st = st.copy()
    st.eta = st.eta / unit
    st.bg = st.bg / unit
    col = np.ones(prob.b)
    col[2] = 1.0 / unit  # (x, y, eta[, rho])
    gl = np.ones(prob.n_global)
    gl[: prob.n_bg] = 1.0 / unit  # background first, then the shared widths
    local = local * col[None, :, None] * col[None, None, :]
    cross = cross * col[None, :, None] * gl[None, None, :]
    glob = glob * gl[:, None] * gl[None, :]
    return st, local, cross, glob
