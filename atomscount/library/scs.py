"""Pure-column SCS libraries: :class:`ScsLibrary` and :func:`build_scs_library`."""

from __future__ import annotations

import dataclasses
import datetime
import warnings

import numpy as np

from .._checks import check_increasing, check_integer
from .._version import __version__
from ..io import read_hdf5, write_hdf5
from ._files import check_curve, check_finite, check_scs_table, checking, read_text_table
from .settings import MicroscopeSettings
from .simulate import _check_element, _parse_zone_axis, column_cell, simulate_column_scs, zone_axis_crystal

__all__ = ["ScsLibrary", "available_defaults", "build_scs_library", "load_default", "read_library", "resolve_library",
           "thickness_curve"]  # fmt: skip

_KIND = "ScsLibrary"


def thickness_curve(n, amplitude, n_sat, slope, offset=0.0):
    """Smooth SCS(N) [Å²] for extrapolation: a saturating channelling term, linear growth and an offset.

    ``offset + amplitude * (1 - exp(-N / n_sat)) + slope * N``. It is fitted to the
    thicker half of a library, where it continues the table; the offset absorbs the
    slower first atoms (the probe still focusing onto the column), which the
    concave form cannot follow.
    """
    n = np.asarray(n, dtype=np.float64)
    return offset + amplitude * (1.0 - np.exp(-n / n_sat)) + slope * n


@dataclasses.dataclass(frozen=True, repr=False)
class ScsLibrary:
    """Simulated SCS of pure columns against the number of atoms.

    Attributes
    ----------
    element : str
    zone_axis : str
    n_atoms : ndarray (m,) of int
        1..max_atoms.
    scs : ndarray (m,)
        Mean over frozen-phonon configurations [Å²].
    scs_sem : ndarray (m,)
        Standard error of that mean [Å²].
    scs_per_config : ndarray (n_configs, m)
    settings : dict
        :class:`MicroscopeSettings` as a dict.
    seeds : ndarray (n_configs,)
        The seed of each configuration.
    curve : dict
        Parameters of :func:`thickness_curve` fitted with lmfit, used beyond ``max_atoms``.
    provenance : dict
        Build date, package versions, cell, scan and timing.
    """

    element: str
    zone_axis: str
    n_atoms: np.ndarray
    scs: np.ndarray
    scs_sem: np.ndarray
    scs_per_config: np.ndarray
    settings: dict
    seeds: np.ndarray
    curve: dict
    provenance: dict = dataclasses.field(default_factory=dict)

    _ARRAYS = ("n_atoms", "scs", "scs_sem", "scs_per_config", "seeds")

    def __post_init__(self):
        m = len(self.n_atoms)
        for name in ("scs", "scs_sem"):
            if np.shape(getattr(self, name)) != (m,):
                raise ValueError(f"{name} must have length {m}, got {np.shape(getattr(self, name))}")
        for name in self._ARRAYS:
            arr = np.array(getattr(self, name))
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def max_atoms(self) -> int:
        return int(self.n_atoms.max())

    def microscope(self) -> MicroscopeSettings:
        return MicroscopeSettings.from_dict(self.settings)

    def is_extrapolated(self, n) -> np.ndarray:
        """True where ``n`` lies outside the simulated range."""
        n = np.asarray(n, dtype=np.float64)
        return (n < self.n_atoms.min()) | (n > self.n_atoms.max())

    def scs_at(self, n, *, extrapolate: bool = False) -> np.ndarray:
        """SCS [Å²] for atom counts ``n`` (interpolated between simulated counts).

        Raises
        ------
        ValueError
            If a count is outside 1..max_atoms and ``extrapolate`` is False; with
            ``extrapolate=True`` the fitted thickness curve is used there (see
            :meth:`is_extrapolated`) and a warning says so.
        """
        n = np.asarray(n, dtype=np.float64)
        if np.any(n < 0) or not np.all(np.isfinite(n)):
            raise ValueError(f"n must be finite and >= 0, got {n[(n < 0) | ~np.isfinite(n)][:3].tolist()}")
        out_of_range = self.is_extrapolated(n) & (n != 0)
        if out_of_range.any() and not extrapolate:
            raise ValueError(
                f"n must lie within the library range 1..{self.max_atoms} for {self.element} [{self.zone_axis}], "
                f"got {n[out_of_range][:5].tolist()}; pass extrapolate=True to use the fitted thickness curve"
            )
        grid = np.concatenate([[0.0], self.n_atoms.astype(float)])
        table = np.concatenate([[0.0], self.scs])
        vals = np.interp(n, grid, table)
        if out_of_range.any():
            warnings.warn(f"{int(out_of_range.sum())} counts beyond 1..{self.max_atoms} are extrapolated", stacklevel=2)
            vals = np.where(out_of_range, thickness_curve(n, **self.curve), vals)
        return vals

    def summary(self) -> dict:
        return {
            "element": self.element,
            "zone_axis": self.zone_axis,
            "max_atoms": self.max_atoms,
            "n_configs": int(self.scs_per_config.shape[0]),
            "scs_1": float(self.scs[0]),
            "scs_max": float(self.scs[-1]),
            "median_rel_sem": float(np.median(self.scs_sem / self.scs)),
            "curve": dict(self.curve),
        }

    def __repr__(self) -> str:
        what = (f"{self.element} [{self.zone_axis}]" if self.element or self.zone_axis else
                f"table {self.provenance.get('source', '')}".rstrip())  # fmt: skip
        return f"ScsLibrary({what}, N=1..{self.max_atoms}, {self.scs_per_config.shape[0]} configs)"

    def table(self) -> str:
        lines = [f"{'N':>4} {'SCS (Å²)':>12} {'± sem':>10}"]
        lines += [f"{n:4d} {s:12.5f} {e:10.5f}" for n, s, e in zip(self.n_atoms, self.scs, self.scs_sem, strict=True)]
        return "\n".join(lines)

    def to_hdf5(self, path) -> None:
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        attrs = {"element": self.element, "zone_axis": self.zone_axis, "settings": self.settings,
                 "curve": self.curve, "provenance": self.provenance}  # fmt: skip
        write_hdf5(path, _KIND, arrays, attrs)

    @classmethod
    def from_hdf5(cls, path) -> ScsLibrary:
        """Read a library written by :meth:`to_hdf5`.

        Raises
        ------
        FileFormatError
            (a ValueError) If the file is not a library, or its values are not
            valid: ``n_atoms`` not the whole counts 1, 2, ...; ``scs`` not finite,
            above zero and strictly increasing with thickness; ``scs_sem`` not
            finite and >= 0; ``scs_per_config`` not finite; or ``curve`` lacking a
            finite parameter. The message names the file and the field.
        """
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        with checking(path, "library"):
            _check_table(arrays, attrs)
            attrs["settings"] = MicroscopeSettings.stored(attrs["settings"])
            return cls(**attrs, **{k: arrays[k] for k in cls._ARRAYS})

    @classmethod
    def from_table(cls, n_atoms, scs, *, scs_sem=None, element: str = "", zone_axis: str = "",
                   source: str | None = None, name: str = "library") -> ScsLibrary:  # fmt: skip
        """A library from a table of atom counts and SCS, e.g. a StatSTEM library file.

        Parameters
        ----------
        n_atoms : array_like (m,) of int
            Atoms in the column: whole numbers >= 1, strictly increasing, each
            listed once. Gaps are interpolated by :meth:`scs_at`. A leading row
            for 0 atoms is accepted when its SCS is 0 (StatSTEM writes one) and
            dropped: no atoms scatter nothing.
        scs : array_like (m,)
            SCS [Å²] for those counts: finite, above zero and strictly increasing.
        scs_sem : array_like (m,), optional
            Standard errors of the SCS [Å²]; zero when not given.
        element, zone_axis : str
            What the table describes, for reports (empty when unknown).
        source : str, optional
            Where the table came from (a file name), kept in ``provenance``.
        name : str
            The argument's name, for messages.

        Returns
        -------
        ScsLibrary
            With one "configuration" (the table itself), empty microscope
            settings and a thickness curve fitted for extrapolation.

        Raises
        ------
        ValueError
            If the two columns differ in length or are empty; a count is not a
            whole number >= 1 (0 only in the first row, with SCS 0), is listed
            twice or comes after a larger one; an SCS is not finite, not above
            zero or not larger than the previous one; or ``scs_sem`` is not
            finite and >= 0. The message names ``name``, the row and its values.
        TypeError
            If the values are not real numbers.

        Examples
        --------
        >>> lib = ScsLibrary.from_table([1, 2, 3, 4], [0.05, 0.1, 0.14, 0.17])
        >>> lib.max_atoms, float(lib.scs_at(2))
        (4, 0.1)
        """
        n = np.asarray(n_atoms)
        y = np.asarray(scs)
        for arr, what in ((n, "atom counts"), (y, "SCS")):
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{name}: the {what} must be real numbers, got dtype {arr.dtype}")
            if arr.ndim != 1:
                raise ValueError(f"{name}: the {what} must be a 1D column, got shape {arr.shape}")
        if n.size != y.size:
            raise ValueError(f"{name}: {n.size} atom counts but {y.size} SCS values; give one SCS per count")
        if n.size == 0:
            raise ValueError(f"{name} must hold at least one row (atoms, SCS), got none")
        n = n.astype(np.float64)
        y = y.astype(np.float64)
        sem = np.zeros_like(y) if scs_sem is None else check_finite(scs_sem, f"{name} s.e.", minimum=0.0)
        if sem.shape != y.shape:
            raise ValueError(f"{name}: scs_sem must have one value per row ({y.size}), got shape {sem.shape}")
        if n[0] == 0 and n.size > 1:
            if y[0] != 0:
                raise ValueError(f"{name}: the row for 0 atoms must have SCS 0 (no atoms scatter nothing), got "
                                 f"{y[0]:.6g}")  # fmt: skip
            n, y, sem = n[1:], y[1:], sem[1:]
            row0 = 2
        else:
            row0 = 1
        bad = np.flatnonzero(~np.isfinite(n) | (n < 1) | (n != np.round(n)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{name}: atom counts must be whole numbers >= 1, got {n[i]:g} in row {i + row0}")
        same = np.flatnonzero(np.diff(n) == 0)
        if same.size:
            i = int(same[0])
            raise ValueError(f"{name}: atom count {n[i]:g} is listed twice (rows {i + row0} and {i + row0 + 1}, SCS "
                             f"{y[i]:.6g} and {y[i + 1]:.6g}); each count must appear once")  # fmt: skip
        down = np.flatnonzero(np.diff(n) < 0)
        if down.size:
            i = int(down[0]) + 1
            raise ValueError(f"{name}: atom counts must increase strictly, got {n[i]:g} in row {i + row0} after "
                             f"{n[i - 1]:g}")  # fmt: skip
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{name}: SCS must be finite, got {y[i]} for {n[i]:g} atoms (row {i + row0})")
        if not y[0] > 0:
            raise ValueError(f"{name}: SCS must be above zero, got {y[0]:.6g} for {n[0]:g} atoms (row {row0})")
        down = np.flatnonzero(np.diff(y) <= 0)
        if down.size:
            i = int(down[0]) + 1
            raise ValueError(f"{name}: SCS must increase strictly with the atom count, got {y[i]:.6g} for {n[i]:g} "
                             f"atoms (row {i + row0}) after {y[i - 1]:.6g} for {n[i - 1]:g} atoms")  # fmt: skip
        n_int = n.astype(np.int64)
        provenance = {"source": source or "table", "built": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"), "atomscount_version": __version__}  # fmt: skip
        return cls(element=str(element), zone_axis=str(zone_axis), n_atoms=n_int, scs=y, scs_sem=sem,
                   scs_per_config=y[None, :], settings={}, seeds=np.zeros(0, dtype=np.uint64),
                   curve=_fit_curve(n_int, y, sem), provenance=provenance)  # fmt: skip


def _check_table(arrays, attrs) -> None:
    """The values a library file must hold for :meth:`ScsLibrary.scs_at` to give finite, increasing SCS."""
    n = check_increasing(arrays["n_atoms"], "n_atoms")
    if n[0] < 1 or np.any(n != np.round(n)):
        bad = int(np.flatnonzero((n < 1) | (n != np.round(n)))[0])
        raise ValueError(f"n_atoms must hold whole counts from 1 up, got n_atoms[{bad}] = {n[bad]}")
    check_scs_table(arrays["scs"], "scs")
    check_finite(arrays["scs_sem"], "scs_sem", minimum=0.0)
    check_finite(arrays["scs_per_config"], "scs_per_config")
    check_curve(attrs["curve"], "curve")


def _fit_curve(n, scs, sem):
    import lmfit

    keep = n >= n[-1] / 2
    if keep.sum() < 6:  # too few counts for four parameters: a line through the last two
        slope = float(scs[-1] - scs[-2]) / float(n[-1] - n[-2]) if len(n) > 1 else float(scs[0] / n[0])
        return {"amplitude": 0.0, "n_sat": 1.0, "slope": slope, "offset": float(scs[-1] - slope * n[-1])}
    model = lmfit.Model(thickness_curve, independent_vars=["n"])
    # start from the end of the table, which is what extrapolation continues: the
    # final increment as the slope, the rest as the saturated channelling term
    tail = max(2, len(n) // 8)
    slope0 = max(float(np.mean(np.diff(scs)[-tail:])), 1e-9)
    params = model.make_params(amplitude=max(scs[-1] - slope0 * n[-1], 1e-9), n_sat=max(n[-1] / 4, 1.0),
                               slope=slope0, offset=0.0)  # fmt: skip
    params["n_sat"].min = 0.1
    params["n_sat"].max = 10.0 * n[-1]
    params["slope"].min = 0
    # relative weights over the thicker half of the table, which extrapolation continues
    weights = 1.0 / np.maximum(np.abs(scs[keep]), 1e-12)
    result = model.fit(scs[keep], params, n=n[keep], weights=weights)
    return {k: float(v.value) for k, v in result.params.items()}


def build_scs_library(element_or_atoms, zone_axis, max_atoms: int, settings: MicroscopeSettings, *, client=None,
                      progress: bool = True, cache_dir=None, workers: int | None = None) -> ScsLibrary:  # fmt: skip
    """Simulate SCS(N) for N = 1..max_atoms of a pure column with abTEM.

    One multislice pass per frozen-phonon configuration gives every thickness
    (exit planes); only the column's Voronoi cell is scanned.

    Parameters
    ----------
    element_or_atoms : str or ase.Atoms
    zone_axis : {"001", "110", "111"} or (h, k, l)
    max_atoms : int
        Largest number of atoms in the column (>= 1).
    settings : MicroscopeSettings
    client : dask.distributed.Client, optional
        Run the configurations on this cluster; by default they run locally.
    workers : int, optional
        Without ``client``: run the configurations on a local dask cluster of this
        many processes (one per core), closed when the build ends. By default they
        run one after the other in this process.
    progress : bool
        Show a progress bar over configurations.
    cache_dir : path, optional
        Keep each finished configuration there, so that an interrupted build
        resumes where it stopped (see :func:`simulate_column_scs`).

    Returns
    -------
    ScsLibrary
    """
    if not isinstance(settings, MicroscopeSettings):
        raise TypeError(f"settings must be a MicroscopeSettings, got {type(settings).__name__}")
    max_atoms = check_integer(max_atoms, "max_atoms", low=1)
    key, _ = _parse_zone_axis(zone_axis)
    crystal = zone_axis_crystal(element_or_atoms, zone_axis)
    # a column may hold several equally spaced atoms per period (bcc [111]: 2); an
    # exit plane is then read after each of them
    per_period = column_cell(crystal)[2]
    periods = -(-int(max_atoms) // per_period)
    per_config, info = simulate_column_scs(crystal, settings, periods, client=client, progress=progress,
                                           cache_dir=cache_dir, workers=workers, per_atom=True)  # fmt: skip
    table = np.asarray(per_config[:, 1 : int(max_atoms) + 1], dtype=np.float64)
    n = np.arange(1, int(max_atoms) + 1)
    mean = table.mean(axis=0)
    sem = table.std(axis=0, ddof=1) / np.sqrt(len(table)) if len(table) > 1 else np.zeros_like(mean)
    symbols = sorted(set(crystal.get_chemical_symbols()))
    import abtem
    import ase

    provenance = {
        "built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "atomscount_version": __version__,
        "abtem_version": abtem.__version__,
        "ase_version": ase.__version__,
        "cell_angstrom": crystal.cell.lengths().tolist(),
        "cell_symbols": crystal.get_chemical_symbols(),
        "cell_positions": crystal.positions.tolist(),
        **info,
    }
    return ScsLibrary(
        element="".join(symbols), zone_axis=key, n_atoms=n, scs=mean, scs_sem=sem, scs_per_config=table,
        settings=settings.to_dict(), seeds=np.array(info["seeds"], dtype=np.uint64), curve=_fit_curve(n, mean, sem),
        provenance=provenance,
    )  # fmt: skip


def available_defaults() -> list[tuple[str, str]]:
    """(element, zone_axis) pairs of the libraries shipped in ``atomscount/data/libraries``."""
    import re
    from importlib import resources

    base = resources.files("atomscount") / "data" / "libraries"
    out = []
    if base.is_dir():
        for entry in base.iterdir():
            # pure libraries only: "Au_001.h5", not "AuAg_001_lensing.h5"
            m = re.fullmatch(r"([A-Z][a-z]?)_(\d{3,4})\.h5", entry.name)
            if m:
                out.append((m.group(1), m.group(2)))
    return sorted(out)


def load_default(element: str, zone_axis: str) -> ScsLibrary:
    """Load a shipped pure-column library (300 kV, HAADF 55-200 mrad, 8 phonon configurations).

    The settings and provenance are inside the file; ``simulations/build_libraries.py``
    with ``simulations/default_libraries.toml`` rebuilds it.

    Parameters
    ----------
    element : str
        Chemical symbol, e.g. ``"Au"``.
    zone_axis : str or tuple of int
        ``"001"``, ``"110"``... or ``(h, k, l)``.

    Raises
    ------
    ValueError
        If no library ships for that element and zone axis (the message lists
        those that do), or the zone axis is not one (a string like ``"001"`` or
        three integers, not all zero).
    TypeError
        If ``element`` is not a string, or ``zone_axis`` neither a string nor a sequence.
    """
    from importlib import resources

    _check_element(element, "element")
    key, _ = _parse_zone_axis(zone_axis)
    path = resources.files("atomscount") / "data" / "libraries" / f"{element}_{key}.h5"
    if not path.is_file():
        raise ValueError(
            f"no shipped library for element={element!r}, zone_axis={key!r}; available: {available_defaults()}"
        )
    return ScsLibrary.from_hdf5(str(path))


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read_library(path, *, element: str = "", zone_axis: str = "") -> ScsLibrary:
    """Read a library: an HDF5 file of :meth:`ScsLibrary.to_hdf5`, or a text table.

    A text table (``.txt``, ``.csv``, ``.dat``, any name) has one row per count:
    the number of atoms, then the SCS [Å²], and optionally the SCS's standard
    error, separated by commas, semicolons, tabs or spaces. This is StatSTEM's
    library file. A header line before the first row of numbers, blank lines and
    comments (after ``#`` or ``%``) are skipped. The file's kind is told by its
    content, not its name.

    Parameters
    ----------
    path : str or path-like
    element, zone_axis : str
        For a text table, what it describes (the HDF5 file records its own).

    Returns
    -------
    ScsLibrary

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    FileFormatError
        (a ValueError) If the file is neither, a row holds other than 2 or 3
        numbers, or the values break the rules of :meth:`ScsLibrary.from_table`
        (counts repeated or not increasing, SCS not increasing...). The message
        names the file and the line.
    """
    import os
    from pathlib import Path

    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(f"library file {str(p)!r} does not exist")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head == _HDF5_SIGNATURE:
        return ScsLibrary.from_hdf5(p)
    table = read_text_table(p, "library")
    with checking(p, "library"):
        return ScsLibrary.from_table(table[:, 0], table[:, 1], scs_sem=table[:, 2] if table.shape[1] == 3 else None,
                                     element=element, zone_axis=zone_axis, source=p.name,
                                     name=f"library {p.name!r}")  # fmt: skip


def resolve_library(library, *, name: str = "library"):
    """A library given in any accepted form, as an :class:`ScsLibrary` (or a 1D array of SCS, kept as it is).

    Accepted: an :class:`ScsLibrary`; ``"ELEMENT:AXIS"`` for a shipped library
    (e.g. ``"Pt:110"``); a path to a library file (HDF5 or text, see
    :func:`read_library`); an ``(m, 2)`` array of (atoms, SCS) rows; a pair
    ``(n_atoms, scs)`` of two 1D arrays; or a 1D array of SCS for 1, 2, ...
    atoms, which is returned as a float array for the counting functions to
    check.

    Raises
    ------
    ValueError
        If a string is neither an existing file nor ``ELEMENT:AXIS``, or the
        table's values are invalid (see :meth:`ScsLibrary.from_table`).
    TypeError
        If ``library`` is none of these.
    """
    import os

    if library is None or isinstance(library, ScsLibrary):
        return library
    if isinstance(library, str | os.PathLike):
        text = os.fspath(library)
        if os.path.exists(text):
            return read_library(text)
        if isinstance(library, str) and ":" in text and "/" not in text and "\\" not in text:
            element, axis = text.split(":", 1)
            return load_default(element.strip(), axis.strip())
        raise ValueError(f"{name} must be a library file (HDF5 or a text table of atoms and SCS) or ELEMENT:AXIS for "
                         f"a shipped one (e.g. 'Au:001'), got {text!r}, which is neither an existing file nor "
                         "ELEMENT:AXIS")  # fmt: skip
    if isinstance(library, bytes | dict):
        raise TypeError(f"{name} must be an ScsLibrary, a file, ELEMENT:AXIS, an (m, 2) table or a 1D array of "
                        f"SCS for 1, 2, ... atoms, got {type(library).__name__}")  # fmt: skip
    if isinstance(library, tuple) and len(library) == 2 and all(np.ndim(v) == 1 for v in library):
        return ScsLibrary.from_table(library[0], library[1], name=name)
    arr = np.asarray(library)
    if arr.ndim == 2 and arr.shape[1] == 2 and arr.dtype.kind in "biuf":
        return ScsLibrary.from_table(arr[:, 0], arr[:, 1], name=name)
    return library
