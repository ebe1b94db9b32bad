"""Benchmark: the lattice stage (issue 27) — sublattices, StatSTEM files and strain maps.

Sublattices (``sublattice_*``): :func:`atomscount.lattice.find_sublattices`, given
only column positions and the image (no types, no SCS), on

- CsPbBr₃, StatSTEM's tutorial image (``../shared/data/experimental``), against
  the types StatSTEM's user gave (``input.coordinates(:, 3)``), on StatSTEM's
  coordinates and on the columns ``find_columns`` detects (a detected column
  more than 0.5 Å from StatSTEM's is not scored);
- SrTiO₃ (QEM's ``haadf_small.hspy``, real), on the columns ``find_columns``
  detects, against the perovskite structure: A (Sr) and B (Ti–O) columns
  alternate on a checkerboard and every nearest neighbour of a column is of the
  other kind, so a column is Sr when its fitted SCS exceeds the median of its
  nearest neighbours' (those at the shortest distance, a/√2; columns within 1 Å
  of the edge left out);
- a simulated SrTiO₃ [001] image: abTEM PRISM (4 × 4 × 6 cells, 300 kV,
  21 mrad, 50–150 mrad detector, 63 × 63 scan (0.248 Å), one static configuration, no
  thermal vibration; about a minute on one core, cached in
  ``benchmarks/data/srtio3_001_prism.npz``), tiled 3 × 3 (the cell is periodic)
  with Poisson noise at 5e4 e/Å², on detected columns, against the true sites;
- a perovskite made with the package's Gaussian column model (always available).

On each, 5 % of the columns (seeded) are removed before ``find_sublattices`` and
the share of those on a site of the cell found again (within 0.5 Å, by the
lattice's prediction tested against the image) is reported. And the second
sublattice missed entirely: from the first kind's columns alone and
``extra_sites=[(0.5, 0.5)]``, the share of the second kind's columns (2 Å or
more inside the image) found (``sublattice_second_found_min``), and the columns
found where there is none. Columns on no site
(the abTEM image's faint O columns, too few to form a site of their own) are
labelled -1 and not scored. ``sublattice_accuracy_min`` is the smallest share of
columns on the right sublattice over the images.

StatSTEM round trip (``statstem_*``): the CsPbBr₃ file read with
``read_statstem``, fitted with ``fit_columns`` (its positions and types), written
with ``write_statstem`` and read again: ``statstem_roundtrip_lossless`` is 1 when
every field of the fit, the image, the pixel size and the types come back
unchanged, and StatSTEM's own fields of the written file carry the same
positions (to 1e-12 Å), widths, heights and volumes.

Strain (``strain_*``, ``statstem_strain_agreement``): ``_bench_lattice_strain.py``.

    python benchmarks/bench_lattice.py --out benchmarks/results/bench_lattice.json [--parts sublattice statstem strain]

Existing keys of the JSON that the parts run do not write are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

import atomscount as ac
from atomscount.columns.model import ColumnModel
from atomscount.lattice import find_sublattices, read_statstem, write_statstem

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "experimental"
SIM_FILE = HERE / "data" / "srtio3_001_prism.npz"
A_SRTIO3 = 3.905  # [Å]
DROP_FRACTION = 0.05
SIM_SETTINGS = ("PRISM interpolation 4, 300 kV, 21 mrad, detector 50-150 mrad, potential 392 x 392 points "
                "(0.0398 Å), slices a/2, lobato, infinite projection, static lattice")  # fmt: skip


def _need_shared():
    if not SHARED.is_dir():
        sys.exit(f"bench_lattice.py needs the experimental images in {SHARED} (../shared beside the checkout)")


def simulate_srtio3(path=SIM_FILE) -> dict:
    """The abTEM PRISM image of SrTiO3 [001] (4 × 4 cells, 6 cells thick), made once and cached."""
    if path.is_file():
        d = np.load(path)
        return {k: d[k] for k in d.files}
    import abtem
    from ase import Atoms

    a = A_SRTIO3
    cell = Atoms("SrTiO3", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
                 cell=[a, a, a], pbc=True)  # fmt: skip
    atoms = cell * (4, 4, 6)
    # 392 grid points (0.04 Å) across the 4 cells: a multiple of the PRISM interpolation factor
    potential = abtem.Potential(atoms, gpts=392, slice_thickness=a / 2, projection="infinite",
                                parametrization="lobato")  # fmt: skip
    scan = abtem.GridScan(start=(0, 0), end=(4 * a, 4 * a), sampling=0.25)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # abTEM's notices about chunking
        smatrix = abtem.SMatrix(potential=potential, energy=300e3, semiangle_cutoff=21, interpolation=4)
        detector = abtem.AnnularDetector(inner=50, outer=150)
        measured = smatrix.scan(scan=scan, detectors=detector).compute(progress_bar=False, scheduler="synchronous")
    # abTEM indexes the scan [x, y]; images here are [row = y, col = x]
    image = np.asarray(measured.array, dtype=np.float32).T
    # the scan divides the 4 cells into whole pixels (63 of 0.248 Å), so that tiled copies join seamlessly
    pixel = 4 * a / image.shape[1]
    assert np.allclose(measured.sampling, pixel), (measured.sampling, pixel)
    out = {"image": image, "pixel_size_angstrom": np.float64(pixel), "cell_angstrom": np.float64(a),
           "cells": np.int64(4), "thickness_cells": np.int64(6), "seconds": np.float64(time.perf_counter() - t),
           "abtem_version": np.str_(abtem.__version__),
           "settings": np.str_(SIM_SETTINGS)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out


def _accuracy(labels, truth):
    """Share of columns on the right sublattice, for the best matching of labels to true kinds (two kinds)."""
    ok = truth >= 0
    same = np.mean(labels[ok] == truth[ok])
    swapped = np.mean(np.where(labels[ok] >= 0, 1 - labels[ok], -1) == truth[ok])
    return float(max(same, swapped))


def _drop(positions, rng, image):
    """Positions with 5 % of the columns well inside the image removed, and those removed."""
    inner = np.flatnonzero(image.contains(positions, margin_angstrom=-2.0))
    gone = rng.choice(inner, max(1, int(round(DROP_FRACTION * len(positions)))), replace=False)
    return np.delete(positions, gone, axis=0), positions[gone]


def one_image(name, image, positions, truth_of) -> dict:
    """find_sublattices on all columns, and on the columns with 5 % removed; ``truth_of(pos)`` gives true kinds."""
    row = {"shape": list(image.shape), "pixel_size_angstrom": float(image.pixel_size_angstrom),
           "n_columns": int(len(positions))}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit's notes on columns at the edges
        t = time.perf_counter()
        sub = find_sublattices(positions, image=image)
        row["seconds"] = time.perf_counter() - t
        truth = truth_of(sub.positions)
        row["accuracy"] = _accuracy(sub.labels, truth)
        row["n_scored"] = int(np.sum(truth >= 0))
        row["n_off_lattice"] = int(np.sum(sub.labels == -1))
        row["n_added_on_full_set"] = int(sub.added.sum())
        row["basis"] = sub.basis.summary()
        row["widths_angstrom"] = sub.fit.summary()["widths_by_type"]
        kept, removed = _drop(positions, np.random.default_rng(0), image)
        sub2 = find_sublattices(kept, image=image)
    d = cKDTree(sub2.positions[sub2.added]).query(removed)[0] if sub2.added.any() else np.full(len(removed), np.inf)
    # a removed column on no site of the cell (the faint O columns of the abTEM image) is not predicted
    on_site = truth_of(removed) >= 0
    row["n_removed"] = int(on_site.sum())
    row["n_removed_off_site"] = int((~on_site).sum())
    row["recovered_fraction"] = float(np.mean(d[on_site] < 0.5))
    truth2 = truth_of(sub2.positions)
    row["accuracy_with_removed"] = _accuracy(sub2.labels, truth2)
    # the second sublattice missed entirely: only the first kind's columns, and its site named
    kinds = truth_of(positions)
    first, second = positions[kinds == 0], positions[kinds == 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub3 = find_sublattices(first, image=image, extra_sites=[(0.5, 0.5)])
    found = sub3.positions[sub3.added]
    inner = second[image.contains(second, margin_angstrom=-2.0)]
    row["second_sublattice_found"] = float(np.mean(cKDTree(found).query(inner)[0] < 0.5)) if len(found) else 0.0
    row["second_sublattice_spurious"] = int(np.sum(cKDTree(second).query(found)[0] >= 0.5)) if len(found) else 0
    print(f"  {name}: {row['accuracy']:.4f} right ({row['n_scored']} columns), {row['recovered_fraction']:.2f} of "
          f"{row['n_removed']} removed columns found again, second sublattice from the first "
          f"{row['second_sublattice_found']:.3f} ({row['second_sublattice_spurious']} spurious), "
          f"{row['seconds']:.1f} s", flush=True)  # fmt: skip
    return row


def _cspbbr3():
    res = read_statstem(SHARED / "statstem_CsPbBr3.mat")
    ref = res.fit.positions
    tree = cKDTree(ref)

    def truth_of(pos):
        d, i = tree.query(pos)
        return np.where(d < 0.5, res.types[i], -1)

    return res.image, ref, truth_of


def _srtio3_real():
    image = ac.read_image(SHARED / "qem_SrTiO3_small.hspy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = ac.find_columns(image)
        fit = ac.fit_columns(image, det)
    ok = image.contains(fit.positions, margin_angstrom=-1.0) & fit.converged
    pos, scs = fit.positions[ok], fit.scs[ok]
    tree = cKDTree(pos)
    dist, nb = tree.query(pos, k=5)
    nearest = (dist[:, 1:] < 1.2 * np.median(dist[:, 1])) & np.isfinite(dist[:, 1:])
    # every nearest neighbour (at a/√2; at the edges fewer than four) is of the other kind
    sr = np.array([scs[k] > np.median(scs[nb[k, 1:][nearest[k]]]) if nearest[k].any() else False
                   for k in range(len(pos))])  # fmt: skip

    def truth_of(q):
        d, i = tree.query(q)
        return np.where(d < 0.5, np.where(sr[i], 0, 1), -1)

    return image, det, truth_of


def _truth_sites(pos, a, origin, tol=0.5):
    """0 for a column on an A site (corners), 1 on a B site (centre), -1 for neither (within ``tol`` Å)."""
    f = (pos - origin) / a
    on_a = np.linalg.norm((f - np.rint(f)) * a, axis=1) < tol
    on_b = np.linalg.norm((f - 0.5 - np.rint(f - 0.5)) * a, axis=1) < tol
    return np.where(on_a, 0, np.where(on_b, 1, -1))


def _srtio3_abtem(seed=5, dose=5e4):
    sim = simulate_srtio3()
    px, a = float(sim["pixel_size_angstrom"]), float(sim["cell_angstrom"])
    clean = np.tile(np.clip(np.asarray(sim["image"], float), 0, None), (3, 3))
    noisy = ac.add_poisson_noise(clean, dose_e_per_angstrom2=dose, pixel_size_angstrom=px, rng=seed)
    image = ac.HAADFImage(noisy, px, normalised=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = ac.find_columns(image)
    return image, det, lambda q: _truth_sites(q, a, np.zeros(2)), float(sim["seconds"])


def _srtio3_gaussian(seed=6):
    px, a = 0.2, A_SRTIO3
    g = np.stack(np.meshgrid(np.arange(12), np.arange(12), indexing="ij"), -1).reshape(-1, 2).astype(float)
    pos = np.vstack([g * a + 2.0, (g + 0.5) * a + 2.0])
    kind = np.r_[np.zeros(len(g), int), np.ones(len(g), int)]
    model = ColumnModel((250, 250), px, pos, np.where(kind == 0, 0.3, 0.15), np.where(kind == 0, 0.45, 0.4),
                        background=(0.02,))  # fmt: skip
    data = ac.add_poisson_noise(model.image(), dose_e_per_angstrom2=2e4, pixel_size_angstrom=px, rng=seed)
    image = ac.HAADFImage(data, px, normalised=True)
    keep = image.contains(pos, margin_angstrom=-1.0)
    start = pos[keep] + np.random.default_rng(seed).normal(0, 0.05, (int(keep.sum()), 2))
    return image, start, lambda q: _truth_sites(q, a, np.array([2.0, 2.0]))


def sublattice_part() -> dict:
    """The ``sublattice_*`` keys."""
    _need_shared()
    rows = {}
    print("sublattices:", flush=True)
    image, pos, truth_of = _cspbbr3()
    rows["CsPbBr3_statstem"] = one_image("CsPbBr3 (StatSTEM's coordinates and types)", image, pos, truth_of)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detected = ac.find_columns(image)
    rows["CsPbBr3_detected"] = one_image("CsPbBr3 (detected columns, StatSTEM's types)", image, detected, truth_of)
    image, pos, truth_of = _srtio3_real()
    rows["SrTiO3_real"] = one_image("SrTiO3 real (detected columns)", image, pos, truth_of)
    image, pos, truth_of, sim_seconds = _srtio3_abtem()
    rows["SrTiO3_abtem_5e4"] = one_image("SrTiO3 abTEM PRISM, 5e4 e/Å² (detected columns)", image, pos, truth_of)
    rows["SrTiO3_abtem_5e4"]["simulation_seconds"] = sim_seconds
    image, pos, truth_of = _srtio3_gaussian()
    rows["perovskite_gaussian_2e4"] = one_image("perovskite, Gaussian model, 2e4 e/Å²", image, pos, truth_of)
    return {
        "sublattice_accuracy_min": min(r["accuracy"] for r in rows.values()),
        "sublattice_accuracy_with_removed_min": min(r["accuracy_with_removed"] for r in rows.values()),
        "sublattice_recovered_min": min(r["recovered_fraction"] for r in rows.values()),
        "sublattice_second_found_min": min(r["second_sublattice_found"] for r in rows.values()),
        "sublattice_images": rows,
    }


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and np.array_equal(a, b, equal_nan=True))  # fmt: skip
    return a == b


def statstem_part() -> dict:
    """The ``statstem_*`` keys: read, fit, write, read on the CsPbBr3 file."""
    import scipy.io

    _need_shared()
    res = read_statstem(SHARED / "statstem_CsPbBr3.mat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # six faint Cs columns are flagged as not significant
        t = time.perf_counter()
        fit = ac.fit_columns(res.image, res.positions, types=np.array(res.type_names)[res.types])
        seconds = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roundtrip.mat"
        write_statstem(fit, path, image=res.image)
        back = read_statstem(path)
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    differ = [f.name for f in dataclasses.fields(fit) if not _same(getattr(fit, f.name), getattr(back.fit, f.name))]
    image_same = bool(np.array_equal(back.image.data, res.image.data)
                      and back.image.pixel_size_angstrom == res.image.pixel_size_angstrom)  # fmt: skip
    names = np.asarray(fit.type_names)
    types_same = bool(np.array_equal(np.asarray(back.type_names)[back.types], names[fit.types]))
    dx = res.image.pixel_size_angstrom
    native = {
        "positions_max_diff_angstrom": float(np.abs(mat["output"].coordinates - dx - fit.positions).max()),
        "widths_equal": bool(np.array_equal(mat["output"].rho, fit.widths)),
        "heights_equal": bool(np.array_equal(mat["output"].eta, fit.heights)),
        "volumes_equal": bool(np.array_equal(mat["output"].volumes, fit.scs)),
    }
    native_ok = (native["positions_max_diff_angstrom"] <= 1e-12 and native["widths_equal"]
                 and native["heights_equal"] and native["volumes_equal"])  # fmt: skip
    lossless = not differ and image_same and types_same and native_ok
    # how our fit of StatSTEM's image compares with StatSTEM's own
    theirs = res.fit
    d = np.linalg.norm(fit.positions - theirs.positions[fit.input_index], axis=1)
    rel = fit.scs / theirs.scs[fit.input_index] - 1
    print(f"statstem round trip: {'lossless' if lossless else 'LOSSY: ' + ', '.join(differ)}; our fit vs "
          f"StatSTEM's: median {np.median(d):.3f} Å, SCS median {np.median(rel):+.4f}", flush=True)  # fmt: skip
    return {
        "statstem_roundtrip_lossless": int(lossless),
        "statstem_roundtrip": {
            "fields_that_differ": differ,
            "image_same": image_same,
            "types_same": types_same,
            "statstem_fields": native,
            "fit_seconds": seconds,
        },  # fmt: skip
        "statstem_fit_vs_statstem": {
            "median_position_difference_angstrom": float(np.median(d)),
            "max_position_difference_angstrom": float(np.max(d)),
            "median_scs_relative_difference": float(np.median(rel)),
            "widths_ours_angstrom": fit.summary()["widths_by_type"],
            "widths_statstem_angstrom": theirs.summary()["widths_by_type"],
        },
    }


def strain_part() -> dict:
    """The ``strain_*`` keys, from ``_bench_lattice_strain.py``."""
    sys.path.insert(0, str(HERE))
    from _bench_lattice_strain import run

    return run()


PARTS = {"sublattice": sublattice_part, "statstem": statstem_part, "strain": strain_part}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_lattice.json")
    ap.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=list(PARTS),
                    help="parts to run; the JSON's other keys are kept")  # fmt: skip
    args = ap.parse_args(argv)
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    t = time.perf_counter()
    for part in args.parts:
        out.update(PARTS[part]())
    out["seconds_last_run"] = time.perf_counter() - t
    out["atomscount_version"] = ac.__version__
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
