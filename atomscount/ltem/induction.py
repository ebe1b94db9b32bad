"""Projected in-plane induction from the magnetic phase, and its colour-wheel display."""

from __future__ import annotations

import numpy as np

__all__ = ["HBAR_OVER_E_T_NM2", "colour_wheel", "induction_map"]

#: ħ/e in T·nm² (= 6.582119569e-16 V·s): a phase gradient of 1 rad/nm is B⊥·t = 658.2 T·nm.
HBAR_OVER_E_T_NM2 = 6.582119569e-16 * 1e18


def _check_map_pair(a, b, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as float64 2D maps of one shape with finite pixels; a ValueError naming ``names``
    (e.g. ``("mx", "my")``) otherwise."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = names
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must be 2D maps of one shape, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"{na} and {nb} must be finite; they have NaN or infinite pixels")
    return a, b


def induction_map(phase, pixel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Projected in-plane induction B⊥·t from the gradient of the (magnetic) phase.

    The Aharonov–Bohm phase of an electron crossing a film along z gives
    ``∂φ/∂x = (e/ħ) ∫B_y dz`` and ``∂φ/∂y = -(e/ħ) ∫B_x dz``, so
    ``(bx, by) = (ħ/e) (-∂φ/∂y, ∂φ/∂x)``: the phase gradient turned by 90°.
    The gradient is taken by central differences (one-sided at the edges).

    Parameters
    ----------
    phase : array_like, shape (ny, nx)
        Phase [rad]; remove the electrostatic part first for the magnetic induction.
    pixel_nm : float
        Pixel size [nm].

    Returns
    -------
    bx, by : ndarray, shape (ny, nx)
        Projected induction ∫B dz [T·nm]; divide by the film thickness [nm] for B [T].
    """
    phi = np.asarray(phase, dtype=np.float64)
    if phi.ndim != 2 or min(phi.shape) < 2:
        raise ValueError(f"phase must be a 2D map of at least 2x2 pixels, got shape {phi.shape}")
    if not np.all(np.isfinite(phi)):
        raise ValueError(f"phase has {int((~np.isfinite(phi)).sum())} NaN or infinite pixels")
    px = float(pixel_nm)
    if not (np.isfinite(px) and px > 0):
        raise ValueError(f"pixel_nm must be a finite number > 0, got {pixel_nm!r}")
    dphi_dy, dphi_dx = np.gradient(phi, px)
    return -HBAR_OVER_E_T_NM2 * dphi_dy, HBAR_OVER_E_T_NM2 * dphi_dx


def colour_wheel(bx, by, *, saturation: float | None = None) -> np.ndarray:
    """RGB colour-wheel image of an in-plane vector field: hue for direction, brightness for magnitude.

    The hue is the direction's angle from +x (counter-clockwise, y up) over 360° on the HSV
    circle: +x red, +y yellow-green, -x cyan, -y violet.

    Parameters
    ----------
    bx, by : array_like, shape (ny, nx)
        Field components (e.g. B⊥·t [T·nm] from :func:`induction_map`).
    saturation : float, optional
        Magnitude shown at full brightness, in the units of ``bx``; larger
        magnitudes are clipped. Default: the 99th percentile of the magnitude.

    Returns
    -------
    ndarray, shape (ny, nx, 3)
        RGB values in [0, 1]; black where the field vanishes.
    """
    from matplotlib.colors import hsv_to_rgb

    bx, by = _check_map_pair(bx, by, ("bx", "by"))
    mag = np.hypot(bx, by)
    if saturation is None:
        saturation = float(np.percentile(mag, 99))
    else:
        saturation = float(saturation)
        if not (np.isfinite(saturation) and saturation > 0):
            raise ValueError(f"saturation must be a finite number > 0, got {saturation!r}")
    value = np.clip(mag / saturation, 0.0, 1.0) if saturation > 0 else np.zeros_like(mag)
    hue = np.mod(np.arctan2(by, bx), 2 * np.pi) / (2 * np.pi)
    return hsv_to_rgb(np.stack([hue, np.ones_like(hue), value], axis=-1))
