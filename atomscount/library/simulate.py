"""abTEM multislice simulations of column scattering cross-sections.

One multislice pass gives every thickness: the potential has an exit plane after
every period of the crystal along the beam, so the HAADF signal of a column with
N = 1..max_atoms atoms comes out of a single run. Only the probe positions inside
the column's Voronoi cell are scanned (the SCS is the intensity integrated over that
cell), and each frozen-phonon configuration is an independent dask task with its
own explicit seed.
"""

from __future__ import annotations

import contextlib
import numbers
import time
import warnings

import numpy as np
from ase import Atoms
from ase.build import bulk, surface
from ase.data import atomic_numbers, reference_states
from matplotlib.path import Path as PolygonPath
from scipy.spatial import Voronoi
from tqdm.auto import tqdm

from .._checks import check_integer
from .settings import MicroscopeSettings

__all__ = ["zone_axis_crystal", "column_cell", "simulate_column_scs"]

_AXES = {"001": (0, 0, 1), "110": (1, 1, 0), "111": (1, 1, 1), "100": (1, 0, 0), "0001": (0, 0, 1)}


def _parse_zone_axis(zone_axis):
    """(key, (h, k, l)) of a zone axis given as a string like "001" or three integers."""
    if isinstance(zone_axis, str):
        key = zone_axis.strip("[]() ")
        if key not in _AXES:
            raise ValueError(f"zone_axis must be one of {sorted(_AXES)} or a tuple (h, k, l), got {zone_axis!r}")
        return key, _AXES[key]
    try:
        items = list(zone_axis)
    except TypeError:
        raise TypeError(f"zone_axis must be one of {sorted(_AXES)} or a tuple of three integers (h, k, l), got "
                        f"{zone_axis!r} ({type(zone_axis).__name__})") from None  # fmt: skip
    integers = all(isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_) for v in items)
    if len(items) != 3 or not integers or not any(items):
        raise ValueError(f"zone_axis must be three integers (h, k, l), not all zero, got {zone_axis!r}")
    hkl = tuple(int(v) for v in items)
    return "".join(str(v) for v in hkl), hkl


def _check_element(element, name: str) -> str:
    """Raise TypeError unless ``element`` is a string (a chemical symbol is checked where it is looked up)."""
    if not isinstance(element, str):
        raise TypeError(f"{name} must be a chemical symbol such as 'Au', got {element!r} ({type(element).__name__})")
    return element


def zone_axis_crystal(element_or_atoms, zone_axis) -> Atoms:
    """One period of a crystal with the beam (z) along ``zone_axis``, orthogonal cell.

    Parameters
    ----------
    element_or_atoms : str or ase.Atoms
        An element symbol (its reference crystal structure from ASE: fcc, bcc or hcp),
        or a bulk unit cell.
    zone_axis : {"001", "110", "111"} or (h, k, l)
        Viewing direction in the conventional cubic (or hexagonal, for "0001") cell.

    Returns
    -------
    ase.Atoms
        Orthogonal cell, z along the beam, atoms wrapped into the cell.

    Raises
    ------
    ValueError
        For an unknown element, a structure ASE cannot build, or a bad zone axis.
    TypeError
        If ``element_or_atoms`` is neither a string nor an ase.Atoms, or
        ``zone_axis`` neither a string nor a sequence.
    """
    key, hkl = _parse_zone_axis(zone_axis)
    if isinstance(element_or_atoms, Atoms):
        unit = element_or_atoms.copy()
    else:
        if not isinstance(element_or_atoms, str):
            raise TypeError(f"element_or_atoms must be a chemical symbol such as 'Au' or an ase.Atoms unit cell, "
                            f"got {element_or_atoms!r} ({type(element_or_atoms).__name__})")  # fmt: skip
        el = element_or_atoms
        if el not in atomic_numbers:
            raise ValueError(f"element must be a chemical symbol, got {el!r}")
        state = reference_states[atomic_numbers[el]]
        structure = state.get("symmetry") if state else None
        if structure not in ("fcc", "bcc", "hcp"):
            raise ValueError(f"element {el!r} has reference structure {structure!r}; pass an ase.Atoms unit cell")
        unit = bulk(el, structure, cubic=structure != "hcp", orthorhombic=structure == "hcp")
        if structure == "hcp" and key == "0001":
            return _wrapped(unit)
    if key == "001" and np.allclose(unit.cell.angles(), 90):
        return _wrapped(unit)
    from abtem import orthogonalize_cell

    # enough layers for one full stacking period along the beam (ABC for fcc [111])
    layers = 3 if key == "111" else 1
    slab = surface(unit, hkl, layers=layers, periodic=True)
    try:
        ortho = orthogonalize_cell(slab, max_repetitions=8, allow_transform=False)
    except Exception as exc:  # abTEM refuses cells it would have to strain
        raise ValueError(f"zone_axis {zone_axis!r}: no orthogonal cell within 8 repetitions ({exc})") from exc
    return _wrapped(ortho)


def _wrapped(atoms):
    atoms = atoms.copy()
    atoms.wrap()
    return atoms


def column_cell(crystal: Atoms, *, tol=0.2):
    """Projected column positions of one period, and the Voronoi polygon of the first.

    Returns
    -------
    centre : ndarray (2,)
        (x, y) of the library column [Å]: the column holding the atom nearest the origin.
    polygon : ndarray (m, 2)
        Its Voronoi cell (from the projected columns and their periodic images) [Å].
    atoms_per_period : int
        Atoms of that column in one period along z.
    """
    xy = crystal.positions[:, :2]
    ref = xy[np.argmin(np.linalg.norm(crystal.positions, axis=1))]
    lx, ly = crystal.cell.lengths()[:2]
    d = xy - ref
    d -= np.round(d / [lx, ly]) * [lx, ly]
    in_col = np.linalg.norm(d, axis=1) < tol
    images = np.array([xy + [i * lx, j * ly] for i in (-1, 0, 1) for j in (-1, 0, 1)]).reshape(-1, 2)
    cols = np.unique(np.round(images / tol).astype(np.int64), axis=0) * tol
    # replace rounded keys by the mean position of the atoms in each column
    centres = []
    for key in cols:
        m = np.linalg.norm(images - key, axis=1) < tol
        if m.any():
            centres.append(images[m].mean(axis=0))
    centres = np.unique(np.round(np.array(centres), 6), axis=0)
    vor = Voronoi(centres)
    k = int(np.argmin(np.linalg.norm(centres - ref, axis=1)))
    region = vor.regions[vor.point_region[k]]
    if -1 in region or not region:
        raise ValueError("could not build the column's Voronoi cell; the crystal cell is too small")
    return ref, _ordered_convex(vor.vertices[region]), int(in_col.sum())


def _ordered_convex(vertices):
    """The vertices of a convex polygon in order around it (polygon clipping needs the order)."""
    mid = vertices.mean(axis=0)
    return vertices[np.argsort(np.arctan2(vertices[:, 1] - mid[1], vertices[:, 0] - mid[0]))]


def clear_of_edges(crystal: Atoms) -> Atoms:
    """Shift the crystal laterally so that no atom lies near the cell edges.

    abTEM's potential is wrong for atoms on or close to the lateral cell boundary
    (identical columns of a perfect crystal then differ by up to a factor of two), so
    each axis is shifted to put the cell edge in the middle of the widest gap between
    projected atom coordinates.
    """
    atoms = crystal.copy()
    for axis in (0, 1):
        length = atoms.cell.lengths()[axis]
        coords = np.unique(np.round(np.mod(atoms.positions[:, axis], length), 4))
        gaps = np.diff(np.concatenate([coords, [coords[0] + length]]))
        k = int(np.argmax(gaps))
        atoms.positions[:, axis] -= coords[k] + 0.5 * gaps[k]
    atoms.wrap()
    return atoms


def _scan_points(centre, polygon, step, exact=True):
    """Probe positions over a column's cell and the area [Å²] each one stands for.

    ``exact``: pixels of about ``step`` (shrunk so whole pixels tile the cell's
    bounding box), each weighted by the area it shares with the (convex) cell, so
    the weights sum to the cell's area. Otherwise: the ``step`` grid midpoints
    inside the cell, each worth ``step**2``.
    """
    lo = polygon.min(axis=0)
    hi = polygon.max(axis=0)
    if not exact:
        xs = np.arange(lo[0] + step / 2, hi[0], step)
        ys = np.arange(lo[1] + step / 2, hi[1], step)
        grid = np.array(np.meshgrid(xs, ys, indexing="ij")).reshape(2, -1).T
        inside = PolygonPath(polygon).contains_points(grid)
        return grid[inside], np.full(int(inside.sum()), step**2)
    n = np.maximum(np.ceil((hi - lo) / step - 1e-9).astype(int), 1)
    d = (hi - lo) / n
    points, areas = [], []
    for i in range(n[0]):
        for j in range(n[1]):
            x0, y0 = lo + d * (i, j)
            a = _clipped_area(polygon, x0, x0 + d[0], y0, y0 + d[1])
            if a > 1e-12 * d[0] * d[1]:
                points.append((x0 + d[0] / 2, y0 + d[1] / 2))
                areas.append(a)
    return np.array(points), np.array(areas)


def _clipped_area(polygon, x0, x1, y0, y1):
    """Area of a convex polygon inside the rectangle [x0, x1] x [y0, y1] (Sutherland-Hodgman)."""
    pts = [tuple(p) for p in polygon]
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        out = []
        for k, cur in enumerate(pts):
            prev = pts[k - 1]
            cur_in = cur[axis] <= bound if keep_below else cur[axis] >= bound
            prev_in = prev[axis] <= bound if keep_below else prev[axis] >= bound
            if cur_in != prev_in:  # the edge crosses the boundary: keep the crossing point
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(tuple(prev[m] + t * (cur[m] - prev[m]) for m in (0, 1)))
            if cur_in:
                out.append(cur)
        pts = out
        if not pts:
            return 0.0
    x, y = np.array(pts).T
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _lateral_repeats(crystal, min_extent):
    lx, ly = crystal.cell.lengths()[:2]
    return int(np.ceil(min_extent / lx)), int(np.ceil(min_extent / ly))


def _one_config(crystal, settings, seed, max_periods, points, areas, period_symbols=None, planes_per_period=1):
    """HAADF SCS over ``points`` after every period, for one phonon configuration.

    ``period_symbols[k]``, when given, is the element of every atom in period ``k``
    (a layered crystal whose columns all hold the same sequence).
    ``planes_per_period`` > 1 reads an exit plane that many times per period (after
    every atom of a column holding that many equally spaced atoms per period).
    ``areas`` [Å²] is the area each point stands for.
    """
    period = crystal.cell.lengths()[2]
    n_slices = max(1, int(round(period / (settings.slice_thickness_angstrom or period / _layers(crystal)))))
    n_slices = planes_per_period * -(-n_slices // planes_per_period)
    atoms = crystal * (*_lateral_repeats(crystal, settings.lateral_extent_angstrom), max_periods)
    if period_symbols is not None:
        k = np.clip(np.floor((atoms.positions[:, 2] + 1e-6) / period).astype(int), 0, max_periods - 1)
        atoms.set_chemical_symbols([period_symbols[i] for i in k])
    # Atomic layers sit mid-slice: on a slice boundary, a thermal displacement would
    # move an atom into the previous period's exit plane at random.
    atoms.positions[:, 2] += 0.5 * period / n_slices - atoms.positions[:, 2].min() % (period / n_slices)
    atoms.wrap()
    arr = haadf_exit_planes(atoms, settings, seed, period / n_slices, n_slices // planes_per_period, points)
    return arr @ np.asarray(areas)


def haadf_exit_planes(atoms, settings, seed, slice_thickness, slices_per_plane, points) -> np.ndarray:
    """One frozen-phonon configuration: HAADF intensity at ``points`` after every exit plane.

    Returns an array (n_planes + 1, n_points), row 0 being the entrance surface.
    """
    import abtem

    sigmas = {el: settings.rms_for(el) for el in set(atoms.get_chemical_symbols())}
    fp = abtem.FrozenPhonons(atoms, num_configs=1, sigmas=sigmas, seed=(int(seed),))
    # An explicit list of slices: abTEM divides the cell height by the slice thickness,
    # and a rounding error there (Pt: 80.00000000000001 slices) adds a sliver slice
    # and a spurious exit plane.
    n_slices = int(round(atoms.cell.lengths()[2] / slice_thickness))
    dz = atoms.cell.lengths()[2] / n_slices
    # Explicit exit planes, the entrance (-1) included: given an integer equal to the
    # number of slices (a one-period crystal), abTEM returns the exit plane alone.
    planes = (-1, *range(slices_per_plane - 1, n_slices, slices_per_plane))
    if planes[-1] != n_slices - 1:
        planes = (*planes, n_slices - 1)
    potential = abtem.Potential(
        fp, sampling=settings.sampling_angstrom, slice_thickness=(dz,) * n_slices, exit_planes=planes,
        projection="infinite", parametrization="lobato",
    )  # fmt: skip
    aberrations = dict(settings.aberrations)
    aberrations.update(C10=-settings.defocus_angstrom, C30=settings.cs_angstrom)
    probe = abtem.Probe(energy=settings.energy_ev, semiangle_cutoff=settings.semiangle_mrad, aberrations=aberrations)
    probe.grid.match(potential)
    detector = abtem.AnnularDetector(inner=settings.inner_angle_mrad, outer=settings.outer_angle_mrad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # abTEM's notices about chunking and dask
        measurement = probe.scan(potential, scan=abtem.CustomScan(points), detectors=detector)
        result = measurement.compute(progress_bar=False, scheduler="synchronous")
    array = result.array
    if hasattr(array, "get"):  # a CuPy array: abTEM ran on the GPU (abtem.config device="gpu")
        array = array.get()
    out = np.asarray(array).reshape(-1, len(points))
    expected = len(planes)
    if out.shape[0] != expected:
        raise RuntimeError(f"abTEM returned {out.shape[0]} exit planes, expected {expected}")
    return out


def _cache_path(cache_dir, crystal, settings, seed, max_periods, points, period_symbols, planes_per_period=1):
    """File for one task's result in ``cache_dir`` (None without a cache)."""
    if cache_dir is None:
        return None
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    parts = [crystal.get_chemical_symbols(), np.round(crystal.positions, 6).tolist(),
             np.round(crystal.cell.array, 6).tolist(), _task_settings(settings), int(seed),
             int(max_periods), np.round(points, 6).tolist(), list(period_symbols or [])]  # fmt: skip
    if planes_per_period != 1:
        parts.append(("planes_per_period", int(planes_per_period)))
    for part in parts:
        h.update(repr(part).encode())
    return Path(cache_dir) / f"config_{h.hexdigest()[:24]}.npy"


def _task_settings(settings):
    """The settings that determine one configuration's result.

    The number of configurations is left out: the seeds are nested (configuration
    k has the same seed whatever the total), so a build with more configurations
    reuses the ones already cached.
    """
    d = settings.to_dict()
    if d.get("cell_integration") == "grid":  # tasks cached before the setting existed keep their names
        d.pop("cell_integration")
    return sorted((k, v) for k, v in d.items() if k != "num_configs")


def _cached(path, func, *args):
    """``func(*args)``, read from ``path`` when an earlier run saved it there (written atomically)."""
    if path is not None and path.is_file():
        return np.load(path)
    out = func(*args)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.save(fh, out)
        tmp.replace(path)
    return out


def _check_equal_spacing(crystal, centre, per_period, tol=0.2) -> None:
    """Raise ValueError unless the column's ``per_period`` atoms are equally spaced along the beam."""
    lx, ly, lz = crystal.cell.lengths()
    d = crystal.positions[:, :2] - centre
    d -= np.round(d / [lx, ly]) * [lx, ly]
    z = np.sort(np.mod(crystal.positions[np.linalg.norm(d, axis=1) < tol, 2], lz))
    gaps = np.diff(np.concatenate([z, [z[0] + lz]]))
    if not np.allclose(gaps, lz / per_period, atol=0.05):
        raise ValueError(f"the column's {per_period} atoms per period are not equally spaced along the beam "
                         f"(gaps {np.round(gaps, 3).tolist()} Å); its SCS cannot be read per atom")  # fmt: skip


def _layers(crystal):
    z = np.unique(np.round(crystal.positions[:, 2], 3))
    return len(z)


@contextlib.contextmanager
def local_client(client=None, workers=None):
    """The dask client to run on: ``client`` itself, else a local cluster of ``workers`` processes.

    Yields None (run in this process, one task after the other) when neither is
    given or ``workers`` is 1. A local cluster is closed on exit.
    """
    if workers is not None:
        workers = check_integer(workers, "workers", low=1)
    if client is not None or workers is None or workers == 1:
        yield client
        return
    from dask.distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # port and memory-limit notices of a local cluster
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)  # fmt: skip
    try:
        with Client(cluster) as own:
            yield own
    finally:
        cluster.close()


def simulate_column_scs(crystal: Atoms, settings: MicroscopeSettings, max_periods: int, *, client=None,
                        progress=True, configs=None, sequences=None, cache_dir=None, workers=None,
                        per_atom=False):  # fmt: skip
    """SCS of the column at the cell origin for 0..max_periods periods, per configuration.

    With ``per_atom=True`` a column holding m > 1 equally spaced atoms per period
    (bcc [111]: 2) is read after every atom: the result then has
    ``m * max_periods + 1`` thicknesses.

    ``sequences``, when given, is a list of per-period element lists: each is
    simulated in its own layered crystal (every column holds that sequence).

    ``cache_dir``, when given, keeps each finished configuration there (one ``.npy``
    per task, named by a hash of everything that determines it), so an interrupted
    build resumes where it stopped and a build split across sessions loses nothing.

    The tasks run on ``client`` (a ``dask.distributed.Client``) when given, else on
    a local cluster of ``workers`` processes, else one after the other here.

    Returns
    -------
    scs : ndarray (n_configs, max_periods + 1), or (n_sequences, n_configs, max_periods + 1)
        Integrated HAADF intensity over the column's Voronoi cell [Å²]; index 0 is
        the entrance surface (zero thickness).
    info : dict
        Scan points, cell polygon, lateral repeats, seeds, wall time.
    """
    import dask

    if not isinstance(crystal, Atoms):
        raise TypeError(f"crystal must be an ase.Atoms, got {type(crystal).__name__}")
    if not isinstance(settings, MicroscopeSettings):
        raise TypeError(f"settings must be a MicroscopeSettings, got {type(settings).__name__}")
    max_periods = check_integer(max_periods, "max_periods", low=1)
    crystal = clear_of_edges(crystal)
    centre, polygon, per_period = column_cell(crystal)
    # scan the copy of the column in the middle of the supercell
    nx, ny = _lateral_repeats(crystal, settings.lateral_extent_angstrom)
    lx, ly = crystal.cell.lengths()[:2]
    shift = np.array([np.floor(nx / 2) * lx, np.floor(ny / 2) * ly])
    points, areas = _scan_points(centre + shift, polygon + shift, settings.scan_step_angstrom,
                                 exact=settings.cell_integration == "exact")  # fmt: skip
    planes = 1
    if per_period != 1:
        if sequences is not None:
            raise ValueError(f"sequences need one atom per column per period; this column holds {per_period}")
        if per_atom:
            _check_equal_spacing(crystal, centre, per_period)
            planes = per_period
    seeds = settings.config_seeds()
    chosen = range(len(seeds)) if configs is None else configs
    runs = [None] if sequences is None else list(sequences)
    tasks = [dask.delayed(_cached)(
                _cache_path(cache_dir, crystal, settings, seeds[i], max_periods, points, seq, planes),
                _one_config, crystal, settings, seeds[i], max_periods, points, areas, seq, planes)
             for seq in runs for i in chosen]  # fmt: skip
    t0 = time.perf_counter()
    with local_client(client, workers) as run_on:
        if run_on is not None:
            futures = run_on.compute(tasks)
            from dask.distributed import as_completed

            done = {}
            order = {f.key: i for i, f in enumerate(futures)}
            bar = tqdm(as_completed(futures), total=len(futures), desc="phonon configurations", unit=" config",
                       disable=not progress)  # fmt: skip
            for fut in bar:
                done[order[fut.key]] = fut.result()
            rows = [done[i] for i in range(len(futures))]
        else:
            rows = []
            for task in tqdm(tasks, desc="phonon configurations", unit=" config", disable=not progress):
                rows.append(task.compute(scheduler="synchronous"))
    info = {
        "n_scan_points": int(len(points)),
        "scanned_area_angstrom2": float(np.sum(areas)),
        "cell_polygon": polygon.tolist(),
        "column_centre": (centre + shift).tolist(),
        "atoms_per_period": per_period,
        "lateral_repeats": [nx, ny],
        "seeds": [seeds[i] for i in chosen],
        "wall_seconds": time.perf_counter() - t0,
        "period_angstrom": float(crystal.cell.lengths()[2]),
        "planes_per_period": planes,
    }
    rows = np.array(rows)
    if sequences is not None:
        rows = rows.reshape(len(runs), len(chosen), -1)
    return rows, info
