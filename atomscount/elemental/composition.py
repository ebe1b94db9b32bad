"""Voxel composition of a two-element particle from its HAADF reconstruction (Skorikov et al., 2019).

In a HAADF reconstruction at lower than atomic resolution a voxel's intensity is, to
a good approximation, linear in its local composition between the levels of the pure
elements: ``I = L_a + c_b (L_b - L_a)``. :func:`composition_from_haadf` inverts that
per voxel and handles what makes the naive inversion wrong:

- **pure levels** come from the reconstruction itself, by a mixture fit on the
  particle's interior voxels (two Gaussians at the pure levels with one shared width,
  the voxel noise, plus the same noise on a uniform plateau between them for the mixed
  voxels), or from the user;
- **partial-volume voxels**: voxels within ``surface_width_angstrom`` of the particle's
  surface are only partly inside it, so they look like the lighter element; they are
  flagged (bit :data:`~atomscount.elemental.result.FLAG_PARTIAL_VOLUME`) and kept out
  of the level fit;
- **the missing wedge** of a ±α series elongates the particle along the beam (z) by
  ``e = √((α + sin α cos α) / (α − sin α cos α))`` (Radermacher 1988), and blurs its
  surface by as much: the partial-volume band is ``e`` times thicker along z;
- **out-of-range intensities** (noise, artefacts) are clipped to 0..1 and flagged
  (bit :data:`~atomscount.elemental.result.FLAG_CLIPPED`), never silently;
- **uncertainty**: σ of each voxel's concentration propagates the voxel noise (the
  mixture fit's width) and the uncertainties of both levels.

References
----------
Skorikov, A. et al. Quantitative 3D characterization of elemental diffusion dynamics
in individual Ag@Au nanoparticles with different shapes. ACS Nano 13, 13421 (2019),
doi:10.1021/acsnano.9b05395.
Radermacher, M. Three-dimensional reconstruction of single particles from random and
nonrandom tilt series. J. Electron Microsc. Tech. 9, 359 (1988), doi:10.1002/jemt.1060090405.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_3d_volume, check_positive, check_real
from .result import FLAG_CLIPPED, FLAG_PARTIAL_VOLUME, ElementalVolumes

__all__ = ["composition_from_haadf", "fit_interface_width", "fit_pure_levels", "wedge_elongation"]


def wedge_elongation(max_tilt_degrees: float) -> float:
    """Elongation along the beam of a point reconstructed from tilts within ±``max_tilt_degrees``.

    Examples
    --------
    >>> round(wedge_elongation(70.0), 3)
    1.309
    """
    a = np.deg2rad(check_real(max_tilt_degrees, "max_tilt_degrees", low=0.0, high=90.0, open_low=True))
    sc = np.sin(a) * np.cos(a)
    return float(np.sqrt((a + sc) / (a - sc)))


def _mixture_nll(params, x, n):
    from scipy.special import log_ndtr, logsumexp

    la, log_d, log_s, q1, q2 = params
    d, s = np.exp(log_d), np.exp(log_s)
    lb = la + d
    logw = np.array([0.0, q1, q2])
    logw = logw - logsumexp(logw)
    ga = -0.5 * ((x - la) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))
    gb = -0.5 * ((x - lb) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))
    # noise on a uniform plateau: (Φ((lb - x)/s) - Φ((la - x)/s)) / d, computed in logs
    hi, lo = log_ndtr((lb - x) / s), log_ndtr((la - x) / s)
    plateau = hi + np.log1p(-np.exp(np.minimum(lo - hi, -1e-12))) - np.log(d)
    return -float((n * logsumexp(np.stack([ga + logw[0], gb + logw[1], plateau + logw[2]]), axis=0)).sum())


def fit_pure_levels(values, *, rng=0, max_samples: int = 200_000) -> dict:
    """Fit the levels of the two pure elements to voxel intensities of a two-element particle.

    The model: a fraction of the voxels is pure element a (a Gaussian at ``L_a``), a
    fraction pure b (at ``L_b``), and the rest mixed (uniform between the two levels),
    all with the same Gaussian noise ``s``, fitted by maximum likelihood.

    Parameters
    ----------
    values : array_like
        Intensities of the particle's interior voxels.
    rng : numpy.random.Generator, int or None
        For the subsample when there are more than ``max_samples`` values.
    max_samples : int

    Returns
    -------
    dict
        ``low``, ``high`` (the levels), ``noise`` (s), ``weights`` (pure low, pure high,
        mixed), ``low_sigma``, ``high_sigma`` (1-σ of the levels), ``n`` (values used).

    Raises
    ------
    ValueError
        When fewer than 50 values are given, or no two distinct levels are found (the
        levels lie within 2 s of each other, or neither pure phase holds 1 % of the voxels).
    """
    from scipy.optimize import minimize

    from .._checks import check_rng

    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 50:
        raise ValueError(f"values: the level fit needs at least 50 interior voxels, got {x.size}")
    if x.size > max_samples:
        x = check_rng(rng).choice(x, max_samples, replace=False)
    p2, p98 = np.percentile(x, [2, 98])
    if not p98 > p2:
        raise ValueError(f"values: the interior voxels have a single intensity ({p2:.4g}); give levels")
    # binned likelihood: 400 bins over the range hold the shape at a fraction of the cost
    lo, hi = np.percentile(x, [0.1, 99.9])
    counts, edges = np.histogram(x, bins=400, range=(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)))
    centres = 0.5 * (edges[1:] + edges[:-1])
    start = [p2, np.log(p98 - p2), np.log(0.1 * (p98 - p2)), 0.0, 0.0]
    res = minimize(_mixture_nll, start, args=(centres, counts), method="Nelder-Mead",
                   options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-6})  # fmt: skip
    la, log_d, log_s, q1, q2 = res.x
    d, s = float(np.exp(log_d)), float(np.exp(log_s))
    w = np.exp([0.0, q1, q2])
    w = w / w.sum()
    if d < 2 * s or max(w[0], w[1]) < 0.01:
        raise ValueError(f"values: no two pure-element levels found in the particle (levels {la:.4g} and "
                         f"{la + d:.4g}, voxel noise {s:.3g}, pure fractions {w[0]:.2f} and {w[1]:.2f}); "
                         "give levels")  # fmt: skip
    n = x.size
    return {"low": float(la), "high": float(la + d), "noise": s, "weights": [float(v) for v in w],
            "low_sigma": s / np.sqrt(max(w[0] * n, 1.0)), "high_sigma": s / np.sqrt(max(w[1] * n, 1.0)),
            "n": int(n)}  # fmt: skip


def _particle_mask(data, threshold):
    from scipy import ndimage

    mask = data > threshold
    labels, n = ndimage.label(mask)
    if n > 1:  # keep the particle(s), not the specks of noise and streaks around them
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= max(27, 0.01 * sizes.max())) + 1
        mask = np.isin(labels, keep)
    return ndimage.binary_fill_holes(mask)


def _otsu(values):
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def composition_from_haadf(volume, elements=("Au", "Ag"), *, levels=None, voxel_size_angstrom=None,
                           max_tilt_degrees=None, surface_width_angstrom=None, smooth_angstrom: float = 0.0,
                           rng=0) -> ElementalVolumes:  # fmt: skip
    """Concentration ± σ of two elements in each voxel of a HAADF reconstruction.

    Parameters
    ----------
    volume : Volume or ndarray (nz, ny, nx)
        The reconstruction (e.g. :func:`atomscount.tomo.reconstruct`), any linear unit.
    elements : (str, str)
        The two elements. The one of higher Z-contrast (per-atom cross-section × bulk
        density, :func:`~atomscount.elemental.forward.default_haadf_weights`) takes the
        brighter level.
    levels : dict, (float, float) or "z-contrast", optional
        The pure elements' voxel intensities (in ``elements``' order, or by element);
        default: fitted (:func:`fit_pure_levels`) on the particle's interior voxels.
        "z-contrast": the absolute levels ``wᵢ ρᵢ`` [1/Å] of a series in fractions of the
        beam, from the per-atom cross-sections of
        :func:`~atomscount.elemental.forward.default_haadf_weights` and the bulk densities
        of :data:`~atomscount.elemental.phantoms.ATOMIC_DENSITY`.
    voxel_size_angstrom : float, optional
        Needed when ``volume`` is an array.
    max_tilt_degrees : float, optional
        The tilt range ±α of the series: the partial-volume band is thicker along z by
        :func:`wedge_elongation`. Default: no missing wedge.
    surface_width_angstrom : float, optional
        Depth of the partial-volume band below the surface [Å] (default two voxels).
    smooth_angstrom : float
        Standard deviation [Å] of a Gaussian filter applied before the inversion, for
        noisy (low-dose) reconstructions: less noise per voxel, at the cost of resolution
        (an erf interface of width w then measures √(w² + 2 s²)).
    rng : numpy.random.Generator, int or None
        For the level fit's subsample.

    Returns
    -------
    ElementalVolumes
        ``method="haadf-composition"``; concentration and σ are 0 outside the mask; the
        levels, the voxel noise and the threshold are in ``provenance``.

    Raises
    ------
    ValueError
        For other than two distinct elements, levels that are not two distinct finite
        numbers, a volume with no particle, or a particle whose levels cannot be fitted.
    """
    from scipy import ndimage

    from .forward import default_haadf_weights

    if hasattr(volume, "data") and hasattr(volume, "pixel_size_angstrom"):
        data = check_3d_volume(volume.data, "volume.data")
        voxel = float(volume.pixel_size_angstrom) if voxel_size_angstrom is None else voxel_size_angstrom
    else:
        data = check_3d_volume(volume, "volume")
        if voxel_size_angstrom is None:
            raise ValueError("voxel_size_angstrom is needed when volume is an array")
        voxel = voxel_size_angstrom
    voxel = check_positive(voxel, "voxel_size_angstrom")
    smooth_a = check_positive(smooth_angstrom, "smooth_angstrom", allow_zero=True)
    if smooth_a > 0:
        data = ndimage.gaussian_filter(data, smooth_a / voxel)
    if isinstance(elements, str) or len(tuple(elements)) != 2 or len(set(elements)) != 2:
        raise ValueError(f"elements must be two distinct elements (HAADF alone separates two), got {elements!r}")
    elements = tuple(str(e) for e in elements)
    contrast = default_haadf_weights(elements)
    from .phantoms import ATOMIC_DENSITY

    contrast = {e: contrast[e] * ATOMIC_DENSITY.get(e, 0.06) for e in elements}
    hi_el, lo_el = sorted(elements, key=lambda e: -contrast[e])

    # the particle: a first mask by Otsu's thresholds on the volume smoothed over a voxel (the lower of
    # the two- and three-class ones, so that a bright core does not take the threshold), refined at half
    # the lower level; the mask is a shape, drawn on the smoothed volume, the concentrations on the data
    top = float(np.percentile(data, 99.9))
    if not top > 0:
        raise ValueError(f"volume has no particle: its 99.9th percentile is {top:.3g} (all voxels <= 0)")
    smooth = ndimage.gaussian_filter(data, 1.0)
    t0 = _otsu(smooth)
    mask0 = _particle_mask(smooth, t0)
    outside = ~ndimage.binary_dilation(mask0, iterations=2)
    noise_bg = float(smooth[outside].std()) if outside.sum() > 27 else 0.0
    contrast_ok = mask0.sum() >= 27 and np.median(smooth[mask0]) - np.median(smooth[outside]) > 3 * noise_bg
    if not contrast_ok:
        raise ValueError(f"volume has no particle: no region stands out of the background (Otsu threshold "
                         f"{t0:.3g}, {int(mask0.sum())} voxels above it, background noise {noise_bg:.3g} "
                         "after smoothing over a voxel)")  # fmt: skip
    with np.errstate(all="ignore"):
        from skimage.filters import threshold_multiotsu

        try:
            t0 = min(t0, float(threshold_multiotsu(smooth, classes=3)[0]))
        except ValueError:  # too few grey levels for three classes
            pass
    elong = 1.0 if max_tilt_degrees is None else wedge_elongation(max_tilt_degrees)
    band = 2.0 * voxel if surface_width_angstrom is None else check_positive(surface_width_angstrom,
                                                                             "surface_width_angstrom")  # fmt: skip
    sampling = (voxel / elong, voxel, voxel)  # distances along z count 1/e: the band is e times thicker there

    def interior_of(mask):
        return ndimage.distance_transform_edt(mask, sampling=sampling) > band

    levels_from = "z-contrast" if isinstance(levels, str) else "user"
    if levels is None:
        mask0 = _particle_mask(smooth, t0)
        interior = interior_of(mask0)
        if interior.sum() < 50:
            raise ValueError(f"volume: the particle has {int(interior.sum())} voxels deeper than {band:.3g} Å "
                             "below its surface, too few to fit the pure levels; give levels")  # fmt: skip
        fit = fit_pure_levels(data[interior], rng=rng)
        lv = {lo_el: fit["low"], hi_el: fit["high"]}
        lv_sigma = {lo_el: fit["low_sigma"], hi_el: fit["high_sigma"]}
        noise = fit["noise"]
    else:
        if isinstance(levels, str):
            if levels != "z-contrast":
                raise ValueError(f"levels must be None, 'z-contrast', two numbers or a dict, got {levels!r}")
            unknown = [e for e in elements if e not in ATOMIC_DENSITY]
            if unknown:
                raise ValueError(f"levels='z-contrast' needs the bulk density of {unknown} (known: "
                                 f"{sorted(ATOMIC_DENSITY)}); give the levels")  # fmt: skip
            levels = {e: default_haadf_weights(elements)[e] * ATOMIC_DENSITY[e] for e in elements}
        if isinstance(levels, dict):
            missing = [e for e in elements if e not in levels]
            if missing:
                raise ValueError(f"levels has no value for {missing} (it has {sorted(levels)})")
            vals = [levels[e] for e in elements]
        else:
            vals = list(levels)
            if len(vals) != 2:
                raise ValueError(f"levels must hold two values (one per element), got {levels!r}")
        vals = [check_real(v, f"levels[{e!r}]") for v, e in zip(vals, elements, strict=True)]
        if vals[0] == vals[1]:
            raise ValueError(f"levels must differ, got {vals[0]} for both elements")
        lv = dict(zip(elements, vals, strict=True))
        hi_el, lo_el = sorted(elements, key=lambda e: -lv[e])
        lv_sigma = dict.fromkeys(elements, 0.0)
        noise = None
    threshold = 0.5 * min(lv.values())
    if threshold <= 0:
        raise ValueError(f"levels must be > 0 (a particle brighter than vacuum), got {lv}")
    mask = _particle_mask(smooth, threshold)
    if mask.sum() < 27:
        raise ValueError(f"volume has no particle: {int(mask.sum())} voxels above half the lower level "
                         f"({threshold:.3g})")  # fmt: skip
    interior = interior_of(mask)
    if noise is None:  # user levels: the voxel noise from the interior's local fluctuations
        resid = data - ndimage.uniform_filter(data, 3)
        r = resid[interior] if interior.sum() >= 50 else resid[mask]
        noise = 1.4826 * float(np.median(np.abs(r - np.median(r)))) * np.sqrt(27 / 26)

    span = lv[hi_el] - lv[lo_el]
    c_hi = (data - lv[lo_el]) / span
    clipped = mask & ((c_hi < 0) | (c_hi > 1))
    c_hi = np.clip(c_hi, 0.0, 1.0)
    var = (noise**2 + (1 - c_hi) ** 2 * lv_sigma[lo_el] ** 2 + c_hi**2 * lv_sigma[hi_el] ** 2) / span**2
    sig = np.where(mask, np.sqrt(var), 0.0)
    c_hi = np.where(mask, c_hi, 0.0)
    flags = np.zeros(data.shape, np.uint8)
    flags[mask & ~interior] |= FLAG_PARTIAL_VOLUME
    flags[clipped] |= FLAG_CLIPPED
    conc = np.stack([c_hi if e == hi_el else np.where(mask, 1.0 - c_hi, 0.0) for e in elements])
    source = volume.provenance.get("series_source") if isinstance(getattr(volume, "provenance", None), dict) else None
    prov = {"levels": {e: float(lv[e]) for e in elements}, "level_sigma": {e: float(lv_sigma[e]) for e in elements},
            "levels_from": "fit" if levels is None else levels_from, "voxel_noise": float(noise),
            "mask_threshold": float(threshold), "max_tilt_degrees": max_tilt_degrees, "wedge_elongation": elong,
            "surface_width_angstrom": band, "smooth_angstrom": smooth_a, "source": source}  # fmt: skip
    return ElementalVolumes(elements, conc, np.stack([sig, sig]), None, mask, flags, voxel, "haadf-composition",
                            provenance=prov)  # fmt: skip


def fit_interface_width(concentration, voxel_size_angstrom: float, *, mask=None, axis: int = 1,
                        central_fraction: float = 0.5) -> dict:  # fmt: skip
    """Fit an erf profile to a core element's concentration against the distance from a rod's axis.

    Model: ``c(r) = c_out + (c_in - c_out) (1 - erf((r - r0) / w)) / 2`` (the profile of
    :func:`~atomscount.elemental.phantoms.core_shell_rod`), with r the distance [Å]
    from the line through the volume's centre along ``axis``.

    Parameters
    ----------
    concentration : ndarray (nz, ny, nx)
        The core element's concentration.
    voxel_size_angstrom : float
    mask : ndarray of bool, optional
        Voxels to use (e.g. the particle without its flagged surface voxels).
    axis : int
        The rod's axis (1: y, the tilt axis).
    central_fraction : float
        Only this central fraction of the volume's length along ``axis`` is used (away
        from a rod's caps, where the distance from the axis is not the distance from the surface).

    Returns
    -------
    dict
        ``width_angstrom`` (w), ``radius_angstrom`` (r0), ``c_in``, ``c_out``,
        ``width_sigma_angstrom``.
    """
    from scipy.optimize import curve_fit
    from scipy.special import erf

    c = np.asarray(concentration, dtype=np.float64)
    voxel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    if c.ndim != 3:
        raise ValueError(f"concentration must be a (nz, ny, nx) volume, got shape {c.shape}")
    axis = int(axis)
    frac = check_real(central_fraction, "central_fraction", low=0.0, high=1.0, open_low=True)
    use = np.ones(c.shape, bool) if mask is None else np.asarray(mask, bool).copy()
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2.0) * voxel for n in c.shape], indexing="ij")
    use &= np.abs(grids[axis]) <= 0.5 * frac * c.shape[axis] * voxel
    r = np.sqrt(sum(g**2 for i, g in enumerate(grids) if i != axis))
    rr, cc = r[use], c[use]
    if rr.size < 10:
        raise ValueError(f"mask: {rr.size} voxels to fit, need at least 10")

    def model(x, c_in, c_out, r0, w):
        return c_out + (c_in - c_out) * 0.5 * (1.0 - erf((x - r0) / max(abs(w), 1e-6)))

    r_mid = float(np.median(rr))
    p, cov = curve_fit(model, rr, cc, p0=[1.0, 0.0, 0.6 * r_mid, 2.0 * voxel], maxfev=20000)
    return {"width_angstrom": float(abs(p[3])), "radius_angstrom": float(p[2]), "c_in": float(p[0]),
            "c_out": float(p[1]), "width_sigma_angstrom": float(np.sqrt(cov[3, 3]))}  # fmt: skip
