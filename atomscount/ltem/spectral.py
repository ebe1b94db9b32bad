"""Fourier-space tools of the Lorentz TEM stage: the contrast-transfer Wiener filter with a data-driven
signal spectrum (the start and the prior of :func:`~atomscount.ltem.retrieve.retrieve_phase`), and the
Fourier ring correlation of two maps.

For a weak phase the relative contrast of an image at defocus Δf is ``ĉ(k) = T(k) φ̂(k)`` with the
transfer ``T = 2 sin χ(k) E(k)`` (:func:`~atomscount.ltem.forward.transfer_function`), and Poisson noise
of variance ``1/dose`` per Fourier mode (unitary FFT). Per mode the images add up to
``y(k) = Σ_j dose_j T_j ĉ_j`` with ``E[y] = P φ̂`` and ``var y = P``, ``P(k) = Σ_j dose_j T_j²`` the data
precision. The signal spectrum ``S(k) = (|y|² − P)/P²`` is kept where ``|y|² > β P`` with β = 2 ln(modes)
(the level that pure noise, ``|y|²/P`` exponential, passes at no mode), or where the median power of its
ring of modes shows an isotropic spectrum, and is 0 elsewhere; the phase is the Wiener estimate
``S y / (S P + 1)``. A strong phase puts what the weak-phase model leaves out into y, so the threshold
(1, 4, 16 or 64 times β, with or without the rings) is the one whose phase explains the counts best through
the full image model. Slow modes, where ``sin χ`` and so P vanish, are kept only when
the data show them far above their noise, which is what TIE's noise (growing as ``1/k²``) lacks. A straight
feature (a domain wall) whose modes on one ray through the origin are each below β but together coherent is
found by the test of :mod:`~atomscount.ltem._rays`, which then keeps a spectrum on that ray.
"""

from __future__ import annotations

import numpy as np

from ._rays import _ray_spectrum
from .induction import _check_map_pair
from .result import LTEMSeries, PhaseRetrieval

__all__ = ["ctf_wiener", "fourier_ring_correlation"]

_THRESHOLD_FACTORS = (1.0, 4.0, 16.0, 64.0)


def _transfer_stack(shape, pixel_nm, defoci_nm, *, beam_energy_ev, cs_nm, divergence_rad, defocus_spread_nm):
    """``(T_j(k), A_j(k), k²)``: the weak-phase transfer ``2 sin χ E`` and the weak-amplitude transfer
    ``2 cos χ E`` of each defocus, FFT order."""
    from .forward import _chi_and_envelope, _frequencies, wavelength_nm

    ky, kx = _frequencies(shape, pixel_nm)
    k2 = kx**2 + ky**2
    lam = wavelength_nm(beam_energy_ev)
    phase, amplitude = [], []
    for df in np.atleast_1d(defoci_nm):
        chi, env = _chi_and_envelope(k2, np, lam, float(df), cs_nm, divergence_rad, defocus_spread_nm)
        phase.append(2 * np.sin(chi) * env)
        amplitude.append(2 * np.cos(chi) * env)
    return np.stack(phase), np.stack(amplitude), k2


def _noise_dose(images: np.ndarray, dose) -> np.ndarray:
    """Electrons per pixel of each image: the given dose, the mean for counts, else 1/noise variance from
    the top fifth of the frequencies (where a smooth specimen has no signal)."""
    if dose is not None:
        return np.broadcast_to(np.asarray(dose, dtype=np.float64), (len(images),)).copy()
    means = images.mean(axis=(1, 2))
    if np.all(images == np.round(images)):
        return means
    ny, nx = images.shape[1:]
    fy, fx = np.meshgrid(np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij")
    high = np.hypot(fy, fx) > 0.4
    out = []
    for im, m in zip(images, means, strict=True):
        power = np.abs(np.fft.fft2(im / m - 1, norm="ortho")[high]) ** 2
        # the median of an exponential is ln 2 times its mean; at most 1e6 electrons for noise-free images
        out.append(1.0 / max(float(np.median(power)) / np.log(2), 1e-6))
    return np.asarray(out)


def _kept_spectrum(y, p, beta):
    """``(|y|² − P)/P²`` where ``|y|² > β P``, else 0 (and 0 at k = 0)."""
    power = np.abs(y) ** 2
    keep = (power > beta * p) & (p > 0)
    keep[0, 0] = False
    return np.where(keep, (power - p) / np.where(keep, p, 1.0) ** 2, 0.0)


def _ring_spectrum(y, p, k2, pixel_nm):
    """An isotropic spectrum from the median power of each ring of modes (robust to a lattice's few
    peaks, which the median leaves out): ``(median |y|²/ln 2 − P)/P²`` where the median is five of its
    standard errors above the noise's and the signal at least as strong as the noise, else 0. P depends
    on ``|k|`` only for a round transfer."""
    ny, nx = y.shape
    ring = np.rint(np.sqrt(k2) * min(ny, nx) * pixel_nm).astype(int)
    n_rings = int(ring.max()) + 1
    out = np.zeros(n_rings)
    power = np.abs(y) ** 2
    for r in range(1, n_rings):
        m = ring == r
        pr = float(np.mean(p[m]))
        if pr <= 0:
            continue
        excess = np.median(power[m]) / np.log(2) - pr
        # significant (the median of m exponentials has a relative error ~1.2/√m) and at least the noise
        if excess > max(5 * 1.2 / np.sqrt(m.sum()), 1.0) * pr:
            out[r] = excess / pr**2
    return out[ring]


def _spectral_terms(series: LTEMSeries, dose=None) -> dict:
    """The per-mode terms of the weak-phase model: ``y``, ``P``, the signal spectrum ``S`` [rad² per mode,
    unitary FFT], the Wiener phase and the dose used (see the module's docstring)."""
    images = np.asarray(series.images, dtype=np.float64)
    doses = _noise_dose(images, dose)
    t, t_amp, k2 = _transfer_stack(series.shape, series.pixel_nm, series.defoci_nm,
                                   beam_energy_ev=series.beam_energy_ev, cs_nm=series.cs_nm,
                                   divergence_rad=series.divergence_rad,
                                   defocus_spread_nm=series.defocus_spread_nm)  # fmt: skip
    y = np.zeros(series.shape, dtype=complex)
    p = np.zeros(series.shape)
    y_amp = np.zeros(series.shape, dtype=complex)
    p_amp = np.zeros(series.shape)
    for im, tj, aj, d in zip(images, t, t_amp, doses, strict=True):
        c = np.fft.fft2(im / im.mean() - 1, norm="ortho")
        y += d * tj * c
        p += d * tj**2
        y_amp += d * aj * c
        p_amp += d * aj**2
    ring = _ring_spectrum(y, p, k2, series.pixel_nm)
    # a straight line feature (a domain wall) whose modes are each below the threshold: the coherent ray
    # test on the modes that neither the lowest threshold nor the rings keep (:mod:`._rays`)
    tested = (p > 0) & (np.maximum(_kept_spectrum(y, p, 2 * np.log(p.size)), ring) == 0)
    tested[0, 0] = False
    ray, ray_info = _ray_spectrum(y, p, tested)
    # a strong phase (a film's edge) puts what the weak-phase model leaves out into y, which the slow modes'
    # 1/P blows up: of the thresholds 2 ln(modes) × 1, 4, 16, 64, with and without the rings, the one whose
    # phase explains the counts best through the full (nonlinear) image model
    best = None
    for factor in _THRESHOLD_FACTORS:
        beta = factor * 2 * np.log(p.size)
        for use_ring in (True, False):
            s = np.maximum(_kept_spectrum(y, p, beta), ring) if use_ring else _kept_spectrum(y, p, beta)
            s = np.maximum(s, ray)
            s[0, 0] = 0.0
            phase = np.fft.ifft2(s * y / (s * p + 1), norm="ortho").real
            dev = _deviance(images, doses, phase, series)
            if best is None or dev < best[0]:
                best = (dev, beta, use_ring, s, phase)
    dev, beta, use_ring, s, phase = best
    # the log-amplitude's spectrum, the same way; one image cannot tell amplitude from phase: none
    s_amp = _kept_spectrum(y_amp, p_amp, beta) if len(images) > 1 else np.zeros(series.shape)
    return {"y": y, "precision": p, "amplitude_precision": p_amp, "amplitude_spectrum": s_amp, "spectrum": s,
            "phase": phase, "dose": doses, "k2": k2, "threshold": beta, "rings": use_ring,
            "deviance": dev, "ray": ray_info}  # fmt: skip


def _mean_poisson_deviance(mu, counts) -> float:
    """Mean Poisson deviance per pixel, ``(2/N) Σ [μ − y − y log(μ/y)]`` (``y log(μ/y) = 0`` where y = 0),
    of the counts ``counts`` against their model means ``mu`` (> 0; same shape)."""
    y = np.asarray(counts, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    return float(2.0 * np.mean(mu - y - np.where(y > 0, y * np.log(mu / np.where(y > 0, y, 1.0)), 0.0)))


def _deviance(images, doses, phase, series) -> float:
    """Mean Poisson deviance per pixel of the counts ``images`` against the full image model of ``phase``
    (amplitude 1), in NumPy."""
    from .forward import _fresnel_numpy

    model = _fresnel_numpy(phase, None, pixel_nm=series.pixel_nm, defoci_nm=series.defoci_nm,
                           beam_energy_ev=series.beam_energy_ev, cs_nm=series.cs_nm,
                           divergence_rad=series.divergence_rad,
                           defocus_spread_nm=series.defocus_spread_nm)  # fmt: skip
    total = 0.0
    for im, d, m in zip(images, doses, model, strict=True):
        total += _mean_poisson_deviance(d * np.clip(m, 1e-6, None), im / im.mean() * d)
    return total / len(images)


_VACUUM_MODES = 8  # [cycles per field]: the slow modes the vacuum correction may change
_EDGE_CONTRAST = 5.0  # an edge: a phase gradient above this many times the field's 75th percentile
_VACUUM_FRACTION = (0.05, 0.95)  # the enclosed object's share of the field for the correction to apply
# vacuum="auto" keeps the stray-field terms when an island without a net moment would pass their χ² test this
# rarely (a 1 % test)
_STRAY_LEVEL = 0.01


def _island_mask(phase):
    """The object enclosed by a sharp phase step (a film's electrostatic edge), or None: the region the
    closed edge encloses must hold 5-95 % of the field and have the higher phase on its side of the edge
    (an island of material in vacuum, not a hole in a film)."""
    from scipy import ndimage

    gy, gx = np.gradient(np.asarray(phase, dtype=np.float64))
    grad = np.hypot(gx, gy)
    edge = grad > _EDGE_CONTRAST * np.percentile(grad, 75)
    inside = ndimage.binary_fill_holes(ndimage.binary_closing(edge, iterations=2))
    if not _VACUUM_FRACTION[0] < inside.mean() < _VACUUM_FRACTION[1]:
        return None
    band_in = inside & ~ndimage.binary_erosion(inside, iterations=8) & ~edge
    band_out = ndimage.binary_dilation(inside, iterations=4) & ~inside
    if not (band_in.any() and band_out.any()) or phase[band_in].mean() <= phase[band_out].mean():
        return None
    return inside


def _stray_phases(inside) -> list:
    """The phases of the island ``inside`` uniformly magnetised along x and along y (periodic, like the
    field), each scaled to unit RMS outside it: in vacuum these are the stray-field phases of the island's
    net moment."""
    from .forward import magnetic_phase

    m = inside.astype(np.float64)
    out = []
    for mx, my in ((m, 0 * m), (0 * m, m)):
        phi = magnetic_phase(mx, my, pixel_nm=1.0, thickness_nm=1.0, ms_a_per_m=1.0)
        rms = float(np.sqrt(np.mean(phi[~inside] ** 2)))
        out.append(phi / rms if rms > 0 else phi)
    return out


def _flatten_vacuum(phase, precision, *, model: str = "auto"):
    """``(phase, info)``: the phase with its slowest Fourier modes (below ``_VACUUM_MODES`` cycles per field)
    corrected so that the vacuum round an island of material holds only what the island's field can put
    there, as far as the data allow, and what was chosen; None when no island is found.

    The posterior mean of a correction ``c = Σ a_k exp(2πi k·x)`` over those modes, with the vacuum's phase
    (outside the island and 4 pixels off its edge) taken as a constant plus, for ``model="stray"``, the
    stray-field phases ``α φx + β φy`` of the island uniformly magnetised along x and y
    (:func:`_stray_phases`; α, β free, fitted jointly), plus white noise of its own standard deviation, and
    each mode's change costing what the data would charge, ``P(k) N |a_k|²`` (P the data precision of
    :func:`_spectral_terms`): modes the images pin (large P) stay, the slowest, which the images hardly see,
    follow the vacuum. In vacuum the magnetic phase is source-free and is the stray field of the island's
    moment: a flux-closed island (a vortex) has α = β = 0, an island with a net moment keeps its stray field.
    ``model="flat"`` takes the vacuum as the constant alone. ``model="auto"`` keeps α and β only when the
    data ask for them: their Wald statistic ``(α, β) Σ⁻¹ (α, β)ᵀ`` (Σ their posterior covariance under the
    same noise and mode costs; equal to the drop of the fit's objective, the log-likelihood ratio of the
    two nested models) is χ² with 2 degrees of freedom for an island without a net moment, and "stray" is
    chosen when it exceeds ``2 ln(1/_STRAY_LEVEL)``, the level such an island's noise passes with
    probability ``_STRAY_LEVEL``; "flat" otherwise. ``info`` holds ``model`` (the one used) and, unless
    ``"flat"`` was asked, ``stray_statistic``, ``stray_threshold`` and ``stray_amplitudes`` (α, β).
    """
    from scipy import ndimage

    inside = _island_mask(phase)
    if inside is None:
        return None
    ny, nx = phase.shape
    vacuum = ~ndimage.binary_dilation(inside, iterations=4)
    values = np.where(vacuum, phase - phase[vacuum].mean(), 0.0)
    ks = [(a, b) for a in range(-_VACUUM_MODES, _VACUUM_MODES + 1) for b in range(-_VACUUM_MODES, _VACUUM_MODES + 1)
          if a * a + b * b <= _VACUUM_MODES**2]  # fmt: skip
    ia = np.array([a for a, _ in ks])
    ib = np.array([b for _, b in ks])
    m_hat = np.fft.fft2(vacuum.astype(np.float64))
    # Σ_vacuum exp(−2πi (k − k')·x): the vacuum's Gram matrix of the modes, then the stray-field columns
    gram = m_hat[(ia[:, None] - ia[None, :]) % ny, (ib[:, None] - ib[None, :]) % nx]
    rhs = np.fft.fft2(values)[ia % ny, ib % nx]
    sigma2 = float(np.mean(values[vacuum] ** 2))
    prior = np.array([precision[a % ny, b % nx] * phase.size if (a, b) != (0, 0) else 0.0 for a, b in ks])
    info = {"model": model}
    coef = None
    if model != "flat":
        regressors = [np.where(vacuum, g, 0.0) for g in _stray_phases(inside)]
        cross = np.stack([np.fft.fft2(g)[ia % ny, ib % nx] for g in regressors], axis=1)  # Σ_vac e_k* g
        gg = np.array([[np.sum(g * h) for h in regressors] for g in regressors])
        # the stray-field amplitudes are free (no cost)
        system = np.block([[gram, cross], [cross.conj().T, gg]]) / sigma2 + np.diag(np.concatenate([prior, [0, 0]]))
        solution = np.linalg.solve(system, np.concatenate([rhs, [np.sum(g * values) for g in regressors]]) / sigma2)
        amplitudes = solution[-2:].real
        covariance = np.linalg.inv(system)[-2:, -2:].real
        statistic = float(amplitudes @ np.linalg.solve(covariance, amplitudes))
        threshold = float(2.0 * np.log(1.0 / _STRAY_LEVEL))
        if model == "auto":
            info["model"] = "stray" if statistic > threshold else "flat"
        info.update(stray_statistic=statistic, stray_threshold=threshold, stray_amplitudes=amplitudes.tolist())
        if info["model"] == "stray":
            coef = solution[: len(ks)]
    if coef is None:
        coef = np.linalg.solve(gram / sigma2 + np.diag(prior), rhs / sigma2)
    spectrum = np.zeros((ny, nx), dtype=complex)
    spectrum[ia % ny, ib % nx] = coef
    return phase - np.fft.ifft2(spectrum).real * phase.size, info


def ctf_wiener(series: LTEMSeries, *, dose_e_per_pixel: float | None = None) -> PhaseRetrieval:
    """Phase from one or more defocused images by the contrast-transfer Wiener filter, its signal spectrum
    estimated from the images (no tuning).

    Each Fourier mode of the images is weighed by the transfer ``2 sin χ(k) E(k)`` of its defocus and by
    its dose; a mode is kept where the images show it above the noise at a level that pure noise passes at
    no mode, and shrunk by the Wiener factor ``S P / (S P + 1)``. Unlike TIE it uses the exact ``sin χ``
    (no small-defocus limit), needs no in-focus image, and needs no filter frequency. It assumes a weak
    phase: strong, sharp phase steps (a film's edge) are treated by :func:`~atomscount.ltem.retrieve_phase`.

    Parameters
    ----------
    series : LTEMSeries
        One or more images, at least one defocused, in counts or normalised.
    dose_e_per_pixel : float, optional
        Electrons per pixel; default: each image's mean for counts (integers), else the inverse noise
        variance measured at the highest frequencies.

    Returns
    -------
    PhaseRetrieval
        Phase [rad] (mean 0), amplitude 1, method ``"wiener"``; ``parameters`` holds the number of kept
        modes, the threshold β, whether the rings were used, the mean deviance per pixel and the ray test
        (``ray``: ``kept``, ``statistic``, ``threshold``, ``p_value``, …; :mod:`~atomscount.ltem._rays`).

    Raises
    ------
    ValueError
        If every image is in focus (no phase contrast).
    """
    if not isinstance(series, LTEMSeries):
        raise TypeError(f"series must be an LTEMSeries, got {type(series).__name__}")
    if np.all(series.defoci_nm == 0):
        raise ValueError(f"series.defoci_nm must hold a non-zero defocus (an in-focus image has no phase "
                         f"contrast), got {series.defoci_nm.tolist()}")  # fmt: skip
    if dose_e_per_pixel is not None:
        from .result import _positive

        dose_e_per_pixel = _positive(dose_e_per_pixel, "dose_e_per_pixel")
    terms = _spectral_terms(series, dose_e_per_pixel)
    phase = terms["phase"]
    return PhaseRetrieval(phase - phase.mean(), np.ones_like(phase), series.pixel_nm, method="wiener",
                          parameters={"defoci_nm": series.defoci_nm.tolist(),
                                      "kept_modes": int(np.count_nonzero(terms["spectrum"])),
                                      "threshold": float(terms["threshold"]), "rings": bool(terms["rings"]),
                                      "deviance": float(terms["deviance"]), "ray": dict(terms["ray"])},
                          provenance=dict(series.provenance))  # fmt: skip


def fourier_ring_correlation(a, b, *, pixel_nm: float, threshold: float = 1 / 7) -> dict:
    """Fourier ring correlation of two maps, and the resolution where it falls below a threshold.

    ``FRC(k) = Re Σ â b̂* / √(Σ |â|² Σ |b̂|²)`` over rings one frequency step wide (the constant term
    left out). Against a known truth, the resolution is the period of the finest ring whose FRC reaches
    ``threshold`` (1/7 by default): not where it first drops, since a lattice's truth has rings with no
    power at all, whose FRC is noise.

    Parameters
    ----------
    a, b : array_like, shape (ny, nx)
        The maps (e.g. a retrieved and the true phase).
    pixel_nm : float
        Pixel size [nm].
    threshold : float
        FRC level that defines the resolution, in (0, 1).

    Returns
    -------
    dict
        ``frequency_per_nm`` (ring centres [1/nm]), ``frc`` (per ring), ``resolution_nm`` (the period
        ``1/k`` [nm] of the finest ring at or above the threshold; the field of view if none is).
    """
    from .result import _positive

    a, b = _check_map_pair(a, b, ("a", "b"))
    px = _positive(pixel_nm, "pixel_nm")
    if not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    ny, nx = a.shape
    fy, fx = np.meshgrid(np.fft.fftfreq(ny), np.fft.fftfreq(nx), indexing="ij")
    ring = np.rint(np.hypot(fy, fx) * min(ny, nx)).astype(int)  # in steps of 1/min(ny, nx) cycles per pixel
    n_rings = min(ny, nx) // 2
    use = (ring >= 1) & (ring <= n_rings)
    cross = np.bincount(ring[use], (fa * np.conj(fb)).real[use], minlength=n_rings + 1)[1:]
    pa = np.bincount(ring[use], (np.abs(fa) ** 2)[use], minlength=n_rings + 1)[1:]
    pb = np.bincount(ring[use], (np.abs(fb) ** 2)[use], minlength=n_rings + 1)[1:]
    # a ring without power in either map (below 1e-12 of its strongest ring: rounding) correlates with nothing
    live = (pa > 1e-12 * pa.max()) & (pb > 1e-12 * pb.max())
    frc = np.where(live, cross / np.sqrt(np.where(live, pa * pb, 1.0)), 0.0)
    freq = np.arange(1, n_rings + 1) / (min(ny, nx) * px)
    above = np.flatnonzero(frc >= float(threshold))
    resolution = 1.0 / freq[above[-1]] if above.size else min(ny, nx) * px
    return {"frequency_per_nm": freq, "frc": frc, "resolution_nm": float(resolution)}
