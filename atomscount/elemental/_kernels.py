"""numba kernels of the elemental stage: the first-order regularisers voxel by voxel, and the solver's passes.

The joint regulariser needs, at every voxel, the nuclear norm of the Jacobian J
(n_el × 3) of the stacked element volumes, smoothed as ``tr sqrt(J Jᵀ + ε² I) - n_el ε``,
and its derivative ``(J Jᵀ + ε² I)^(-1/2) J``. numpy's batched ``eigh`` on millions of
2×2 or 3×3 matrices costs seconds per call; this kernel diagonalises each small
matrix by cyclic Jacobi rotations in a parallel loop, and skips the flat voxels
(outside the particle) where the smoothing alone counts. :func:`jacobian_norm` takes the
forward differences itself and :func:`difference_adjoint` applies their adjoint, so TV and
TNV cost two passes over the volume instead of numpy's dozen temporaries.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, fastmath=True)
def _jacobi_eigen(m, vec):
    """Eigen-decomposition of the small symmetric ``m`` in place: its diagonal ends as the eigenvalues,
    ``vec`` (set to the identity first) as the eigenvectors (columns)."""
    n = m.shape[0]
    for i in range(n):
        for j in range(n):
            vec[i, j] = 1.0 if i == j else 0.0
    for _sweep in range(30):
        off = 0.0
        scale = 0.0
        for i in range(n):
            scale += abs(m[i, i])
            for j in range(i + 1, n):
                off += m[i, j] * m[i, j]
        if off <= 1e-24 * scale * scale:
            return
        for p in range(n):
            for q in range(p + 1, n):
                if m[p, q] == 0.0:
                    continue
                theta = (m[q, q] - m[p, p]) / (2.0 * m[p, q])
                t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):
                    mkp, mkq = m[k, p], m[k, q]
                    m[k, p] = c * mkp - s * mkq
                    m[k, q] = s * mkp + c * mkq
                for k in range(n):
                    mpk, mqk = m[p, k], m[q, k]
                    m[p, k] = c * mpk - s * mqk
                    m[q, k] = s * mpk + c * mqk
                for k in range(n):
                    vkp, vkq = vec[k, p], vec[k, q]
                    vec[k, p] = c * vkp - s * vkq
                    vec[k, q] = s * vkp + c * vkq


@nb.njit(cache=True, nogil=True, fastmath=True)
def _nuclear(jac, eps, m, vec, inv, grad):
    """Smoothed nuclear norm ``tr sqrt(J Jᵀ + ε² I) - n ε`` of one voxel's ``jac`` (n, 3); ``grad`` (n, 3) gets
    ``(J Jᵀ + ε² I)^(-1/2) J``. ``m``, ``vec``, ``inv`` are (n, n) work arrays."""
    n, d = jac.shape
    e2 = eps * eps
    sq = 0.0
    for i in range(n):
        for a in range(d):
            sq += jac[i, a] * jac[i, a]
    if sq <= 1e-12 * e2:  # flat (outside the particle): sqrt(ε² + λ) - ε = λ / 2ε to 1e-12
        for i in range(n):
            for a in range(d):
                grad[i, a] = jac[i, a] / eps
        return 0.5 * sq / eps
    for i in range(n):
        for j in range(i, n):
            s = 0.0
            for a in range(d):
                s += jac[i, a] * jac[j, a]
            m[i, j] = s
            m[j, i] = s
        m[i, i] += e2
    if n == 1:
        r = math.sqrt(m[0, 0])
        inv[0, 0] = 1.0 / r
        total = r - eps
    elif n == 2:  # sqrt of a 2x2: (M + sqrt(det) I) / sqrt(tr + 2 sqrt(det))
        sd = math.sqrt(max(m[0, 0] * m[1, 1] - m[0, 1] * m[0, 1], e2 * e2))
        t = math.sqrt(m[0, 0] + m[1, 1] + 2.0 * sd)
        inv[0, 0] = (m[1, 1] + sd) / (t * sd)
        inv[1, 1] = (m[0, 0] + sd) / (t * sd)
        inv[0, 1] = inv[1, 0] = -m[0, 1] / (t * sd)
        total = t - 2.0 * eps
    elif n == 3:
        total = _inv_sqrt3(m, e2, vec, inv) - 3.0 * eps
    else:
        _jacobi_eigen(m, vec)
        total = 0.0
        for i in range(n):
            total += math.sqrt(max(m[i, i], e2)) - eps
        for i in range(n):
            for j in range(n):
                s = 0.0
                for k in range(n):
                    s += vec[i, k] * vec[j, k] / math.sqrt(max(m[k, k], e2))
                inv[i, j] = s
    for i in range(n):
        for a in range(d):
            s = 0.0
            for k in range(n):
                s += inv[i, k] * jac[k, a]
            grad[i, a] = s
    return total


@nb.njit(cache=True, nogil=True, fastmath=True)
def _inv_sqrt3(m, floor, u, inv):
    """``inv = m^(-1/2)`` of a symmetric positive 3x3 ``m`` whose eigenvalues are at least ``floor``; returns
    ``tr m^(1/2)``. Eigenvalues in closed form (the trigonometric solution of the characteristic cubic),
    then ``U = m^(1/2)`` and its inverse as polynomials in ``m`` by Cayley-Hamilton, with the invariants of
    the square roots ``σ``: ``U = (-m² + (I₁² - I₂) m + I₁ I₃) / (I₁ I₂ - I₃)``, ``U⁻¹ = (m - I₁ U + I₂) / I₃``
    (no division by eigenvalue gaps, so equal eigenvalues are fine). ``u`` is a 3x3 work array."""
    q = (m[0, 0] + m[1, 1] + m[2, 2]) / 3.0
    p1 = m[0, 1] ** 2 + m[0, 2] ** 2 + m[1, 2] ** 2
    p2 = (m[0, 0] - q) ** 2 + (m[1, 1] - q) ** 2 + (m[2, 2] - q) ** 2 + 2.0 * p1
    if p2 <= 1e-30 * q * q:
        l1 = l2 = l3 = q
    else:
        pp = math.sqrt(p2 / 6.0)
        b00, b11, b22 = (m[0, 0] - q) / pp, (m[1, 1] - q) / pp, (m[2, 2] - q) / pp
        b01, b02, b12 = m[0, 1] / pp, m[0, 2] / pp, m[1, 2] / pp
        r = 0.5 * (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02))
        r = min(max(r, -1.0), 1.0)
        phi = math.acos(r) / 3.0
        l1 = q + 2.0 * pp * math.cos(phi)
        l3 = q + 2.0 * pp * math.cos(phi + 2.0 * math.pi / 3.0)
        l2 = 3.0 * q - l1 - l3
    s1, s2, s3 = math.sqrt(max(l1, floor)), math.sqrt(max(l2, floor)), math.sqrt(max(l3, floor))
    i1, i2, i3 = s1 + s2 + s3, s1 * s2 + s2 * s3 + s1 * s3, s1 * s2 * s3
    den = i1 * i2 - i3
    c1 = i1 * i1 - i2
    for i in range(3):
        for j in range(3):
            m2 = m[i, 0] * m[0, j] + m[i, 1] * m[1, j] + m[i, 2] * m[2, j]
            u[i, j] = (-m2 + c1 * m[i, j] + (i1 * i3 if i == j else 0.0)) / den
    for i in range(3):
        for j in range(3):
            inv[i, j] = (m[i, j] - i1 * u[i, j] + (i2 if i == j else 0.0)) / i3
    return i1


@nb.njit(cache=True, parallel=True, fastmath=True)
def tnv_value_grad(jac, eps, grad):
    """Smoothed nuclear norm of each voxel's Jacobian: ``jac`` (n_el, 3, V) → its sum over voxels, and
    ``grad`` (n_el, 3, V) = ``(J Jᵀ + ε² I)^(-1/2) J`` per voxel."""
    n, d, nv = jac.shape
    n_chunks = 64
    partial = np.zeros(n_chunks)
    step = (nv + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        m, vec, inv = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
        jv, gv = np.empty((n, d)), np.empty((n, d))
        total = 0.0
        for v in range(ch * step, min(nv, (ch + 1) * step)):
            for i in range(n):
                for a in range(d):
                    jv[i, a] = jac[i, a, v]
            total += _nuclear(jv, eps, m, vec, inv, gv)
            for i in range(n):
                for a in range(d):
                    grad[i, a, v] = gv[i, a]
        partial[ch] = total
    return partial.sum()


@nb.njit(cache=True, parallel=True, fastmath=True)
def jacobian_norm(u, eps, joint, dj):
    """The smoothed first-order regulariser of ``u`` (n, nz, ny, nx) from its forward differences (zero across
    the last face): the nuclear norm of each voxel's Jacobian (``joint``, TNV) or the sum of each element's
    gradient norm ``sqrt(|∇u_e|² + ε²) - ε`` (TV). Returns the value; ``dj`` (n, 3, nz, ny, nx) gets its
    derivative with respect to the differences (:func:`difference_adjoint` turns it into one for ``u``)."""
    n, nz, ny, nx = u.shape
    partial = np.zeros(nz)
    for iz in nb.prange(nz):
        m, vec, inv = np.empty((n, n)), np.empty((n, n)), np.empty((n, n))
        jv, gv = np.empty((n, 3)), np.empty((n, 3))
        total = 0.0
        for iy in range(ny):
            for ix in range(nx):
                for i in range(n):
                    c = u[i, iz, iy, ix]
                    jv[i, 0] = u[i, iz + 1, iy, ix] - c if iz < nz - 1 else 0.0
                    jv[i, 1] = u[i, iz, iy + 1, ix] - c if iy < ny - 1 else 0.0
                    jv[i, 2] = u[i, iz, iy, ix + 1] - c if ix < nx - 1 else 0.0
                if joint:
                    total += _nuclear(jv, eps, m, vec, inv, gv)
                else:
                    for i in range(n):
                        r = math.sqrt(jv[i, 0] ** 2 + jv[i, 1] ** 2 + jv[i, 2] ** 2 + eps * eps)
                        total += r - eps
                        for a in range(3):
                            gv[i, a] = jv[i, a] / r
                for i in range(n):
                    for a in range(3):
                        dj[i, a, iz, iy, ix] = gv[i, a]
        partial[iz] = total
    return partial.sum()


@nb.njit(cache=True, parallel=True, fastmath=True)
def difference_adjoint(dj, out):
    """The adjoint of the forward differences: ``out`` (n, nz, ny, nx) from ``dj`` (n, 3, nz, ny, nx)."""
    n, _, nz, ny, nx = dj.shape
    for iz in nb.prange(nz):
        for i in range(n):
            for iy in range(ny):
                for ix in range(nx):
                    v = 0.0
                    if iz < nz - 1:
                        v -= dj[i, 0, iz, iy, ix]
                    if iz > 0:
                        v += dj[i, 0, iz - 1, iy, ix]
                    if iy < ny - 1:
                        v -= dj[i, 1, iz, iy, ix]
                    if iy > 0:
                        v += dj[i, 1, iz, iy - 1, ix]
                    if ix < nx - 1:
                        v -= dj[i, 2, iz, iy, ix]
                    if ix > 0:
                        v += dj[i, 2, iz, iy, ix - 1]
                    out[i, iz, iy, ix] = v


@nb.njit(cache=True, parallel=True)
def add_scaled(out, a, x):
    """``out += a * x`` in place, in one parallel pass without temporaries; compiled without fastmath (no fused
    multiply-add), so the result is numpy's ``out += a * x`` to the last bit."""
    o, v = out.reshape(-1), x.reshape(-1)
    for j in nb.prange(o.size):
        o[j] = o[j] + a * v[j]


# --- the quasi-Newton solver's elementwise passes (``_solver``; its products with the stored pairs are BLAS) ---
#
# ``nb`` unknowns at the front are bounded below by zero: there an unknown is free unless it sits
# at zero with a gradient pushing it below. Serial loops: they are memory-bound, and one core
# streams them about as fast as two.


@nb.njit(cache=True, nogil=True, fastmath=True)
def masked_gradient(z, g, nb_, p, q32, pq32):
    """The projected gradient ``q`` (``g`` on the free unknowns, else 0) into ``q32`` and ``p q`` into ``pq32``
    (float32); returns ``q·q``."""
    qq = 0.0
    for j in range(z.size):
        v = g[j] if (j >= nb_ or z[j] > 0.0 or g[j] < 0.0) else 0.0
        q32[j] = v
        pq32[j] = p[j] * v
        qq += v * v
    return qq


@nb.njit(cache=True, nogil=True, fastmath=True)
def combine_direction(z, g, nb_, p, theta, t32, u32, d):
    """``d = -(θ p (g - t) + u)`` on the free unknowns, 0 elsewhere; returns ``g·d``."""
    gd = 0.0
    for j in range(z.size):
        if j >= nb_ or z[j] > 0.0 or g[j] < 0.0:
            v = -(theta * p[j] * (g[j] - t32[j]) + u32[j])
            d[j] = v
            gd += g[j] * v
        else:
            d[j] = 0.0
    return gd


@nb.njit(cache=True, nogil=True, fastmath=True)
def projected_step(z, d, t, nb_, g, zn):
    """``zn = z + t d``, its first ``nb`` entries clipped at zero; returns ``g·(zn - z)``."""
    acc = 0.0
    for j in range(z.size):
        v = z[j] + t * d[j]
        if j < nb_ and v < 0.0:
            v = 0.0
        zn[j] = v
        acc += g[j] * (v - z[j])
    return acc


@nb.njit(cache=True, nogil=True, fastmath=True)
def write_pair(z, zn, g, gn, p, s_row, y_row, py32):
    """``s_row = zn - z``, ``y_row = gn - g`` and ``py32 = p y`` (float32); returns (s·y, s·s, y·y) of the
    stored values."""
    sy = 0.0
    ss = 0.0
    yy = 0.0
    for j in range(z.size):
        s_row[j] = zn[j] - z[j]
        y_row[j] = gn[j] - g[j]
        sv = np.float64(s_row[j])
        yv = np.float64(y_row[j])
        py32[j] = p[j] * yv
        sy += sv * yv
        ss += sv * sv
        yy += yv * yv
    return sy, ss, yy
