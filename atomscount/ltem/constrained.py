"""A retrieved phase constrained by a known saturation magnetisation (``|m| = 1`` in the film).

A ferromagnetic film is magnetised to Ms everywhere, and users know Ms (the material) and the film
thickness t. The magnetic phase is then fixed by the in-plane direction of m alone
(:func:`~atomscount.ltem.forward.magnetic_phase`), and the slowest Fourier modes of the phase, which the
images barely constrain (a vortex's cone, a wall's tent), follow from Ms·t and the directions that the
retrieval gets right.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .._checks import check_integer, check_positive, check_real
from .forward import _MU0, _frequencies
from .induction import HBAR_OVER_E_T_NM2 as _HBAR_OVER_E
from .result import PhaseRetrieval

__all__ = ["constrain_magnetisation"]

_EDGE_FACTOR = 3.0  # an edge: a phase gradient above this many times the largest magnetic one
_MIN_ENCLOSED = 0.05  # an enclosed film smaller than this fraction of the field: no closed edge found
_MIN_STRENGTH = 0.05  # a retrieved induction below this fraction of μ0 Ms t (median in the film): no directions


def _film_from_edges(phase, pixel_nm: float, magnetic_gradient: float) -> np.ndarray:
    """The film enclosed by the electrostatic step at its edge; the whole field when no edge closes."""
    from scipy import ndimage

    gy, gx = np.gradient(phase, pixel_nm)
    edge = np.hypot(gx, gy) > _EDGE_FACTOR * magnetic_gradient
    film = ndimage.binary_fill_holes(ndimage.binary_closing(edge, iterations=2))
    if (film & ~edge).mean() < _MIN_ENCLOSED:
        return np.ones(phase.shape, dtype=bool)
    return film


def constrain_magnetisation(retrieval, *, ms_a_per_m: float, thickness_nm: float, mask=None,
                            mean_inner_potential_v: float | None = None, beam_energy_ev: float = 300e3,
                            pixel_nm: float | None = None, smoothing_nm: float = 2.0,
                            cutoff_per_nm: float = 0.008, n_iter: int = 10) -> PhaseRetrieval:  # fmt: skip
    """Replace the slowest modes of a retrieved phase by those of a film magnetised to a known Ms.

    In a ferromagnetic film ``|m| = 1``: the in-plane direction of m is taken from the retrieved
    induction (:func:`~atomscount.ltem.induction.induction_map`, smoothed by a Gaussian of
    ``smoothing_nm``; the induction of a film with divergence-free m points along m), m is set to that unit
    vector in the film and to 0 outside, and its magnetic phase is computed with Ms and t
    (:func:`~atomscount.ltem.forward.magnetic_phase`). The electrostatic phase of the film is
    ``c × film``, with ``c = σ V₀ t`` when the mean inner potential is given, else fitted (with a constant
    and a plane) to the retrieved phase's modes below the cutoff. The result takes the modes below
    ``cutoff_per_nm`` (a Gaussian low-pass, ``exp(−k²/2k₀²)``) from this model and the faster ones from
    the retrieval, which the images determine. The directions are then taken again from the result, up to
    ``n_iter`` times (a fixed-point iteration), stopping, with the last iterate, when a step (the RMS
    change of the phase) grows instead of shrinking. It helps where the retrieval gets the directions of the
    induction right and its slow modes' magnitude wrong (the vortex at 100 e/px); it cannot mend directions
    lost to noise, and it does not apply to films magnetised out of plane (skyrmion lattices, whose
    in-plane ``|m⊥|`` varies from 0 to 1).

    Parameters
    ----------
    retrieval : PhaseRetrieval or array_like, shape (ny, nx)
        The retrieved phase [rad] (e.g. from :func:`~atomscount.ltem.retrieve.retrieve_phase`).
    ms_a_per_m : float
        Saturation magnetisation [A/m] (> 0).
    thickness_nm : float
        Film thickness [nm] (> 0).
    mask : array_like of bool, shape (ny, nx), optional
        The magnetic film. Default: what the film's electrostatic edge encloses (pixels where the
        phase gradient exceeds 3 × the largest magnetic one, ``μ₀ Ms t e/ħ``, closed and filled), or the
        whole field when no edge encloses at least 5 % of it (a continuous film).
    mean_inner_potential_v : float, optional
        Mean inner potential V₀ [V]; default: the film's electrostatic phase is fitted.
    beam_energy_ev : float
        Beam energy [eV], for ``σ`` when V₀ is given.
    pixel_nm : float, optional
        Pixel size [nm]; required with an array, taken from a :class:`PhaseRetrieval`.
    smoothing_nm : float
        Standard deviation of the Gaussian that smooths the induction before its direction is taken [nm]
        (>= 0).
    cutoff_per_nm : float
        ``k₀`` of the low-pass that selects the modes taken from the model [cycles/nm] (> 0).
    n_iter : int
        Most rounds of directions, model and blend (>= 1; 1: the plain projection).

    Returns
    -------
    PhaseRetrieval
        ``method`` is the input's with ``"+ms"``; ``parameters`` gains ``magnetisation`` (``ms_a_per_m``,
        ``thickness_nm``, ``film_fraction``, ``electrostatic_phase_rad`` (c), ``mask``: ``"given"``,
        ``"edge"`` or ``"whole field"``, ``smoothing_nm``, ``cutoff_per_nm``, ``iterations`` done, ``applied``,
        ``induction_fraction``: the retrieved induction's median in the film over μ₀ Ms t). When that
        fraction is below 0.05 (a flat retrieval: no directions to take) the retrieval is returned unchanged,
        with ``applied`` False and a ``UserWarning``.

    Raises
    ------
    ValueError
        Naming ``ms_a_per_m``, ``thickness_nm``, ``mask``, ``mean_inner_potential_v``, ``pixel_nm``,
        ``smoothing_nm``, ``cutoff_per_nm`` or ``n_iter`` and the bad value (``TypeError`` for a
        non-number).

    Examples
    --------
    >>> from atomscount.ltem import constrain_magnetisation, vortex_disk
    >>> sample = vortex_disk(shape=(64, 64), radius_nm=45.0)
    >>> r = constrain_magnetisation(sample.phase(), pixel_nm=2.0, ms_a_per_m=8e5, thickness_nm=30.0)
    >>> r.parameters["magnetisation"]["mask"]
    'edge'
    """
    from scipy import ndimage

    from .forward import interaction_constant, magnetic_phase
    from .induction import induction_map

    ms = check_positive(ms_a_per_m, "ms_a_per_m")
    t = check_positive(thickness_nm, "thickness_nm")
    sm = check_positive(smoothing_nm, "smoothing_nm", allow_zero=True)
    k0 = check_positive(cutoff_per_nm, "cutoff_per_nm")
    n_iter = check_integer(n_iter, "n_iter", low=1)
    if isinstance(retrieval, PhaseRetrieval):
        base = retrieval
        if pixel_nm is not None and float(pixel_nm) != base.pixel_nm:
            raise ValueError(f"pixel_nm must be left out or equal the retrieval's {base.pixel_nm}, got {pixel_nm!r}")
    else:
        if pixel_nm is None:
            raise ValueError("pixel_nm is required with a phase array, got None")
        phase = np.asarray(retrieval, dtype=np.float64)
        base = PhaseRetrieval(phase=phase, amplitude=np.ones_like(phase), pixel_nm=check_positive(pixel_nm, "pixel_nm"),
                              method="phase")  # fmt: skip
    phase, px = base.phase, base.pixel_nm
    grad = _MU0 * ms * t / _HBAR_OVER_E  # the magnetic phase gradient of a saturated film [rad/nm]
    if mask is None:
        film = _film_from_edges(phase, px, grad)
        how = "edge" if not film.all() else "whole field"
    else:
        film = np.asarray(mask)
        if film.shape != phase.shape:
            raise ValueError(f"mask must have the phase's shape {phase.shape}, got shape {film.shape}")
        if film.dtype != bool:
            raise ValueError(f"mask must be a boolean array, got dtype {film.dtype}")
        if not film.any():
            raise ValueError("mask must mark at least one pixel of film, got none")
        how = "given"
    ny, nx = phase.shape
    ky, kx = _frequencies((ny, nx), px)
    low = np.exp(-(kx**2 + ky**2) / (2 * k0**2))

    def lowpass(a):
        return np.fft.ifft2(np.fft.fft2(a) * low).real

    fast = np.fft.fft2(phase) * (1 - low)  # the modes the images determine, kept from the retrieval
    if mean_inner_potential_v is not None:
        v0 = check_real(mean_inner_potential_v, "mean_inner_potential_v")
        c = interaction_constant(beam_energy_ev) * v0 * t
    bx, by = induction_map(phase, px)
    strength = float(np.median(np.hypot(bx, by)[film])) / (_MU0 * ms * t)
    if strength < _MIN_STRENGTH:  # no directions to take: the retrieval is returned unchanged
        warnings.warn(f"constrain_magnetisation: the retrieved induction in the film is {strength:.3g} of "
                      f"μ0 Ms t (median), below {_MIN_STRENGTH}: no directions to constrain, the phase is "
                      f"returned unchanged", UserWarning, stacklevel=2)  # fmt: skip
        info = {"ms_a_per_m": ms, "thickness_nm": t, "film_fraction": float(film.mean()), "mask": how,
                "applied": False, "induction_fraction": strength}  # fmt: skip
        return dataclasses.replace(base, parameters={**base.parameters, "magnetisation": info})
    current, previous, step, used = phase, None, np.inf, 0
    for it in range(n_iter):
        bx, by = induction_map(current, px)
        if sm > 0:
            bx, by = (ndimage.gaussian_filter(b, sm / px, mode="wrap") for b in (bx, by))
        norm = np.hypot(bx, by)
        norm[norm == 0] = 1.0
        model = magnetic_phase(bx / norm * film, by / norm * film, pixel_nm=px, thickness_nm=t, ms_a_per_m=ms)
        if mean_inner_potential_v is not None:
            pass
        elif film.all():
            c = 0.0
        else:  # c with a constant and a plane, by least squares on the slow modes of the retrieval
            y, x = np.mgrid[:ny, :nx]
            a = np.column_stack([lowpass(film.astype(float)).ravel(), np.ones(phase.size), x.ravel(), y.ravel()])
            coef, *_ = np.linalg.lstsq(a, lowpass(phase - model).ravel(), rcond=None)
            c = float(coef[0])
        new = np.fft.ifft2(np.fft.fft2(model + c * film) * low + fast).real
        # a fixed-point iteration: stop (keeping the last iterate) when a step grows instead of shrinking
        change = np.inf if previous is None else float(np.sqrt(np.mean((new - current) ** 2)))
        if previous is not None and change > step:
            break
        previous, current, step, used, c_used = current, new, change, it + 1, c
    out, c = current, c_used
    info = {"ms_a_per_m": ms, "thickness_nm": t, "film_fraction": float(film.mean()), "electrostatic_phase_rad": c,
            "mask": how, "smoothing_nm": sm, "cutoff_per_nm": k0, "iterations": used,
            "applied": True, "induction_fraction": strength}  # fmt: skip
    return dataclasses.replace(base, phase=out - out.mean(), induction=None, method=f"{base.method}+ms",
                               parameters={**base.parameters, "magnetisation": info})  # fmt: skip
