"""Reading images, and writing and reading result files.

Image readers live in :mod:`atomscount.readers`; :func:`read_image` is
re-exported here. Result files are HDF5 and are written to a temporary file that
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

from .readers import FileFormatError, read_image

__all__ = ["read_image", "atomic_path", "write_hdf5", "read_hdf5", "FORMAT_VERSION", "FileFormatError"]

#: Version of the HDF5 result layout this atomscount writes. Format 2 adds checksums to format 1.
FORMAT_VERSION = 2
#: Oldest layout still read (without checksums).
_OLDEST_FORMAT = 1

# --------------------------------------------------------------------------- results


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"directory of path does not exist: {str(path.parent)!r}")
    if not path.parent.is_dir():  # the temporary file's error would name it, not the user's path
        raise NotADirectoryError(f"path {str(path)!r} cannot be written: {str(path.parent)!r} is a file, not a folder")
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a folder; give a file name")
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
    from ._version import __version__

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


def _plain(value):
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists, in nested dicts, lists
    and tuples (for ``summary()`` and HDF5 attributes)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    warnings.warn(f"storing {type(obj).__name__} as its string form", stacklevel=3)
    return str(obj)
