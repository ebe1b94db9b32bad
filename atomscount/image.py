"""The :class:`HAADFImage` container, coordinate conversions and normalisation.

Pixel ``[row, col]`` has its centre at ``x = col * pixel_size_angstrom`` and
``y = row * pixel_size_angstrom``. This is the only place that converts between
array indices and positions in Å.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._checks import check_2d_image, check_positive, check_real

__all__ = [
    "HAADFImage",
    "normalise",
    "pixels_to_angstrom",
    "angstrom_to_pixels",
    "check_pixel_size",
    "PIXEL_SIZE_RANGE_ANGSTROM",
]

#: Pixel sizes accepted [Å]: from well below any STEM's sampling to 10 µm (an overview image).
PIXEL_SIZE_RANGE_ANGSTROM = (1e-4, 1e5)


def check_pixel_size(value, name: str = "pixel_size_angstrom") -> float:
    """Return ``value`` as a float, raising unless it lies in :data:`PIXEL_SIZE_RANGE_ANGSTROM`.

    Parameters
    ----------
    value : float
        Pixel size [Å].
    name : str
        The argument's name, for the message.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is not finite, not positive, or outside the range.

    Examples
    --------
    >>> check_pixel_size(0.1)
    0.1
    """
    low, high = PIXEL_SIZE_RANGE_ANGSTROM
    return check_real(check_positive(value, name), name, low=low, high=high, why=" Å")


def _as_pairs(values, name: str) -> np.ndarray:
    """``values`` as an ``(n, 2)`` float array; one pair may be given as shape ``(2,)``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.shape == (2,):
        return arr.reshape(1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {arr.shape}")
    return arr


def pixels_to_angstrom(rows_cols, pixel_size_angstrom: float) -> np.ndarray:
    """Convert ``(n, 2)`` array indices ``[row, col]`` to positions ``(x, y)`` in Å.

    Parameters
    ----------
    rows_cols : array_like, shape (n, 2) or (2,)
        Fractional array indices.
    pixel_size_angstrom : float
        Pixel size [Å].

    Returns
    -------
    ndarray, shape (n, 2)
        Positions (x, y) [Å].

    Examples
    --------
    >>> pixels_to_angstrom([[2, 3]], 0.5)
    array([[1.5, 1. ]])
    """
    rc = _as_pairs(rows_cols, "rows_cols")
    return rc[:, ::-1] * check_pixel_size(pixel_size_angstrom)


def angstrom_to_pixels(positions, pixel_size_angstrom: float) -> np.ndarray:
    """Convert ``(n, 2)`` positions ``(x, y)`` in Å to fractional ``[row, col]`` indices.

    Parameters
    ----------
    positions : array_like, shape (n, 2) or (2,)
        Positions (x, y) [Å].
    pixel_size_angstrom : float
        Pixel size [Å].

    Returns
    -------
    ndarray, shape (n, 2)
        Fractional array indices [row, col].

    Examples
    --------
    >>> angstrom_to_pixels([[1.5, 1.0]], 0.5)
    array([[2., 3.]])
    """
    xy = _as_pairs(positions, "positions")
    return xy[:, ::-1] / check_pixel_size(pixel_size_angstrom)


@dataclasses.dataclass(frozen=True, repr=False, init=False)
class HAADFImage:
    """An atomic-resolution HAADF-STEM image with its calibration.

    Parameters
    ----------
    data : ndarray, shape (rows, cols)
        Intensities. After :func:`normalise` they are fractions of the incident beam.
    pixel_size_angstrom : float
        Pixel size [Å], within :data:`PIXEL_SIZE_RANGE_ANGSTROM`.
    metadata : dict, optional
        Free-form metadata (source file, microscope settings, ``normalised`` flag...).
        ``metadata["normalised"]``, when present, must be a bool.
    normalised : bool, optional
        Declare that ``data`` are already fractions of the incident beam (normalised
        elsewhere, or a simulation), so that SCS fitted from them are in Å² on a
        library's absolute scale and counting holds the library's scale at 1.
        Sets ``metadata["normalised"]``; None (default) leaves the metadata's flag
        as it is. False declares them raw detector counts.

    Examples
    --------
    >>> import numpy as np
    >>> img = HAADFImage(np.zeros((4, 6)), pixel_size_angstrom=0.1)
    >>> img.shape, img.extent_angstrom
    ((4, 6), (0.6000000000000001, 0.4))
    >>> HAADFImage(np.zeros((4, 6)), 0.1, normalised=True).is_normalised
    True
    """

    data: np.ndarray
    pixel_size_angstrom: float
    metadata: Any = dataclasses.field(default_factory=dict)

    def __init__(self, data, pixel_size_angstrom, metadata=None, *, normalised: bool | None = None):
        data = check_2d_image(data, "data", allow_nonfinite=True)
        data = data.copy()
        data.flags.writeable = False
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "pixel_size_angstrom", check_pixel_size(pixel_size_angstrom))
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict, got {metadata!r}")
        metadata = dict(metadata or {})
        if normalised is not None:
            if not isinstance(normalised, bool | np.bool_):
                raise TypeError(f"normalised must be True, False or None, got {normalised!r}")
            metadata["normalised"] = bool(normalised)
        flag = metadata.get("normalised", False)
        if not isinstance(flag, bool | np.bool_):  # bool("false") is True: take no other type
            raise TypeError(f"metadata['normalised'] must be a bool, got {flag!r}")
        object.__setattr__(self, "metadata", metadata)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def extent_angstrom(self) -> tuple[float, float]:
        """Field of view (width, height) [Å]."""
        return (self.shape[1] * self.pixel_size_angstrom, self.shape[0] * self.pixel_size_angstrom)

    @property
    def is_normalised(self) -> bool:
        return bool(self.metadata.get("normalised", False))

    def to_angstrom(self, rows_cols) -> np.ndarray:
        """Array indices ``[row, col]`` to positions ``(x, y)`` [Å]."""
        return pixels_to_angstrom(rows_cols, self.pixel_size_angstrom)

    def to_pixels(self, positions) -> np.ndarray:
        """Positions ``(x, y)`` [Å] to fractional array indices ``[row, col]``."""
        return angstrom_to_pixels(positions, self.pixel_size_angstrom)

    def contains(self, positions, *, margin_angstrom: float = 0.0) -> np.ndarray:
        """Boolean mask of positions that lie within the image (pixel centres' hull).

        Parameters
        ----------
        positions : array_like, shape (n, 2) or (2,)
            Positions (x, y) [Å].
        margin_angstrom : float
            How far beyond the outer pixel centres a position still counts as
            inside [Å]; negative to keep away from the edges.

        Returns
        -------
        ndarray (n,) of bool
        """
        xy = _as_pairs(positions, "positions")
        m = check_real(margin_angstrom, "margin_angstrom")
        p = self.pixel_size_angstrom
        xmax = (self.shape[1] - 1) * p
        ymax = (self.shape[0] - 1) * p
        return (xy[:, 0] >= -m) & (xy[:, 0] <= xmax + m) & (xy[:, 1] >= -m) & (xy[:, 1] <= ymax + m)

    def normalise(self, *, detector_vacuum: float, detector_black: float) -> HAADFImage:
        """Return the image normalised to the incident beam; see :func:`normalise`."""
        return normalise(self, detector_vacuum=detector_vacuum, detector_black=detector_black)

    def metadata_json(self) -> str:
        return json.dumps(dict(self.metadata), default=str)

    def __repr__(self) -> str:
        return (
            f"HAADFImage(shape={self.shape}, pixel_size_angstrom={self.pixel_size_angstrom:g}, "
            f"normalised={self.is_normalised})"
        )


def normalise(image: HAADFImage, *, detector_vacuum: float, detector_black: float) -> HAADFImage:
    """Normalise raw detector counts to the fraction of the incident beam.

    ``I_norm = (I - detector_black) / (detector_vacuum - detector_black)``, where
    ``detector_black`` is the detector reading with no electrons and
    ``detector_vacuum`` its reading with the full beam on the detector (from a
    detector scan). After this, integrated intensities are scattering
    cross-sections in Å² that compare directly with simulations.

    Parameters
    ----------
    image : HAADFImage
    detector_vacuum : float
        Mean detector reading under the full incident beam [counts].
    detector_black : float
        Mean detector reading with the beam blanked [counts].

    Returns
    -------
    HAADFImage
        With ``metadata["normalised"] = True`` and the two readings recorded.

    Raises
    ------
    TypeError
        If ``image`` is not a :class:`HAADFImage` or a reading is not a real number.
    ValueError
        If ``detector_vacuum <= detector_black`` or either is not finite.

    References
    ----------
    .. [1] E, H. et al. "Probe integrated scattering cross sections in the analysis of
       atomic resolution HAADF STEM images", Ultramicroscopy 133, 109 (2013).
       :doi:`10.1016/j.ultramic.2013.07.002`

    Examples
    --------
    >>> import numpy as np
    >>> raw = HAADFImage(np.full((2, 2), 1100.0), pixel_size_angstrom=0.1)
    >>> float(normalise(raw, detector_vacuum=11000.0, detector_black=100.0).data[0, 0])
    0.09174311926605505
    """
    if not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage, got {type(image).__name__}")
    detector_vacuum = check_real(detector_vacuum, "detector_vacuum")
    detector_black = check_real(detector_black, "detector_black")
    if detector_vacuum <= detector_black:
        raise ValueError(f"detector_vacuum must be > detector_black ({detector_black}), got {detector_vacuum}")
    if image.is_normalised:
        raise ValueError("image is already normalised (metadata['normalised'] is True)")
    data = (image.data - detector_black) / (detector_vacuum - detector_black)
    meta = dict(image.metadata)
    meta.update(normalised=True, detector_vacuum=float(detector_vacuum), detector_black=float(detector_black))
    return HAADFImage(data, image.pixel_size_angstrom, meta)
