"""Readers for microscope image files, one per format, each giving a :class:`~atomscount.image.HAADFImage`.

``.tif/.tiff`` (tifffile, with rosettasciio's reading of DigitalMicrograph and
vendor tags as the fallback for the calibration), ``.npy`` (NumPy),
``.dm3/.dm4/.emd/.ser/.hspy/.mrc`` (rosettasciio), and grey ``.png/.jpg/.jpeg``
(Pillow; display values, read with a warning). Nothing is chosen silently: a
file with several signals is read at the one titled HAADF (then ADF, then DF)
or refused with the list of what it holds, and a stack read without a ``frame``
warns that its first frame is used.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._checks import check_integer
from .image import HAADFImage, check_pixel_size

__all__ = ["read_image", "FileFormatError"]

_LENGTH_TO_ANGSTROM = {
    "a": 1.0,
    "å": 1.0,
    "angstrom": 1.0,
    "ang": 1.0,
    "nm": 10.0,
    "pm": 0.01,
    "µm": 1e4,
    "um": 1e4,
    "micron": 1e4,
    "m": 1e10,
    "cm": 1e8,
    "mm": 1e7,
}

#: Words in a signal's title that mark a dark-field image to count, best first.
_DETECTOR_WORDS = ("haadf", "adf", "df")

#: rosettasciio plugin of each extension read through rosettasciio.
_ROSETTASCIIO = {
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".emd": "emd",
    ".ser": "tia",
    ".hspy": "hspy",
    ".mrc": "mrc",
}

#: Relative difference above which the two pixel sizes of a file make its pixels non-square.
_SQUARE_RTOL = 1e-3


class FileFormatError(ValueError):
    """A file could not be read as the expected format or version."""


class _Signal(NamedTuple):
    """One signal of a file: its data, its pixel size (dy, dx) [Å] or None, metadata and title."""

    data: np.ndarray
    pixel: tuple[float, float] | None
    meta: dict
    title: str = ""
    samples: bool | None = None  # whether the last axis holds colour samples (None: unknown)
    is_image: bool | None = None  # whether it has two signal axes and at most one navigation axis (None: by ndim)


def _unit_factor(unit) -> float | None:
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\u00c5", "å").replace("\u212b", "å").replace("\u03bc", "µ")
    return _LENGTH_TO_ANGSTROM.get(key)


def read_image(path, *, pixel_size_angstrom: float | None = None, frame: int | str | None = None,
               signal: int | str | None = None) -> HAADFImage:  # fmt: skip
    """Read a 2D image file into a :class:`HAADFImage`.

    Parameters
    ----------
    path : str or Path
        ``.tif``, ``.tiff``, ``.npy``, ``.npz``, ``.dm3``, ``.dm4``, ``.emd``,
        ``.ser``, ``.hspy`` or ``.mrc``; or an 8- or 16-bit grey ``.png``,
        ``.jpg`` or ``.jpeg`` (display values, not a measurement: read with a
        warning, and only with ``pixel_size_angstrom``).
    pixel_size_angstrom : float, optional
        Pixel size [Å]. Overrides the file's calibration. Required when the file
        has none (``.npy``, PNG, JPEG, uncalibrated TIFF).
    frame : int or "mean", optional
        Which frame of a stack (3D data) to read, counted from 0, or ``"mean"``
        to average all frames (``metadata["frames_averaged"]`` records how
        many). Not given: frame 0, with a warning when the file holds several.
    signal : str or int, optional
        Which signal of a file that holds several (EMD, or any rosettasciio
        format): its title (case-insensitive) or its index in the file, counted
        from 0 as rosettasciio and HyperSpy list them. Not given: the one signal
        of a single-signal file, else the image whose title names the HAADF
        detector (then ADF, then DF).

    Returns
    -------
    HAADFImage
        ``metadata`` holds ``source_file``, ``pixel_size_source`` ("file" or
        "user"), ``format``, and, where they apply, ``title``, ``signal`` (its
        index in a multi-signal file), ``n_frames``, ``frame`` or
        ``frames_averaged``, ``normalised`` and ``microscope``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        If the file cannot be parsed, has an unsupported extension, holds no
        real-valued 2D image (complex data, a colour rendering whose channels
        differ, 4D data), non-square pixels, or an unusable calibration or
        ``normalised`` flag.
    TypeError
        If ``frame`` or ``signal`` has the wrong type.
    ValueError
        If no pixel size is available, it is outside the range
        :data:`~atomscount.image.PIXEL_SIZE_RANGE_ANGSTROM`, ``frame`` is
        outside the stack, ``signal`` names no signal of the file, or the file
        holds several signals and none (or more than one) is titled like a
        HAADF, ADF or DF image. The message lists the file's signals.

    Warns
    -----
    UserWarning
        When a stack is read without ``frame`` (frame 0 is used), when a
        colour image whose channels are all equal (a grey image saved as RGB)
        is read as its first channel, and for every PNG or JPEG (its values
        are display levels, not the detector's).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     np.save(f"{folder}/stack.npy", np.stack([np.zeros((4, 4)), np.ones((4, 4))]))
    ...     image = read_image(f"{folder}/stack.npy", pixel_size_angstrom=0.2, frame="mean")
    >>> float(image.data.mean()), image.metadata["frames_averaged"]
    (0.5, 2)
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or Path, got {path!r}")
    path = Path(path)
    frame = _check_frame(frame)
    signal = _check_signal(signal)
    if pixel_size_angstrom is not None:
        pixel_size_angstrom = check_pixel_size(pixel_size_angstrom)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist or is not a file: {str(path)!r}")
    suffix = path.suffix.lower()
    readers = {".tif": _read_tiff, ".tiff": _read_tiff, ".npy": _read_npy, ".npz": _read_npz,
               ".png": _read_display_image, ".jpg": _read_display_image, ".jpeg": _read_display_image}  # fmt: skip
    readers.update(dict.fromkeys(_ROSETTASCIIO, _read_rosettasciio))
    if suffix not in readers:
        raise FileFormatError(f"path has unsupported extension {suffix!r}; supported: {sorted(readers)}")
    try:
        signals = readers[suffix](path, calibrate=pixel_size_angstrom is None)
    except (FileFormatError, FileNotFoundError):
        raise
    except Exception as exc:  # any parser failure means a corrupt or foreign file
        raise FileFormatError(f"could not read {str(path)!r} as {suffix}: {exc}") from exc
    index = _choose_signal(signals, signal, path)
    sig = signals[index]
    meta = dict(sig.meta)
    if sig.title:
        meta["title"] = sig.title
    if len(signals) > 1:
        meta["signal"] = index
    if sig.is_image is False:
        raise FileFormatError(f"signal {index} of {str(path)!r} is not an image; the file holds "
                              f"{_describe_signals(signals)}")  # fmt: skip
    data = _real_frames(np.asarray(sig.data), sig.samples, path)
    if data.ndim not in (2, 3):
        raise FileFormatError(f"{str(path)!r} holds {data.ndim}D data of shape {data.shape}, expected 2D")
    data = _choose_frame(data, frame, path, meta)
    if pixel_size_angstrom is None:
        pixel_size_angstrom = _file_pixel_size(sig.pixel, path)
        meta["pixel_size_source"] = "file"
    else:
        meta["pixel_size_source"] = "user"
    meta["source_file"] = str(path)
    return HAADFImage(data.astype(np.float64), pixel_size_angstrom, meta)


def _check_frame(frame):
    """``frame`` as None, "mean" or an index >= 0."""
    if isinstance(frame, str):
        if frame.strip().lower() != "mean":
            raise ValueError(f"frame must be an integer >= 0 or 'mean', got {frame!r}")
        return "mean"
    if frame is None:
        return None
    return check_integer(frame, "frame", low=0, why=" or 'mean'")


def _check_signal(signal):
    """``signal`` as None, a title or an index >= 0."""
    if isinstance(signal, str):
        if not signal.strip():
            raise ValueError(f"signal must be a title or an index, got {signal!r}")
        return signal.strip()
    if signal is None:
        return None
    return check_integer(signal, "signal", low=0, why=" or a title")


def _describe_signals(signals) -> str:
    """What a file holds, for messages: ``0 'DPC' (image 6×7), 1 'HAADF' (3 frames of 6×7)``."""
    parts = []
    for i, s in enumerate(signals):
        shape = np.shape(s.data)
        if s.is_image is False or len(shape) not in (2, 3):
            kind = f"not an image: shape {shape}"
        elif len(shape) == 3 and not s.samples:
            kind = f"{shape[0]} frames of {shape[1]}×{shape[2]}"
        else:
            kind = f"image {shape[0]}×{shape[1]}"
        parts.append(f"{i} {s.title!r} ({kind})" if s.title else f"{i} untitled ({kind})")
    return ", ".join(parts)


def _choose_signal(signals, signal, path) -> int:
    """The index of the signal to read: by title or index, else the only one, else the HAADF/ADF/DF image."""
    where = str(path)
    n = len(signals)
    if n == 0:
        raise FileFormatError(f"{where!r} holds no signal")
    held = f"{where!r} holds {n} signal{'s' if n > 1 else ''}: {_describe_signals(signals)}"
    if isinstance(signal, int):
        if signal >= n:
            raise ValueError(f"signal must be < {n}: {held}; got {signal}")
        return signal
    if isinstance(signal, str):
        matches = [i for i, s in enumerate(signals) if s.title.strip().lower() == signal.lower()]
        if not matches:
            raise ValueError(f"signal {signal!r} is not a title in {held}: pass one of these titles or indices")
        if len(matches) > 1:
            raise ValueError(f"signal {signal!r} matches signals {matches}, {held}: pass signal= an index")
        return matches[0]
    if n == 1:
        return 0
    images = [i for i, s in enumerate(signals) if s.is_image]
    for word in _DETECTOR_WORDS:
        pattern = re.compile(rf"(?<![a-z]){word}(?![a-z])")
        matches = [i for i in images if pattern.search(signals[i].title.lower())]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ValueError(f"{held}; several are titled like {word.upper()} images ({matches}): pass signal= "
                             "a title or an index to choose one")  # fmt: skip
    raise ValueError(f"{held}; none is an image titled HAADF, ADF or DF: pass signal= a title or an index to "
                     "choose one")  # fmt: skip


def _choose_frame(data, frame, path, meta) -> np.ndarray:
    """The 2D image of ``data`` (2D, or a stack of frames) for ``frame``; records the choice in ``meta``."""
    where = str(path)
    if data.ndim == 2:
        if isinstance(frame, int) and frame != 0:
            raise ValueError(f"frame must be 0: {where!r} holds 1 frame, got {frame}")
        if frame == "mean":
            meta["frames_averaged"] = 1
        return data
    n = data.shape[0]
    meta["n_frames"] = n
    if frame == "mean":
        meta["frames_averaged"] = n
        return np.mean(data, axis=0, dtype=np.float64)
    if frame is None:
        if n > 1:
            warnings.warn(
                f"{where!r} holds {n} frames; using frame 0: pass frame='mean' to average them, or an index "
                "to choose one",
                UserWarning,
                stacklevel=3,
            )
        frame = 0
    if frame >= n:
        raise ValueError(f"frame must be < {n}: {where!r} holds {n} frames, got {frame}")
    meta["frame"] = frame
    return data[frame]


def _file_pixel_size(pixel, path) -> float:
    """The file's calibration ``(dy, dx)`` [Å] as one checked pixel size."""
    where = str(path)
    if pixel is None:
        raise ValueError(f"pixel_size_angstrom must be given: {where!r} has no length calibration")
    dy, dx = pixel
    if dy is not None and dx is not None and abs(dy - dx) > _SQUARE_RTOL * max(abs(dy), abs(dx)):
        raise FileFormatError(
            f"{where!r} has non-square pixels ({dy:.6g} Å high, {dx:.6g} Å wide); the column model needs square "
            "pixels: resample the image, or pass pixel_size_angstrom to override"
        )
    try:
        return check_pixel_size(dx if dx is not None else dy)
    except (TypeError, ValueError) as exc:
        raise FileFormatError(
            f"{where!r} has an unusable calibration ({exc}); pass pixel_size_angstrom to override it"
        ) from exc


def _real_frames(data, samples, path):
    """``data`` as real intensities, with colour samples (the last axis when ``samples``) made grey."""
    if data.dtype.names is not None:  # rosettasciio and NumPy keep RGB pixels as records
        if not set(data.dtype.names) <= set("RGBA"):
            raise FileFormatError(f"{str(path)!r} holds records with fields {data.dtype.names}, not intensities")
        data = np.stack([data[c] for c in "RGBA" if c in data.dtype.names], axis=-1)
        samples = True
    elif samples is None:  # no photometric tag: 8/16-bit with 3 or 4 values per pixel is RGB(A)
        samples = data.ndim == 3 and data.shape[-1] in (3, 4) and data.dtype in (np.uint8, np.uint16)
    if data.dtype.kind == "c":
        raise FileFormatError(
            f"{str(path)!r} holds complex data ({data.dtype}); HAADF intensities are real: "
            "save the modulus or the real part and read that"
        )
    if data.dtype.kind not in "biuf":
        raise FileFormatError(f"{str(path)!r} holds {data.dtype} data, not intensities")
    if not samples:
        return data
    colour = data[..., :3] if data.shape[-1] >= 3 else data[..., :1]
    if np.any(colour != colour[..., :1]):
        raise FileFormatError(
            f"{str(path)!r} holds a colour image ({data.shape[-1]} samples per pixel whose channels differ); "
            "a colour rendering is not a measurement: read the microscope's original grey-scale file"
        )
    warnings.warn(
        f"{str(path)!r} holds a grey image saved with {data.shape[-1]} samples per pixel; "
        "reading the first (display values, which may be rescaled from the detector's)",
        UserWarning,
        stacklevel=3,
    )
    return data[..., 0]


def _check_magic(path, magic: bytes, what: str) -> None:
    """Refuse a file that does not start as ``what`` does (a PNG or a text file named ``.npy``)."""
    with open(path, "rb") as fh:
        head = fh.read(len(magic))
    if head != magic:
        raise FileFormatError(f"{str(path)!r} is not a {what} (it starts with {head[:8]!r}, not {magic!r}); "
                              "give the file its real extension")  # fmt: skip


def _numpy_refusal(path, exc: ValueError, what: str) -> FileFormatError:
    if "allow_pickle" in str(exc):  # numpy's advice to unpickle a file of unknown origin is not ours to give
        return FileFormatError(f"{str(path)!r} holds Python objects, not a numeric array; they are not loaded "
                               "(unpickling can run code): save the image as a numeric array")  # fmt: skip
    return FileFormatError(f"{str(path)!r} is not a valid {what}: {exc}")


def _read_npy(path, *, calibrate: bool):
    _check_magic(path, b"\x93NUMPY", ".npy array")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise _numpy_refusal(path, exc, ".npy array") from None
    return [_Signal(data, None, {"format": "npy"})]


#: Pillow modes of a grey image, and of colour images whose channels may still be equal.
_GREY_MODES = {"L", "I;16", "I;16B", "I;16L", "I", "F"}
_COLOUR_MODES = {"LA", "RGB", "RGBA", "P", "PA"}


def _read_display_image(path, *, calibrate: bool):
    """A PNG or JPEG: a grey image's display values, with a warning (a colour one with equal channels too)."""
    from PIL import Image

    with Image.open(path) as im:
        kind, mode = im.format, im.mode
        if mode in ("P", "PA"):
            im = im.convert("RGBA")
        elif mode == "1":
            im = im.convert("L")
        elif mode not in _GREY_MODES | _COLOUR_MODES:
            raise FileFormatError(f"{str(path)!r} is a {kind} image in colour mode {mode}; a colour rendering is "
                                  "not a measurement: read the microscope's original grey-scale file")  # fmt: skip
        data = np.array(im)
    bits = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I": 16 if kind == "PNG" else 32, "F": 32}.get(mode, 8)
    warnings.warn(
        f"{str(path)!r} is a {bits}-bit {kind} image: its values are display levels"
        + (" after lossy compression" if kind == "JPEG" else "")
        + ", not the detector's: SCS and counts from it are not a measurement (read the microscope's original "
        "file where there is one)",
        UserWarning,
        stacklevel=3,
    )
    return [_Signal(data, None, {"format": kind.lower()}, samples=mode not in _GREY_MODES and mode != "1")]


def _read_npz(path, *, calibrate: bool):
    """The 2D (or 3D stack) arrays of a NumPy archive, one signal each, titled by their names.

    The pixel size comes from a scalar ``pixel_size_angstrom`` in the archive (as in the
    package's own data files); ``--signal NAME`` picks an array.
    """
    _check_magic(path, b"PK", ".npz archive (a zip file)")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise _numpy_refusal(path, exc, ".npz archive") from None
    try:
        with archive as z:
            pixel = None
            if "pixel_size_angstrom" in z.files and z["pixel_size_angstrom"].size == 1:
                p = float(z["pixel_size_angstrom"])
                pixel = (p, p)
            meta = {"format": "npz"}
            if "settings" in z.files and z["settings"].ndim == 0 and z["settings"].dtype.kind == "U":
                settings = _json_description(str(z["settings"]))
                if "normalised" in settings:
                    meta["normalised"] = _parse_flag(settings["normalised"], "normalised", path)
            signals = [_Signal(z[k], pixel if calibrate else None, {**meta, "array": k}, k)
                       for k in z.files if z[k].ndim in (2, 3) and np.issubdtype(z[k].dtype, np.number)]  # fmt: skip
    except FileFormatError:
        raise
    except ValueError as exc:  # an object array among the numeric ones
        raise _numpy_refusal(path, exc, ".npz archive") from None
    if not signals:
        raise FileFormatError(f"{str(path)!r} holds no 2D or 3D numeric array")
    return signals


def _read_tiff(path, *, calibrate: bool):
    """The TIFF's first series; ``calibrate``: look beyond tifffile's tags for a calibration (rosettasciio)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = tif.pages[0]
        data = series.asarray()
        samples = "S" in series.axes
        if samples:
            data = np.moveaxis(data, series.axes.index("S"), -1)
        if page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE,
                                    tifffile.PHOTOMETRIC.RGB):  # fmt: skip
            raise FileFormatError(
                f"{str(path)!r} holds a {getattr(page.photometric, 'name', page.photometric)} colour image; "
                "read the microscope's original grey-scale file"
            )
        pixel = _tiff_resolution(page.tags, tif.imagej_metadata or {})
        meta = {"format": "tiff"}
        desc = _json_description(page.description)
    if pixel is None and "pixel_size_angstrom" in desc:
        pixel = (desc["pixel_size_angstrom"],) * 2  # checked by read_image, where it is used
    if pixel is None and calibrate:
        pixel = _rosettasciio_tiff_calibration(path)
    if "normalised" in desc:
        meta["normalised"] = _parse_flag(desc["normalised"], "normalised", path)
    if isinstance(desc.get("microscope"), dict):
        meta["microscope"] = desc["microscope"]
    return [_Signal(data, pixel, meta, samples=samples)]


def _tiff_resolution(tags, imagej: dict) -> tuple[float, float] | None:
    """Pixel size (dy, dx) [Å] from the resolution tags with a length unit (ImageJ's, or centimetres)."""
    unit = imagej.get("unit")
    if unit is None and "ResolutionUnit" in tags:
        unit = {3: "cm", 2: None}.get(int(tags["ResolutionUnit"].value))  # inch (2) is not a microscope unit
    factor = _unit_factor(unit)
    if factor is None:
        return None
    sizes = []
    for name in ("YResolution", "XResolution"):
        if name not in tags:
            sizes.append(None)
            continue
        num, den = tags[name].value
        per_unit = num / den if num > 0 and den > 0 else 0.0  # pixels per unit
        sizes.append(factor / per_unit if per_unit > 0 and not (per_unit == 1 and unit is None) else None)
    if sizes[1] is None:
        return None
    return (sizes[0] if sizes[0] is not None else sizes[1], sizes[1])


def _rosettasciio_tiff_calibration(path) -> tuple[float, float] | None:
    """The calibration rosettasciio reads from a TIFF (DigitalMicrograph, FEI, Zeiss, TVIPS... tags), or None.

    Only the calibration is taken; a file rosettasciio cannot parse is read without one.
    """
    from rsciio.tiff import file_reader

    # rosettasciio leaves the file open when it fails, held by the reference cycles of its
    # traceback: they are collected here, where the warning is not the user's to act on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            signals = file_reader(str(path))
        except Exception:  # a TIFF tifffile reads but rosettasciio does not: no calibration to take from it
            signals = None
        if signals is None:
            import gc

            gc.collect()
    if not signals:
        return None
    return _axes_pixel(signals[0].get("axes", []))


def _json_description(description) -> dict:
    """The TIFF description as a dict when it is a JSON object, else empty (other software's text)."""
    if not isinstance(description, str) or not description.startswith("{"):
        return {}
    try:
        desc = json.loads(description)
    except ValueError:
        return {}
    return desc if isinstance(desc, dict) else {}


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def _parse_flag(value, name: str, path) -> bool:
    """A boolean stored as a JSON bool, 0/1 or a word ("false" is False, unlike ``bool("false")``)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise FileFormatError(f"{str(path)!r}: {name!r} in the TIFF description must be true or false, got {value!r}")


def _axes_pixel(axes) -> tuple[float, float] | None:
    """Pixel size (dy, dx) [Å] from rosettasciio's signal axes, None without a length unit."""
    sig_axes = [a for a in axes if not a.get("navigate", False)]
    sizes = []
    for ax in sig_axes[-2:]:
        factor = _unit_factor(ax.get("units"))
        try:
            scale = abs(float(ax.get("scale", 1.0)))  # a negative scale flips the axis; the size is its magnitude
        except (TypeError, ValueError):
            scale = 0.0
        sizes.append(scale * factor if factor is not None and scale > 0 else None)
    if not sizes or sizes[-1] is None:
        return None
    return (sizes[0] if sizes[0] is not None else sizes[-1], sizes[-1])


def _read_rosettasciio(path, *, calibrate: bool):
    import importlib

    suffix = path.suffix.lower()
    file_reader = importlib.import_module(f"rsciio.{_ROSETTASCIIO[suffix]}").file_reader
    # rosettasciio's MRC reader leaves its header file open, and some readers leave files open when they fail;
    # the warning is not the user's to act on. Only the failure's text leaves this block: its traceback holds
    # the open file, which would be closed (and warned about) outside it.
    failure = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            raw = file_reader(str(path))
        except Exception as exc:  # any parser failure means a corrupt or foreign file
            failure = f"{type(exc).__name__}: {exc}"
    if failure is not None:
        raise FileFormatError(f"could not read {str(path)!r} as {suffix}: {failure}")
    return [_rosettasciio_signal(sig, suffix) for sig in raw]


def _rosettasciio_signal(sig: dict, suffix: str) -> _Signal:
    axes = sig.get("axes", [])
    n_signal_axes = sum(1 for a in axes if not a.get("navigate", False))
    data = np.asarray(sig["data"])
    is_image = n_signal_axes == 2 and data.ndim - n_signal_axes <= 1
    metadata = sig.get("metadata", {})
    title = metadata.get("General", {}).get("title", "") or ""
    meta = {"format": suffix[1:]}
    tem = metadata.get("Acquisition_instrument", {}).get("TEM", {})
    microscope = {}
    with contextlib.suppress(TypeError, ValueError):
        if "beam_energy" in tem:  # keV in rosettasciio's metadata
            microscope["energy_ev"] = 1e3 * float(tem["beam_energy"])
        if "convergence_angle" in tem:  # mrad
            microscope["semiangle_mrad"] = float(tem["convergence_angle"])
    if microscope:
        meta["microscope"] = microscope
    return _Signal(data, _axes_pixel(axes), meta, title=str(title), is_image=is_image)
