"""StatSTEM's ``.mat`` result files: :func:`read_statstem` and :func:`write_statstem`.

StatSTEM (De Backer et al., Ultramicroscopy 171, 104 (2016)) keeps a session in
a MATLAB file of structs whose field names this module mirrors, as found in the
tutorial file ``Example3.mat`` and in StatSTEM's own loader of struct files:

``input``
    ``obs`` (the image, double, rows × columns), ``dx`` (pixel size [Å]),
    ``coordinates`` (n × 3: x [Å], y [Å], type index from 1), ``types`` (cell
    array of type names).
``output``
    ``coordinates`` (n × 2: fitted x, y [Å]), ``rho`` (widths [Å]), ``eta``
    (peak heights), ``zeta`` (constant background), ``volumes`` (SCS,
    ``2 π η ρ²``), ``model`` (the fitted image), ``lsq`` (sum of squared residuals).
``atomcounting`` (optional)
    ``volumes``, ``estimatedDistributions`` (one mixture per number of
    components, each with ``mu``, ``Sigma``, ``PComponents``), ``selMin`` (the
    chosen number), ``offset``.
``strainmapping`` (optional)
    ``eps_xx``, ``eps_xy``, ``eps_yy``, ``omg_xy`` and their errors
    ``errEps_xx`` ..., the reference lattice ``a``, ``b``, ``teta``, ``refCoor``.

StatSTEM puts pixel ``(row, col)`` (from 1) at ``x = col dx``, ``y = row dx``; this
package puts pixel ``[row, col]`` (from 0) at ``x = col dx``: a StatSTEM position
is this package's plus one pixel, in x and in y.

:func:`write_statstem` writes ``input`` and ``output`` (which StatSTEM's loader
turns into its ``inputStatSTEM`` and ``outputStatSTEM`` objects) and, beside
them, an ``atomscount`` struct with every field of the :class:`ColumnFit`
(StatSTEM drops what it does not know), so that reading the file back loses
nothing. Files StatSTEM saved as MATLAB objects (newer versions) cannot be read
outside MATLAB: convert them there with ``input = struct(input)`` and so on.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

from ..columns.fit import ColumnFit
from ..image import HAADFImage
from ..io import atomic_path

__all__ = ["StatSTEMResult", "read_statstem", "write_statstem"]

#: The version of the ``atomscount`` struct written beside StatSTEM's own.
EXTRA_VERSION = 1


@dataclasses.dataclass(frozen=True, repr=False)
class StatSTEMResult:
    """What a StatSTEM file holds, in this package's types and conventions.

    Attributes
    ----------
    image : HAADFImage
        ``input.obs`` with pixel size ``input.dx`` [Å].
    positions : ndarray (n, 2)
        ``input.coordinates`` (the starting or hand-placed columns) as (x, y) [Å]
        in this package's convention (pixel [0, 0] at (0, 0)).
    types : ndarray (n,) of int
        Column type from 0, an index into ``type_names``.
    type_names : tuple of str
        ``input.types``, or ``"1"``, ``"2"``, ... when the file names none.
    fit : ColumnFit or None
        ``output`` as a fit: positions, widths, heights, SCS (``volumes``) and the
        background; the standard errors are NaN unless the file was written by
        :func:`write_statstem`, which stores the whole fit.
    counts : ndarray (n,) of int or None
        Atoms per column from ``atomcounting`` (the chosen mixture, as StatSTEM
        assigns them), or a file's ``AtomCounts``.
    strain : dict or None
        ``strainmapping``'s arrays by StatSTEM's names.
    source : str
        The file read.
    """

    image: HAADFImage
    positions: np.ndarray
    types: np.ndarray
    type_names: tuple
    fit: ColumnFit | None = None
    counts: np.ndarray | None = None
    strain: dict | None = None
    source: str = ""

    def summary(self) -> dict:
        """Plain-type summary of what the file held."""
        return {
            "source": self.source,
            "image_shape": list(self.image.shape),
            "pixel_size_angstrom": float(self.image.pixel_size_angstrom),
            "n_columns": int(len(self.positions)),
            "type_names": list(self.type_names),
            "columns_per_type": {nm: int(np.sum(self.types == k)) for k, nm in enumerate(self.type_names)},
            "has_fit": self.fit is not None,
            "has_counts": self.counts is not None,
            "has_strain": self.strain is not None,
        }

    def __repr__(self) -> str:
        parts = [f"{len(self.positions)} columns", f"types {list(self.type_names)}"]
        parts += [name for name, v in (("fit", self.fit), ("counts", self.counts), ("strain", self.strain))
                  if v is not None]  # fmt: skip
        return f"StatSTEMResult({', '.join(parts)})"


def read_statstem(path) -> StatSTEMResult:
    """Read a StatSTEM ``.mat`` result into this package's types.

    Parameters
    ----------
    path : str or Path
        A MATLAB file (version 5 or 7.3) with StatSTEM's ``input`` struct (and
        ``output``, ``atomcounting``, ``strainmapping`` when present), or one with
        ``obs``, ``dx`` and ``coordinates`` at the top level.

    Returns
    -------
    StatSTEMResult

    Raises
    ------
    FileNotFoundError
    ValueError
        When the file holds no image and pixel size, holds StatSTEM's MATLAB
        objects instead of structs, or its arrays disagree in length.

    Examples
    --------
    >>> import tempfile, os
    >>> from atomscount import HAADFImage, fit_columns
    >>> from atomscount.columns.model import ColumnModel
    >>> truth = ColumnModel((40, 40), 0.1, [[1.5, 1.5], [2.6, 2.4]], heights=[0.3, 0.5], widths=0.4)
    >>> image = HAADFImage(truth.image(), 0.1)
    >>> fit = fit_columns(image, truth.positions, voronoi=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "result.mat")
    >>> write_statstem(fit, path, image=image)
    >>> back = read_statstem(path)
    >>> np.array_equal(back.fit.positions, fit.positions), np.array_equal(back.image.data, image.data)
    (True, True)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file {str(path)!r}")
    top = _load(path)
    inp = top.get("input") if isinstance(top.get("input"), dict) else top
    if "obs" not in inp or "dx" not in inp:
        raise ValueError(f"path {str(path)!r} holds no StatSTEM image: neither input.obs and input.dx nor obs and dx "
                         f"are there (it has {sorted(k for k in top)})")  # fmt: skip
    dx = float(np.asarray(inp["dx"]).ravel()[0])
    obs = np.asarray(inp["obs"], dtype=np.float64)
    image = HAADFImage(obs, dx, metadata={"source": str(path), "reader": "statstem"})
    coords = np.asarray(inp.get("coordinates", np.zeros((0, 3))), dtype=np.float64).reshape(-1, _ncol(inp))
    positions = coords[:, :2] - dx
    tnum = coords[:, 2].astype(np.int64) if coords.shape[1] >= 3 else np.ones(len(coords), np.int64)
    names = _cellstr(inp.get("types"))
    if not names:
        names = [str(k) for k in range(1, int(tnum.max(initial=1)) + 1)]
    if len(coords) and (tnum.min() < 1 or tnum.max() > len(names)):
        raise ValueError(f"path {str(path)!r}: input.coordinates(:, 3) must be type indices from 1 to {len(names)}, "
                         f"got {int(tnum.min())} to {int(tnum.max())}")  # fmt: skip
    types = tnum - 1
    out = top.get("output") if isinstance(top.get("output"), dict) else None
    fit = None
    if isinstance(top.get("atomscount"), dict):
        fit = _extra_fit(top["atomscount"], path)
    if fit is None and out is not None and "rho" in out:
        fit = _output_fit(out, types, tuple(names), image, path)
    elif fit is not None and out is not None and "coordinates" in out:
        stat = np.asarray(out["coordinates"], float).reshape(-1, 2 if np.ndim(out["coordinates"]) == 1 else
                                                             np.shape(out["coordinates"])[1])[:, :2] - dx  # fmt: skip
        if stat.shape != fit.positions.shape or not np.allclose(stat, fit.positions, rtol=0, atol=1e-9):
            warnings.warn(f"{path}: output was changed after atomscount wrote the file (in StatSTEM?): reading "
                          "StatSTEM's output, without the standard errors", stacklevel=2)  # fmt: skip
            fit = _output_fit(out, types, tuple(names), image, path)
    counts = _counts(top, out)
    strain = top.get("strainmapping") if isinstance(top.get("strainmapping"), dict) else None
    if strain is not None:
        strain = {k: np.asarray(v) for k, v in strain.items() if not isinstance(v, dict)}
    return StatSTEMResult(image=image, positions=positions, types=types, type_names=tuple(names), fit=fit,
                          counts=counts, strain=strain, source=str(path))  # fmt: skip


def write_statstem(fit: ColumnFit, path, *, image: HAADFImage) -> None:
    """Write a fit as a StatSTEM ``.mat`` file (MATLAB version 5) that StatSTEM loads.

    The file holds StatSTEM's ``input`` and ``output`` structs (see the module's
    notes for their fields) and an ``atomscount`` struct with every field of the
    fit, which :func:`read_statstem` reads back exactly. StatSTEM models a constant
    background: a fit with a plane background is written with its level in
    ``output.zeta`` and the plane in ``output.model`` (with a warning).

    Parameters
    ----------
    fit : ColumnFit
    path : str or Path
        The file to write (replaced atomically).
    image : HAADFImage
        The image that was fitted (StatSTEM needs it: ``input.obs``).

    Raises
    ------
    ValueError
        When the image's shape or pixel size is not the fit's.
    """
    import scipy.io

    if not isinstance(fit, ColumnFit):
        raise TypeError(f"fit must be a ColumnFit, got {type(fit).__name__}")
    if not isinstance(image, HAADFImage):
        raise TypeError(f"image must be a HAADFImage, got {type(image).__name__}")
    same_pixel = np.isclose(image.pixel_size_angstrom, fit.pixel_size_angstrom, rtol=1e-12)
    if tuple(image.shape) != tuple(fit.image_shape) or not same_pixel:
        raise ValueError(f"image must be the fitted one: shape {image.shape} and pixel "
                         f"{image.pixel_size_angstrom} Å, the fit's {tuple(fit.image_shape)} and "
                         f"{fit.pixel_size_angstrom} Å")  # fmt: skip
    if fit.background_model == "plane" and np.any(np.asarray(fit.background[1:]) != 0):
        warnings.warn("StatSTEM models a constant background: output.zeta holds the plane's level, output.model "
                      "the plane", stacklevel=2)  # fmt: skip
    dx = float(image.pixel_size_angstrom)
    stat_xy = np.asarray(fit.positions, float) + dx
    model = fit.model().image()
    finite = np.isfinite(image.data)
    names = np.empty(len(fit.type_names), dtype=object)
    names[:] = list(fit.type_names)
    inp = {
        "obs": np.asarray(image.data, dtype=np.float64),
        "dx": dx,
        "coordinates": np.column_stack([stat_xy, np.asarray(fit.types, float) + 1.0]),
        "types": names.reshape(-1, 1),
    }
    out = {
        "coordinates": stat_xy,
        "rho": np.asarray(fit.widths, float).reshape(-1, 1),
        "eta": np.asarray(fit.heights, float).reshape(-1, 1),
        "zeta": float(fit.background[0]),
        "volumes": np.asarray(fit.scs, float).reshape(-1, 1),
        "model": model,
        "lsq": float(np.sum((image.data[finite] - model[finite]) ** 2)),
    }
    extra = {"format_version": EXTRA_VERSION}
    for name in ColumnFit._ARRAYS:
        value = getattr(fit, name)
        if value is not None:
            extra[name] = np.asarray(value).astype(np.uint8) if name == "converged" else np.asarray(value)
    attrs = {f.name: getattr(fit, f.name) for f in dataclasses.fields(fit) if f.name not in ColumnFit._ARRAYS}
    attrs["type_names"] = list(fit.type_names)
    attrs["image_shape"] = list(fit.image_shape)
    extra["attrs_json"] = json.dumps(attrs, default=_json_default)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        scipy.io.savemat(fh, {"input": inp, "output": out, "atomscount": extra}, do_compression=True,
                         oned_as="column")  # fmt: skip


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a StatSTEM file's atomscount.attrs_json")


def _ncol(struct):
    c = np.asarray(struct.get("coordinates", np.zeros((0, 3))))
    return c.shape[1] if c.ndim == 2 else (c.size if c.size in (2, 3) else 3)


def _load(path):
    """The file's variables as nested dicts of arrays (MATLAB 5 through scipy, 7.3 through h5py)."""
    import scipy.io

    try:
        raw = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, chars_as_strings=True)
    except NotImplementedError:  # MATLAB 7.3 is HDF5
        return _load_v73(path)
    except (ValueError, scipy.io.matlab.MatReadError) as exc:
        raise ValueError(f"path {str(path)!r} is not a MATLAB file StatSTEM writes: {exc}") from None
    return {k: _plain(v, path, k) for k, v in raw.items() if not k.startswith("__")}


def _plain(value, path, where):
    import scipy.io.matlab as mio

    if isinstance(value, mio.mat_struct):
        return {f: _plain(getattr(value, f), path, f"{where}.{f}") for f in value._fieldnames}
    if isinstance(value, mio.MatlabOpaque) or type(value).__name__ == "MatlabOpaque":
        raise ValueError(f"path {str(path)!r}: {where} is a MATLAB object (StatSTEM's classes), which only MATLAB "
                         f"reads; in MATLAB, save it as a struct first ({where} = struct({where}))")  # fmt: skip
    if isinstance(value, np.ndarray) and value.dtype == object:
        items = [_plain(v, path, where) for v in value.ravel()]
        if all(isinstance(v, str) for v in items):
            return items
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out
    return value


def _load_v73(path):
    import h5py

    def conv(f, obj):
        if isinstance(obj, h5py.Group):
            return {k: conv(f, obj[k]) for k in obj if not k.startswith("#")}
        data = obj[()]
        cls = obj.attrs.get("MATLAB_class", b"")
        cls = cls.decode() if isinstance(cls, bytes) else str(cls)
        if cls == "char":
            return "".join(chr(c) for c in np.asarray(data).ravel())
        if cls == "cell":
            return [conv(f, f[ref]) for ref in np.asarray(data).ravel()]
        if obj.attrs.get("MATLAB_empty", 0):
            return np.zeros((0,))
        arr = np.asarray(data)
        return arr.T.squeeze() if arr.ndim >= 2 and min(arr.shape) == 1 else arr.T

    with h5py.File(path, "r") as f:
        return {k: conv(f, f[k]) for k in f if not k.startswith("#")}


def _cellstr(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in np.asarray(value, dtype=object).ravel()]


def _vector(struct, name, n, path):
    v = np.asarray(struct[name], dtype=np.float64).ravel()
    if v.size == 1 and n != 1:
        v = np.full(n, float(v[0]))
    if v.shape != (n,):
        raise ValueError(f"path {str(path)!r}: output.{name} must have one value per column ({n}), got {v.shape}")
    return v


def _output_fit(out, types, names, image, path):
    """StatSTEM's output struct as a ColumnFit (no standard errors: StatSTEM stores none)."""
    dx = image.pixel_size_angstrom
    coords = np.asarray(out["coordinates"], dtype=np.float64)
    coords = coords.reshape(-1, coords.shape[-1] if coords.ndim == 2 else coords.size)
    n = len(coords)
    rho, eta = _vector(out, "rho", n, path), _vector(out, "eta", n, path)
    vol_name = "volumes" if "volumes" in out else ("Volumes" if "Volumes" in out else None)
    scs = _vector(out, vol_name, n, path) if vol_name else 2.0 * np.pi * eta * rho**2
    if coords.shape[1] >= 3:
        types = coords[:, 2].astype(np.int64) - 1
    if len(types) != n:
        raise ValueError(f"path {str(path)!r}: output.coordinates has {n} columns, input.coordinates {len(types)}")
    same = all(np.ptp(rho[types == k]) == 0 for k in np.unique(types))
    nan = np.full(n, np.nan)
    zeta = float(np.asarray(out.get("zeta", 0.0)).ravel()[0])
    meta = {"source": "StatSTEM", "file": str(path)}
    if "lsq" in out:
        meta["lsq"] = float(np.asarray(out["lsq"]).ravel()[0])
    return ColumnFit(
        positions=coords[:, :2] - dx, positions_error=np.full((n, 2), np.nan), types=types, type_names=names,
        heights=eta, heights_error=nan, widths=rho, widths_error=nan, scs=scs, scs_error=nan, voronoi_scs=nan,
        background=np.array([zeta, 0.0, 0.0]), background_error=np.full(3, np.nan), converged=np.ones(n, bool),
        input_index=np.arange(n), reduced_chi2=float("nan"), n_iterations=0, image_shape=image.shape,
        pixel_size_angstrom=dx, width_mode="shared" if same else "free", background_model="constant",
        noise="gaussian", metadata=meta,
    )  # fmt: skip


def _extra_fit(extra, path):
    """The fit stored whole by :func:`write_statstem`."""
    try:
        attrs = json.loads(str(extra["attrs_json"]))
        kw = dict(attrs)
        kw["type_names"] = tuple(kw["type_names"])
        kw["image_shape"] = tuple(kw["image_shape"])
        n = None
        for name in ColumnFit._ARRAYS:
            v = extra.get(name)
            if v is not None:
                v = np.asarray(v)
                if name == "converged":
                    v = v.astype(bool)
            kw[name] = v
        n = np.asarray(kw["heights"]).size
        for name in ColumnFit._ARRAYS:  # MATLAB keeps no 1-element or (n, 2) shapes apart from others
            v = kw[name]
            if v is None:
                continue
            if name in ("positions", "positions_error"):
                kw[name] = v.reshape(n, 2)
            elif name in ("background", "background_error"):
                kw[name] = v.reshape(-1)
            elif name != "residual":
                kw[name] = v.reshape(n)
        return ColumnFit(**kw)
    except (KeyError, ValueError, TypeError) as exc:
        warnings.warn(f"{path}: its atomscount struct is damaged ({exc}); reading StatSTEM's output", stacklevel=3)
        return None


def _counts(top, out):
    for holder in (top.get("atomcounting"), out, top):
        if isinstance(holder, dict):
            for name in ("Counts", "AtomCounts", "counts"):
                if name in holder:
                    return np.asarray(holder[name]).astype(np.int64).ravel()
    ac = top.get("atomcounting")
    if isinstance(ac, dict) and "estimatedDistributions" in ac and "selMin" in ac and "volumes" in ac:
        sel = int(np.asarray(ac["selMin"]).ravel()[0])
        dist = np.asarray(ac["estimatedDistributions"], dtype=object).ravel()[sel - 1]
        mu = np.asarray(dist["mu"], float).ravel()
        order = np.argsort(mu)
        sd = float(np.sqrt(np.asarray(dist["Sigma"], float).ravel()[0]))
        p = np.asarray(dist["PComponents"], float).ravel()[order]
        vol = np.asarray(ac["volumes"], float).ravel()
        like = p * np.exp(-0.5 * ((vol[:, None] - mu[order]) / sd) ** 2)
        offset = int(np.asarray(ac.get("offset", 0)).ravel()[0])
        return np.argmax(like, axis=1).astype(np.int64) + 1 + offset
    return None
