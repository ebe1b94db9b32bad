"""The multimodal objective: Poisson EDXS and Gaussian HAADF likelihoods, and the regularisers.

Everything here works on the unknowns ``u`` (n_el, nz, ny, nx), each element's number
density in units of a reference density (so that values are about 1 in the particle),
and returns the objective and its exact gradient, which a quasi-Newton solver with
bounds (L-BFGS-B) minimises. The regularisers are smoothed by ``ε`` so that they are
differentiable:

- ``"tv"``: ``Σ_e Σ_v sqrt(|∇u_e|² + ε²) - ε``, each element on its own;
- ``"tnv"``: ``Σ_v tr sqrt(J Jᵀ + ε² I) - n_el ε``, J the (n_el × 3) Jacobian of all
  elements at the voxel: a smoothed nuclear norm, small when the elements' edges align;
- ``"tgv"``: second-order total generalised variation per element,
  ``α₁ |∇u_e - w_e|_ε + α₀ |E w_e|_ε`` with the auxiliary fields ``w_e`` (3 per element) among
  the unknowns and ``α₀ = 2 α₁``: piecewise-linear profiles (graded interfaces) cost little.

Gradients use forward differences (zero across the last face) and their exact adjoints.
"""

from __future__ import annotations

import numpy as np

from . import _kernels

REGULARISERS = ("tv", "tnv", "tgv")
#: α₀ / α₁ of the second-order TGV (Knoll et al. 2011 use 2 on a unit grid).
TGV_RATIO = 2.0


def grad3(x):
    """Forward differences of ``x`` (..., nz, ny, nx) along z, y, x: (..., 3, nz, ny, nx)."""
    out = np.zeros(x.shape[:-3] + (3,) + x.shape[-3:])
    out[..., 0, :-1, :, :] = x[..., 1:, :, :] - x[..., :-1, :, :]
    out[..., 1, :, :-1, :] = x[..., :, 1:, :] - x[..., :, :-1, :]
    out[..., 2, :, :, :-1] = x[..., :, :, 1:] - x[..., :, :, :-1]
    return out


def grad3_adjoint(g):
    """Adjoint of :func:`grad3`: (..., 3, nz, ny, nx) → (..., nz, ny, nx)."""
    out = np.zeros(g.shape[:-4] + g.shape[-3:])
    gz, gy, gx = g[..., 0, :, :, :], g[..., 1, :, :, :], g[..., 2, :, :, :]
    out[..., :-1, :, :] -= gz[..., :-1, :, :]
    out[..., 1:, :, :] += gz[..., :-1, :, :]
    out[..., :, :-1, :] -= gy[..., :, :-1, :]
    out[..., :, 1:, :] += gy[..., :, :-1, :]
    out[..., :, :, :-1] -= gx[..., :, :, :-1]
    out[..., :, :, 1:] += gx[..., :, :, :-1]
    return out


def _smooth_norm(v, eps, axis):
    """``Σ sqrt(|v|² + ε²) - ε`` over the vectors along ``axis``, and its derivative with respect to ``v``."""
    r = np.sqrt(np.sum(v * v, axis=axis, keepdims=True) + eps * eps)
    return float(np.sum(r) - eps * r.size), v / r


def sym_grad(w):
    """Symmetrised gradient of the vector fields ``w`` (..., 3, nz, ny, nx): the six distinct entries
    (zz, yy, xx, zy, zx, yx) of ``(∇w + ∇wᵀ) / 2``, the off-diagonal ones counted twice in the norm."""
    g = grad3(w)  # (..., 3 [component], 3 [direction], ...)
    return np.stack([g[..., 0, 0, :, :, :], g[..., 1, 1, :, :, :], g[..., 2, 2, :, :, :],
                     0.5 * (g[..., 0, 1, :, :, :] + g[..., 1, 0, :, :, :]),
                     0.5 * (g[..., 0, 2, :, :, :] + g[..., 2, 0, :, :, :]),
                     0.5 * (g[..., 1, 2, :, :, :] + g[..., 2, 1, :, :, :])], axis=-4)  # fmt: skip


def sym_grad_adjoint(s):
    """Adjoint of :func:`sym_grad`."""
    g = np.zeros(s.shape[:-4] + (3, 3) + s.shape[-3:])
    for c, (i, j) in enumerate(((0, 0), (1, 1), (2, 2))):
        g[..., i, j, :, :, :] = s[..., c, :, :, :]
    for c, (i, j) in zip((3, 4, 5), ((0, 1), (0, 2), (1, 2)), strict=True):
        g[..., i, j, :, :, :] = 0.5 * s[..., c, :, :, :]
        g[..., j, i, :, :, :] = 0.5 * s[..., c, :, :, :]
    return grad3_adjoint(g)


_SYM_WEIGHT = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])[:, None, None, None]


def _buffer(work, key, shape):
    """An uninitialised float64 array of ``shape``: ``work[key]`` when it has that shape (kept there for the next
    call: a fresh one of hundreds of MB costs its page faults at every evaluation), else a new one."""
    if work is None:
        return np.empty(shape)
    buf = work.get(key)
    if buf is None or buf.shape != tuple(shape):
        buf = work[key] = np.empty(shape)
    return buf


def regulariser(name, u, w, eps, work=None):
    """Value of regulariser ``name`` at ``u`` (and TGV's ``w``), and its gradients (du, dw or None).

    ``work`` (a dict, optional) keeps TV's and TNV's work arrays from one call to the next; the ``du``
    returned is then one of them, overwritten by the next call with the same ``work``."""
    if name in ("tv", "tnv"):
        uc = np.ascontiguousarray(u, dtype=np.float64)
        dj = _buffer(work, "dj", (uc.shape[0], 3, *uc.shape[1:]))
        val = _kernels.jacobian_norm(uc, float(eps), name == "tnv", dj)
        du = _buffer(work, "du", uc.shape)
        _kernels.difference_adjoint(dj, du)
        return float(val), du, None
    if name == "tgv":
        v1, d1 = _smooth_norm(grad3(u) - w, eps, axis=-4)
        sg = sym_grad(w) * _SYM_WEIGHT
        v0, d0 = _smooth_norm(sg, eps, axis=-4)
        du = grad3_adjoint(d1)
        dw = -d1 + TGV_RATIO * sym_grad_adjoint(d0 * _SYM_WEIGHT)
        return v1 + TGV_RATIO * v0, du, dw
    raise ValueError(f"regulariser must be one of {list(REGULARISERS)}, got {name!r}")


def poisson_deviance_terms(lam, counts):
    """Half the Poisson deviance per pixel, ``λ - b - b log(λ / b)`` (0 log 0 = 0), and its derivative in λ."""
    with np.errstate(divide="ignore", invalid="ignore"):
        blog = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0) / lam), 0.0)
    return lam - counts + blog, 1.0 - counts / lam


def expected_deviance(mean):
    """E[2 (b log(b / μ) - (b - μ))] for b ~ Poisson(μ), per pixel: the deviance a correct model
    leaves, about 1 for large μ and less for a few counts (interpolated on a table)."""
    from scipy.stats import poisson

    grid = np.geomspace(1e-4, 1e3, 200)
    table = np.empty_like(grid)
    for i, m in enumerate(grid):
        b = np.arange(0, int(m + 12 * np.sqrt(m) + 30))
        p = poisson.pmf(b, m)
        with np.errstate(divide="ignore", invalid="ignore"):
            blog = np.where(b > 0, b * np.log(np.where(b > 0, b, 1) / m), 0.0)
        table[i] = np.sum(p * 2.0 * (blog - (b - m)))
    mean = np.asarray(mean, dtype=np.float64)
    return np.interp(np.log(np.clip(mean, grid[0], None)), np.log(grid), table, right=1.0)
