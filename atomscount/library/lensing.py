"""The atomic lensing model of mixed-column SCS, and its data handling.

In a HAADF image of a mixed column every atom scatters the part of the probe that
reaches it, and the atoms above it focus (lens) the probe onto the column, more
strongly for heavier elements (van den Bos et al., PRL 116, 246101, 2016). The
model here writes the SCS of a column with elements ``Z_1 .. Z_N`` (beam entrance
first) as a sum of single-atom contributions,

    SCS = sum_n  Delta_{Z_n}(1 + d_n),     d_n = sum_{m < n} lambda[Z_m, Z_n],

where ``Delta_Z(k) = SCS_Z(k) - SCS_Z(k - 1)`` is the increment of the pure-Z
library at depth ``k`` (linearly interpolated for non-integer depths) and ``d_n`` is
the *effective depth* of atom ``n``: the focusing it has received, counted in
atoms of its own element. ``lambda[Z, Z] = 1`` is fixed, so a pure column is
exactly its library; the cross terms ``lambda[A, B]`` (how many B atoms of focusing
one A atom gives a B atom below it) are fitted to mixed-column simulations.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import least_squares

from ..io import read_hdf5, write_hdf5
from ._files import check_finite, check_scs_table, checking
from .scs import ScsLibrary, thickness_curve
from .settings import MicroscopeSettings

_CURVE_KEYS = ("amplitude", "n_sat", "slope", "offset")

__all__ = ["LensingModel", "LinearModel", "load_default_lensing", "load_default_linear", "pure_tables"]


def pure_tables(libraries) -> dict:
    """``{element: (scs table N=1..max, curve params)}`` from ScsLibrary objects."""
    out = {}
    for lib in libraries:
        if not isinstance(lib, ScsLibrary):
            raise TypeError(f"libraries must hold ScsLibrary objects, got {type(lib).__name__}")
        out[lib.element] = (np.asarray(lib.scs, dtype=np.float64), dict(lib.curve))
    return out


def _as_columns(data):
    """Normalise training data to (list of element tuples, scs array, sem array)."""
    from .mixed import MixedColumns, _split_symbols

    seqs, scs, sem = [], [], []
    items = data.prefixes() if isinstance(data, MixedColumns) else data
    for seq, s, e in items:
        seqs.append(tuple(_split_symbols(seq)) if isinstance(seq, str) else tuple(seq))
        scs.append(float(s))
        sem.append(float(e))
    return seqs, np.array(scs), np.array(sem)


def _check_sequence(seq, elements):
    for e in seq:
        if e not in elements:
            raise ValueError(f"sequence holds {e!r}, but the model knows only {list(elements)}")


@dataclasses.dataclass(frozen=True, repr=False)
class LensingModel:
    """Atomic lensing model for columns of the given elements. See the module docstring.

    Attributes
    ----------
    elements : tuple of str
    tables : ndarray (E, N)
        Pure-column SCS for 1..N atoms of each element [Å²].
    curves : ndarray (E, 4)
        Thickness-curve parameters (amplitude, n_sat, slope, offset) per element, for depths beyond N.
    lam : ndarray (E, E)
        Lensing strengths ``lam[A, B]`` of an A atom for a B atom below it; diagonal 1.
    zone_axis : str
    settings : dict
    provenance : dict
        Fit statistics.
    """

    elements: tuple
    tables: np.ndarray
    curves: np.ndarray
    lam: np.ndarray
    zone_axis: str = ""
    settings: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        e = len(self.elements)
        object.__setattr__(self, "elements", tuple(self.elements))
        if np.shape(self.lam) != (e, e) or np.shape(self.tables)[0] != e or np.shape(self.curves) != (e, 4):
            raise ValueError(f"lam must be ({e}, {e}), tables ({e}, N) and curves ({e}, 4)")
        if not np.allclose(np.diag(self.lam), 1.0):
            raise ValueError(f"lam must have a unit diagonal, got {np.diag(self.lam).tolist()}")

    def _increment(self, k, depth):
        table = self.tables[k]
        n = len(table)
        if depth <= n:
            full = np.concatenate([[0.0], table])
            inc = np.diff(full)  # inc[j] is Delta(j + 1)
            x = np.clip(depth - 1.0, 0.0, n - 1.0)
            return float(np.interp(x, np.arange(n), inc))
        p = self.curves[k]
        return float(thickness_curve(depth, *p) - thickness_curve(depth - 1.0, *p))

    def contributions(self, sequence) -> np.ndarray:
        """SCS contribution [Å²] of each atom of ``sequence`` (beam entrance first)."""
        seq = tuple(sequence)
        _check_sequence(seq, self.elements)
        idx = [self.elements.index(e) for e in seq]
        out = np.empty(len(idx))
        depth_above = np.zeros(len(self.elements))  # sum of lam[Z_m, B] over atoms above, per B
        for n, k in enumerate(idx):
            out[n] = self._increment(k, 1.0 + depth_above[k])
            depth_above += self.lam[k]
        return out

    def predict(self, sequences) -> np.ndarray:
        """SCS [Å²] of each sequence (strings like ``"AuAgAu"`` or lists of symbols)."""
        from .mixed import _split_symbols

        seqs = [_split_symbols(s) if isinstance(s, str) else list(s) for s in sequences]
        return np.array([self.contributions(s).sum() for s in seqs])

    @classmethod
    def fit(cls, libraries, mixed, *, zone_axis: str = "") -> LensingModel:
        """Fit the cross lensing strengths to mixed-column SCS by least squares on relative errors.

        Parameters
        ----------
        libraries : sequence of ScsLibrary
            One pure-column library per element, from the same settings as ``mixed``.
        mixed : MixedColumns or iterable of (sequence, scs, sem)
        """
        tables = pure_tables(libraries)
        elements = tuple(sorted(tables))
        width = min(len(t) for t, _ in tables.values())
        tab = np.array([tables[e][0][:width] for e in elements])
        curves = np.array([[tables[e][1].get(k, 0.0) for k in _CURVE_KEYS] for e in elements])
        seqs, scs, _ = _as_columns(mixed)
        if not seqs:
            raise ValueError("mixed must hold at least one column")
        e = len(elements)
        off = [(i, j) for i in range(e) for j in range(e) if i != j]

        def model_for(p):
            lam = np.eye(e)
            for (i, j), v in zip(off, p, strict=True):
                lam[i, j] = v
            return cls(elements, tab, curves, lam, zone_axis)

        def resid(p):
            return (model_for(p).predict(seqs) - scs) / scs

        sol = least_squares(resid, np.ones(len(off)), bounds=(0.0, 10.0))
        best = model_for(sol.x)
        rel = resid(sol.x)
        prov = {"n_fit_columns": len(seqs), "fit_mean_abs_rel_error": float(np.mean(np.abs(rel))),
                "fit_max_abs_rel_error": float(np.max(np.abs(rel)))}  # fmt: skip
        settings = dict(libraries[0].settings) if libraries else {}
        return cls(elements, tab, curves, best.lam, zone_axis, settings, prov)

    def __repr__(self) -> str:
        pairs = ", ".join(
            f"{a}→{b}: {self.lam[i, j]:.3f}"
            for i, a in enumerate(self.elements)
            for j, b in enumerate(self.elements)
            if i != j
        )
        return f"LensingModel({'/'.join(self.elements)} [{self.zone_axis}], lensing {pairs})"

    def summary(self) -> dict:
        return {"elements": list(self.elements), "zone_axis": self.zone_axis, "lam": self.lam.tolist(),
                "max_atoms": int(self.tables.shape[1]), **self.provenance}  # fmt: skip

    def to_hdf5(self, path) -> None:
        write_hdf5(path, "LensingModel", {"tables": self.tables, "curves": self.curves, "lam": self.lam},
                   {"elements": list(self.elements), "zone_axis": self.zone_axis, "settings": self.settings,
                    "provenance": self.provenance})  # fmt: skip

    @classmethod
    def from_hdf5(cls, path) -> LensingModel:
        """Read a model written by :meth:`to_hdf5`.

        Raises
        ------
        FileFormatError
            (a ValueError) If the file is not a lensing model, or a pure-column
            table is not finite, above zero and strictly increasing with
            thickness, or ``curves`` or ``lam`` are not finite (``lam`` >= 0). The
            message names the file and the field.
        """
        arrays, attrs = read_hdf5(path, "LensingModel")
        with checking(path, "lensing model"):
            tables = np.asarray(arrays["tables"], dtype=np.float64)
            if tables.ndim != 2:
                raise ValueError(f"tables must be 2D (elements, atoms), got shape {tables.shape}")
            for i, row in enumerate(tables):
                check_scs_table(row, f"tables[{i}]")
            check_finite(arrays["curves"], "curves")
            check_finite(arrays["lam"], "lam", minimum=0.0)
            return cls(tuple(attrs["elements"]), tables, arrays["curves"], arrays["lam"], attrs["zone_axis"],
                       MicroscopeSettings.stored(attrs["settings"]), attrs["provenance"])  # fmt: skip


@dataclasses.dataclass(frozen=True, repr=False)
class LinearModel:
    """``SCS ≈ sum_element n_element * s_element`` (Yang et al. 2017 style).

    Attributes
    ----------
    elements : tuple of str
    per_atom : ndarray (E,)
        SCS per atom of each element [Å²].
    """

    elements: tuple
    per_atom: np.ndarray
    zone_axis: str = ""
    settings: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "elements", tuple(self.elements))
        if np.shape(self.per_atom) != (len(self.elements),):
            raise ValueError(f"per_atom must have length {len(self.elements)}, got {np.shape(self.per_atom)}")

    def counts(self, sequences) -> np.ndarray:
        from .mixed import _split_symbols

        out = np.zeros((len(sequences), len(self.elements)))
        for i, s in enumerate(sequences):
            seq = _split_symbols(s) if isinstance(s, str) else list(s)
            _check_sequence(seq, self.elements)
            for e in seq:
                out[i, self.elements.index(e)] += 1
        return out

    def predict(self, sequences) -> np.ndarray:
        return self.counts(sequences) @ self.per_atom

    @classmethod
    def fit(cls, data, *, elements=None, zone_axis: str = "", settings=None) -> LinearModel:
        """Least-squares fit (relative errors) to columns given as (sequence, scs, sem) or MixedColumns."""
        seqs, scs, _ = _as_columns(data)
        if not seqs:
            raise ValueError("data must hold at least one column")
        elements = tuple(sorted({e for s in seqs for e in s})) if elements is None else tuple(elements)
        model = cls(elements, np.zeros(len(elements)))
        X = model.counts(seqs) / scs[:, None]
        per_atom, *_ = np.linalg.lstsq(X, np.ones(len(scs)), rcond=None)
        rel = (model.counts(seqs) @ per_atom - scs) / scs
        prov = {"n_fit_columns": len(seqs), "fit_mean_abs_rel_error": float(np.mean(np.abs(rel)))}
        return cls(elements, per_atom, zone_axis, dict(settings or {}), prov)

    def __repr__(self) -> str:
        parts = (f"{e}: {s:.4f} Å²/atom" for e, s in zip(self.elements, self.per_atom, strict=True))
        return "LinearModel(" + ", ".join(parts) + ")"

    def to_hdf5(self, path) -> None:
        write_hdf5(path, "LinearModel", {"per_atom": self.per_atom},
                   {"elements": list(self.elements), "zone_axis": self.zone_axis, "settings": self.settings,
                    "provenance": self.provenance})  # fmt: skip

    @classmethod
    def from_hdf5(cls, path) -> LinearModel:
        """Read a model written by :meth:`to_hdf5`.

        Raises
        ------
        FileFormatError
            (a ValueError) If the file is not a linear model, or ``per_atom`` is
            not finite and above zero; the message names the file and the field.
        """
        arrays, attrs = read_hdf5(path, "LinearModel")
        with checking(path, "linear model"):
            per_atom = check_finite(arrays["per_atom"], "per_atom")
            if not np.all(per_atom > 0):
                i = int(np.flatnonzero(per_atom <= 0)[0])
                raise ValueError(f"per_atom must be > 0, got per_atom[{i}] = {per_atom[i]}")
            return cls(tuple(attrs["elements"]), per_atom, attrs["zone_axis"],
                       MicroscopeSettings.stored(attrs["settings"]), attrs["provenance"])  # fmt: skip


def load_default_lensing(element_a: str, element_b: str, zone_axis: str) -> LensingModel:
    """Load the shipped lensing model for two elements (in either order).

    Raises
    ------
    ValueError
        If none ships for that pair and zone axis, or the zone axis is not one.
    TypeError
        If an element is not a string, or ``zone_axis`` neither a string nor a sequence.
    """
    return _load_default_model(LensingModel, "lensing", element_a, element_b, zone_axis)


def load_default_linear(element_a: str, element_b: str, zone_axis: str) -> LinearModel:
    """Load the shipped linear model fitted to the same simulations as the lensing model.

    Raises
    ------
    ValueError, TypeError
        As for :func:`load_default_lensing`.
    """
    return _load_default_model(LinearModel, "linear", element_a, element_b, zone_axis)


def _load_default_model(cls, kind, a, b, zone_axis):
    from importlib import resources

    from .simulate import _check_element, _parse_zone_axis

    _check_element(a, "element_a")
    _check_element(b, "element_b")
    key, _ = _parse_zone_axis(zone_axis)
    base = resources.files("atomscount") / "data" / "libraries"
    for pair in (a + b, b + a):
        path = base / f"{pair}_{key}_{kind}.h5"
        if path.is_file():
            return cls.from_hdf5(str(path))
    raise ValueError(f"no shipped {kind} model for elements {a!r}/{b!r}, zone_axis={key!r}")
