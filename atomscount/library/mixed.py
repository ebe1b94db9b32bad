"""abTEM simulations of mixed columns: given element sequences along the beam."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from ..io import read_hdf5, write_hdf5
from ._files import check_finite, checking
from .settings import MicroscopeSettings
from .simulate import _lateral_repeats, _layers, clear_of_edges, haadf_exit_planes, local_client

__all__ = ["MixedColumns", "simulate_mixed_columns"]

_KIND = "MixedColumns"


@dataclasses.dataclass(frozen=True, repr=False)
class MixedColumns:
    """SCS of columns with given element sequences, after every atom.

    Attributes
    ----------
    sequences : ndarray (n, L) of str
        Element of each site from the beam entrance down ('' for a vacancy).
    scs : ndarray (n, L)
        ``scs[i, k]`` is the SCS [Å²] of the column holding the first ``k + 1`` sites
        of sequence ``i`` (the exit plane after period ``k + 1``): every prefix of
        every sequence is a simulated column.
    scs_sem : ndarray (n, L)
        Standard error over frozen-phonon configurations.
    settings : dict
    seeds : ndarray
    provenance : dict
    """

    sequences: np.ndarray
    scs: np.ndarray
    scs_sem: np.ndarray
    settings: dict
    seeds: np.ndarray
    provenance: dict = dataclasses.field(default_factory=dict)

    _ARRAYS = ("sequences", "scs", "scs_sem", "seeds")

    def prefixes(self):
        """All simulated columns as (sequence tuple, SCS, s.e.) triples.

        A prefix that ends in a vacancy is skipped: it is a shorter column read out
        below its own exit surface, not a column of its own.
        """
        out = []
        for i, seq in enumerate(self.sequences):
            for k in range(len(seq)):
                if not seq[k]:
                    continue
                prefix = tuple(e for e in seq[: k + 1] if e)
                if prefix:
                    out.append((prefix, float(self.scs[i, k]), float(self.scs_sem[i, k])))
        return out

    def __repr__(self) -> str:
        return f"MixedColumns({len(self.sequences)} sequences of up to {self.sequences.shape[1]} sites)"

    def to_hdf5(self, path) -> None:
        write_hdf5(path, _KIND, {k: getattr(self, k) for k in self._ARRAYS},
                   {"settings": self.settings, "provenance": self.provenance})  # fmt: skip

    @classmethod
    def from_hdf5(cls, path) -> MixedColumns:
        """Read simulations written by :meth:`to_hdf5`.

        Raises
        ------
        FileFormatError
            (a ValueError) If the file does not hold mixed columns, or ``scs`` or
            ``scs_sem`` (>= 0) are not finite at a site that holds an atom; the
            message names the file and the field.
        """
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        with checking(path, "mixed-column"):
            filled = np.asarray(arrays["sequences"]).astype(str) != ""
            for name, minimum in (("scs", None), ("scs_sem", 0.0)):
                values = np.asarray(arrays[name], dtype=np.float64)
                if values.shape != filled.shape:
                    raise ValueError(f"{name} must have the shape of sequences {filled.shape}, got {values.shape}")
                check_finite(np.where(filled, values, 0.0), name, minimum=minimum)
            attrs["settings"] = MicroscopeSettings.stored(attrs["settings"])
            return cls(**attrs, **{k: arrays[k] for k in cls._ARRAYS})


def _supercell_columns(atoms: Atoms, tol=0.2):
    """Group atoms of a periodic supercell into projected columns; return centres and members."""
    xy = atoms.positions[:, :2]
    tree = cKDTree(xy, boxsize=atoms.cell.lengths()[:2] + 1e-9)
    label = -np.ones(len(atoms), dtype=np.int64)
    centres = []
    for i in range(len(atoms)):
        if label[i] < 0:
            members = tree.query_ball_point(xy[i], tol)
            label[members] = len(centres)
            centres.append(xy[i])
    members = [np.flatnonzero(label == c) for c in range(len(centres))]
    return np.array(centres), members


def _normalise_sequences(sequences):
    seqs = [list(s) if not isinstance(s, str) else _split_symbols(s) for s in sequences]
    if not seqs:
        raise ValueError("sequences must not be empty")
    length = max(len(s) for s in seqs)
    if length == 0:
        raise ValueError("sequences must hold at least one site")
    from ase.data import atomic_numbers

    for s in seqs:
        for e in s:
            if e and e not in atomic_numbers:
                raise ValueError(f"sequences hold an unknown element {e!r}")
    return np.array([s + [""] * (length - len(s)) for s in seqs], dtype=object).astype(str)


def _split_symbols(text):
    import re

    parts = re.findall(r"[A-Z][a-z]?", text)
    if "".join(parts) != text:
        raise ValueError(f"cannot split {text!r} into element symbols")
    return parts


def simulate_mixed_columns(sequences, crystal: Atoms, settings: MicroscopeSettings, *, layout: str = "uniform",
                           client=None, progress: bool = True, cache_dir=None,
                           workers: int | None = None) -> MixedColumns:  # fmt: skip
    """Simulate columns whose sites hold given element sequences (beam entrance first).

    Two layouts:

    ``"uniform"`` (default)
        Each sequence fills every column of its own layered supercell, and only one
        column's Voronoi cell is scanned. Its neighbours then scatter exactly as in
        the pure-column libraries, so a pure sequence reproduces its library and the
        lensing model is fitted free of neighbour cross-talk.
    ``"supercell"``
        Each column of one supercell gets a different sequence and the whole
        supercell is scanned, each probe position credited to its nearest column.
        The columns share the simulation, but each one's SCS then includes cross-talk
        from neighbours of other compositions: at low detector angles a pure-Ag
        column among Au-rich ones was seen 50 % above its library.

    Either way every exit plane is read, so every prefix of every sequence is a
    simulated column (see :meth:`MixedColumns.prefixes`).

    Parameters
    ----------
    sequences : list of str or list of list of str
        E.g. ``["AuAgAu", ["Ag", "Ag", "Au"]]``. Shorter sequences end in vacancies.
    crystal : ase.Atoms
        One period along the beam, from :func:`zone_axis_crystal` (one atom per column).
    settings : MicroscopeSettings
    client : dask.distributed.Client, optional
        Run the frozen-phonon tasks on this cluster.
    workers : int, optional
        Without ``client``: run them on a local cluster of this many processes.
    cache_dir : path, optional
        Keep every finished frozen-phonon task there (``layout="uniform"``), so that
        a long run interrupted or split across sessions resumes where it stopped.

    Returns
    -------
    MixedColumns
    """
    import dask

    if not isinstance(settings, MicroscopeSettings):
        raise TypeError(f"settings must be a MicroscopeSettings, got {type(settings).__name__}")
    if layout not in ("uniform", "supercell"):
        raise ValueError(f"layout must be 'uniform' or 'supercell', got {layout!r}")
    seqs = _normalise_sequences(sequences)
    n_seq, length = seqs.shape
    if layout == "uniform":
        with local_client(client, workers) as run_on:  # one local cluster for every thickness
            return _uniform(seqs, crystal, settings, run_on, progress, cache_dir)
    nx, ny = _lateral_repeats(crystal, settings.lateral_extent_angstrom)
    layer = crystal.cell.lengths()[2] / _layers(crystal)
    base = clear_of_edges(crystal) * (nx, ny, 1)
    base.positions[:, 2] += 0.5 * layer - base.positions[:, 2].min() % layer
    centres, members = _supercell_columns(base)
    if any(len(m) != 1 for m in members):
        raise ValueError("crystal must hold one atom per column per period")
    n_cols = len(centres)
    batches = [list(range(i, min(i + n_cols, n_seq))) for i in range(0, n_seq, n_cols)]
    seeds = settings.config_seeds()
    lx, ly = base.cell.lengths()[:2]
    step = settings.scan_step_angstrom
    if settings.cell_integration == "exact":
        points, owner, weights = _column_pixels(centres, lx, ly, step)
    else:  # the step grid over the supercell, each point credited to its nearest column
        gx = np.arange(step / 2, lx, step)
        gy = np.arange(step / 2, ly, step)
        points = np.array(np.meshgrid(gx, gy, indexing="ij")).reshape(2, -1).T
        _, owner = cKDTree(centres, boxsize=[lx + 1e-9, ly + 1e-9]).query(points)
        weights = np.full(len(points), step**2)
    tasks, slots = [], []
    for batch in batches:
        assigned = [batch[c % len(batch)] for c in range(n_cols)]
        atoms = _decorate(base, members, [seqs[i] for i in assigned], length)
        for ci, seed in enumerate(seeds):
            tasks.append(dask.delayed(_mixed_config)(atoms, settings, seed, length, points, owner, n_cols, layer,
                                                     weights))  # fmt: skip
            slots.append((tuple(assigned), ci))
    t0 = time.perf_counter()
    with local_client(client, workers) as run_on:
        if run_on is not None:
            results = run_on.gather(run_on.compute(tasks))
        else:
            results = [t.compute(scheduler="synchronous")
                       for t in tqdm(tasks, desc="mixed columns", disable=not progress)]  # fmt: skip
    per_config = np.full((len(seeds), n_seq, length), np.nan)
    for (assigned, ci), res in zip(slots, results, strict=True):
        seen = set()
        for c, i in enumerate(assigned):  # a short last batch repeats sequences: keep the first copy
            if i not in seen:
                seen.add(i)
                per_config[ci, i] = res[c]
    mean = per_config.mean(axis=0)
    sem = per_config.std(axis=0, ddof=1) / np.sqrt(len(seeds)) if len(seeds) > 1 else np.zeros_like(mean)
    prov = {"n_columns_per_supercell": int(n_cols), "n_supercells": len(batches), "n_scan_points": int(len(points)),
            "lateral_repeats": [nx, ny], "wall_seconds": time.perf_counter() - t0}  # fmt: skip
    return MixedColumns(seqs, mean, sem, settings.to_dict(), np.array(seeds, dtype=np.uint64), prov)


def _uniform(seqs, crystal, settings, client, progress, cache_dir=None):
    from .simulate import simulate_column_scs

    lengths = (seqs != "").sum(axis=1)
    if any(np.any(row[:k] == "") for row, k in zip(seqs, lengths, strict=True)):
        raise ValueError("layout='uniform' takes vacancies only at the end of a sequence")
    n_seq, width = seqs.shape
    mean = np.full((n_seq, width), np.nan)
    sem = np.full((n_seq, width), np.nan)
    info = {}
    for length in np.unique(lengths):  # one run per thickness, every sequence of it together
        rows = np.flatnonzero(lengths == length)
        per_seq, info = simulate_column_scs(crystal, settings, int(length), client=client, progress=progress,
                                            sequences=[list(seqs[i, :length]) for i in rows],
                                            cache_dir=cache_dir)  # fmt: skip
        vals = per_seq[:, :, 1:]  # (n, n_configs, length)
        n_cfg = vals.shape[1]
        mean[rows, :length] = vals.mean(axis=1)
        sem[rows, :length] = vals.std(axis=1, ddof=1) / np.sqrt(n_cfg) if n_cfg > 1 else 0.0
    info = {k: v for k, v in info.items() if k != "cell_polygon"} | {"layout": "uniform"}
    return MixedColumns(seqs, mean, sem, settings.to_dict(), np.array(info["seeds"], dtype=np.uint64), info)


def _decorate(base, members, sequences, length):
    """Stack ``length`` periods and set each column's elements from its sequence."""
    period = base.cell.lengths()[2]
    symbols, positions = [], []
    for col, seq in zip(members, sequences, strict=True):
        a = col[0]
        for k in range(length):
            if seq[k]:
                symbols.append(seq[k])
                positions.append(base.positions[a] + [0.0, 0.0, k * period])
    cell = base.cell.copy()
    cell[2] = [0.0, 0.0, period * length]
    return Atoms(symbols=symbols, positions=positions, cell=cell, pbc=True)


def _column_pixels(centres, lx, ly, step):
    """Every column's own clipped pixels (see ``_scan_points``) in a periodic supercell.

    Returns the points (wrapped into the cell), the column each belongs to, and
    each point's area [Å²]; the areas of a column sum to its Voronoi cell's.
    """
    from scipy.spatial import Voronoi

    from .simulate import _ordered_convex, _scan_points

    n = len(centres)
    shifts = [(i * lx, j * ly) for i in (-1, 0, 1) for j in (-1, 0, 1)]
    vor = Voronoi(np.vstack([centres + sh for sh in shifts]))
    middle = shifts.index((0.0, 0.0)) * n
    points, owner, areas = [], [], []
    for c in range(n):
        poly = _ordered_convex(vor.vertices[vor.regions[vor.point_region[middle + c]]])
        pts, a = _scan_points(centres[c], poly, step)
        wrapped = np.mod(pts, [lx, ly])
        points.append(np.where(wrapped >= [lx, ly], wrapped - [lx, ly], wrapped))  # mod can round up to lx
        owner.append(np.full(len(pts), c))
        areas.append(a)
    return np.vstack(points), np.concatenate(owner), np.concatenate(areas)


def _mixed_config(atoms, settings, seed, length, points, owner, n_cols, layer, weights):
    period = atoms.cell.lengths()[2] / length
    n_slices = max(1, int(round(period / (settings.slice_thickness_angstrom or layer))))
    arr = haadf_exit_planes(atoms, settings, seed, period / n_slices, n_slices, points)[1:]  # drop the entrance
    out = np.zeros((n_cols, length))
    for k in range(length):
        out[:, k] = np.bincount(owner, weights=arr[k] * weights, minlength=n_cols)
    return out
