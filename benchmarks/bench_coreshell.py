"""Benchmark of the core-shell configuration search: sites right, core found, and speed (issue 13).

Ground truths
    Three Au@Ag particles built with ASE (``ase.build.bulk`` fcc, a = 4.08 Å,
    carved and given Au and Ag), in the first view's frame ([001] along z):

    - ``rod_tip_centred_sphere``: the tip of a rod lying along x (a cylinder
      capped by a hemisphere) with a spherical Au core centred in the cap;
    - ``sphere_offcentre_ellipsoid``: a sphere with an off-centre, axis-aligned
      ellipsoidal Au core;
    - ``sphere_irregular_core``: a sphere whose Au core is the union of two
      overlapping spheres (not an ellipsoid).

    The first two cores lie in the search's parametric family (a sphere, an
    axis-aligned ellipsoid), so they are the easy cases; the irregular core is
    the one that tests the site-level stage.

    ``--quick`` uses about 280-380 sites per particle, the full run about
    2,200-3,000.

Measurements (a)
    Each column's SCS is the shipped Au/Ag lensing model of its view
    (``load_default_lensing("Au", "Ag", axis)``, fitted to abTEM multislice
    columns) applied to its true element sequence: view 1 along [001], view 2
    along [110] (a 90° tilt about the shared [1-10] axis), the tilt being known
    (``beam_directions``; the variant ``orientation_from_the_data`` leaves it out).
    Gaussian noise is added
    at the precision that ``fit_columns`` reaches: the Cramér-Rao bound
    (:func:`atomscount.crlb`) of a :class:`ColumnModel` of that view's columns
    with heights ``scs / (2 pi rho^2)``, rho = 0.45 Å, 0.2 Å pixels and a
    background of 0.005, at 1e4 and 1e5 e/Å² (the bound, not a documented
    relative error; ``fit_columns`` reaches it within a few % in
    ``bench_fit.py``). Each search is given the true atoms per column of view 1
    (``counts``) and ``rng=0``.

Scores, per ground truth and their mean over the three
    - ``sites_correct_*``: the fraction of sites holding the right element;
    - ``au_count_mae_*``: the mean absolute error of the Au atoms per column, over
      the columns of every view searched;
    - ``core_centre_error_angstrom``: distance between the centroids of the found
      and the true Au sites (two views, 1e5);
    - ``core_volume_error_percent``: |found - true| Au sites over the true Au sites
      (the annealing keeps the composition, so this is the parametric stage's);
    - ``search_seconds``: wall time of one ``search_core_shell`` call (two views,
      1e5), on this machine with whatever else it runs.

Measurement (b), multislice: the shipped abTEM pair
(``atomscount/data/coreshell_auag.npz``, ``simulations/make_coreshell_images.py``)
with Poisson noise at 1e5 e/Å², through ``find_columns``, ``fit_columns`` and
``search_core_shell`` (``examples/coreshell_two_views.py``); null with ``--quick``.

Measurement (c), the chain from two images with no truth counts (``--chain-only`` runs
it alone and merges its keys into ``--out``): the shipped pair and two independent
multislice pairs simulated at other particle shapes, core shapes and sizes
(``benchmarks/data/coreshell_to_sphere.npz``: a 459-atom truncated octahedron with a
centred spherical 87-atom core; ``benchmarks/data/coreshell_poly_ellipsoid.npz``: a
579-atom {100}/{110}/{111} polyhedron with an off-centre 77-atom ellipsoidal core; one
frozen-phonon configuration each, ``simulations/coreshell_pair_*.toml``), Poisson noise
at 1e5 e/Å², ``find_columns`` → ``fit_columns`` → ``search_core_shell`` with every
default and no counts. ``chain_sites_correct_no_counts`` is, at its lowest over the
pairs and over two noise seeds (0 and 1, each also the search's seed), the number of
model sites on a true site with the right element over the larger of the model's and
the truth's number of sites (a missing or an extra site is wrong).

Usage: python benchmarks/bench_coreshell.py --out FILE.json [--quick | --chain-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from ase.build import bulk
from scipy.spatial import cKDTree

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import PeakRSS  # noqa: E402

from atomscount import crlb  # noqa: E402
from atomscount.columns.model import ColumnModel  # noqa: E402
from atomscount.coreshell import CORE, SHELL, ForwardModel, LensingTables, fcc_sites, group_columns, tilt_rotation  # noqa: E402
from atomscount.coreshell.search import search_core_shell  # noqa: E402
from atomscount.coreshell.sites import zone_axis_rotation  # noqa: E402
from atomscount.library import load_default_lensing  # noqa: E402

A = 4.08
PIXEL = 0.2
WIDTH = 0.45
BACKGROUND = 0.005
AXES = ("001", "110")
DOSES = {"1e4": 1e4, "1e5": 1e5}
#: view 2's beam in view 1's frame, as the goniometer gives it (the 90° tilt about [1-10])
BEAMS = [tilt_rotation(AXES[0], AXES[1])[2]]


def _in_ellipsoid(xyz, centre, radii):
    u = (xyz - np.asarray(centre)) / np.asarray(radii)
    return np.einsum("ij,ij->i", u, u) <= 1.0


def _fcc_block(half_extent):
    """fcc Ag as ase.Atoms (a = 4.08 Å), a site at the origin, in view 1's frame, |x|, |y|, |z| <= h.

    View 1's frame is the search's: [001] along z and x along [1-10] (``zone_axis_rotation("001")``).
    """
    n = int(np.ceil(np.sqrt(2.0) * half_extent / A)) + 1
    block = bulk("Ag", "fcc", a=A, cubic=True).repeat((2 * n, 2 * n, 2 * n))
    block.translate(-n * A * np.ones(3))
    block.set_cell(block.cell.array @ zone_axis_rotation("001").T)
    block.positions = block.positions @ zone_axis_rotation("001").T
    del block[np.any(np.abs(block.positions) > half_extent + 1e-9, axis=1)]
    return block


def _particle(block, keep, core):
    """The Au@Ag particle as ase.Atoms: the sites where ``keep``, Au where ``core`` (sites -> bool)."""
    atoms = block[keep(block.positions)]
    atoms.symbols[core(atoms.positions)] = "Au"
    return atoms


def ground_truths(quick):
    """name -> (sites (m, 3) [Å], is_core (m,) bool), from Au@Ag particles built with ASE."""
    s = 0.62 if quick else 1.2
    atoms = {}
    # rod along x: a cylinder of radius r for x < 0, capped by a hemisphere at x >= 0
    r, length = 16.0 * s, 16.0 * s

    def rod(xyz):
        yz = np.hypot(xyz[:, 1], xyz[:, 2])
        cylinder = (xyz[:, 0] < 0) & (xyz[:, 0] >= -length) & (yz <= r)
        return cylinder | ((xyz[:, 0] >= 0) & (np.linalg.norm(xyz, axis=1) <= r))

    atoms["rod_tip_centred_sphere"] = _particle(_fcc_block(r + length), rod,
                                                lambda xyz: _in_ellipsoid(xyz, [0, 0, 0], [0.6 * r] * 3))  # fmt: skip
    # spheres with off-centre ellipsoidal and irregular cores
    r = 19.0 * s
    block = _fcc_block(r + 1.0)

    def sphere(xyz):
        return np.linalg.norm(xyz, axis=1) <= r

    def irregular(xyz):
        return _in_ellipsoid(xyz, [-0.2 * r, -0.1 * r, 0.1 * r], [0.45 * r] * 3) | _in_ellipsoid(
            xyz, [0.25 * r, 0.2 * r, -0.1 * r], [0.35 * r] * 3)  # fmt: skip

    atoms["sphere_offcentre_ellipsoid"] = _particle(block, sphere, lambda xyz: _in_ellipsoid(
        xyz, [0.2 * r, -0.15 * r, 0.15 * r], [0.6 * r, 0.5 * r, 0.45 * r]))  # fmt: skip
    atoms["sphere_irregular_core"] = _particle(block, sphere, irregular)
    return {k: (a.positions.copy(), a.symbols == "Au") for k, a in atoms.items()}


def scs_precision(xy, scs, dose):
    """Cramér-Rao bound [Å²] on each column's SCS in a Gaussian-column image at ``dose`` [e/Å²]."""
    margin = 4.0
    pos = xy - xy.min(axis=0) + margin
    shape = tuple(int(np.ceil((pos[:, i].max() + margin) / PIXEL)) for i in (1, 0))
    model = ColumnModel(shape, PIXEL, pos, scs / (2 * np.pi * WIDTH**2), WIDTH, background=(BACKGROUND,))
    return np.asarray(crlb(model, dose_e_per_angstrom2=dose).scs)


def measure(xyz, is_core, lensing, seed):
    """Per view and dose: the columns, the noisy SCS and its sigma, and the true Au per column."""
    codes = np.where(is_core, CORE, SHELL)
    rng = np.random.default_rng(seed)
    views = {}
    for v, axis in enumerate(AXES):
        cols = group_columns(xyz, None if v == 0 else tilt_rotation(AXES[0], axis))
        n = cols.n_columns
        tables = LensingTables(lensing[axis], core="Au", shell="Ag")
        scs = ForwardModel(codes, [cols], [tables], [np.zeros(n)], [np.ones(n)]).predicted[0]
        au = np.bincount(cols.column_of_site, weights=is_core.astype(float), minlength=n)
        per_dose = {}
        for key, dose in DOSES.items():
            sigma = scs_precision(cols.xy, scs, dose)
            per_dose[key] = (scs + rng.normal(0, sigma), sigma)
        views[axis] = {"cols": cols, "au": au, "counts": np.diff(cols.start), "scs": per_dose,
                       "relative_sigma": {k: float(np.median(per_dose[k][1] / scs)) for k in DOSES}}  # fmt: skip
    return views


def score(result, xyz, is_core, views, axes):
    found = result.atoms.positions
    truth = xyz - [0.0, 0.0, xyz[:, 2].mean()]
    d, idx = cKDTree(truth).query(found)
    if d.max() > 0.1:  # the search's sites are view 1's lattice, placed by its own registration
        truth = truth + (found.mean(axis=0) - truth.mean(axis=0))
        d, idx = cKDTree(truth).query(found)
    true_core = is_core[idx]
    mae = [float(np.mean(np.abs(result.core_counts[v] - views[a]["au"]))) for v, a in enumerate(axes)]
    n_true, n_found = int(true_core.sum()), int(result.is_core.sum())
    centre = np.linalg.norm(found[result.is_core].mean(axis=0) - truth[idx][true_core].mean(axis=0))
    return {"sites_correct": float(np.mean(result.is_core == true_core)),
            "au_count_mae": float(np.mean(np.concatenate([np.abs(result.core_counts[v] - views[a]["au"])
                                                          for v, a in enumerate(axes)]))),
            "au_count_mae_per_view": mae, "core_centre_error_angstrom": float(centre),
            "core_volume_error_percent": float(100 * abs(n_found - n_true) / n_true),
            "n_core_true": n_true, "n_core_found": n_found, "site_match_max_distance": float(d.max()),
            "chi2": result.chi2.tolist(), "n_columns": result.n_columns.tolist(), "converged": bool(result.converged),
            "seconds_parametric": float(result.info["seconds_parametric"])}  # fmt: skip


def run_particle(name, xyz, is_core, lensing, quick, seed):
    views = measure(xyz, is_core, lensing, seed)
    settings = {}  # the search's defaults: 50 annealing and 25 sampling proposals per site
    out = {"n_sites": int(len(xyz)), "n_core_sites": int(is_core.sum()),
           "n_columns": {a: int(views[a]["cols"].n_columns) for a in AXES},
           "scs_relative_sigma_median": {a: views[a]["relative_sigma"] for a in AXES}, "search": settings}  # fmt: skip
    for label, axes, dose in (("2view_1e5", AXES, "1e5"), ("1view_1e5", AXES[:1], "1e5"), ("2view_1e4", AXES, "1e4")):
        vs = [(views[a]["cols"].xy, *views[a]["scs"][dose], a) for a in axes]
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = search_core_shell(vs, {a: lensing[a] for a in axes}, "Au", counts=views[AXES[0]]["counts"], rng=0,
                                    beam_directions=BEAMS if len(axes) == 2 else None, **settings)  # fmt: skip
        seconds = time.perf_counter() - t0
        out[label] = {**score(res, xyz, is_core, views, axes), "search_seconds": seconds}
        e = out[label]
        print(f"{name:28s} {label}: {e['sites_correct']:.3f} sites, Au MAE {e['au_count_mae']:.3f}, centre "
              f"{e['core_centre_error_angstrom']:.2f} Å, volume {e['core_volume_error_percent']:.1f} %, "
              f"{seconds:.1f} s", flush=True)  # fmt: skip
    return out


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def run_scaling(lensing, quick):
    """Time of one two-view search on a particle of about 10,000 sites (2,000 with --quick)."""
    r = 17.0 if quick else 34.0
    xyz = fcc_sites(A, r + 1.0)
    xyz = xyz[np.linalg.norm(xyz, axis=1) <= r]
    is_core = _in_ellipsoid(xyz, [0.2 * r, -0.15 * r, 0.15 * r], [0.6 * r, 0.5 * r, 0.45 * r])
    views = measure(xyz, is_core, lensing, 7)
    vs = [(views[a]["cols"].xy, *views[a]["scs"]["1e5"], a) for a in AXES]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = search_core_shell(vs, lensing, "Au", counts=views[AXES[0]]["counts"], rng=0, beam_directions=BEAMS)
    seconds = time.perf_counter() - t0
    out = {"n_sites": int(len(xyz)), **score(res, xyz, is_core, views, AXES), "search_seconds": seconds,
           "seconds_anneal": float(res.info["seconds_anneal"]), "n_anneal": int(res.info["n_anneal"]),
           "n_sample": int(res.info["n_sample"]), "passes": len(res.info["passes"])}  # fmt: skip
    print(f"scaling {len(xyz)} sites: {out['sites_correct']:.3f} sites, {seconds:.1f} s "
          f"(annealing {out['seconds_anneal']:.1f} s)", flush=True)  # fmt: skip
    return out


def run_variants(lensing, quick):
    """The constraints on the off-centre ellipsoid particle (two views, 1e5): each against the plain search."""
    xyz, is_core = ground_truths(quick)["sphere_offcentre_ellipsoid"]
    views = measure(xyz, is_core, lensing, 2)
    vs = [(views[a]["cols"].xy, *views[a]["scs"]["1e5"], a) for a in AXES]
    counts = views[AXES[0]]["counts"]
    variants = {"plain": {"counts": counts, "beam_directions": BEAMS},
                "orientation_from_the_data": {"counts": counts},
                "known_composition": {"counts": counts, "n_core": int(is_core.sum()), "beam_directions": BEAMS},
                "shape_fitted_without_counts": {"counts": None, "beam_directions": BEAMS},
                "star_core": {"counts": counts, "core": "star", "beam_directions": BEAMS},
                "sphere_core": {"counts": counts, "core": "sphere", "beam_directions": BEAMS}}  # fmt: skip
    out = {}
    for name, kw in variants.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = search_core_shell(vs, lensing, "Au", rng=0, **kw)
        seconds = time.perf_counter() - t0
        if kw["counts"] is None:  # the sites differ: score on the atoms per column and the core only
            e = {"atom_count_mae": [float(np.mean(np.abs(res.atom_counts[v] - views[a]["counts"])))
                                    for v, a in enumerate(AXES)],
                 "au_count_mae": float(np.mean(np.concatenate([np.abs(res.core_counts[v] - views[a]["au"])
                                                               for v, a in enumerate(AXES)]))),
                 "n_atoms": len(res.atoms), "n_atoms_true": int(len(xyz)), "n_core_found": int(res.is_core.sum()),
                 "n_core_true": int(is_core.sum()), "converged": bool(res.converged)}  # fmt: skip
        else:
            e = score(res, xyz, is_core, views, AXES)
        out[name] = {**e, "search_seconds": seconds}
        print(f"variant {name:28s}: " + ", ".join(f"{k} {v:.3f}" for k, v in e.items() if isinstance(v, float)),
              flush=True)  # fmt: skip
    return out


def run_multislice():
    """Measurement (b): the shipped multislice pair through find_columns, fit_columns and the search."""
    sys.path.insert(0, str(HERE.parent / "examples"))
    import coreshell_two_views as chain

    try:
        data = chain.load_pair()
    except FileNotFoundError:
        return None
    out = {}
    n_views = sum(f"image_{a}" in data for a in AXES)
    runs = [
        ("1view_true_counts", {"n_views": 1, "counts": "true"}),
        ("1view_no_counts", {"n_views": 1, "counts": "none"}),
    ]
    if n_views == 2:
        runs = [("2view_true_counts", {"n_views": 2, "counts": "true"}), *runs,
                ("2view_no_counts", {"n_views": 2, "counts": "none"})]  # fmt: skip
    for label, kw in runs:
        report, _ = chain.run(data, dose=1e5, seed=0, progress=False, **kw)
        out[label] = report
        print(
            f"multislice {label}: {report['sites_correct']:.3f} sites, Au {report['n_au_model']} "
            f"(true {report['n_au_true']}), centre {report['core_centre_error_angstrom']:.2f} Å",
            flush=True,
        )
    return out


#: The independent multislice pairs of the chain with no counts: (name, file). Each was simulated by
#: simulations/make_coreshell_images.py with its own settings file (another particle shape, core shape and size).
CHAIN_PAIRS = (
    ("shipped_sphere_offcentre_ellipsoid", None),  # atomscount/data/coreshell_auag.npz (coreshell_images.toml)
    ("truncated_octahedron_centred_sphere", HERE / "data" / "coreshell_to_sphere.npz"),  # coreshell_pair_to_sphere
    ("polyhedron_offcentre_ellipsoid", HERE / "data" / "coreshell_poly_ellipsoid.npz"),  # coreshell_pair_poly_ellipsoid
)


def run_chain(dose=1e5, seeds=(0, 1)):
    """Measurement (c): from two multislice images to the 3D model with no truth counts, on every pair.

    Per pair: Poisson noise at ``dose``, ``find_columns`` and ``fit_columns`` with their
    defaults, ``search_core_shell`` with its defaults and no counts (the faceted shape
    stage); the beams of the two views as the goniometer gives them. Each ``seeds``
    entry is one noise realisation and one seed of the search. The shipped pair is
    also searched with its true counts, as the reference the no-count chain is
    measured against.
    """
    sys.path.insert(0, str(HERE.parent / "examples"))
    import coreshell_two_views as chain

    out = {}
    for name, path, seed in [(n, p, s) for n, p in CHAIN_PAIRS for s in seeds]:
        name = f"{name}_seed{seed}"
        if path is not None and not path.exists():
            out[name] = {"missing": str(path.relative_to(HERE.parent))}
            print(f"chain {name}: {path} missing", flush=True)
            continue
        data = chain.load_pair(path)
        settings = data["settings"]
        report, model = chain.run(data, dose=dose, counts="none", n_views=2, seed=seed, progress=False)
        report["pair"] = {k: settings.get(k) for k in ("shape", "facets_angstrom", "radius_angstrom", "core_shape",
                                                         "core_spheres", "core_centre_angstrom", "core_radii_angstrom",
                                                         "num_configs")}  # fmt: skip
        # right sites over the larger of the model's and the truth's: a missing or an extra site is wrong
        right = report["sites_correct"] * report["n_sites_model"]
        report["sites_correct_of_larger"] = float(right / max(report["n_sites_model"], report["n_sites_true"]))
        report["scs_scale"] = model.info["scs_scale"][0]
        report["scs_scale_preferred"] = model.info.get("scs_scale_preferred")
        out[name] = report
        print(f"chain {name}: {report['sites_correct_of_larger']:.3f} sites right, {report['n_sites_model']} sites "
              f"(true {report['n_sites_true']}), Au {report['n_au_model']} (true {report['n_au_true']}), "
              f"converged {report['converged']}, search {report['seconds_search']:.0f} s", flush=True)  # fmt: skip
        if path is None and seed == seeds[0]:
            ref, _ = chain.run(data, dose=dose, counts="true", n_views=2, seed=seed, progress=False)
            out[name]["reference_true_counts_sites_correct"] = ref["sites_correct"]
    return out


def merge_chain(path, chain_runs, seconds):
    """Write the chain's figures into the JSON at ``path``, keeping what the other measurements wrote."""
    data = json.loads(path.read_text()) if path.exists() else {}
    scores = [r["sites_correct_of_larger"] for r in chain_runs.values() if "sites_correct" in r]
    data["chain_sites_correct_no_counts"] = float(min(scores)) if scores else None
    data["chain_pairs_measured"] = len(scores)
    data["chain_no_counts"] = chain_runs
    data["chain_seconds"] = seconds
    data["chain_machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    write_json(path, data)
    return data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="particles of a few hundred sites (a few minutes)")
    ap.add_argument("--chain-only", action="store_true",
                    help="run measurement (c) alone and merge its keys into --out")  # fmt: skip
    args = ap.parse_args(argv)
    if args.chain_only:
        t0 = time.perf_counter()
        runs = run_chain()
        data = merge_chain(args.out, runs, time.perf_counter() - t0)
        print(json.dumps({k: data[k] for k in ("chain_sites_correct_no_counts", "chain_pairs_measured")}))
        return
    lensing = {a: load_default_lensing("Au", "Ag", a) for a in AXES}
    t_start = time.perf_counter()
    per = {}
    with PeakRSS() as mem:
        for seed, (name, (xyz, is_core)) in enumerate(ground_truths(args.quick).items()):
            per[name] = run_particle(name, xyz, is_core, lensing, args.quick, seed + 1)
        scaling = run_scaling(lensing, args.quick)
        variants = run_variants(lensing, args.quick)
        multislice = None if args.quick else run_multislice()
        chain_runs = None if args.quick else run_chain()

    def mean(label, key):
        return float(np.mean([per[p][label][key] for p in per]))

    result = {
        "sites_correct_2view_1e5": mean("2view_1e5", "sites_correct"),
        "sites_correct_1view_1e5": mean("1view_1e5", "sites_correct"),
        "sites_correct_2view_1e4": mean("2view_1e4", "sites_correct"),
        "au_count_mae_2view_1e5": mean("2view_1e5", "au_count_mae"),
        "au_count_mae_1view_1e5": mean("1view_1e5", "au_count_mae"),
        "au_count_mae_2view_1e4": mean("2view_1e4", "au_count_mae"),
        "core_centre_error_angstrom": mean("2view_1e5", "core_centre_error_angstrom"),
        "core_centre_error_angstrom_1view_1e5": mean("1view_1e5", "core_centre_error_angstrom"),
        "core_volume_error_percent": mean("2view_1e5", "core_volume_error_percent"),
        "search_seconds": mean("2view_1e5", "search_seconds"),
        "search_seconds_1view_1e5": mean("1view_1e5", "search_seconds"),
        "multislice_sites_correct": (multislice.get("2view_true_counts") or multislice["1view_true_counts"])[
            "sites_correct"
        ]
        if multislice
        else None,
        "multislice_views": (2 if "2view_true_counts" in multislice else 1) if multislice else 0,
        "multislice": multislice,
        "chain_sites_correct_no_counts": float(
            min(r["sites_correct_of_larger"] for r in chain_runs.values() if "sites_correct" in r)
        )
        if chain_runs
        else None,
        "chain_no_counts": chain_runs,
        "scaling_10k_sites": scaling,
        "variants": variants,
        "notes": [
            "multislice_sites_correct: the shipped abTEM pair (atomscount/data/coreshell_auag.npz) with Poisson noise "
            "at 1e5 e/Å², find_columns and fit_columns with their defaults, then search_core_shell with the true atoms "
            "per [001] column (examples/coreshell_two_views.py); two views when the shipped file holds both, one "
            "([001]) otherwise (multislice_views); null with --quick",
            "measurement (a): each view's SCS come from the shipped Au/Ag lensing model of its zone axis, the model "
            "the search uses for that view",
            "SCS noise: Gaussian with the Cramér-Rao bound of a Gaussian-column image of each view (rho 0.45 Å, "
            "0.2 Å pixels, background 0.005) at the dose",
            "overall figures are means over the ground truths; the search is given the true atoms per column of view 1",
        ],
        "quick": bool(args.quick),
        "ground_truths": per,
        "peak_rss_mb": mem.mb,
        "total_seconds": time.perf_counter() - t_start,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("ground_truths", "notes")}, indent=1))


if __name__ == "__main__":
    main()
