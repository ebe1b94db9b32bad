"""A coherent test for a straight line feature (a domain wall) in the slow Fourier modes of the Lorentz TEM
data, and the signal spectrum it keeps on the line's ray of modes (:func:`_ray_spectrum`).

A straight feature along a direction puts its power on one ray of modes through the origin, ``m (a, b)``
(m = 1, 2, …; (a, b) a primitive lattice direction); by the projection-slice theorem these modes are the
1D Fourier transform of the image projected along the feature. Per mode the data are
``z_m = y_m / √P_m`` (:func:`~atomscount.ltem.spectral._spectral_terms`), complex normal with unit variance
under noise alone. A feature at position u0 of the projection with a phase spectrum ``c |k|^-g`` (c real:
a profile symmetric about u0, like the kink of the phase across a 180° wall, g = 2) gives
``E z_m = c w_m e^{-i m u0}`` with ``w_m = √P_m |k_m|^-g``. The statistic of a ray and a slope g is the
largest, over u0, of ``X(u0)² / var X`` with ``X(u0) = Re Σ_m w_m z_m e^{i m u0}``, the whitened projection
smoothed by the matched filter: χ² with one degree of freedom at each u0 under noise alone. Its largest value
over u0, slopes and rays is tested at ``_RAY_LEVEL`` with the Rice bound of a stationary Gaussian process,
``P(max |X| > x) ≤ 2 Φ̄(x) + 2 √λ₂ e^{-x²/2}`` (λ₂ = ``Σ w² m² / Σ w²``, the period 2π), summed over the rays
and slopes: an upper bound on the false-alarm rate of pure noise, no simulation, no tuned constant.

Unlike a test on the modes' powers, it uses their phases: a line feature's modes are phase-coherent, noise's
are not. When the test passes, the ray keeps ``S_m = ĉ² |k_m|^-2g`` on the tested modes of that ray only
(ĉ the fitted amplitude; no extrapolation below or above them).
"""

from __future__ import annotations

from math import gcd

import numpy as np

# [cycles per field]: the slowest modes searched, where a wall's few strong modes sit and the per-mode
# threshold of the spectral prior, 2 ln(modes), passes none of them at low dose
_RAY_MODES = 32
# phase spectra |k|^-g of the line feature: a ridge (g = 1), a kink (g = 2, the phase across a 180° wall),
# a smooth kink (g = 3)
_RAY_SLOPES = (1.0, 2.0, 3.0)
_RAY_LEVEL = 0.01  # the rate at which pure noise keeps a ray (an upper bound)
_RAY_MIN_MODES = 4  # a ray needs at least this many tested modes
_RAY_POSITIONS = 8  # positions u0 per mode of the ray (the grid of the largest value)


def _lattice_rays(shape, k_max: float, min_modes: int):
    """The rays of modes ``m (a, b)`` (half plane, (a, b) primitive, radius ≤ ``k_max`` cycles per field of
    the shorter side), each as ``(direction, iy, ix, radius)``: FFT indices and radii of m = 1, 2, …"""
    ny, nx = shape
    side = min(ny, nx)
    sy, sx = side / ny, side / nx  # cycles per field of the shorter side per index step
    r_max = int(np.ceil(k_max / min_modes / min(sy, sx)))  # a longer step has fewer modes within k_max
    out = []
    for a in range(-r_max, r_max + 1):  # x index step
        for b in range(0, r_max + 1):  # y index step
            if (b == 0 and a <= 0) or gcd(abs(a), b) != 1:
                continue
            step = float(np.hypot(a * sx, b * sy))
            # within k_max and below Nyquist along both axes
            m_max = min(k_max / step, (nx // 2) / abs(a) if a else np.inf, (ny // 2) / b if b else np.inf)
            m = np.arange(1, int(m_max) + 1)
            if len(m) < min_modes:
                continue
            out.append(((a, b), (m * b) % ny, (m * a) % nx, m * step))
    return out


def _profile_max(c):
    """``max |X|`` of ``X(u) = Re Σ_m c_m e^{i m u}`` (``c[..., 0]`` is m = 1) on a grid of positions, over the
    last axis."""
    n_pos = max(64, _RAY_POSITIONS * c.shape[-1])
    buf = np.zeros(c.shape[:-1] + (n_pos,), dtype=complex)
    buf[..., 1 : c.shape[-1] + 1] = c
    return np.abs((np.fft.ifft(buf, axis=-1) * n_pos).real).max(axis=-1)


def _rice_tail(t, lam2) -> float:
    """The Rice bound on ``P(max X² > t)`` summed over processes of second spectral moments ``lam2``."""
    from scipy.stats import norm

    return float(np.sum(2 * norm.sf(np.sqrt(t)) + 2 * np.sqrt(lam2) * np.exp(-t / 2)))


def _ray_spectrum(y, p, tested):
    """``(S, info)``: the signal spectrum [rad² per mode] the best ray keeps (zeros when the test fails) and
    what was found. ``tested`` marks the modes the test may use (those the per-mode threshold and the rings
    left at 0); on each ray only those beyond its outermost mode kept already are used.

    ``info``: ``kept`` (the test passed), ``statistic`` (the largest over rays, slopes and positions),
    ``threshold`` (where the Rice bound reaches ``_RAY_LEVEL``: the larger of that of the rays tested and
    that of the whole field with no mode kept), ``p_value`` (the bound at the statistic, at most 1) and,
    when a ray was tested, ``direction`` (its index steps along x and y), ``slope`` (g) and ``modes`` (how
    many it tested).
    """
    from scipy.optimize import brentq

    ny, nx = y.shape
    z = np.where(tested, y / np.sqrt(np.where(tested, p, 1.0)), 0.0)
    best = None
    lam2, lam2_field = [], []
    for direction, iy, ix, radius in _lattice_rays(y.shape, _RAY_MODES, _RAY_MIN_MODES):
        pr = p[iy, ix]
        ok = tested[iy, ix]
        kept = ~ok & (pr > 0)
        if kept.any():  # the ray's tail beyond the modes kept already: no extrapolation below them
            ok &= radius > radius[kept].max()
        m = np.arange(1, len(radius) + 1)
        w = np.sqrt(pr)[None, :] * radius[None, :] ** -np.asarray(_RAY_SLOPES)[:, None]  # (slopes, modes)
        w2 = np.sum(w**2, axis=1)
        lam2_field.extend((np.sum(w**2 * m**2, axis=1) / w2)[w2 > 0])
        if ok.sum() < _RAY_MIN_MODES:
            continue
        w = np.where(ok, w, 0.0)
        w2 = np.sum(w**2, axis=1)
        live = w2 > 0
        lam2.extend((np.sum(w**2 * m**2, axis=1) / np.where(live, w2, 1.0))[live])
        stat = np.where(live, 2 * _profile_max(w * z[iy, ix]) ** 2 / np.where(live, w2, 1.0), 0.0)
        j = int(np.argmax(stat))
        if best is None or stat[j] > best[0]:
            best = (float(stat[j]), direction, _RAY_SLOPES[j], iy[ok], ix[ok], radius[ok])
    spectrum = np.zeros(y.shape)
    if best is None:
        return spectrum, {"kept": False, "statistic": 0.0, "threshold": None, "p_value": 1.0}
    stat, direction, g, iy, ix, radius = best

    def tail(t):  # the larger bound: that of the rays tested, that of the whole field with no mode kept
        return max(_rice_tail(t, lam2), _rice_tail(t, lam2_field))

    threshold = brentq(lambda t: tail(t) - _RAY_LEVEL, 1.0, 400.0)
    info = {"kept": bool(stat > threshold), "statistic": float(stat), "threshold": float(threshold),
            "p_value": min(1.0, tail(stat)),
            "direction": [int(direction[0]), int(direction[1])], "slope": float(g), "modes": int(len(iy))}  # fmt: skip
    if info["kept"]:
        s = _power_law_fit(np.abs(y[iy, ix]) ** 2 / p[iy, ix], p[iy, ix], radius)
        spectrum[iy, ix] = s
        spectrum[(-iy) % ny, (-ix) % nx] = s  # the conjugate modes of a real phase
    return spectrum, info


def _power_law_fit(x, p, radius):
    """The spectrum ``A |k|^-2g`` [rad² per mode] of the largest likelihood of the modes' powers ``x = |y|²/P``
    (exponential with mean ``1 + S P``), g over the slopes' range in steps of 0.25, A on a grid."""
    best = None
    for g in np.arange(_RAY_SLOPES[0], _RAY_SLOPES[-1] + 1e-9, 0.25):
        base = p * radius ** (-2 * g)
        scale = 1.0 / np.median(base)
        snr = 10.0 ** np.linspace(-4, 4, 161)[:, None] * base[None, :] * scale
        ll = np.sum(x[None] - x[None] / (1 + snr) - np.log1p(snr), axis=1)
        i = int(np.argmax(ll))
        if best is None or ll[i] > best[0]:
            best = (ll[i], snr[i] / p)
    return best[1]
