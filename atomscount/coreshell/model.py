"""The result of the core-shell search: a 3D model with an element and a probability per site."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from ase import Atoms

from ..io import _plain, read_hdf5, write_hdf5

__all__ = ["CoreShellModel"]

_KIND = "CoreShellModel"
_PER_VIEW = ("atom_counts", "atom_counts_std", "measured_scs", "predicted_scs", "scs_error", "rotations")


@dataclasses.dataclass(frozen=True, repr=False)
class CoreShellModel:
    """A core-shell particle found by :func:`~atomscount.coreshell.search_core_shell`.

    Attributes
    ----------
    atoms : ase.Atoms
        One atom per occupied site, in the first view's frame [Å] (x, y as in its
        image, z along its beam), with the best configuration's elements.
    probability : ndarray (m,)
        Per site, the fraction of the sampled low-χ² states in which it holds the core element.
    core : dict
        The parametric core (``shape``, ``centre`` [Å], ``radii`` [Å]) and the
        centroid of the final core sites (``centroid`` [Å]).
    chi2 : ndarray (v,)
        χ² of the best configuration per view.
    n_columns : ndarray (v,) of int
        Measured columns per view.
    core_counts, core_counts_std : tuple of ndarray
        Per view, the core atoms of each measured column (in the input order) in the
        best configuration, and their spread over the sampled states.
    core_element, shell_element : str
    zone_axes : tuple of str
    converged : bool
        False when the search did not settle or does not explain the data
        (``info["convergence"]`` says why).
    info : dict
        Search settings and timings.
    occupancy : ndarray (m,), optional
        Per site, the fraction of the samples in which it holds an atom (1 unless the shape was fitted).
    atom_counts, atom_counts_std : tuple of ndarray, optional
        Per view, the atoms of each measured column in the best configuration and their spread.
    measured_scs, predicted_scs, scs_error : tuple of ndarray, optional
        Per view, each measured column's SCS, the lensing-model SCS of the best
        configuration and the SCS standard error [Å²] (input order).
    rotations : tuple of ndarray (3, 3), optional
        Per view, the rotation from the first view's frame (the frame of ``atoms``)
        to the view's image frame (identity for the first).
    """

    atoms: Atoms
    probability: np.ndarray
    core: dict
    chi2: np.ndarray
    n_columns: np.ndarray
    core_counts: tuple
    core_counts_std: tuple
    core_element: str
    shell_element: str
    zone_axes: tuple
    converged: bool = True
    info: dict = dataclasses.field(default_factory=dict)
    occupancy: np.ndarray | None = None
    atom_counts: tuple = ()
    atom_counts_std: tuple = ()
    measured_scs: tuple = ()
    predicted_scs: tuple = ()
    scs_error: tuple = ()
    rotations: tuple = ()

    def __post_init__(self):
        m = len(self.atoms)
        object.__setattr__(self, "probability", np.asarray(self.probability, dtype=np.float64))
        if self.probability.shape != (m,):
            raise ValueError(f"probability must have one entry per atom ({m}), got shape {self.probability.shape}")
        occ = np.ones(m) if self.occupancy is None else np.asarray(self.occupancy, dtype=np.float64)
        if occ.shape != (m,):
            raise ValueError(f"occupancy must have one entry per atom ({m}), got shape {occ.shape}")
        object.__setattr__(self, "occupancy", occ)
        for name in _PER_VIEW:
            value = tuple(np.asarray(c, dtype=np.int64 if name == "atom_counts" else np.float64)
                          for c in getattr(self, name))  # fmt: skip
            object.__setattr__(self, name, value)
        object.__setattr__(self, "chi2", np.asarray(self.chi2, dtype=np.float64))
        object.__setattr__(self, "n_columns", np.asarray(self.n_columns, dtype=np.int64))
        object.__setattr__(self, "core_counts", tuple(np.asarray(c, dtype=np.int64) for c in self.core_counts))
        object.__setattr__(
            self, "core_counts_std", tuple(np.asarray(c, dtype=np.float64) for c in self.core_counts_std)
        )
        object.__setattr__(self, "zone_axes", tuple(self.zone_axes))
        n_views = len(self.zone_axes)
        if not (len(self.chi2) == len(self.n_columns) == len(self.core_counts) == len(self.core_counts_std) == n_views):
            raise ValueError(f"chi2, n_columns, core_counts and core_counts_std need one entry per view ({n_views})")
        for name in _PER_VIEW:
            if len(getattr(self, name)) not in (0, n_views):
                raise ValueError(f"{name} needs one entry per view ({n_views}) or none")

    @property
    def is_core(self) -> np.ndarray:
        return np.array(self.atoms.get_chemical_symbols()) == self.core_element

    def __repr__(self) -> str:
        chi = ", ".join(f"{c:.1f}/{n}" for c, n in zip(self.chi2, self.n_columns, strict=True))
        return (f"CoreShellModel({len(self.atoms)} sites, {int(self.is_core.sum())} {self.core_element} core, "
                f"{'/'.join(self.zone_axes)}, χ²/columns {chi})")  # fmt: skip

    def summary(self) -> dict:
        return {"n_sites": len(self.atoms), "n_core": int(self.is_core.sum()), "core_element": self.core_element,
                "shell_element": self.shell_element, "zone_axes": list(self.zone_axes),
                "chi2": self.chi2.tolist(), "n_columns": self.n_columns.tolist(), "converged": bool(self.converged),
                "core": _plain(self.core), "uncertain_sites": int(np.sum((self.probability > 0.05)
                                                                         & (self.probability < 0.95))),
                "convergence": self.info.get("convergence", "")}  # fmt: skip

    def to_hdf5(self, path) -> None:
        """Write every field to ``path`` (atomically)."""
        arrays = {"positions": self.atoms.positions, "numbers": self.atoms.numbers, "probability": self.probability,
                  "chi2": self.chi2, "n_columns": self.n_columns}  # fmt: skip
        for v, (c, s) in enumerate(zip(self.core_counts, self.core_counts_std, strict=True)):
            arrays[f"core_counts_{v}"] = c
            arrays[f"core_counts_std_{v}"] = s
        arrays["occupancy"] = self.occupancy
        for name in _PER_VIEW:
            for v, values in enumerate(getattr(self, name)):
                arrays[f"{name}_{v}"] = values
        attrs = {"core": _plain(self.core), "core_element": self.core_element, "shell_element": self.shell_element,
                 "zone_axes": list(self.zone_axes), "converged": bool(self.converged),
                 "info": _plain(self.info)}  # fmt: skip
        write_hdf5(path, _KIND, arrays, attrs)

    @classmethod
    def from_hdf5(cls, path) -> CoreShellModel:
        """Read a file written by :meth:`to_hdf5`."""
        arrays, attrs = read_hdf5(path, _KIND)
        n_views = len(attrs["zone_axes"])
        atoms = Atoms(numbers=arrays["numbers"], positions=arrays["positions"])
        return cls(atoms, arrays["probability"], attrs["core"], arrays["chi2"], arrays["n_columns"],
                   tuple(arrays[f"core_counts_{v}"] for v in range(n_views)),
                   tuple(arrays[f"core_counts_std_{v}"] for v in range(n_views)), attrs["core_element"],
                   attrs["shell_element"], tuple(attrs["zone_axes"]), bool(attrs["converged"]),
                   attrs["info"], arrays.get("occupancy"),
                   **{name: tuple(arrays[f"{name}_{v}"] for v in range(n_views) if f"{name}_{v}" in arrays)
                      for name in _PER_VIEW})  # fmt: skip

    def _export_atoms(self) -> Atoms:
        atoms = self.atoms.copy()
        pad = 5.0
        atoms.positions -= atoms.positions.min(axis=0) - pad
        atoms.set_cell(atoms.positions.max(axis=0) + pad)
        return atoms

    def write_xyz(self, path) -> Path:
        """Extended XYZ with the per-site core probability (``core_probability``)."""
        import ase.io

        atoms = self._export_atoms()
        atoms.arrays["core_probability"] = self.probability.copy()
        ase.io.write(str(path), atoms, format="extxyz")
        return Path(path)

    def write_cif(self, path) -> Path:
        """CIF of the best configuration (elements only)."""
        import ase.io

        ase.io.write(str(path), self._export_atoms(), format="cif")
        return Path(path)
