"""numba kernels of the tomography stage: Gaussian rendering, and projector / back-projector pairs.

Geometry (shared by every kernel). A volume ``vol[iz, iy, ix]`` of cubic voxels of
side ``pixel`` is centred on the origin: voxel (iz, iy, ix) sits at
``p = ((ix - cx), (iy - cy), (iz - cz)) * pixel`` with ``c = (n - 1) / 2``.
Projection k rotates the object by ``R_k`` (``q = R_k p``) and integrates along
``q_z``; ``q_x`` runs along the image columns and ``q_y`` along its rows, with the
image centred the same way. Each voxel's value is spread over the four nearest
pixels with bilinear weights (times the voxel side, the path length); the
back-projector gathers with the same weights, so the pair is exactly adjoint
(``<A x, y> = <x, A^T y>``), which the tests check.

The single-axis kernels do the same in 2D for one slice normal to the tilt axis
(the image rows): ``slice[iz, ix]`` and a sinogram ``sino[k, iu]``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _erf_cdf(t):
    return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))


@nb.njit(cache=True, nogil=True)
def render_gaussians(u, v, amplitude, sigma, pixel, out):
    """Add 2D Gaussians (centres u, v [Å] from the image centre, integrals ``amplitude``, widths
    ``sigma`` [Å]) to ``out`` (rows, cols), each pixel getting the exact integral over its area."""
    nv, nu = out.shape
    cu, cv = (nu - 1) / 2.0, (nv - 1) / 2.0
    for a in range(u.shape[0]):
        s = sigma[a]
        # pixel edges in units of sigma, relative to the centre
        x0 = u[a] / pixel + cu
        y0 = v[a] / pixel + cv
        r = 5.0 * s / pixel + 1.0
        i_lo, i_hi = max(0, int(math.floor(x0 - r))), min(nu - 1, int(math.ceil(x0 + r)))
        j_lo, j_hi = max(0, int(math.floor(y0 - r))), min(nv - 1, int(math.ceil(y0 + r)))
        if i_lo > i_hi or j_lo > j_hi:
            continue
        wx = np.empty(i_hi - i_lo + 1)
        for i in range(i_lo, i_hi + 1):
            wx[i - i_lo] = _erf_cdf((i + 0.5 - x0) * pixel / s) - _erf_cdf((i - 0.5 - x0) * pixel / s)
        for j in range(j_lo, j_hi + 1):
            wy = _erf_cdf((j + 0.5 - y0) * pixel / s) - _erf_cdf((j - 0.5 - y0) * pixel / s)
            if wy == 0.0:
                continue
            for i in range(i_lo, i_hi + 1):
                out[j, i] += amplitude[a] * wy * wx[i - i_lo]


@nb.njit(cache=True, nogil=True)
def _splat_weights(qx, qy, cu, cv, pixel):
    fx = qx / pixel + cu
    fy = qy / pixel + cv
    i0 = int(math.floor(fx))
    j0 = int(math.floor(fy))
    return i0, j0, fx - i0, fy - j0


@nb.njit(cache=True, parallel=True)
def project(vol, rot, pixel, out):
    """Forward projection of ``vol`` (nz, ny, nx) for rotations ``rot`` (k, 3, 3) into ``out`` (k, nv, nu)."""
    nz, ny, nx = vol.shape
    nk, nv, nu = out.shape
    cx, cy, cz = (nx - 1) / 2.0, (ny - 1) / 2.0, (nz - 1) / 2.0
    cu, cv = (nu - 1) / 2.0, (nv - 1) / 2.0
    for k in nb.prange(nk):
        r = rot[k]
        img = out[k]
        img[:, :] = 0.0
        for iz in range(nz):
            pz = (iz - cz) * pixel
            for iy in range(ny):
                py = (iy - cy) * pixel
                for ix in range(nx):
                    f = vol[iz, iy, ix]
                    if f == 0.0:
                        continue
                    px = (ix - cx) * pixel
                    qx = r[0, 0] * px + r[0, 1] * py + r[0, 2] * pz
                    qy = r[1, 0] * px + r[1, 1] * py + r[1, 2] * pz
                    i0, j0, ax, ay = _splat_weights(qx, qy, cu, cv, pixel)
                    f = f * pixel
                    for dj in range(2):
                        j = j0 + dj
                        if j < 0 or j >= nv:
                            continue
                        wy = ay if dj else 1.0 - ay
                        for di in range(2):
                            i = i0 + di
                            if i < 0 or i >= nu:
                                continue
                            img[j, i] += f * wy * (ax if di else 1.0 - ax)


@nb.njit(cache=True, parallel=True)
def backproject(proj, rot, pixel, out):
    """Adjoint of :func:`project`: ``out`` (nz, ny, nx) = A^T ``proj`` (k, nv, nu)."""
    nz, ny, nx = out.shape
    nk, nv, nu = proj.shape
    cx, cy, cz = (nx - 1) / 2.0, (ny - 1) / 2.0, (nz - 1) / 2.0
    cu, cv = (nu - 1) / 2.0, (nv - 1) / 2.0
    for iz in nb.prange(nz):
        pz = (iz - cz) * pixel
        for iy in range(ny):
            py = (iy - cy) * pixel
            for ix in range(nx):
                px = (ix - cx) * pixel
                total = 0.0
                for k in range(nk):
                    r = rot[k]
                    qx = r[0, 0] * px + r[0, 1] * py + r[0, 2] * pz
                    qy = r[1, 0] * px + r[1, 1] * py + r[1, 2] * pz
                    i0, j0, ax, ay = _splat_weights(qx, qy, cu, cv, pixel)
                    for dj in range(2):
                        j = j0 + dj
                        if j < 0 or j >= nv:
                            continue
                        wy = ay if dj else 1.0 - ay
                        for di in range(2):
                            i = i0 + di
                            if i < 0 or i >= nu:
                                continue
                            total += proj[k, j, i] * wy * (ax if di else 1.0 - ax)
                out[iz, iy, ix] = total * pixel


@nb.njit(cache=True, nogil=True, fastmath=True)
def _inner_span(base, c, nx, nu):
    """The columns ix in [lo, hi) whose detector coordinate ``fu = base + c * ix`` has both of its pixels
    (floor(fu) and the next) on the detector: there the slice kernels skip their bounds tests."""
    if c > 0.0:
        lo = math.ceil(-base / c)
        hi = math.ceil((nu - 1 - base) / c)
    elif c < 0.0:
        lo = math.floor((nu - 1 - base) / c) + 1
        hi = math.floor(-base / c) + 1
    else:
        return (0, nx) if 0.0 <= base < nu - 1 else (0, 0)
    lo = min(max(int(lo), 0), nx)
    return lo, min(max(int(hi), lo), nx)


@nb.njit(cache=True, nogil=True, fastmath=True)
def project_slice(sl, cos_t, sin_t, pixel, out):
    """2D forward projection of ``sl`` (nz, nx) for tilts about the image rows into ``out`` (k, nu).

    Tilt k rotates (x, z) by the angle whose cosine and sine are given: u = x cos + z sin.
    Loops run tilt by tilt and along x, where the detector coordinate grows by ``cos`` per
    voxel, so that one detector row is written at a time. The SIRT kernels are compiled
    with ``fastmath`` (reassociated sums: 1.15x, results equal to 1e-14).
    """
    nz, nx = sl.shape
    nk, nu = out.shape
    cx, cz, cu = (nx - 1) / 2.0, (nz - 1) / 2.0, (nu - 1) / 2.0
    out[:, :] = 0.0
    for k in range(nk):
        c = cos_t[k]
        row = out[k]
        for iz in range(nz):
            base = sin_t[k] * (iz - cz) - c * cx + cu
            lo, hi = _inner_span(base, c, nx, nu)
            for ix in range(lo, hi):
                f = sl[iz, ix] * pixel
                fu = base + c * ix
                i0 = int(fu)
                a = fu - i0
                row[i0] += f * (1.0 - a)
                row[i0 + 1] += f * a
            for ix in range(nx):
                if lo <= ix < hi:
                    continue
                f = sl[iz, ix] * pixel
                fu = base + c * ix
                i0 = int(math.floor(fu))
                a = fu - i0
                if 0 <= i0 < nu:
                    row[i0] += f * (1.0 - a)
                if 0 <= i0 + 1 < nu:
                    row[i0 + 1] += f * a


@nb.njit(cache=True, nogil=True, fastmath=True)
def backproject_slice(sino, cos_t, sin_t, pixel, out):
    """Adjoint of :func:`project_slice`: ``out`` (nz, nx) = A^T ``sino`` (k, nu)."""
    nz, nx = out.shape
    nk, nu = sino.shape
    cx, cz, cu = (nx - 1) / 2.0, (nz - 1) / 2.0, (nu - 1) / 2.0
    out[:, :] = 0.0
    for k in range(nk):
        c = cos_t[k]
        row = sino[k]
        for iz in range(nz):
            base = sin_t[k] * (iz - cz) - c * cx + cu
            lo, hi = _inner_span(base, c, nx, nu)
            o = out[iz]
            for ix in range(lo, hi):
                fu = base + c * ix
                i0 = int(fu)
                a = fu - i0
                o[ix] += row[i0] * (1.0 - a) + row[i0 + 1] * a
            for ix in range(nx):
                if lo <= ix < hi:
                    continue
                fu = base + c * ix
                i0 = int(math.floor(fu))
                a = fu - i0
                t = 0.0
                if 0 <= i0 < nu:
                    t += row[i0] * (1.0 - a)
                if 0 <= i0 + 1 < nu:
                    t += row[i0 + 1] * a
                o[ix] += t
    for iz in range(nz):
        for ix in range(nx):
            out[iz, ix] *= pixel


@nb.njit(cache=True, nogil=True, fastmath=True)
def sirt_slices(sinos, cos_t, sin_t, pixel, n_iter, positivity, support, out, r1_num, r1_den, relaxation=1.0):
    """SIRT on a block of slices: ``sinos`` (s, k, nu) → ``out`` (s, nz, nx).

    For the R1 factor, ``r1_num[s, it, k]`` gets sum |b - A x| of slice s, iteration it
    and projection k (before that iteration's update), and ``r1_den[s, k]`` sum |b|.

    x <- x + relaxation C A^T R (b - A x), R and C the inverse row and column sums of A, then
    clipped at 0 with ``positivity``; ``support`` (nz, nx) of 0/1 masks the slice.
    """
    ns, nk, nu = sinos.shape
    nz, nx = out.shape[1], out.shape[2]
    ones_img = np.ones((nz, nx))
    row = np.empty((nk, nu))
    project_slice(ones_img * support, cos_t, sin_t, pixel, row)
    ones_sino = np.ones((nk, nu))
    col = np.empty((nz, nx))
    backproject_slice(ones_sino, cos_t, sin_t, pixel, col)
    for a in range(nk):
        for b in range(nu):
            row[a, b] = 1.0 / row[a, b] if row[a, b] > 1e-12 else 0.0
    for a in range(nz):
        for b in range(nx):
            col[a, b] = support[a, b] / col[a, b] if col[a, b] > 1e-12 else 0.0
    fwd = np.empty((nk, nu))
    upd = np.empty((nz, nx))
    for s in range(ns):
        x = out[s]
        b_s = sinos[s]
        for a in range(nk):
            den = 0.0
            for c in range(nu):
                den += abs(b_s[a, c])
            r1_den[s, a] = den
        for it in range(n_iter):
            project_slice(x, cos_t, sin_t, pixel, fwd)
            for a in range(nk):
                num = 0.0
                for c in range(nu):
                    d = b_s[a, c] - fwd[a, c]
                    num += abs(d)
                    fwd[a, c] = d * row[a, c]
                r1_num[s, it, a] = num
            backproject_slice(fwd, cos_t, sin_t, pixel, upd)
            for a in range(nz):
                for c in range(nx):
                    v = x[a, c] + relaxation * col[a, c] * upd[a, c]
                    x[a, c] = max(v, 0.0) if positivity else v


@nb.njit(cache=True, parallel=True)
def reclassify_round(profiles, labels, nbr_start, nbr, n_classes, new):
    """One round of the local reclassification: ``new[i]`` is the class whose average profile among
    atom i's neighbours (CSR ``nbr_start``/``nbr``, itself excluded) is nearest its own (least squares);
    an atom with no neighbours keeps its class."""
    n, d = profiles.shape
    for i in nb.prange(n):
        sums = np.zeros((n_classes, d))
        counts = np.zeros(n_classes)
        for q in range(nbr_start[i], nbr_start[i + 1]):
            j = nbr[q]
            c = labels[j]
            counts[c] += 1.0
            for t in range(d):
                sums[c, t] += profiles[j, t]
        best = labels[i]
        best_d = np.inf
        for c in range(n_classes):
            if counts[c] == 0.0:
                continue
            dist = 0.0
            for t in range(d):
                diff = profiles[i, t] - sums[c, t] / counts[c]
                dist += diff * diff
            if dist < best_d:
                best_d = dist
                best = c
        new[i] = best


# --- atoms as Gaussians: projection and the per-atom normal equations (model refinement) ---


@nb.njit(cache=True, nogil=True)
def _axis_weights(x0, s, pixel, lo, n, w, dw, deriv=True):
    """Pixel integrals ``w`` of a unit 1D Gaussian centred at fractional pixel ``x0`` (width ``s`` [Å])
    over pixels lo..lo+n-1, and (with ``deriv``) their derivatives ``dw`` with respect to the centre [1/Å]."""
    inv = pixel / s
    c = 1.0 / math.sqrt(2.0 * math.pi)
    t_lo = (lo - 0.5 - x0) * inv
    f_lo = _erf_cdf(t_lo)
    p_lo = c * math.exp(-0.5 * t_lo * t_lo) if deriv else 0.0
    for m in range(n):
        t_hi = t_lo + inv
        f_hi = _erf_cdf(t_hi)
        w[m] = f_hi - f_lo
        if deriv:
            p_hi = c * math.exp(-0.5 * t_hi * t_hi)
            dw[m] = -(p_hi - p_lo) / s
            p_lo = p_hi
        t_lo, f_lo = t_hi, f_hi


@nb.njit(cache=True, nogil=True)
def _atom_window(r, p, s, pixel, n_sigma, nu, nv):
    """Fractional pixel centre (x0, y0) of an atom at ``p`` under rotation ``r``, and the pixel window
    (i_lo, i_hi, j_lo, j_hi) its Gaussian of width ``s`` covers out to ``n_sigma`` widths."""
    x0 = (r[0, 0] * p[0] + r[0, 1] * p[1] + r[0, 2] * p[2]) / pixel + (nu - 1) / 2.0
    y0 = (r[1, 0] * p[0] + r[1, 1] * p[1] + r[1, 2] * p[2]) / pixel + (nv - 1) / 2.0
    h = n_sigma * s / pixel + 1.0
    i_lo, i_hi = max(0, int(math.floor(x0 - h))), min(nu - 1, int(math.ceil(x0 + h)))
    j_lo, j_hi = max(0, int(math.floor(y0 - h))), min(nv - 1, int(math.ceil(y0 + h)))
    return x0, y0, i_lo, i_hi, j_lo, j_hi


@nb.njit(cache=True, parallel=True)
def project_atoms(pos, amp, sigma, rot, pixel, n_sigma, out):
    """``out`` (k, nv, nu) = the projections of Gaussian atoms (integrals ``amp``, widths ``sigma``),
    each pixel holding the exact integral over its area, cut at ``n_sigma`` widths."""
    nk, nv, nu = out.shape
    for k in nb.prange(nk):
        r = rot[k]
        img = out[k]
        img[:, :] = 0.0
        wx = np.empty(nu)
        dwx = np.empty(nu)
        wy = np.empty(nv)
        dwy = np.empty(nv)
        for a in range(pos.shape[0]):
            x0, y0, i_lo, i_hi, j_lo, j_hi = _atom_window(r, pos[a], sigma[a], pixel, n_sigma, nu, nv)
            if i_lo > i_hi or j_lo > j_hi:
                continue
            _axis_weights(x0, sigma[a], pixel, i_lo, i_hi - i_lo + 1, wx, dwx, False)
            _axis_weights(y0, sigma[a], pixel, j_lo, j_hi - j_lo + 1, wy, dwy, False)
            for j in range(j_lo, j_hi + 1):
                f = amp[a] * wy[j - j_lo]
                for i in range(i_lo, i_hi + 1):
                    img[j, i] += f * wx[i - i_lo]


@nb.njit(cache=True, parallel=True)
def atom_normal_blocks(pos, amp, sigma, rot, pixel, n_sigma, res, jtr, jtj):
    """Per atom a, over every projection: ``jtr[a]`` = J_a^T res and ``jtj[a]`` = J_a^T J_a,
    J_a the derivatives of the projections :func:`project_atoms` makes with respect to the atom's
    integral and its x, y, z (in that order)."""
    nk, nv, nu = res.shape
    for a in nb.prange(pos.shape[0]):
        wx = np.empty(nu)
        dwx = np.empty(nu)
        wy = np.empty(nv)
        dwy = np.empty(nv)
        g = np.zeros(4)
        hh = np.zeros((4, 4))
        for k in range(nk):
            r = rot[k]
            x0, y0, i_lo, i_hi, j_lo, j_hi = _atom_window(r, pos[a], sigma[a], pixel, n_sigma, nu, nv)
            if i_lo > i_hi or j_lo > j_hi:
                continue
            _axis_weights(x0, sigma[a], pixel, i_lo, i_hi - i_lo + 1, wx, dwx)
            _axis_weights(y0, sigma[a], pixel, j_lo, j_hi - j_lo + 1, wy, dwy)
            # in (integral, u, v), then through d(u, v)/d(x, y, z) = rows 0 and 1 of R_k
            s0 = 0.0
            su = 0.0
            sv = 0.0
            h00 = 0.0
            h0u = 0.0
            h0v = 0.0
            huu = 0.0
            huv = 0.0
            hvv = 0.0
            for j in range(j_lo, j_hi + 1):
                y = wy[j - j_lo]
                dy = dwy[j - j_lo]
                for i in range(i_lo, i_hi + 1):
                    e = res[k, j, i]
                    j0 = y * wx[i - i_lo]
                    s0 += j0 * e
                    ju = amp[a] * y * dwx[i - i_lo]
                    jv = amp[a] * dy * wx[i - i_lo]
                    su += ju * e
                    sv += jv * e
                    h00 += j0 * j0
                    h0u += j0 * ju
                    h0v += j0 * jv
                    huu += ju * ju
                    huv += ju * jv
                    hvv += jv * jv
            g[0] += s0
            hh[0, 0] += h00
            for c in range(3):
                g[1 + c] += su * r[0, c] + sv * r[1, c]
                hh[0, 1 + c] += h0u * r[0, c] + h0v * r[1, c]
                for d in range(3):
                    hh[1 + c, 1 + d] += (huu * r[0, c] * r[0, d] + huv * (r[0, c] * r[1, d] + r[1, c] * r[0, d])
                                         + hvv * r[1, c] * r[1, d])  # fmt: skip
        for c in range(1, 4):
            hh[c, 0] = hh[0, c]
        for c in range(4):
            jtr[a, c] = g[c]
            for d in range(4):
                jtj[a, c, d] = hh[c, d]


@nb.njit(cache=True, parallel=True)
def adjoint_atoms(pos, sigma, rot, pixel, n_sigma, res, out):
    """Adjoint of :func:`project_atoms` with unit integrals, per projection: ``out[k, a]`` = the sum of
    ``res[k]`` weighted by atom a's pixel integrals (sum over k for A^T res)."""
    nk, nv, nu = res.shape
    for k in nb.prange(nk):
        r = rot[k]
        img = res[k]
        wx = np.empty(nu)
        dwx = np.empty(nu)
        wy = np.empty(nv)
        dwy = np.empty(nv)
        for a in range(pos.shape[0]):
            x0, y0, i_lo, i_hi, j_lo, j_hi = _atom_window(r, pos[a], sigma[a], pixel, n_sigma, nu, nv)
            total = 0.0
            if i_lo <= i_hi and j_lo <= j_hi:
                _axis_weights(x0, sigma[a], pixel, i_lo, i_hi - i_lo + 1, wx, dwx, False)
                _axis_weights(y0, sigma[a], pixel, j_lo, j_hi - j_lo + 1, wy, dwy, False)
                for j in range(j_lo, j_hi + 1):
                    row = 0.0
                    for i in range(i_lo, i_hi + 1):
                        row += img[j, i] * wx[i - i_lo]
                    total += row * wy[j - j_lo]
            out[k, a] = total


#: Rows (tilt-axis slices) that the multi-channel kernels handle together: the detector coordinate and
#: its bilinear weights are computed once per (tilt, voxel column) for all of them and all channels, and
#: the innermost loop runs over ``channels × rows`` contiguous values, which vectorises.
_ROWS = 16


@nb.njit(cache=True, parallel=True, fastmath=True)
def project_channels(vol, cos_t, sin_t, pixel, out):
    """:func:`project_slice` of every slice of every channel: ``vol`` (nc, nz, ny, nx) → ``out`` (nc, k, ny, nu).

    Blocks of :data:`_ROWS` slices (the tilt axis y) run in parallel. Each voxel row ``vol[:, iz, block, :]``
    is copied channel-and-slice innermost, then spread into every tilt's images (held the same way, in
    cache); the detector coordinate and weights are shared by the block's slices and channels. Voxels that
    are zero in every slice and channel of the block are skipped (with positivity, most of the volume
    outside a particle): the sums keep their order, so the result is the same to the last bit as
    without the skip.
    """
    nc, nz, ny, nx = vol.shape
    nk, nu = out.shape[1], out.shape[3]
    cx, cz, cu = (nx - 1) / 2.0, (nz - 1) / 2.0, (nu - 1) / 2.0
    nr = _ROWS
    lanes = nc * nr
    for blk in nb.prange((ny + nr - 1) // nr):
        y0 = blk * nr
        rows = min(nr, ny - y0)
        acc = np.zeros((nk, nu, lanes))
        line = np.zeros((nx, lanes))
        occupied = np.zeros(nx, np.bool_)
        for iz in range(nz):
            first, last = nx, 0  # the occupied columns' span [first, last)
            for ix in range(nx):
                hit = False
                for c in range(nc):
                    for r in range(rows):
                        v = vol[c, iz, y0 + r, ix]
                        line[ix, c * nr + r] = v
                        hit = hit or v != 0.0
                occupied[ix] = hit
                if hit:
                    first = min(first, ix)
                    last = ix + 1
            if first >= last:
                continue
            for k in range(nk):
                cth = cos_t[k]
                img = acc[k]
                base = sin_t[k] * (iz - cz) - cth * cx + cu
                lo, hi = _inner_span(base, cth, nx, nu)
                for ix in range(max(lo, first), min(hi, last)):
                    if not occupied[ix]:
                        continue
                    fu = base + cth * ix
                    i0 = int(fu)
                    w1 = (fu - i0) * pixel
                    w0 = pixel - w1
                    for m in range(lanes):
                        f = line[ix, m]
                        img[i0, m] += f * w0
                        img[i0 + 1, m] += f * w1
                for ix in range(first, last):
                    if (lo <= ix < hi) or not occupied[ix]:
                        continue
                    fu = base + cth * ix
                    i0 = int(math.floor(fu))
                    w1 = (fu - i0) * pixel
                    w0 = pixel - w1
                    for m in range(lanes):
                        f = line[ix, m]
                        if 0 <= i0 < nu:
                            img[i0, m] += f * w0
                        if 0 <= i0 + 1 < nu:
                            img[i0 + 1, m] += f * w1
        for c in range(nc):
            for r in range(rows):
                for k in range(nk):
                    for i in range(nu):
                        out[c, k, y0 + r, i] = acc[k, i, c * nr + r]


@nb.njit(cache=True, parallel=True, fastmath=True)
def backproject_channels(img, cos_t, sin_t, pixel, out):
    """Adjoint of :func:`project_channels`: ``out`` (nc, nz, ny, nx) = A^T ``img`` (nc, k, ny, nu).

    Blocks of :data:`_ROWS` slices in parallel, as there: the block's images are copied channel-and-slice
    innermost, and each voxel row gathers from every tilt in turn (in cache) before it is written out.
    """
    nc, nz, ny, nx = out.shape
    nk, nu = img.shape[1], img.shape[3]
    cx, cz, cu = (nx - 1) / 2.0, (nz - 1) / 2.0, (nu - 1) / 2.0
    nr = _ROWS
    lanes = nc * nr
    for blk in nb.prange((ny + nr - 1) // nr):
        y0 = blk * nr
        rows = min(nr, ny - y0)
        src = np.zeros((nk, nu, lanes))
        for c in range(nc):
            for k in range(nk):
                for r in range(rows):
                    for i in range(nu):
                        src[k, i, c * nr + r] = img[c, k, y0 + r, i]
        line = np.empty((nx, lanes))
        for iz in range(nz):
            line[:, :] = 0.0
            for k in range(nk):
                cth = cos_t[k]
                row = src[k]
                base = sin_t[k] * (iz - cz) - cth * cx + cu
                lo, hi = _inner_span(base, cth, nx, nu)
                for ix in range(lo, hi):
                    fu = base + cth * ix
                    i0 = int(fu)
                    w1 = (fu - i0) * pixel
                    w0 = pixel - w1
                    for m in range(lanes):
                        line[ix, m] += row[i0, m] * w0 + row[i0 + 1, m] * w1
                for ix in range(nx):
                    if lo <= ix < hi:
                        continue
                    fu = base + cth * ix
                    i0 = int(math.floor(fu))
                    w1 = (fu - i0) * pixel
                    w0 = pixel - w1
                    for m in range(lanes):
                        t = 0.0
                        if 0 <= i0 < nu:
                            t += row[i0, m] * w0
                        if 0 <= i0 + 1 < nu:
                            t += row[i0 + 1, m] * w1
                        line[ix, m] += t
            for c in range(nc):
                for r in range(rows):
                    for ix in range(nx):
                        out[c, iz, y0 + r, ix] = line[ix, c * nr + r]
