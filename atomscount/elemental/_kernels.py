"""numba kernels of the elemental stage: the smoothed total nuclear variation, voxel by voxel.

The joint regulariser needs, at every voxel, the nuclear norm of the Jacobian J
(n_el × 3) of the stacked element volumes, smoothed as ``tr sqrt(J Jᵀ + ε² I) - n_el ε``,
and its derivative ``(J Jᵀ + ε² I)^(-1/2) J``. numpy's batched ``eigh`` on millions of
2×2 or 3×3 matrices costs seconds per call; this kernel diagonalises each small
matrix by cyclic Jacobi rotations in a parallel loop, and skips the flat voxels
(outside the particle) where the smoothing alone counts.
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


@nb.njit(cache=True, parallel=True, fastmath=True)
def tnv_value_grad(jac, eps, grad):
    """Smoothed nuclear norm of each voxel's Jacobian: ``jac`` (n_el, 3, V) → its sum over voxels, and
    ``grad`` (n_el, 3, V) = ``(J Jᵀ + ε² I)^(-1/2) J`` per voxel."""
    n, d, nv = jac.shape
    n_chunks = 64
    partial = np.zeros(n_chunks)
    step = (nv + n_chunks - 1) // n_chunks
    e2 = eps * eps
    for ch in nb.prange(n_chunks):
        m = np.empty((n, n))
        vec = np.empty((n, n))
        inv = np.empty((n, n))
        total = 0.0
        for v in range(ch * step, min(nv, (ch + 1) * step)):
            sq = 0.0
            for i in range(n):
                for a in range(d):
                    sq += jac[i, a, v] * jac[i, a, v]
            if sq <= 1e-12 * e2:  # flat (outside the particle): sqrt(ε² + λ) - ε = λ / 2ε to 1e-12
                total += 0.5 * sq / eps
                for i in range(n):
                    for a in range(d):
                        grad[i, a, v] = jac[i, a, v] / eps
                continue
            for i in range(n):
                for j in range(i, n):
                    s = 0.0
                    for a in range(d):
                        s += jac[i, a, v] * jac[j, a, v]
                    m[i, j] = s
                    m[j, i] = s
                m[i, i] += e2
            _jacobi_eigen(m, vec)
            for i in range(n):
                lam = max(m[i, i], e2)
                total += math.sqrt(lam) - eps
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
                        s += inv[i, k] * jac[k, a, v]
                    grad[i, a, v] = s
        partial[ch] = total
    return partial.sum()
