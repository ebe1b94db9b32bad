"""Readers for microscope image files and atomic writers for result files.

One reader per format, each returning a :class:`~atomscount.image.HAADFImage`:
``.tif/.tiff`` (tifffile), ``.npy`` (NumPy) and ``.dm3/.dm4/.emd/.ser``
(rosettasciio). Result files are HDF5 and are written to a temporary file that
is renamed into place, so an interrupted write never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np

from .image import HAADFImage

__all__ = ["read_image", "atomic_path", "write_hdf5", "read_hdf5", "FORMAT_VERSION", "FileFormatError"]

#: Version of the HDF5 result layout; files from another version are refused.
FORMAT_VERSION = 1

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


class FileFormatError(ValueError):
    """A file could not be read as the expected format or version."""


def _unit_factor(unit) -> float | None:
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\u00c5", "å").replace("\u212b", "å")
    return _LENGTH_TO_ANGSTROM.get(key)


def read_image(path, *, pixel_size_angstrom: float | None = None, frame: int = 0) -> HAADFImage:
    """Read a 2D image file into a :class:`HAADFImage`.

    Parameters
    ----------
    path : str or Path
        ``.tif``, ``.tiff``, ``.npy``, ``.dm3``, ``.dm4``, ``.emd`` or ``.ser``.
    pixel_size_angstrom : float, optional
        Pixel size [Å]. Overrides the file's calibration. Required when the file
        has none (``.npy``, uncalibrated TIFF).
    frame : int
        Which frame to take from a stack (3D data).

    Returns
    -------
    HAADFImage

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        If the file cannot be parsed or has an unsupported extension.
    ValueError
        If no pixel size is available or it is not positive.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist or is not a file: {str(path)!r}")
    suffix = path.suffix.lower()
    readers = {".tif": _read_tiff, ".tiff": _read_tiff, ".npy": _read_npy}
    for ext in (".dm3", ".dm4", ".emd", ".ser"):
        readers[ext] = _read_rosettasciio
    if suffix not in readers:
        raise FileFormatError(
            f"path has unsupported extension {suffix!r}; supported: {sorted(readers)}"
        )
    try:
        data, file_pixel, meta = readers[suffix](path)
    except (FileFormatError, FileNotFoundError):
        raise
    except Exception as exc:  # any parser failure means a corrupt or foreign file
        raise FileFormatError(f"could not read {str(path)!r} as {suffix}: {exc}") from exc
    data = np.asarray(data)
    if data.ndim == 3:
        if not 0 <= frame < data.shape[0]:
            raise ValueError(f"frame must be in [0, {data.shape[0]}), got {frame}")
        data = data[frame]
    if data.ndim != 2:
        raise FileFormatError(f"{str(path)!r} holds {data.ndim}D data of shape {data.shape}, expected 2D")
    if pixel_size_angstrom is None:
        if file_pixel is None:
            raise ValueError(
                f"pixel_size_angstrom must be given: {str(path)!r} has no length calibration"
            )
        pixel_size_angstrom = file_pixel
        meta["pixel_size_source"] = "file"
    else:
        meta["pixel_size_source"] = "user"
    meta["source_file"] = str(path)
    return HAADFImage(data.astype(np.float64), pixel_size_angstrom, meta)


def _read_npy(path):
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise FileFormatError(f"{str(path)!r} is not a valid .npy array: {exc}") from exc
    return data, None, {}


def _read_tiff(path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        data = tif.asarray()
        pixel = None
        ij = tif.imagej_metadata or {}
        tags = page.tags
        if "XResolution" in tags:
            num, den = tags["XResolution"].value
            if num > 0 and den > 0:
                per_unit = num / den  # pixels per unit
                unit = ij.get("unit")
                if unit is None and "ResolutionUnit" in tags:
                    res_unit = int(tags["ResolutionUnit"].value)
                    unit = {3: "cm", 2: None}.get(res_unit)  # inch (2) is not a microscope unit
                factor = _unit_factor(unit)
                if factor is not None and per_unit > 0 and not (per_unit == 1 and unit is None):
                    pixel = factor / per_unit
        desc = page.description or ""
        meta = {"format": "tiff"}
        if desc.startswith("{"):
            with contextlib.suppress(ValueError, TypeError):
                d = json.loads(desc)
                if pixel is None and "pixel_size_angstrom" in d:
                    pixel = float(d["pixel_size_angstrom"])
                if "normalised" in d:
                    meta["normalised"] = bool(d["normalised"])
                if isinstance(d.get("microscope"), dict):
                    meta["microscope"] = d["microscope"]
    return data, pixel, meta


def _read_rosettasciio(path):
    suffix = path.suffix.lower()
    if suffix in (".dm3", ".dm4"):
        from rsciio.digitalmicrograph import file_reader
    elif suffix == ".emd":
        from rsciio.emd import file_reader
    else:
        from rsciio.tia import file_reader
    signals = file_reader(str(path))
    images = [s for s in signals if np.asarray(s["data"]).ndim in (2, 3)]
    if not images:
        raise FileFormatError(f"{str(path)!r} holds no 2D image")
    sig = images[0]
    axes = [a for a in sig["axes"] if not a.get("navigate", False)]
    pixel = None
    if axes:
        ax = axes[-1]
        factor = _unit_factor(ax.get("units"))
        scale = float(ax.get("scale", 1.0))
        if factor is not None and scale > 0:
            pixel = scale * factor
    title = sig.get("metadata", {}).get("General", {}).get("title", "")
    meta = {"format": suffix[1:], "title": title}
    tem = sig.get("metadata", {}).get("Acquisition_instrument", {}).get("TEM", {})
    microscope = {}
    with contextlib.suppress(TypeError, ValueError):
        if "beam_energy" in tem:  # keV in rosettasciio's metadata
            microscope["energy_ev"] = 1e3 * float(tem["beam_energy"])
        if "convergence_angle" in tem:  # mrad
            microscope["semiangle_mrad"] = float(tem["convergence_angle"])
    if microscope:
        meta["microscope"] = microscope
    return np.asarray(sig["data"]), pixel, meta


# --------------------------------------------------------------------------- results


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"directory of path does not exist: {str(path.parent)!r}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private; give the result the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_hdf5(path, kind: str, arrays: dict, attrs: dict) -> None:
    """Write named arrays and JSON-able attributes to an HDF5 file atomically.

    ``None`` arrays are skipped. Attributes are stored as one JSON string so that
    nested dicts and ``None`` survive the round-trip.
    """
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["atomscount_kind"] = kind
        f.attrs["atomscount_format"] = FORMAT_VERSION
        from . import __version__

        f.attrs["atomscount_version"] = __version__
        f.attrs["attrs_json"] = json.dumps(attrs, default=_json_default)
        grp = f.create_group("arrays")
        for name, arr in arrays.items():
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.dtype.kind == "U":
                arr = arr.astype(h5py.string_dtype())
            grp.create_dataset(name, data=arr, compression="gzip" if arr.size > 4096 else None)


def read_hdf5(path, kind: str) -> tuple[dict, dict]:
    """Read a file written by :func:`write_hdf5`, checking kind and format version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist or is not a file: {str(path)!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{str(path)!r} is not a readable HDF5 file: {exc}") from exc
    with f:
        got_kind = f.attrs.get("atomscount_kind")
        if got_kind != kind:
            raise FileFormatError(f"{str(path)!r} holds {got_kind!r}, expected {kind!r}")
        version = int(f.attrs.get("atomscount_format", -1))
        if version != FORMAT_VERSION:
            raise FileFormatError(
                f"{str(path)!r} has format version {version}, this atomscount reads {FORMAT_VERSION}"
            )
        attrs = json.loads(f.attrs["attrs_json"])
        arrays = {}
        for name, ds in f["arrays"].items():
            arr = ds[()]
            if ds.dtype.kind == "O":
                arr = np.asarray([a.decode() if isinstance(a, bytes) else a for a in arr.ravel()]).reshape(
                    arr.shape
                )
            arrays[name] = arr
    return arrays, attrs


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    warnings.warn(f"storing {type(obj).__name__} as its string form", stacklevel=3)
    return str(obj)
