"""Alignment of a tilt series and voxel-level composition.

:func:`align_projections` puts each projection's centre of mass on the image
centre (a single-axis series of an object whose centre of mass sits on the tilt
axis projects it there at every tilt), and, along the tilt axis, cross-correlates
each projection's profile with its neighbour's: the two classic alignments of
electron tomography, for series whose shifts are a few pixels.

:func:`concentration_map` follows Skorikov et al., ACS Nano 13, 13421 (2019): in a
reconstruction of a two-element particle at lower than atomic resolution, a voxel's
intensity is linear in its composition, so the concentration of element b is
``(I - I_a) / (I_b - I_a)``, with I_a and I_b the intensities of the pure elements.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from .._checks import check_choice, check_real
from .geometry import TiltSeries
from .reconstruct import Volume

__all__ = ["align_projections", "concentration_map"]


def align_projections(series: TiltSeries, *, method: str = "com+xcorr") -> tuple[TiltSeries, np.ndarray]:
    """Shift the projections into register; returns the aligned series and the shifts applied [Å] (k, 2: x, y).

    Parameters
    ----------
    method : {"com", "com+xcorr"}
        Centre of mass in x and y; or centre of mass in x (across the tilt axis) and a
        cross-correlation of the profiles along y (the tilt axis) with the previous
        projection, starting from the projection nearest zero tilt.
    """
    if not isinstance(series, TiltSeries):
        raise TypeError(f"series must be a TiltSeries, got {type(series).__name__}")
    check_choice(method, "method", {"com", "com+xcorr"})
    images = series.images
    k, rows, cols = images.shape
    centre = np.array([(cols - 1) / 2.0, (rows - 1) / 2.0])
    shifts = np.zeros((k, 2))  # pixels to add (x, y)
    for i in range(k):
        img = np.clip(images[i] - np.median(images[i]), 0.0, None)
        total = img.sum()
        if total <= 0:
            continue
        cy, cx = ndimage.center_of_mass(img)
        shifts[i] = centre - [cx, cy]
    if method == "com+xcorr":
        profiles = np.clip(images - np.median(images, axis=(1, 2), keepdims=True), 0.0, None).sum(axis=2)
        order = np.argsort(np.abs(series.angles[:, 1] if series.single_axis else np.arange(k)))
        ref = order[0]
        shifts[ref, 1] = 0.0
        done = [ref]
        for i in order[1:]:
            j = min(done, key=lambda d: abs(series.angles[d, 1] - series.angles[i, 1]))
            shifts[i, 1] = shifts[j, 1] + _profile_shift(profiles[j], profiles[i])
            done.append(i)
        # the y shifts are relative: centre them on the profiles' centre of mass at the reference
        cy = ndimage.center_of_mass(profiles[ref])[0]
        shifts[:, 1] += (rows - 1) / 2.0 - cy
    aligned = shift_images(images, shifts)
    prov = dict(series.provenance, aligned=method, alignment_shifts_angstrom=(shifts * series.pixel_size_angstrom)
                .tolist())  # fmt: skip
    return dataclasses.replace(series, images=aligned, provenance=prov), shifts * series.pixel_size_angstrom


def shift_images(images, shifts):
    """Each image (k, rows, cols) moved by ``shifts`` (k, 2: x, y) pixels, by Fourier shifts: exact for
    band-limited images, no interpolation blur (the edges wrap: keep a margin)."""
    return np.stack([np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), (s[1], s[0]))).real
                     for img, s in zip(images, shifts, strict=True)])  # fmt: skip


def _profile_shift(ref, moving):
    """Sub-pixel shift to add to ``moving`` so that it matches ``ref`` (1D cross-correlation, parabolic peak)."""
    n = len(ref)
    corr = np.correlate(ref - ref.mean(), moving - moving.mean(), mode="full")
    p = int(np.argmax(corr))
    frac = 0.0
    if 0 < p < len(corr) - 1:
        a, b, c = corr[p - 1], corr[p], corr[p + 1]
        den = a - 2 * b + c
        frac = 0.5 * (a - c) / den if den != 0 else 0.0
    return p + frac - (n - 1)


def concentration_map(volume: Volume, *, intensity_a: float, intensity_b: float, support_fraction: float = 0.5):
    """Per-voxel concentration of element b, ``(I - I_a) / (I_b - I_a)`` clipped to [0, 1].

    Parameters
    ----------
    volume : Volume
        A reconstruction at lower than atomic resolution (or smoothed to it).
    intensity_a, intensity_b : float
        Voxel intensities of the pure elements (in the volume's units).
    support_fraction : float
        Voxels below this fraction of ``min(intensity_a, intensity_b)`` are outside
        the particle and get NaN.

    Raises
    ------
    ValueError
        For equal or non-finite intensities.
    """
    ia = check_real(intensity_a, "intensity_a")
    ib = check_real(intensity_b, "intensity_b")
    if ia == ib:
        raise ValueError(f"intensity_a and intensity_b must differ, both are {ia}")
    frac = check_real(support_fraction, "support_fraction", low=0.0, high=1.0)
    data = np.asarray(volume.data, dtype=np.float64)
    c = np.clip((data - ia) / (ib - ia), 0.0, 1.0)
    c[data < frac * min(ia, ib)] = np.nan
    return c
