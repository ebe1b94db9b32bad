"""The public part of ``bench_elemental.py``: the elemental stage's defaults on published data (no truth).

Data in ``../shared/data/public`` (see its README; read when present, each set skipped with a
clear message when not):

graptor
    HAADF + Yb/Al/Si EDX sinograms (Huber et al., RSC Adv. 9, 5970 (2019)): real photon
    counts, the Poisson path. Binned (slices, pixels) by ``public_bin``; pixel size, dose and
    solid angle unknown and set to nominal values (densities on an arbitrary common scale).
    Reported: the per-element Poisson χ² per pixel of the reprojected result, the agreement of
    each element's concentration with separate SIRT, and the correlation of the fitted HAADF
    model's volume with a SIRT reconstruction of the HAADF series.
han
    The EDX projections of the nanorod of Han et al., Nat. Mach. Intell. 3, 267 (2021):
    13 projections of 256², normalised floats (0 to 0.42), one EDX channel, no angles in the
    files (their README and the .mat headers say nothing of them: ±60° in 10° steps assumed).
    Not counts: the defaults take the least-squares path (``reconstruct_maps``), which this
    records with its warning. Binned 2x2 (``--quick``: 4x4). The tilt axis is the image axis
    along which each projection's profile is the same at every tilt. Consistency with the
    published HAADF reconstruction (``HAADF_STEM_ground_truth.mat``, a volume): its axes and
    rotation about the tilt axis found by reprojecting it at the assumed angles (plus an offset)
    against the EDX projections, the tilt step checked the same way; then the correlation and
    the overlap (Dice) of our EDX volume with the aligned HAADF volume, and the maps' χ².
fused
    The experimental maps of the fused multi-modal tutorial (Schwartz et al., npj Comput.
    Mater. 8, 16 (2022)): PTO trilayer (HAADF + Sc, Dy, O atomic fractions, 256²) and
    Co3O4/Mn3O4 (HAADF + Co, Mn, O processed maps, 400²). Ours with every default
    (``reconstruct_elemental``: the least-squares path on a one-voxel slab), and
    ``multimodal_fusion.DataFusion`` with its documented defaults, on the same maps in the same
    run. No truth; for both: each output map's χ² per pixel against its input map (the input's
    noise from ``estimate_map_noise``; fusion's outputs, which it rescales to [0, 1] per element,
    taken back to the input's range), the correlation with the input, the noise left in the
    output (the same estimator), the HAADF explained by ``Σ w_e x_e^γ + c`` fitted to each output
    (R², γ), the spread of the elements' sum, and seconds.

Standalone: ``python benchmarks/_bench_elemental_public.py --out FILE.json [--quick] [--sets han,fused]``
merges its sets into FILE's ``public`` key (re-read just before writing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

PUBLIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "public"
SETS = ("graptor", "han", "fused")


def _quiet(fn, *args, **kw):
    """``fn(*args, **kw)``, its warnings recorded (category and message), and its seconds."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        seconds = time.perf_counter() - t0
    return out, seconds, [f"{w.category.__name__}: {str(w.message)[:300]}" for w in caught]


def _plain(d):
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _corr(a, b):
    a, b = np.ravel(a), np.ravel(b)
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


# --- graptor (counts) ---


def _graptor(bin_slices=1, bin_pixels=4):
    import mrcfile

    from atomscount.tomo import TiltSeries

    folder = PUBLIC / "graptor_yb_al_si"
    angles = -5.0 * np.arange(36)  # 0° to -175° in 5° steps (the data's README)
    series = {}
    for name in ("HAADF_lrsino", "Yb_EDXsino", "Al_EDXsino", "Si_EDXsino"):
        with mrcfile.open(folder / f"{name}.mrc", permissive=True) as f:
            data = np.asarray(f.data, dtype=np.float64)  # (angles, slices, pixels)
        k, rows, cols = data.shape
        rows, cols = rows // bin_slices * bin_slices, cols // bin_pixels * bin_pixels
        data = data[:, :rows, :cols].reshape(k, rows // bin_slices, bin_slices, cols // bin_pixels, bin_pixels)
        data = data.sum(axis=(2, 4))
        prov = {"source": f"graptor {name}.mrc"}
        if name.endswith("EDXsino"):
            data = np.round(np.clip(data, 0, None))  # counts (stored as float32)
            # dose and solid angle unknown: nominal values, so that the densities come out on one (arbitrary) scale
            prov.update({"dose_e_per_angstrom2": 1.0, "solid_angle_sr": 0.7, "nominal_dose": True})
        series[name.split("_")[0]] = TiltSeries(data, angles, 1.0, prov)
    return series.pop("HAADF"), series


def _chi2(result, edxs) -> dict:
    """Per element: the Poisson χ² per pixel of the counts against the reprojected result (scaled by its total)."""
    from atomscount.tomo.operators import project_volume

    out = {}
    rho = result.concentration * (result.density if result.density is not None else result.mask)[None]
    for i, e in enumerate(result.elements):
        s = edxs[e]
        model = project_volume(rho[i], s.angles[:, 1], s.pixel_size_angstrom)
        model *= s.images.sum() / max(model.sum(), 1e-30)
        out[e] = float(np.mean((s.images - model) ** 2 / np.maximum(model, 0.5)))
    return out


def run_graptor(cfg) -> dict:
    from atomscount.elemental.reconstruct import reconstruct_elemental, reconstruct_separate
    from atomscount.tomo import reconstruct

    haadf, edxs = _graptor(*cfg["public_bin"])
    res = {"shape_binned": list(haadf.images.shape), "counts_max": {e: float(s.images.max()) for e, s in edxs.items()}}
    mm, seconds, warned = _quiet(reconstruct_elemental, haadf, edxs, progress=False)  # all its defaults
    sep, sep_seconds, _ = _quiet(reconstruct_separate, edxs)
    res.update({"seconds": seconds, "separate_seconds": sep_seconds, "warnings": warned,
                "converged": bool(mm.converged), "gamma": mm.gamma, "haadf_weights": mm.haadf_weights,
                "regularisation": _plain(mm.regularisation), "mask_voxels": int(mm.mask.sum())})  # fmt: skip
    res["chi2_per_pixel_multimodal"] = _chi2(mm, edxs)
    res["chi2_per_pixel_separate"] = _chi2(sep, edxs)
    both = mm.mask & sep.mask
    res["concentration_corr_with_separate"] = {
        e: float(np.corrcoef(mm.concentration[i][both], sep.concentration[i][both])[0, 1]) for i, e in
        enumerate(mm.elements)}  # fmt: skip
    vol = reconstruct(haadf, n_iter=50, progress=False).data
    if mm.haadf_weights and mm.density is not None and vol.shape == mm.shape:
        w = np.array([mm.haadf_weights[e] for e in mm.elements])
        model = np.tensordot(w, mm.concentration * mm.density[None], axes=1)
        res["haadf_model_corr_with_haadf_sirt"] = float(np.corrcoef(model[mm.mask], vol[mm.mask])[0, 1])
    return res


# --- the facts of a map ---


def _count_facts(name, a) -> dict:
    """What a map holds: range, and whether its values (or 255 times them, an 8-bit scaling) are whole counts."""
    a = np.asarray(a, dtype=np.float64)
    whole = float(np.mean(np.isclose(a, np.round(a), atol=1e-6)))
    whole255 = float(np.mean(np.isclose(255 * a, np.round(255 * a), atol=1e-4)))
    return {"map": name, "shape": list(a.shape), "min": float(a.min()), "max": float(a.max()),
            "fraction_whole_numbers": whole, "fraction_whole_after_x255": whole255}  # fmt: skip


def _bin(a, k, axes):
    for ax in axes:
        n = a.shape[ax] // k * k
        a = np.take(a, np.arange(n), axis=ax)
        shp = list(a.shape)
        shp[ax : ax + 1] = [n // k, k]
        a = a.reshape(shp).mean(axis=ax + 1)
    return a


# --- Han et al. 2021 nanorod (processed, 3D) ---


def _tilt_axis(x):
    """Which image axis (1: rows, 2: columns) is the tilt axis: along it, each projection's profile (the sum
    over the other axis) is the same at every tilt. Returns the axis and each candidate's spread."""
    spread = {}
    for ax, other in ((1, 2), (2, 1)):
        prof = x.sum(axis=other)
        spread[ax] = float(np.mean(prof.std(axis=0)) / max(np.mean(prof), 1e-30))
    return min(spread, key=spread.get), spread


def _align_reference(ref, maps, angles, voxel):
    """The reference volume's axes and rotation about the tilt axis that best reproduce the maps: ``ref``'s
    axis that is the tilt axis (its profile against the maps' mean profile), the order of the other two, and
    an offset φ added to the angles (5° grid), by the correlation of the reprojected reference with the maps;
    then the tilt step checked on a grid around the assumed one (same offset logic)."""
    from atomscount.tomo.operators import project_volume

    target = maps.mean(axis=0).sum(axis=1)  # the profile along the tilt axis
    best_y = max(
        ((ax, flip) for ax in range(3) for flip in (False, True)),
        key=lambda af: _corr(np.flip(ref.sum(axis=tuple(i for i in range(3) if i != af[0])), 0) if af[1] else
                             ref.sum(axis=tuple(i for i in range(3) if i != af[0])), target) or -1,
    )  # fmt: skip
    ax, flip = best_y
    others = [i for i in range(3) if i != ax]
    results = []
    for order in (others, others[::-1]):
        vol = np.transpose(ref, (order[0], ax, order[1]))
        vol = np.flip(vol, 1) if flip else vol
        for phi in np.arange(0.0, 360.0, 5.0):
            c = _corr(project_volume(vol, angles + phi, voxel), maps)
            results.append((c if c is not None else -1.0, tuple(order), float(phi)))
    c, order, phi = max(results)
    vol = np.transpose(ref, (order[0], ax, order[1]))
    vol = np.flip(vol, 1) if flip else vol
    step0 = float(np.median(np.diff(angles)))
    mid = float(np.mean(angles))
    steps = {}
    for step in step0 * np.array([0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5]):
        ang = mid + (angles - mid) * step / step0
        steps[round(float(step), 2)] = max(
            _corr(project_volume(vol, ang + phi + d, voxel), maps) or -1.0 for d in (-5.0, -2.5, 0.0, 2.5, 5.0)
        )
    return vol, {"tilt_axis_of_reference": int(ax), "flipped": bool(flip), "order": list(order),
                 "angle_offset_degrees": phi, "reprojection_corr": c,
                 "reprojection_corr_by_tilt_step": steps,
                 "best_tilt_step_degrees": max(steps, key=steps.get)}  # fmt: skip


def run_han(cfg) -> dict:
    import scipy.io
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    from atomscount.elemental import estimate_map_noise
    from atomscount.elemental.reconstruct import reconstruct_elemental
    from atomscount.tomo import TiltSeries
    from atomscount.tomo.operators import project_volume

    folder = PUBLIC / "han2021_nanorod"
    mat = scipy.io.loadmat(folder / "STEM_EDX_input.mat")
    x = np.moveaxis(np.asarray(mat["input"], dtype=np.float64), -1, 0)  # (13, 256, 256)
    res = {"facts": _count_facts("input", x), "mat_header": str(mat.get("__header__", b""))[:200],
           "angles_assumed_degrees": "-60 to 60 in 10° steps (not in the files)"}  # fmt: skip
    k = cfg.get("han_bin", 4 if tuple(cfg["public_bin"]) == (2, 8) else 2)
    x = _bin(x, k, (1, 2))
    angles = np.linspace(-60.0, 60.0, x.shape[0])
    voxel = 1.0  # pixel size unknown: 1 (arbitrary units)
    gt = np.asarray(scipy.io.loadmat(folder / "HAADF_STEM_ground_truth.mat")["label"], dtype=np.float64)
    ref = _bin(gt, k, (0, 1, 2))
    n = max(*ref.shape, *x.shape[1:])
    ref = np.pad(ref, [(0, n - s) for s in ref.shape])
    # the tilt axis: the image axis along which each projection's profile is the same at every tilt (a rod that
    # turns about its own axis leaves both the same, so the HAADF reference's reprojection decides)
    axis, spread = _tilt_axis(x)
    fits = {}
    for ax in (1, 2):
        maps = x if ax == 1 else np.swapaxes(x, 1, 2)
        fits[ax] = _align_reference(ref, maps, angles, voxel)
    axis = max(fits, key=lambda a: fits[a][1]["reprojection_corr"])
    res["tilt_axis"] = {"image_axis": "rows" if axis == 1 else "columns", "profile_spread": spread,
                        "reprojection_corr": {("rows" if a == 1 else "columns"): f[1]["reprojection_corr"]
                                              for a, f in fits.items()}}  # fmt: skip
    if axis == 2:
        x = np.swapaxes(x, 1, 2)  # the tilt axis along the rows (y)
    aligned, geo = fits[axis]
    res["haadf_reference_alignment"] = geo
    edx = TiltSeries(x, angles, voxel, {"source": "han2021 STEM_EDX_input.mat", "binned": k})
    res["shape_binned"] = list(x.shape)
    res["noise_sigma_estimate"] = estimate_map_noise(x)
    vol, seconds, warned = _quiet(reconstruct_elemental, None, {"EDX": edx}, progress=False)  # every default
    reg = vol.regularisation
    res.update({"defaults": "ran", "method": vol.method, "seconds": seconds, "warnings": warned,
                "converged": bool(vol.converged), "likelihood": reg.get("likelihood", "poisson"),
                "mu": reg["mu"], "rule": reg["rule"], "final_chi2": reg["final_deviance"],
                "target_chi2": reg["target_deviance"],
                "chi2_per_pixel": vol.provenance.get("chi2_per_pixel"),
                "mask_voxels": int(vol.mask.sum())})  # fmt: skip
    nm = vol.provenance.get("map_noise_model", {}).get("EDX")
    res["noise_model"] = nm
    if nm and nm["variance_per_unit"] > 0:  # scaled counts: a map value m holds about m / c counts
        res["effective_counts_per_pixel_on_rod"] = float(np.mean(x[x > 0.1 * x.max()]) / nm["variance_per_unit"])
    # the maps' residual where the rod is (the χ² above is over the pixels with signal near them)
    model = project_volume(vol.density, angles, voxel) * vol.provenance["map_scale"]
    on = x > 0.1 * x.max()
    if nm:  # against the noise model's variance a + c m (m the 3x3 local mean), as the fit weighs them
        var = nm["variance_floor"] + nm["variance_per_unit"] * np.maximum(ndimage.uniform_filter(x, (1, 3, 3)), 0)
        res["chi2_per_pixel_on_rod"] = float(np.mean((model - x)[on] ** 2 / np.maximum(var[on], 1e-300)))
    res["chi2_per_pixel_on_rod_constant_sigma"] = float(
        np.mean((model - x)[on] ** 2) / res["noise_sigma_estimate"] ** 2
    )
    res["model_corr_with_maps"] = _corr(model, x)
    # the aligned HAADF volume in our frame: rotated by the offset about the tilt axis
    aligned = ndimage.rotate(aligned, -geo["angle_offset_degrees"], axes=(0, 2), reshape=False, order=1)
    if aligned.shape == vol.shape:
        res["volume_corr_with_haadf"] = _corr(vol.density, aligned)
        m_ref = aligned > threshold_otsu(aligned)
        inter = float((m_ref & vol.mask).sum())
        res["mask_dice_with_haadf"] = 2 * inter / max(float(m_ref.sum() + vol.mask.sum()), 1.0)
        res["mask_voxels_haadf"] = int(m_ref.sum())
        res["radius_voxels"] = {"ours": _rod_radius(vol.mask), "haadf": _rod_radius(m_ref)}
        # the same least squares without regularisation (μ = 0), for scale
        from atomscount.elemental import reconstruct_maps

        plain, plain_s, _ = _quiet(reconstruct_maps, None, {"EDX": edx}, weights=0.0, progress=False)
        inter0 = float((m_ref & plain.mask).sum())
        res["unregularised"] = {"seconds": plain_s, "volume_corr_with_haadf": _corr(plain.density, aligned),
                                "mask_dice_with_haadf": 2 * inter0 / max(float(m_ref.sum() + plain.mask.sum()), 1.0),
                                "radius_voxels": _rod_radius(plain.mask)}  # fmt: skip
    else:
        res["volume_corr_with_haadf"] = f"shapes differ: {aligned.shape} against {vol.shape}"
    return res


def _rod_radius(mask):
    """The rod's mean radius [voxels] from its cross-section area per slice along the tilt axis (y)."""
    area = mask.sum(axis=(0, 2)).astype(float)
    full = area > 0.5 * area.max() if area.max() > 0 else area > 0
    return float(np.sqrt(np.mean(area[full]) / np.pi)) if full.any() else None


# --- fused_2d: ours and multimodal-fusion on the same 2D maps ---


def _fusion_defaults(haadf, maps):
    from multimodal_fusion import DataFusion

    fusion = DataFusion(list(maps))
    fusion.load_chemical_maps({e: m.astype(np.float64).copy() for e, m in maps.items()})
    fusion.load_haadf(haadf.astype(np.float64).copy())
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        fusion.run(plot_images=False, plot_convergence=False)
    out = fusion.get_results()
    # fusion rescales each input map to [0, 1]: its outputs back to the input's range
    return {e: out[e] * (maps[e].max() - maps[e].min()) + maps[e].min() for e in maps}


def _haadf_explained(haadf, outputs):
    """R² of ``haadf ≈ Σ w_e x_e^γ + c`` (w ≥ 0, γ in [0.4, 1.6]) fitted to the output maps, and γ."""
    from atomscount.elemental.maps import _fit_haadf

    p = np.stack([np.maximum(o, 0.0) for o in outputs.values()])[:, None]
    w, c, gamma = _fit_haadf(p, haadf[None], 1.0, True, None)
    model = np.tensordot(w, np.maximum(p[:, 0], 0) ** gamma, axes=1) + c
    return {"r2": float(1 - np.sum((haadf - model) ** 2) / np.sum((haadf - haadf.mean()) ** 2)), "gamma": gamma}


def _scores(haadf, maps, outputs, sigma):
    from atomscount.elemental import estimate_map_noise

    per = {}
    for e, m in maps.items():
        o = outputs[e]
        per[e] = {"chi2_per_pixel_vs_input": float(np.mean((o - m) ** 2) / sigma[e] ** 2),
                  "corr_with_input": _corr(o, m), "noise_in": sigma[e],
                  "noise_left": estimate_map_noise(o) if np.any(o) else None}  # fmt: skip
    total = sum(outputs.values())
    return {"per_element": per, "haadf": _haadf_explained(haadf, outputs),
            "sum_of_elements": {"mean": float(total.mean()), "std": float(total.std())}}  # fmt: skip


def _fused_one(name, haadf, maps) -> dict:
    from atomscount.elemental import estimate_map_noise
    from atomscount.elemental.reconstruct import reconstruct_elemental
    from atomscount.tomo import TiltSeries

    res = {"facts": [_count_facts("HAADF", haadf)] + [_count_facts(e, m) for e, m in maps.items()]}
    sigma = {e: estimate_map_noise(m) for e, m in maps.items()}
    series = {e: TiltSeries(m[None], [0.0], 1.0, {"source": name}) for e, m in maps.items()}
    ours, seconds, warned = _quiet(reconstruct_elemental, TiltSeries(haadf[None], [0.0], 1.0), series,
                                   progress=False)  # fmt: skip
    scale = ours.provenance["map_scale"]
    u = ours.concentration[:, 0] * ours.density[0][None]
    out_ours = {e: scale * u[i] for i, e in enumerate(ours.elements)}  # the model of each map (the slab's value)
    res["ours"] = {"seconds": seconds, "warnings": warned, "converged": bool(ours.converged),
                   "method": ours.method, "likelihood": ours.regularisation.get("likelihood"),
                   "mu": ours.regularisation["mu"], "rule": ours.regularisation["rule"], "gamma": ours.gamma,
                   "noise_model": ours.provenance.get("map_noise_model"),
                   "chi2_final_over_target": ours.regularisation["final_deviance"]
                   / ours.regularisation["target_deviance"],
                   **_scores(haadf, maps, out_ours, sigma)}  # fmt: skip
    conc = {e: ours.concentration[i, 0] for i, e in enumerate(ours.elements)}
    res["ours"]["concentration_mean"] = {e: float(c[ours.mask[0]].mean()) for e, c in conc.items()}
    try:
        import multimodal_fusion  # noqa: F401
    except ImportError:
        res["fusion_default"] = {"error": "multimodal-fusion is not installed: pip install atomscount[bench]"}
        return res
    try:
        out_f, seconds_f, warned_f = _quiet(_fusion_defaults, haadf, maps)
        res["fusion_default"] = {"seconds": seconds_f, "warnings": warned_f[:5],
                                 "settings": "DataFusion(elements) defaults: gamma 1.6, nIter 50, lambdaEDS 0.005, "
                                             "lambdaTV 0.1", **_scores(haadf, maps, out_f, sigma)}  # fmt: skip
    except Exception as exc:
        res["fusion_default"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        traceback.print_exc()
    return res


def run_fused(cfg) -> dict:
    import h5py

    out = {}
    pto = PUBLIC / "fused_2d" / "PTO_Trilayer_dataset.npz"
    if pto.is_file():
        d = np.load(pto)
        out["pto"] = _fused_one("PTO_Trilayer_dataset.npz", np.asarray(d["HAADF"], np.float64),
                                {e: np.asarray(d[e], np.float64) for e in ("Sc", "Dy", "O")})  # fmt: skip
    co = PUBLIC / "fused_2d" / "Co3O4_Mn3O4.h5"
    if co.is_file():
        with h5py.File(co) as f:
            d = {k: np.asarray(f[k], dtype=np.float64) for k in ("HAADF", "Co", "Mn", "O")}
        out["co3o4"] = _fused_one("Co3O4_Mn3O4.h5", d.pop("HAADF"), d)
    return out


# --- driver ---

_RUNNERS = {"graptor": (run_graptor, "graptor_yb_al_si"), "han": (run_han, "han2021_nanorod"),
            "fused": (run_fused, "fused_2d")}  # fmt: skip
_KEYS = {"graptor": "graptor", "han": "han2021_nanorod", "fused": "fused_2d"}


def run(cfg, out, save, sets=SETS) -> None:
    """Each set's figures into ``out["public"][key]`` (kept for the sets not run), saving after each."""
    public = out.get("public") if isinstance(out.get("public"), dict) else {}
    public.pop("error", None)
    for legacy in ("fused_2d_pto", "fused_2d_co3o4"):  # the refusals recorded before the least-squares path
        public.pop(legacy, None)
    out["public"] = public
    for name in sets:
        fn, folder = _RUNNERS[name]
        if not (PUBLIC / folder).is_dir():
            public[_KEYS[name]] = {"error": f"public data not found in {PUBLIC / folder}: skipped"}
            print(public[_KEYS[name]]["error"], flush=True)
            save()
            continue
        t0 = time.perf_counter()
        try:
            public[_KEYS[name]] = {**fn(cfg), "set_seconds": time.perf_counter() - t0}
        except Exception as exc:  # one failed set leaves the others' figures
            public[_KEYS[name]] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
            traceback.print_exc()
        print(f"public {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        save()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_elemental.json")
    ap.add_argument("--quick", action="store_true", help="coarser binning (graptor 2x8, Han 4x4)")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated sets of {SETS}")
    args = ap.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if set(sets) - set(SETS):
        ap.error(f"--sets must be among {SETS}, got {args.sets!r}")
    cfg = {"public_bin": (2, 8) if args.quick else (1, 4), "han_bin": 4 if args.quick else 2}
    mine = {}

    def save():
        # merge into the file as it is now (other parts of the benchmark write it too)
        disk = json.loads(args.out.read_text()) if args.out.is_file() else {}
        public = disk.get("public") if isinstance(disk.get("public"), dict) else {}
        for legacy in ("error", "fused_2d_pto", "fused_2d_co3o4"):
            public.pop(legacy, None)
        public.update({k: v for k, v in mine["public"].items() if k in {_KEYS[s] for s in sets}})
        disk["public"] = public
        runs = disk.setdefault("parts_run", {}).get("public_sets", {})
        runs = {k: v for k, v in runs.items() if k in SETS}  # one entry per set: its last run's settings
        runs.update({name: {"quick": args.quick, "started": started, **cfg} for name in sets})
        disk["parts_run"]["public_sets"] = runs
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".json.partial")
        tmp.write_text(json.dumps(_plain(disk), indent=1) + "\n")
        tmp.replace(args.out)

    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    run(cfg, mine, save, sets)
    print(json.dumps(_plain(mine["public"]), indent=1)[:6000])
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
