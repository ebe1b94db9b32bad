"""Pure-column SCS libraries: :class:`ScsLibrary` and :func:`build_scs_library`."""

from __future__ import annotations

import dataclasses
import datetime
import warnings

import numpy as np

from .. import __version__
from .._checks import check_increasing, check_integer
from ..io import read_hdf5, write_hdf5
from ._files import check_curve, check_finite, check_scs_table, checking
from .settings import MicroscopeSettings
from .simulate import _check_element, _parse_zone_axis, column_cell, simulate_column_scs, zone_axis_crystal

__all__ = ["ScsLibrary", "available_defaults", "build_scs_library", "load_default", "thickness_curve"]

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
        return (f"ScsLibrary({self.element} [{self.zone_axis}], N=1..{self.max_atoms}, "
                f"{self.scs_per_config.shape[0]} configs)")  # fmt: skip

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
