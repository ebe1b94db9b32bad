"""The result of atom counting: counts per column with their probabilities, and its I/O."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..io import atomic_path, read_hdf5, write_hdf5

_KIND = "ColumnCounts"


@dataclasses.dataclass(frozen=True, repr=False)
class ColumnCounts:
    """Number of atoms in every column, with how sure each count is.

    Attributes
    ----------
    counts : ndarray (n,) or (n_frames, n) of int
        Atoms per column; -1 where the SCS was not finite (dropped) or, for "icl",
        lay far below the lowest mixture component (left out, see the notes).
    probability : ndarray, like ``counts``
        Posterior probability of the reported count.
    count_values : ndarray (k,)
        The counts the posterior columns refer to.
    posterior : ndarray (n, k) or (n_frames, n, k)
        Posterior probability of each count in ``count_values``.
    method : str
        "icl", "library", "hybrid" or "time-series".
    n_components : int
        Mixture components used (distinct counts for the library method).
    component_means, component_weights : ndarray (n_components,)
    component_width : float
        Shared standard deviation of the components [Å²].
    icl, aic, bic : ndarray (g_max,)
        Criteria for G = 1..g_max (empty for the library method).
    library_scale, library_offset : float or None
        Fitted relation ``SCS ~ scale * library + offset`` (hybrid, and the alignment
        of the ICL mixture with a library).
    candidates : list of dict
        Every G, ranked, with its ICL, depth as a minimum, penalties and reasons.
    notes : list of str
        What was decided and why, and any warnings about the data.
    scs : ndarray
        The SCS that were counted (NaN where dropped).
    """

    counts: np.ndarray
    probability: np.ndarray
    count_values: np.ndarray
    posterior: np.ndarray
    method: str
    n_components: int
    component_means: np.ndarray
    component_weights: np.ndarray
    component_width: float
    icl: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    scs: np.ndarray
    library_scale: float | None = None
    library_offset: float | None = None
    candidates: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    metadata: dict = dataclasses.field(default_factory=dict)

    _ARRAYS = ("counts", "probability", "count_values", "posterior", "component_means", "component_weights", "icl",
               "aic", "bic", "scs")  # fmt: skip

    def __post_init__(self):
        for name in self._ARRAYS:
            value = getattr(self, name)
            # a read-only array that owns its memory is frozen already: no copy of a (columns, counts) posterior
            frozen = isinstance(value, np.ndarray) and not value.flags.writeable and value.base is None
            arr = value if frozen else np.array(value)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def valid(self) -> np.ndarray:
        return self.counts >= 0

    @property
    def total_atoms(self):
        """Total atoms (per frame for a time series)."""
        return np.where(self.valid, self.counts, 0).sum(axis=-1)

    @property
    def n_columns(self) -> int:
        return int(self.counts.shape[-1])

    def summary(self) -> dict:
        return {"method": self.method, "n_columns": self.n_columns, "n_components": int(self.n_components),
                "total_atoms": np.asarray(self.total_atoms).tolist(), "library_scale": self.library_scale,
                "library_offset": self.library_offset, "mean_probability": float(np.mean(self.probability[self.valid]))
                if self.valid.any() else None, "notes": list(self.notes)}  # fmt: skip

    def __repr__(self) -> str:
        return (f"ColumnCounts({self.method}, {self.n_columns} columns, G = {self.n_components}, "
                f"{self.summary()['total_atoms']} atoms)")  # fmt: skip

    def to_hdf5(self, path) -> None:
        attrs = {k: getattr(self, k) for k in ("method", "n_components", "component_width", "library_scale",
                                               "library_offset", "candidates", "notes", "metadata")}  # fmt: skip
        write_hdf5(path, _KIND, {k: getattr(self, k) for k in self._ARRAYS}, attrs)

    @classmethod
    def from_hdf5(cls, path) -> ColumnCounts:
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        return cls(**attrs, **{k: arrays[k] for k in cls._ARRAYS})

    def to_csv(self, path) -> None:
        """One row per column (and frame): index, frame, SCS, count, probability."""
        counts = np.atleast_2d(self.counts)
        prob = np.atleast_2d(self.probability)
        scs = np.atleast_2d(self.scs)
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write("column,frame,scs_angstrom2,count,probability\n")
            for f in range(counts.shape[0]):
                for i in range(counts.shape[1]):
                    fh.write(f"{i},{f},{scs[f, i]:.8g},{counts[f, i]},{prob[f, i]:.6f}\n")

    @staticmethod
    def read_csv(path) -> dict:
        """The CSV's columns as arrays (counts, probability, scs, column, frame)."""
        data = np.genfromtxt(path, delimiter=",", names=True)
        return {"column": data["column"].astype(int), "frame": data["frame"].astype(int),
                "scs": data["scs_angstrom2"], "counts": data["count"].astype(int),
                "probability": data["probability"]}  # fmt: skip
