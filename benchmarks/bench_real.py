"""Benchmark: the 2D chain with its defaults on images the package did not make.

Reads ``../shared/data/experimental`` (real images with StatSTEM's expert
results: CsPbBr3, an Au rod along [110], SrTiO3) and the independent abTEM
images ``benchmarks/data/cu110_particle.npz`` (300 kV) and
``pt001_80kv_particle.npz`` (80 kV), noise-free and with Poisson noise at 1e4
and 1e5 e/Å². For each: columns found against the reference (matched within
half the reference's median nearest-neighbour distance), spurious columns,
seconds for detection and fit, the fraction of columns the fit flags; for the
rod, the automatic G of the ICL on the expert's SCS and on ours against the
expert's G = 69. Also the brightness sweep (the same columns and SCS for the
image times 1e-6 ... 1e9) and the automatic G on synthetic SCS of 10^3 ... 10^6
columns. Writes JSON.

    python benchmarks/bench_real.py --out benchmarks/results/bench_real.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

import atomscount as ac

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "experimental"


def _need_shared():
    if not SHARED.is_dir():
        sys.exit(f"bench_real.py needs the experimental images in {SHARED} (../shared beside the checkout)")


def load_images(quick):
    """(name, HAADFImage, reference positions or None, extra) for every image."""
    import scipy.io as sio

    out = []
    d = sio.loadmat(SHARED / "statstem_CsPbBr3.mat", squeeze_me=True, struct_as_record=False)
    out.append(("CsPbBr3", ac.HAADFImage(np.asarray(d["input"].obs, float), float(d["input"].dx)),
                # StatSTEM counts pixels from 1 (its x axis is (1:K)*dx): one pixel more than ours
                np.asarray(d["output"].coordinates)[:, :2] - float(d["input"].dx), {}))  # fmt: skip
    if not quick:
        r = sio.loadmat(SHARED / "qem_Au_rod_110.mat", squeeze_me=True, struct_as_record=False)
        out.append(("Au_rod_110", ac.HAADFImage(np.asarray(r["obs"], float), float(r["dx"])),
                    np.asarray(r["coordinates"]), {"expert_scs": np.asarray(r["output"].Volumes, float),
                                                    # the SCS follow output.coordinates, in another order
                                                    "expert_scs_positions": np.asarray(r["output"].coordinates),
                                                    "expert_g": len(r["output"].estimatedLocations),
                                                    "expert_means": np.asarray(r["output"].estimatedLocations),
                                                    }))  # fmt: skip
        from rsciio.hspy import file_reader

        s = file_reader(str(SHARED / "qem_SrTiO3_small.hspy"))[0]
        out.append(("SrTiO3", ac.HAADFImage(np.asarray(s["data"], float), 10 * float(s["axes"][1]["scale"])), None,
                    {}))  # fmt: skip
    out += abtem_images("cu110_particle.npz", "Cu110_abtem_", seed=1)
    out += abtem_images("pt001_80kv_particle.npz", "Pt001_80kV_abtem_", seed=2)
    return out


def abtem_images(file, prefix, *, seed):
    """An independent abTEM image of ``benchmarks/data``, noise-free and at 1e5 and 1e4 e/Å²."""
    sim = np.load(HERE / "data" / file, allow_pickle=True)
    clean, px = np.clip(np.asarray(sim["clean"], float), 0, None), float(sim["pixel_size_angstrom"])
    out = []
    for dose in (None, 1e5, 1e4):
        img = clean if dose is None else ac.add_poisson_noise(clean, dose_e_per_angstrom2=dose,
                                                              pixel_size_angstrom=px, rng=seed)  # fmt: skip
        name = prefix + ("noise_free" if dose is None else f"{dose:.0e}")
        out.append((name, ac.HAADFImage(img, px), np.asarray(sim["positions"]), {}))
    return out


def match(found, ref):
    """(recall, spurious count, tolerance [Å]) with the tolerance half the reference's nearest-neighbour distance."""
    nn = float(np.median(cKDTree(ref).query(ref, k=2)[0][:, 1]))
    tol = 0.5 * nn
    if len(found) == 0:
        return 0.0, 0, tol
    d, _ = cKDTree(found).query(ref)
    d2, _ = cKDTree(ref).query(found)
    return float(np.mean(d < tol)), int(np.sum(d2 >= tol)), tol


def one_image(name, image, ref, extra):
    row = {"shape": list(image.shape), "pixel_size_angstrom": image.pixel_size_angstrom}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        det = ac.detect_columns(image)
        row["detect_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        fit = ac.fit_columns(image, det.positions, noise="poisson")
        row["fit_seconds"] = time.perf_counter() - t
    row["n_found"] = det.n_columns
    row["flagged_fraction"] = float(1 - fit.converged.mean()) if fit.n_columns else 1.0
    row["n_dropped_by_fit"] = int(det.n_columns - fit.n_columns)
    row["flags"] = {k: v for k, v in fit.metadata["flagged"].items() if v}
    if ref is not None:
        row["n_reference"] = len(ref)
        row["recall"], row["spurious"], row["match_tolerance_angstrom"] = match(fit.positions, ref)
        row["spurious_fraction"] = row["spurious"] / len(ref)
    if "expert_scs" in extra:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            on_expert = ac.count_atoms(extra["expert_scs"], method="icl", max_components=100, rng=0)
            row["icl_seconds_expert_scs"] = time.perf_counter() - t
            ok = fit.converged
            ours = ac.count_atoms(fit.scs[ok], method="icl", max_components=100, rng=0)
        d, i = cKDTree(fit.positions).query(extra["expert_scs_positions"])
        same = d < 0.5
        ex, ou = extra["expert_scs"][same], fit.scs[i[same]]
        slope, icpt = np.polyfit(ex, ou, 1)
        step = float(np.median(np.diff(np.sort(extra["expert_means"]))))
        row["scs_correlation_with_expert"] = float(np.corrcoef(ex, ou)[0, 1])
        row["scs_rms_difference_in_expert_steps"] = float(np.std(ou - (slope * ex + icpt)) / (slope * step))
        row["expert_g"] = extra["expert_g"]
        row["icl_g_on_expert_scs"] = int(on_expert.n_components)
        row["icl_g_on_our_scs"] = int(ours.n_components)
    print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "flags"},
          flush=True)  # fmt: skip
    return row


def count_pt80(rows):
    """Counting on the independent 80 kV Pt particle against its own microscope's abTEM library.

    ``benchmarks/data/pt001_80kv_library.h5`` is ``build_scs_library("Pt", "001", 10, settings)``
    with the image's ``microscope`` settings (4 frozen-phonon configurations, N = 1..10).
    Each image is counted declared normalised (scale held at 1) and, multiplied by
    3.7e4 as raw counts would be, with the scale found by the scan.
    """
    from atomscount.library import ScsLibrary

    lib = ScsLibrary.from_hdf5(HERE / "data" / "pt001_80kv_library.h5")
    sim = np.load(HERE / "data" / "pt001_80kv_particle.npz", allow_pickle=True)
    truth_pos, truth_counts = np.asarray(sim["positions"]), np.asarray(sim["counts"])
    out = {}
    for name, image, _, _ in rows:
        if not name.startswith("Pt001_80kV"):
            continue
        case = {}
        for declared, factor in ((True, 1.0), (False, 3.7e4)):
            img = ac.HAADFImage(image.data * factor, image.pixel_size_angstrom, normalised=declared)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ac.fit_columns(img, ac.detect_columns(img).positions, noise="poisson")
                _, idx = cKDTree(fit.positions).query(truth_pos)
                truth = np.full(fit.n_columns, -1)
                truth[idx] = truth_counts
                for method in ("hybrid", "library", "icl") if declared else ("hybrid", "library"):
                    kw = {} if method == "icl" else {"library": lib, "normalised": declared}
                    c = ac.count_atoms(fit.scs, method=method, mask=fit.converged, scs_errors=fit.scs_error,
                                       rng=0, **kw)  # fmt: skip
                    ok = truth >= 0
                    key = method if method == "icl" else f"{method}_{'normalised' if declared else 'free_scale'}"
                    case[key] = {"exact": float(np.mean(c.counts[ok] == truth[ok])),
                                 "total": int(c.counts[c.counts > 0].sum()), "true_total": int(truth_counts.sum()),
                                 "g": int(c.n_components), "scale": None if c.library_scale is None
                                 else float(c.library_scale) / factor}  # fmt: skip
        out[name] = case
        print("count", name, {k: (round(v["exact"], 3), v["total"]) for k, v in case.items()}, flush=True)
    return out


def brightness_sweep():
    """Detection and fit of one noisy lattice image times 1e-6 ... 1e9 and on an offset."""
    from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice

    pos = square_lattice((64, 64), 0.15, 2.0, margin_angstrom=0.8)
    m = ColumnModel((64, 64), 0.15, pos, heights=np.full(len(pos), 0.3), widths=0.45, background=(0.01,))
    img = add_poisson_noise(m.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.15, rng=3)
    ref_det = ac.detect_columns(ac.HAADFImage(img, 0.15))
    ref_fit = ac.fit_columns(ac.HAADFImage(img, 0.15), ref_det.positions, noise="poisson")
    same = True
    rows = {}
    for factor in (1e-6, 1e-3, 1.0, 1e3, 1e7, 1e9):
        det = ac.detect_columns(ac.HAADFImage(img * factor, 0.15))
        fit = ac.fit_columns(ac.HAADFImage(img * factor, 0.15), det.positions, noise="poisson")
        ok = (det.n_columns == ref_det.n_columns and np.allclose(det.positions, ref_det.positions, atol=1e-9)
              and fit.converged.all() and np.allclose(fit.scs / factor, ref_fit.scs, rtol=1e-6))  # fmt: skip
        rows[f"{factor:g}"] = {"n_columns": det.n_columns, "n_converged": int(fit.converged.sum()), "same": bool(ok)}
        same &= ok
    off = ac.detect_columns(ac.HAADFImage(img * 1e4 + 3e4, 0.15))
    same &= bool(np.allclose(off.positions, ref_det.positions, atol=1e-9))
    return int(same), rows


def synthetic_g(sizes, n_true=25, seed=0):
    """Automatic G on SCS of the Au [110] library, counts 1..n_true, noise a quarter of the smallest step."""
    lib = ac.library.load_default("Au", "110")
    levels = lib.scs_at(np.arange(1, n_true + 1))
    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        counts = rng.integers(1, n_true + 1, n)
        step = np.diff(levels).min()
        scs = np.abs(levels[counts - 1] + rng.normal(0, 0.25 * step, n))  # a cross-section is never negative
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ac.count_atoms(scs, method="icl", max_components=40, rng=0)
        out[str(n)] = {"g": int(res.n_components), "true_g": n_true, "seconds": time.perf_counter() - t}
        print("synthetic", n, out[str(n)], flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="CsPbBr3 and the Cu image only, synthetic G to 10^4")
    args = ap.parse_args(argv)
    _need_shared()
    res = {"images": {}}
    images = load_images(args.quick)
    for name, image, ref, extra in images:
        res["images"][name] = one_image(name, image, ref, extra)
    res["counting_pt001_80kv"] = count_pt80(images)
    hyb = [c["hybrid_normalised"] for c in res["counting_pt001_80kv"].values()]
    res["pt80_hybrid_normalised_total_error_max"] = max(abs(c["total"] / c["true_total"] - 1) for c in hyb)
    with_ref = [r for r in res["images"].values() if "recall" in r]
    res["detect_recall_min"] = min(r["recall"] for r in with_ref)
    res["detect_spurious_max"] = max(r["spurious_fraction"] for r in with_ref)
    big = [r for r in res["images"].values() if max(r["shape"]) >= 400]
    res["detect_seconds_512"] = max((r["detect_seconds"] for r in res["images"].values()), default=None)
    rod = res["images"].get("Au_rod_110")
    res["detect_seconds_rod110"] = rod["detect_seconds"] if rod else None
    res["rod110_g"] = rod["icl_g_on_expert_scs"] if rod else None
    res["rod110_g_our_scs"] = rod["icl_g_on_our_scs"] if rod else None
    res["rod110_flagged_fraction"] = rod["flagged_fraction"] if rod else None
    res["rod110_fit_seconds"] = rod["fit_seconds"] if rod else None
    res["detect_seconds_largest_image"] = max((r["detect_seconds"] for r in big), default=None)
    res["brightness_invariant"], res["brightness_sweep"] = brightness_sweep()
    sizes = (1000, 10000) if args.quick else (1000, 10000, 100000, 1000000)
    res["synthetic_g"] = synthetic_g(sizes)
    res["icl_g_error_max_synthetic"] = max(abs(v["g"] - v["true_g"]) for v in res["synthetic_g"].values())
    res["notes"] = ("detect_seconds_512 is the slowest detection over the images (all at most 512 pixels across); "
                    "recall and spurious are after the fit, matched within half the reference's nearest-neighbour "
                    "distance; the rod's expert positions disagree with its image near its left edge (about 60 "
                    "columns), which bounds its recall; no declared-normalised image with an expert total is in "
                    "../shared, so the hybrid's 2 % target is not measured here")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=float))
    print({k: v for k, v in res.items() if not isinstance(v, dict)})


if __name__ == "__main__":
    main()
