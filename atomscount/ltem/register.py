"""Registration of a Lorentz TEM through-focus series: the shift between images, and the small change of
magnification and rotation that a change of objective-lens current (defocus) brings.

Each image is aligned to a reference image (the one nearest focus by default). Magnification and rotation
come from the log-polar resampling of the Fourier magnitudes, which a shift leaves unchanged; the shift is
then found by phase correlation with sub-pixel refinement (:func:`skimage.registration.phase_cross_correlation`).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_bool, check_integer

__all__ = ["register_images", "register_series", "apply_transform"]

_RADIAL_FRACTION = 0.5  # of the half-width: the band of spatial frequencies the log-polar match uses


def _check_stack(images, name: str) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a (k, ny, nx) stack of images, got shape {arr.shape}")
    if min(arr.shape[1:]) < 16:
        raise ValueError(f"{name} images must be at least 16 x 16 pixels, got {arr.shape[1:]}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        k, r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name} has {int(bad.sum())} NaN/inf pixels (first in image {k}, row {r}, col {c})")
    return arr


def _window(shape) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1]))


def _scale_rotation(reference: np.ndarray, moving: np.ndarray, upsample: int) -> tuple[float, float]:
    """(magnification, rotation [degrees]) that map ``reference`` onto ``moving`` about the image centre."""
    from skimage.registration import phase_cross_correlation
    from skimage.transform import warp_polar

    ny, nx = reference.shape
    w = _window(reference.shape)
    # zero padding to twice the size samples the spectrum twice as finely: smooth images keep their
    # power at low frequencies, where the log-polar grid is coarse
    padded = (2 * ny, 2 * nx)
    mags = [np.abs(np.fft.fftshift(np.fft.fft2((im - im.mean()) * w, s=padded))) for im in (reference, moving)]
    radius = _RADIAL_FRACTION * min(2 * ny, 2 * nx)
    # the spectrum of the gradient: the window's own spectrum (which does not scale) is a peak at zero
    ky, kx = np.meshgrid(np.arange(2 * ny) - ny, np.arange(2 * nx) - nx, indexing="ij")
    mags = [m * np.hypot(ky, kx) for m in mags]
    n_radial = 512
    polar = [warp_polar(np.log1p(m / m.mean()), center=(ny, nx), radius=radius, output_shape=(360, n_radial),
                        scaling="log") for m in mags]  # fmt: skip
    klog = radius ** (1.0 / n_radial)  # radius ratio between neighbouring columns
    # below 3 padded pixels the grid is too coarse to resolve a rotation
    band = slice(int(np.ceil(np.log(3.0) / np.log(klog))), n_radial)
    (d_angle, d_log), _, _ = phase_cross_correlation(polar[0][:, band], polar[1][:, band],
                                                     upsample_factor=upsample, normalization=None)  # fmt: skip
    # a magnified image has its Fourier magnitudes shrunk by the same factor; the magnitudes are
    # symmetric, so the rotation is known modulo 180 degrees
    magnification = float(klog**d_log)
    rotation = (-float(d_angle) + 90.0) % 180.0 - 90.0
    return magnification, rotation


def apply_transform(image, *, shift_px=(0.0, 0.0), magnification=1.0, rotation_deg=0.0) -> np.ndarray:
    """Resample ``image`` so that it is magnified, rotated about its centre, then shifted.

    Parameters
    ----------
    image : (ny, nx) array_like
        The image.
    shift_px : (2,) sequence of float
        Shift (rows, columns) [pixels].
    magnification : float
        Magnification about the image centre [dimensionless, > 0].
    rotation_deg : float
        Counter-clockwise rotation about the image centre [degrees].

    Returns
    -------
    numpy.ndarray
        The resampled image, edges filled by the nearest pixel.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    centre = (np.array(img.shape) - 1) / 2.0
    t = np.deg2rad(rotation_deg)
    # output (r, c) samples the input at centre + R^-1 (out - centre - shift) / magnification
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) / magnification
    matrix = rot.T
    offset = centre - matrix @ (centre + np.asarray(shift_px, dtype=np.float64))
    return ndimage.affine_transform(img, matrix, offset=offset, order=3, mode="nearest")


def register_images(images, *, reference: int | None = None, scale_rotation: bool = True,
                    upsample: int = 20) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Align each image of a stack to one of them.

    Parameters
    ----------
    images : (k, ny, nx) array_like
        The through-focus series.
    reference : int, optional
        Index of the image the others are aligned to (default: the middle one, which in a
        symmetric series is nearest focus).
    scale_rotation : bool
        Fit magnification and rotation as well as the shift (default True).
    upsample : int
        Sub-pixel precision of the shift and of the log-polar match: 1/upsample pixel.

    Returns
    -------
    registered : (k, ny, nx) numpy.ndarray
        The images resampled onto the reference.
    transforms : (k, 4) numpy.ndarray
        For each image: shift (rows, columns) [pixels], magnification [dimensionless] and rotation
        [degrees] that map the reference onto it (:func:`apply_transform` of the reference with these
        gives the image).

    Raises
    ------
    ValueError
        Naming ``images`` (not a stack, NaN pixels) or ``reference`` (out of range).
    """
    from skimage.registration import phase_cross_correlation

    stack = _check_stack(images, "images")
    k = stack.shape[0]
    ref = check_integer(k // 2 if reference is None else reference, "reference", low=0, high=k - 1)
    scale_rotation = check_bool(scale_rotation, "scale_rotation")
    upsample = check_integer(upsample, "upsample", low=1)
    w = _window(stack.shape[1:])
    transforms = np.zeros((k, 4))
    transforms[:, 2] = 1.0
    registered = stack.copy()
    for i in range(k):
        if i == ref:
            continue
        mag, rot = _scale_rotation(stack[ref], stack[i], upsample) if scale_rotation else (1.0, 0.0)
        # undo magnification and rotation first, then find the remaining shift
        unwarped = apply_transform(stack[i], magnification=1.0 / mag, rotation_deg=-rot)
        a, b = (im - im.mean() for im in (stack[ref], unwarped))
        shift, _, _ = phase_cross_correlation(a * w, b * w, upsample_factor=upsample, normalization=None)
        registered[i] = apply_transform(unwarped, shift_px=shift)
        transforms[i] = (-shift[0], -shift[1], mag, rot)
    return registered, transforms


def register_series(series, *, reference: int | None = None, scale_rotation: bool = True, upsample: int = 20):
    """Align the images of an :class:`~atomscount.ltem.LTEMSeries` to one of them.

    Parameters
    ----------
    series : LTEMSeries
        The through-focus series (defocus [nm], pixel size [nm]).
    reference : int, optional
        Index of the reference image (default: the one nearest focus, smallest ``|defocus|``).
    scale_rotation : bool
        Fit magnification and rotation as well as the shift (default True).
    upsample : int
        Sub-pixel precision: 1/upsample pixel.

    Returns
    -------
    registered : LTEMSeries
        The same series with its images resampled onto the reference; its provenance records the
        transforms.
    transforms : (k, 4) numpy.ndarray
        Shift (rows, columns) [pixels], magnification and rotation [degrees] of each image, as
        :func:`register_images` returns them.
    """
    import dataclasses

    defoci = np.asarray(series.defoci_nm, dtype=np.float64)
    if reference is None:
        reference = int(np.argmin(np.abs(defoci)))
    images, transforms = register_images(series.images, reference=reference, scale_rotation=scale_rotation,
                                         upsample=upsample)  # fmt: skip
    provenance = dict(getattr(series, "provenance", {}) or {})
    provenance["registration"] = {"reference": int(reference), "transforms": transforms.tolist()}
    return dataclasses.replace(series, images=images, provenance=provenance), transforms
