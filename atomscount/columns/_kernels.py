"""All numba kernels of atomscount.

Each kernel has a plain NumPy reference (``atomscount.columns.model``) and a test
that compares the two. Kernels take only arrays and scalars; the Python layers
above them own validation and bookkeeping.

The column model's kernels are column-centric: each column visits the pixels of
its own footprint through separable exponential tables (:func:`exp_tables`).
The Voronoi labelling searches columns sorted into square bins of side
``bin_size`` (at least the search radius): a pixel looks at its own bin and the
eight around it.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

#: Pixel chunks of the parallel sums (chi-square, the global normal equations, Voronoi
#: cells). A fixed number, not the thread count: partial sums then add up in the same
#: order on any machine, and the same image gives bit-identical fits and counts.
REDUCTION_CHUNKS = 16


@nb.njit(cache=True, inline="always")
def _pixel_bin(p, origin, bin_size, nb_):
    b = int(math.floor((p - origin) / bin_size))
    if b < 0:
        b = 0
    elif b > nb_ - 1:
        b = nb_ - 1
    return b


@nb.njit(parallel=True, cache=True)
def exp_tables(x, y, rho, cut, pixel, width):
    """Separable Gaussian factors: ``g_j(r, c) = EX[j, c - c0[j]] * EY[j, r - r0[j]]``.

    ``exp(-d^2 / 2 rho^2)`` factorises into an x and a y part, so a column needs
    ``2 * width`` exponentials instead of one per pixel it covers.
    """
    n = x.shape[0]
    EX = np.zeros((n, width))
    EY = np.zeros((n, width))
    c0 = np.empty(n, dtype=np.int64)
    r0 = np.empty(n, dtype=np.int64)
    for j in nb.prange(n):
        c0[j] = int(math.ceil((x[j] - cut[j]) / pixel))
        r0[j] = int(math.ceil((y[j] - cut[j]) / pixel))
        s = -0.5 / (rho[j] * rho[j])
        for k in range(width):
            dx = (c0[j] + k) * pixel - x[j]
            dy = (r0[j] + k) * pixel - y[j]
            EX[j, k] = math.exp(s * dx * dx)
            EY[j, k] = math.exp(s * dy * dy)
    return EX, EY, c0, r0


@nb.njit(parallel=True, cache=True, fastmath=True)
def render_columns(ny, nx, pixel, x, y, eta, cut2, bg, xc, yc, EX, EY, c0, r0, n_bands):
    """Model image ``bg(x, y) + sum_i eta_i exp(-|r - r_i|^2 / (2 rho_i^2))``, each Gaussian cut at ``sqrt(cut2)``.

    Column-centric: each column adds its separable Gaussian to the pixels of its
    footprint, one multiply-add per pixel. The rows are split into ``n_bands``
    bands, one thread each, so no two threads write the same pixel.
    """
    out = np.empty((ny, nx))
    n = x.shape[0]
    width = EX.shape[1]
    rows_per = (ny + n_bands - 1) // n_bands
    for band in nb.prange(n_bands):
        ra = band * rows_per
        rb = min(ra + rows_per, ny)
        for r in range(ra, rb):
            py = r * pixel - yc
            for c in range(nx):
                out[r, c] = bg[0] + bg[1] * (c * pixel - xc) + bg[2] * py
        for j in range(n):
            lo = max(ra, r0[j])
            hi = min(rb, r0[j] + width)
            if lo >= hi:
                continue
            clo = max(0, c0[j])
            chi = min(nx, c0[j] + width)
            for r in range(lo, hi):
                dy = r * pixel - y[j]
                ey = eta[j] * EY[j, r - r0[j]]
                for c in range(clo, chi):
                    dx = c * pixel - x[j]
                    if dx * dx + dy * dy < cut2[j]:
                        out[r, c] += ey * EX[j, c - c0[j]]
    return out


@nb.njit(parallel=True, cache=True)
def weighted_chi2(data, weights, model):
    """``sum(weights * (data - model)**2)``, computed row-parallel."""
    ny, nx = data.shape
    acc = np.zeros(ny)
    for r in nb.prange(ny):
        s = 0.0
        for c in range(nx):
            d = data[r, c] - model[r, c]
            s += weights[r, c] * d * d
        acc[r] = s
    return acc.sum()


@nb.njit(cache=True, inline="always")
def _find(indptr, indices, row, col):
    lo = indptr[row]
    hi = indptr[row + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        v = indices[mid]
        if v < col:
            lo = mid + 1
        elif v > col:
            hi = mid
        else:
            return mid
    return -1


@nb.njit(parallel=True, cache=True, fastmath=True)
def width_derivative_images(ny, nx, pixel, x, y, eta, rho, cut2, ctype, n_types, EX, EY, c0, r0, n_bands):
    """``d model / d rho_t`` for each column type ``t``: one image per type (shared widths).

    Column-centric like :func:`render_columns`: ``sum_j eta_j g_j d_j^2 / rho_j^3`` over the
    columns of the type, each within its cut-off.
    """
    out = np.zeros((n_types, ny, nx))
    n = x.shape[0]
    width = EX.shape[1]
    rows_per = (ny + n_bands - 1) // n_bands
    for band in nb.prange(n_bands):
        ra = band * rows_per
        rb = min(ra + rows_per, ny)
        for j in range(n):
            lo = max(ra, r0[j])
            hi = min(rb, r0[j] + width)
            if lo >= hi:
                continue
            clo = max(0, c0[j])
            chi = min(nx, c0[j] + width)
            t = ctype[j]
            f = eta[j] / (rho[j] * rho[j] * rho[j])
            for r in range(lo, hi):
                dy = r * pixel - y[j]
                ey = f * EY[j, r - r0[j]]
                for c in range(clo, chi):
                    dx = c * pixel - x[j]
                    d2 = dx * dx + dy * dy
                    if d2 < cut2[j]:
                        out[t, r, c] += ey * EX[j, c - c0[j]] * d2
    return out


@nb.njit(cache=True, fastmath=True, inline="always")
def _derivs(j, r, c, pixel, x, y, eta, rho, EX, EY, c0, r0, free_width, out):
    """``d model / d (x_j, y_j, eta_j[, rho_j])`` at pixel (r, c) into ``out``; returns d^2."""
    dx = c * pixel - x[j]
    dy = r * pixel - y[j]
    d2 = dx * dx + dy * dy
    r2 = rho[j] * rho[j]
    g = EX[j, c - c0[j]] * EY[j, r - r0[j]]
    eg = eta[j] * g
    out[0] = eg * dx / r2
    out[1] = eg * dy / r2
    out[2] = g
    if free_width:
        out[3] = eg * d2 / (r2 * rho[j])
    return d2


@nb.njit(cache=True, inline="always")
def _global_derivs(r, c, pixel, xc, yc, n_bg, n_types, free_width, dwidth, out):
    """``d model / d (c0[, cx, cy][, rho_t...])`` at pixel (r, c) into ``out``."""
    out[0] = 1.0
    if n_bg == 3:
        out[1] = c * pixel - xc
        out[2] = r * pixel - yc
    if not free_width:
        for t in range(n_types):
            out[n_bg + t] = dwidth[t, r, c]


@nb.njit(parallel=True, cache=True, fastmath=True)
def normal_equations(
    data, model, weights, pixel, x, y, eta, rho, cut2, cutj2, bg, xc, yc, free_width, n_bg, n_types, dwidth,
    blk_indptr, blk_indices, n_chunks, EX, EY, c0, r0,
):  # fmt: skip
    """Accumulate the Gauss-Newton normal equations of the column model.

    Local parameters per column are ``(x, y, eta[, rho])``; the ``G = n_bg + n_types``
    global parameters are the background coefficients ``(c0[, cx, cy])`` and, when
    widths are shared, one width per column type, whose derivative images
    ``dwidth`` (n_types, ny, nx) come from :func:`width_derivative_images`.

    Column-centric: each column visits the pixels of its own footprint (from the
    separable tables of :func:`exp_tables`), so the columns run in parallel and
    write only their own rows. The residual is ``data - model`` with the full
    model passed in. The gradient and the column-global parts use every pixel
    within a column's cut-off ``sqrt(cut2)``, so the minimum is that of the full
    model; the column-column blocks pair columns only where both lie within the
    smaller ``sqrt(cutj2)`` (an approximate Hessian: it changes the path to the
    minimum, not the minimum). Pairs are the upper triangle of the pattern
    ``blk_indptr, blk_indices``, which must hold every pair closer than
    ``sqrt(cutj2_i) + sqrt(cutj2_j)``.

    Returns
    -------
    blocks : (nnzb, b, b)
        Upper-triangle blocks ``J_i^T W J_j`` (``i <= j``) in the pattern.
    cross : (n, b, G)
        ``J_i^T W J_global``.
    glob : (G, G)
        ``J_global^T W J_global``.
    grad_local : (n, b), grad_global : (G,)
        ``J^T W r`` with ``r = data - model``.
    chi2 : float
        ``sum W r^2``.
    """
    ny, nx = data.shape
    n = x.shape[0]
    b = 4 if free_width else 3
    G = n_bg + (0 if free_width else n_types)
    nnzb = blk_indices.shape[0]
    width = EX.shape[1]
    blocks = np.zeros((nnzb, b, b))
    cross = np.zeros((n, b, G))
    gl = np.zeros((n, b))
    for i in nb.prange(n):
        Di = np.empty(4)
        Dj = np.empty(4)
        acc = np.empty((4, 4))
        DG = np.empty(G)
        rlo = max(0, r0[i])
        rhi = min(ny, r0[i] + width)
        clo = max(0, c0[i])
        chi = min(nx, c0[i] + width)
        row_hi = blk_indptr[i + 1]
        diag = blk_indptr[i]  # the pattern's rows are sorted, so the pairs j > i follow the diagonal
        while blk_indices[diag] != i:
            diag += 1
        for r in range(rlo, rhi):
            py = r * pixel
            # only the pixels of this row inside the cut-off circle
            dy = py - y[i]
            half2 = cut2[i] - dy * dy
            if half2 <= 0.0:
                continue
            half = math.sqrt(half2)
            ca = max(clo, int(math.ceil((x[i] - half) / pixel)))
            cb = min(chi, int(math.floor((x[i] + half) / pixel)) + 1)
            for c in range(ca, cb):
                w = weights[r, c]
                if w == 0.0:
                    continue
                d2 = _derivs(i, r, c, pixel, x, y, eta, rho, EX, EY, c0, r0, free_width, Di)
                if d2 >= cut2[i]:
                    continue
                wr = w * (data[r, c] - model[r, c])
                _global_derivs(r, c, pixel, xc, yc, n_bg, n_types, free_width, dwidth, DG)
                for p in range(b):
                    gl[i, p] += wr * Di[p]
                    wd = w * Di[p]
                    for q in range(G):
                        cross[i, p, q] += wd * DG[q]
        # the blocks (i, j >= i): only the pixels where both lie within their smaller cut-off
        for loc in range(diag, row_hi):
            j = blk_indices[loc]
            for p in range(b):
                for p2 in range(b):
                    acc[p, p2] = 0.0
            ra = max(0, int(math.ceil((max(y[i] - math.sqrt(cutj2[i]), y[j] - math.sqrt(cutj2[j]))) / pixel)) - 1)
            rb = min(ny, int(math.floor(min(y[i] + math.sqrt(cutj2[i]), y[j] + math.sqrt(cutj2[j])) / pixel)) + 2)
            for r in range(ra, rb):
                py = r * pixel
                hi2 = cutj2[i] - (py - y[i]) ** 2
                hj2 = cutj2[j] - (py - y[j]) ** 2
                if hi2 <= 0.0 or hj2 <= 0.0:
                    continue
                hi_ = math.sqrt(hi2)
                hj_ = math.sqrt(hj2)
                ca = max(0, int(math.ceil(max(x[i] - hi_, x[j] - hj_) / pixel)) - 1)
                cb = min(nx, int(math.floor(min(x[i] + hi_, x[j] + hj_) / pixel)) + 2)
                for c in range(ca, cb):
                    w = weights[r, c]
                    if w == 0.0:
                        continue
                    # test the distances before touching the tables (the +-1 margins reach past them)
                    if (c * pixel - x[i]) ** 2 + (py - y[i]) ** 2 >= cutj2[i]:
                        continue
                    if (c * pixel - x[j]) ** 2 + (py - y[j]) ** 2 >= cutj2[j]:
                        continue
                    _derivs(i, r, c, pixel, x, y, eta, rho, EX, EY, c0, r0, free_width, Di)
                    if j != i:
                        _derivs(j, r, c, pixel, x, y, eta, rho, EX, EY, c0, r0, free_width, Dj)
                    else:
                        for p in range(b):
                            Dj[p] = Di[p]
                    for p in range(b):
                        wd = w * Di[p]
                        for p2 in range(b):
                            acc[p, p2] += wd * Dj[p2]
            for p in range(b):
                for p2 in range(b):
                    blocks[loc, p, p2] = acc[p, p2]
    # the global parameters and chi2: one pass over the pixels
    glob = np.zeros((n_chunks, G, G))
    gg = np.zeros((n_chunks, G))
    chi2 = np.zeros(n_chunks)
    rows_per = (ny + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        DG = np.empty(G)
        for r in range(ch * rows_per, min((ch + 1) * rows_per, ny)):
            py = r * pixel
            for c in range(nx):
                w = weights[r, c]
                if w == 0.0:
                    continue
                res = data[r, c] - model[r, c]
                wr = w * res
                chi2[ch] += wr * res
                _global_derivs(r, c, pixel, xc, yc, n_bg, n_types, free_width, dwidth, DG)
                for q in range(G):
                    gg[ch, q] += wr * DG[q]
                    for q2 in range(G):
                        glob[ch, q, q2] += w * DG[q] * DG[q2]
    return blocks, cross, glob.sum(axis=0), gl, gg.sum(axis=0), chi2.sum()


@nb.njit(parallel=True, cache=True)
def local_inverse_blocks(indptr, indices, blocks, diag_loc):
    """Diagonal blocks of ``A^-1`` for a block-sparse SPD matrix, from local patches.

    For each column ``i`` the dense sub-matrix over ``i`` and its pattern
    neighbours is inverted and its ``(i, i)`` block kept. Because the coupling
    between columns falls off like their Gaussian overlap, the neglected terms are
    second order in the overlap with the next ring of neighbours.
    """
    n = indptr.shape[0] - 1
    b = blocks.shape[1]
    out = np.empty((n, b, b))
    for i in nb.prange(n):
        lo = indptr[i]
        hi = indptr[i + 1]
        patch = indices[lo:hi]
        p = patch.shape[0]
        M = np.zeros((p * b, p * b))
        for u in range(p):
            cu = patch[u]
            for v in range(p):
                loc = _find(indptr, indices, cu, patch[v])
                if loc >= 0:
                    M[u * b : (u + 1) * b, v * b : (v + 1) * b] = blocks[loc]
        # a column with no pixels would make M singular; a ridge far below any real
        # curvature keeps the solve defined without changing well-posed blocks
        mx = 0.0
        for d in range(p * b):
            mx = max(mx, M[d, d])
        for d in range(p * b):
            M[d, d] += 1e-13 * mx + 1e-300
        # position of i in its own patch
        pos = 0
        for u in range(p):
            if patch[u] == i:
                pos = u
        E = np.zeros((p * b, b))
        for q in range(b):
            E[pos * b + q, q] = 1.0
        sol = np.linalg.solve(M, E)
        out[i] = sol[pos * b : (pos + 1) * b, :]
    return out


@nb.njit(parallel=True, cache=True)
def voronoi_sums(labels, values, n, nth):
    """Sum ``values`` and count pixels per label (``-1`` means unassigned), in ``nth`` chunks."""
    ny, nx = labels.shape
    sums = np.zeros((nth, n))
    counts = np.zeros((nth, n), dtype=np.int64)
    rows_per = (ny + nth - 1) // nth
    for t in nb.prange(nth):
        for r in range(t * rows_per, min((t + 1) * rows_per, ny)):
            for c in range(nx):
                lab = labels[r, c]
                if lab >= 0:
                    sums[t, lab] += values[r, c]
                    counts[t, lab] += 1
    return sums.sum(axis=0), counts.sum(axis=0)


@nb.njit(parallel=True, cache=True)
def nearest_labels(
    ny, nx, pixel, x, y, max_r2, bin_start, bin_cols, nbx, nby, origin_x, origin_y, bin_size
):  # fmt: skip
    """Label each pixel with its nearest column within ``sqrt(max_r2)`` (else ``-1``).

    ``bin_size`` must be at least the search radius. This is the Voronoi tessellation
    of the column positions, clipped to a disc around each column.
    """
    out = np.full((ny, nx), -1, dtype=np.int64)
    for r in nb.prange(ny):
        py = r * pixel
        by = _pixel_bin(py, origin_y, bin_size, nby)
        for c in range(nx):
            px = c * pixel
            bx = _pixel_bin(px, origin_x, bin_size, nbx)
            best = max_r2
            lab = -1
            for j in range(max(by - 1, 0), min(by + 2, nby)):
                for i in range(max(bx - 1, 0), min(bx + 2, nbx)):
                    b = j * nbx + i
                    for k in range(bin_start[b], bin_start[b + 1]):
                        col = bin_cols[k]
                        dx = px - x[col]
                        dy = py - y[col]
                        d2 = dx * dx + dy * dy
                        if d2 < best or (d2 == best and lab >= 0 and col < lab):
                            best = d2
                            lab = col
            out[r, c] = lab
    return out


@nb.njit(parallel=True, cache=True)
def poisson_merit(data, mask, model, floor):
    """``sum(mask * (m - y ln m))`` with ``m = max(model, floor)``: the Poisson negative
    log-likelihood up to terms that do not depend on the model (quasi-likelihood for
    any real ``y``)."""
    ny, nx = data.shape
    acc = np.zeros(ny)
    for r in nb.prange(ny):
        s = 0.0
        for c in range(nx):
            if mask[r, c] != 0.0:
                m = max(model[r, c], floor)
                s += m - data[r, c] * math.log(m)
        acc[r] = s
    return acc.sum()
