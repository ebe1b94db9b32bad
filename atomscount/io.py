"""Readers for microscope image files and atomic writers for result files.

One reader per format, each returning a :class:`~atomscount.image.HAADFImage`:
``.tif/.tiff`` (tifffile), ``.npy`` (NumPy) and ``.dm3/.dm4/.emd/.ser``
(rosettasciio). Result files are HDF5 and are written to a temporary file that
is renamed into place, so an interrupted write never leaves half a file. Each
field is stored with its checksum, so a damaged file is refused with the name of
what is damaged rather than read as different numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import numbers
import os
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np

from ._checks import check_integer
from .image import HAADFImage, check_pixel_size

__all__ = ["read_image", "atomic_path", "write_hdf5", "read_hdf5", "FORMAT_VERSION", "FileFormatError"]

#: Version of the HDF5 result layout this atomscount writes. Format 2 adds checksums to format 1.
FORMAT_VERSION = 2
#: Oldest layout still read (without checksums).
_OLDEST_FORMAT = 1

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
        Which frame to take from a stack (3D data), counted from 0.

    Returns
    -------
    HAADFImage

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        If the file cannot be parsed, has an unsupported extension, holds no
        real-valued 2D image (complex data, a colour rendering whose channels
        differ, 4D data) or an unusable calibration or ``normalised`` flag.
    TypeError
        If ``frame`` is not an integer.
    ValueError
        If no pixel size is available, it is outside the range
        :data:`~atomscount.image.PIXEL_SIZE_RANGE_ANGSTROM`, or ``frame`` is
        outside the stack.

    Warns
    -----
    UserWarning
        When a colour image whose channels are all equal (a grey image saved as
        RGB) is read as its first channel.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or Path, got {path!r}")
    path = Path(path)
    frame = check_integer(frame, "frame", low=0)
    if pixel_size_angstrom is not None:
        pixel_size_angstrom = check_pixel_size(pixel_size_angstrom)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist or is not a file: {str(path)!r}")
    suffix = path.suffix.lower()
    readers = {".tif": _read_tiff, ".tiff": _read_tiff, ".npy": _read_npy}
    for ext in (".dm3", ".dm4", ".emd", ".ser"):
        readers[ext] = _read_rosettasciio
    if suffix not in readers:
        raise FileFormatError(f"path has unsupported extension {suffix!r}; supported: {sorted(readers)}")
    try:
        data, file_pixel, meta, samples = readers[suffix](path)
    except (FileFormatError, FileNotFoundError):
        raise
    except Exception as exc:  # any parser failure means a corrupt or foreign file
        raise FileFormatError(f"could not read {str(path)!r} as {suffix}: {exc}") from exc
    data = _real_frames(np.asarray(data), samples, path)
    if data.ndim == 3:
        if frame >= data.shape[0]:
            raise ValueError(
                f"frame must be < {data.shape[0]}: {str(path)!r} holds {data.shape[0]} frames, got {frame}"
            )
        data = data[frame]
    elif data.ndim == 2 and frame != 0:
        raise ValueError(f"frame must be 0: {str(path)!r} holds 1 frame, got {frame}")
    if data.ndim != 2:
        raise FileFormatError(f"{str(path)!r} holds {data.ndim}D data of shape {data.shape}, expected 2D")
    if pixel_size_angstrom is None:
        if file_pixel is None:
            raise ValueError(f"pixel_size_angstrom must be given: {str(path)!r} has no length calibration")
        try:
            pixel_size_angstrom = check_pixel_size(file_pixel)
        except (TypeError, ValueError) as exc:
            raise FileFormatError(
                f"{str(path)!r} has an unusable calibration ({exc}); pass pixel_size_angstrom to override it"
            ) from exc
        meta["pixel_size_source"] = "file"
    else:
        meta["pixel_size_source"] = "user"
    meta["source_file"] = str(path)
    return HAADFImage(data.astype(np.float64), pixel_size_angstrom, meta)


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


def _read_npy(path):
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise FileFormatError(f"{str(path)!r} is not a valid .npy array: {exc}") from exc
    return data, None, {}, None


def _read_tiff(path):
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
        meta = {"format": "tiff"}
        desc = _json_description(page.description)
        if pixel is None and "pixel_size_angstrom" in desc:
            pixel = desc["pixel_size_angstrom"]  # checked by read_image, where it is used
        if "normalised" in desc:
            meta["normalised"] = _parse_flag(desc["normalised"], "normalised", path)
        if isinstance(desc.get("microscope"), dict):
            meta["microscope"] = desc["microscope"]
    return data, pixel, meta, samples


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
    return np.asarray(sig["data"]), pixel, meta, None


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
    nested dicts and ``None`` survive the round-trip. A checksum of every field
    is stored with them, so that :func:`read_hdf5` can tell a damaged file from
    a good one and name what is damaged.

    Parameters
    ----------
    path : str or Path
        File to write; replaced only once the new one is complete.
    kind : str
        What the file holds (the result class's name); checked on reading.
    arrays : dict of str to array_like or None
        Stored as datasets under ``arrays/``.
    attrs : dict
        Everything else, stored as JSON.
    """
    attrs_json = json.dumps(attrs, default=_json_default)
    stored = {}
    for name, arr in arrays.items():
        if arr is not None:
            stored[name] = np.asarray(arr)
    checksums = {
        "attrs": {k: _digest(v) for k, v in json.loads(attrs_json).items()},
        "arrays": {n: _digest(a) for n, a in stored.items()},
    }
    from . import __version__

    # HDF5 1.8's layout checksums the file's own structure, so HDF5 reports damage there instead of
    # following it (with the oldest layout one changed byte could crash or hang the reader). Strings are
    # stored with a fixed length for the same reason: variable-length ones live in a heap without a
    # checksum, where a changed length sent HDF5 into an endless loop.
    with atomic_path(path) as tmp, h5py.File(tmp, "w", libver=("v108", "latest")) as f:
        f.attrs["atomscount_format"] = FORMAT_VERSION
        f.attrs["atomscount_min_reader_format"] = FORMAT_VERSION
        for name, text in (("atomscount_kind", kind), ("atomscount_version", __version__),
                           ("attrs_json", attrs_json), ("atomscount_checksums", json.dumps(checksums))):  # fmt: skip
            f.attrs[name] = _fixed_length(np.array(text))
        grp = f.create_group("arrays")
        for name, arr in stored.items():
            if arr.dtype.kind == "U":
                arr = _fixed_length(arr)
            grp.create_dataset(name, data=arr, compression="gzip" if arr.size > 4096 else None)


def _fixed_length(text: np.ndarray) -> np.ndarray:
    """Strings as fixed-length UTF-8, the HDF5 type that keeps them beside the other data."""
    encoded = np.char.encode(text, "utf-8")
    return encoded.astype(h5py.string_dtype("utf-8", encoded.dtype.itemsize))


def read_hdf5(path, kind: str, *, result_type=None) -> tuple[dict, dict]:
    """Read a file written by :func:`write_hdf5`, checking its kind, version and checksums.

    Parameters
    ----------
    path : str or Path
    kind : str
        The kind the file must hold.
    result_type : dataclass type, optional
        The class the fields are for. Fields it does not have (from a newer
        atomscount) are dropped with a warning, and a file that lacks one of its
        fields without a default is refused.

    Returns
    -------
    arrays, attrs : dict
        Looking up a name the file lacks raises :class:`FileFormatError`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        If the file is not HDF5, holds another kind, needs a newer atomscount,
        or a field is missing or damaged; the message names the file and the field.

    Warns
    -----
    UserWarning
        For a file of a newer, compatible format and for fields ``result_type``
        does not know.

    Notes
    -----
    Format 1 files have no checksums: damage to their values is not detected.
    A newer format is read when the file says that this format's readers can
    (``atomscount_min_reader_format``), otherwise it is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist or is not a file: {str(path)!r}")
    where = str(path)
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # h5py reports damage in the superblock with several types
        raise FileFormatError(f"{where!r} is not a readable HDF5 file: {exc}") from exc
    with f:
        got_kind = _field(where, "attribute 'atomscount_kind'", lambda: _text(f.attrs["atomscount_kind"]))
        if not isinstance(got_kind, str) or got_kind != kind:
            raise FileFormatError(f"{where!r} holds {got_kind!r}, expected {kind!r}")
        version = _check_version(f, where)
        attrs_json = _field(where, "attribute 'attrs_json'", lambda: _text(f.attrs["attrs_json"]))
        group = _field(where, "group 'arrays'", lambda: f["arrays"])
        names = _field(where, "group 'arrays'", lambda: list(group))
        arrays = {n: _field(where, f"dataset {n!r}", lambda n=n: _dataset(group[n])) for n in names}
        if version >= 2:
            checksums = _field(where, "attribute 'atomscount_checksums'",
                               lambda: _checksums(_text(f.attrs["atomscount_checksums"])))  # fmt: skip
    attrs = _field(where, "attribute 'attrs_json'", lambda: _json_object(attrs_json))
    if version >= 2:
        _verify(where, checksums["attrs"], attrs, "attribute")
        _verify(where, checksums["arrays"], arrays, "dataset")
    if result_type is not None:
        _match_fields(where, result_type, arrays, attrs)
    return _Fields(arrays, where, "dataset"), _Fields(attrs, where, "attribute")


class _Fields(dict):
    """The fields read from a file; a name the file lacks raises FileFormatError naming the file."""

    def __init__(self, items, where: str, what: str):
        super().__init__(items)
        self._where = where
        self._what = what

    def __missing__(self, key):
        raise FileFormatError(f"{self._where!r} has no {self._what} {key!r}")


def _field(where: str, what: str, read):
    """``read()``, with any failure reported as the named field of the file being missing or damaged."""
    try:
        return read()
    except FileFormatError:
        raise
    except KeyError as exc:
        if any(text in str(exc) for text in ("can't locate", "doesn't exist")):  # HDF5's words for "not there"
            raise FileFormatError(f"{where!r}: {what} is missing") from exc
        raise FileFormatError(f"{where!r}: {what} is damaged ({exc})") from exc
    except Exception as exc:  # h5py, json and numpy report damage with many exception types
        raise FileFormatError(f"{where!r}: {what} is damaged ({type(exc).__name__}: {exc})") from exc


def _header_int(f, where: str, name: str) -> int:
    value = _field(where, f"attribute {name!r}", lambda: f.attrs[name])
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise FileFormatError(f"{where!r}: attribute {name!r} is damaged (an integer expected, got {value!r})")
    return int(value)


def _check_version(f, where: str) -> int:
    version = _header_int(f, where, "atomscount_format")
    if version < _OLDEST_FORMAT:
        raise FileFormatError(
            f"{where!r} has format version {version}, this atomscount reads {_OLDEST_FORMAT} to {FORMAT_VERSION}"
        )
    if version > FORMAT_VERSION:
        oldest = version  # a file that does not say otherwise needs a reader of its own format
        if _field(where, "the attributes", lambda: "atomscount_min_reader_format" in f.attrs):
            oldest = _header_int(f, where, "atomscount_min_reader_format")
        if oldest > FORMAT_VERSION:
            raise FileFormatError(
                f"{where!r} has format version {version}, readable from format {oldest}; this atomscount reads "
                f"{_OLDEST_FORMAT} to {FORMAT_VERSION}: update atomscount"
            )
        warnings.warn(
            f"{where!r} has format version {version}, newer than this atomscount's {FORMAT_VERSION}; "
            "reading the fields this version knows",
            UserWarning,
            stacklevel=4,
        )
    return version


def _text(value) -> str:
    """A string attribute: fixed-length ones come back as bytes, variable-length ones (format 1) as str."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"a string expected, got {type(value).__name__}")


def _dataset(ds) -> np.ndarray:
    arr = ds[()]
    if ds.dtype.kind == "O":  # variable-length strings (format 1) come back as bytes
        arr = np.array([a.decode() if isinstance(a, bytes) else a for a in np.ravel(arr)], dtype=str)
        arr = arr.reshape(ds.shape)
    elif ds.dtype.kind == "S" and h5py.check_string_dtype(ds.dtype).encoding == "utf-8":
        arr = np.char.decode(arr, "utf-8")
    return np.asarray(arr)


def _digest(value) -> str:
    """Checksum of an array, or of a value parsed from JSON, the same for what is written and what is read back."""
    h = hashlib.blake2b(digest_size=16)
    if not isinstance(value, np.ndarray):
        h.update(json.dumps(value).encode("utf-8"))
        return h.hexdigest()
    arr = value
    h.update(repr(arr.shape).encode())
    if arr.dtype.kind in "US":  # h5py hands back strings of another width
        h.update(json.dumps(arr.astype(str).tolist()).encode("utf-8"))
    else:
        h.update(arr.dtype.str.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _checksums(text) -> dict:
    sums = json.loads(text)
    if not (isinstance(sums, dict) and isinstance(sums.get("attrs"), dict) and isinstance(sums.get("arrays"), dict)):
        raise ValueError(f"not a checksum table: {str(text)[:80]!r}")
    return sums


def _verify(where: str, checksums: dict, fields: dict, what: str) -> None:
    """Refuse a file whose fields differ from their checksums; drop (with a warning) those it does not list."""
    for name, digest in checksums.items():
        if name not in fields:
            raise FileFormatError(f"{where!r}: {what} {name!r} is missing")
        if _digest(fields[name]) != digest:
            raise FileFormatError(f"{where!r}: {what} {name!r} is damaged (checksum mismatch)")
    extra = sorted(set(fields) - set(checksums))
    if extra:  # not written by atomscount: nothing vouches for them
        warnings.warn(f"{where!r}: ignoring {what}s {extra}, which its checksums do not list", UserWarning,
                      stacklevel=4)  # fmt: skip
        for name in extra:
            del fields[name]


def _json_object(text) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"a JSON object expected, got {type(value).__name__}")
    return value


def _match_fields(where: str, result_type, arrays: dict, attrs: dict) -> None:
    """Drop the fields ``result_type`` lacks (with a warning); refuse a file that lacks a required one."""
    fields = dataclasses.fields(result_type)
    known = {f.name for f in fields}
    unknown = sorted((set(arrays) | set(attrs)) - known)
    if unknown:
        warnings.warn(
            f"{where!r}: ignoring fields {unknown}, which this atomscount's {result_type.__name__} does not have "
            "(written by a newer version?)",
            UserWarning,
            stacklevel=4,
        )
        for name in unknown:
            arrays.pop(name, None)
            attrs.pop(name, None)
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(arrays) - set(attrs))
    if missing:
        raise FileFormatError(f"{where!r} lacks the {result_type.__name__} fields {missing}")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    warnings.warn(f"storing {type(obj).__name__} as its string form", stacklevel=3)
    return str(obj)
