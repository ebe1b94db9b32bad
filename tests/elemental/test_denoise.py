"""denoise_edxs and its baselines against the truth, bad input, the hallucination checks, the CLI and fine-tuning."""

import importlib.util

import numpy as np
import pytest

from atomscount.elemental.denoise import DENOISE_METHODS, DenoisedMaps, denoise_edxs, denoise_series, split_counts

HAS_JAX = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("optax") is not None


def _sphere(n=48, radius=15.0, peak=3.0, centre=None):
    """Expected counts of a projected solid sphere: ``peak`` counts at the centre, its chord length's profile."""
    y, x = np.mgrid[:n, :n]
    cy, cx = ((n - 1) / 2,) * 2 if centre is None else centre
    r2 = ((x - cx) ** 2 + (y - cy) ** 2) / radius**2
    return peak * np.sqrt(np.clip(1.0 - r2, 0.0, None))


def _core_shell(n=48, peak=3.0):
    """Two elements' expected counts: an Au core of radius 9 px inside an Ag shell of radius 16 px."""
    outer, core = _sphere(n, 16.0, peak), _sphere(n, 9.0, peak * 9 / 16)
    return {"Au": core, "Ag": outer - core}


def _psnr(estimate, truth):
    return 10 * np.log10(truth.max() ** 2 / np.mean((estimate - truth) ** 2))


def _radial(m, n_bins=16, radius=15.0):
    y, x = np.mgrid[: m.shape[0], : m.shape[1]]
    r = np.hypot(x - (m.shape[1] - 1) / 2, y - (m.shape[0] - 1) / 2) / radius
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.array([m[(r >= a) & (r < b)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])


def _has_shell(m, radius=15.0, tolerance=0.1):
    """A rim brighter than the core: some annulus between half the radius and the edge exceeds the mean of the
    inner third by more than ``tolerance`` of it (a solid sphere's projection falls monotonically outward)."""
    prof = _radial(m, radius=radius)
    core = prof[: len(prof) // 3].mean()
    return bool(np.max(prof[len(prof) // 2 :]) > (1 + tolerance) * core)


# --- the classical methods ---


@pytest.mark.parametrize("method", ["gaussian", "tv", "bm3d"])
@pytest.mark.parametrize("peak", [3.0, 30.0])
def test_classical_methods_recover_a_particle_better_than_the_noisy_map(method, peak):
    truth = _core_shell(peak=peak)
    rng = np.random.default_rng(1)
    noisy = {e: rng.poisson(t) for e, t in truth.items()}
    out = denoise_edxs(noisy, method=method)
    assert out.elements == ("Au", "Ag") and out.maps.shape == (2, 48, 48) and out.method == method
    for e, t in truth.items():
        assert _psnr(out[e], t) > _psnr(noisy[e], t) + 5.0, e  # a large gain at these doses
    assert (out.sigma is None) == (method != "gaussian")
    assert out.parameters["strength_auto"] and out.parameters["strength"].shape == (2,)


def test_gaussian_width_by_pure_is_near_the_truth_tuned_width():
    truth = _sphere(64, 20.0, 3.0)
    noisy = np.random.default_rng(2).poisson(truth)
    auto = denoise_edxs(noisy, method="gaussian")
    widths = np.geomspace(0.5, 8, 25)
    tuned = max(widths, key=lambda w: _psnr(denoise_edxs(noisy, method="gaussian", strength=w).maps, truth))
    assert abs(np.log(auto.parameters["strength"] / tuned)) < np.log(1.6)
    best = _psnr(denoise_edxs(noisy, method="gaussian", strength=tuned).maps, truth)
    assert _psnr(auto.maps, truth) > best - 0.5


def test_gaussian_sigma_is_the_propagated_poisson_noise():
    truth = np.full((40, 40), 5.0)
    rng = np.random.default_rng(3)
    outs = np.stack([denoise_edxs(rng.poisson(truth), method="gaussian", strength=2.0).maps for _ in range(200)])
    sig = denoise_edxs(rng.poisson(truth), method="gaussian", strength=2.0).sigma
    np.testing.assert_allclose(np.median(sig[10:30, 10:30]), outs[:, 10:30, 10:30].std(axis=0).mean(), rtol=0.1)


def test_a_stack_keeps_its_layout_and_a_strength_applies_to_every_map():
    rng = np.random.default_rng(4)
    stack = rng.poisson(np.stack([_sphere(32, 10.0, p) for p in (2.0, 5.0, 9.0)]))
    out = denoise_edxs(stack, method="tv", strength=0.7)
    assert out.maps.shape == stack.shape and out.elements is None and out.dose.shape == (3,)
    np.testing.assert_array_equal(out.parameters["strength"], [0.7] * 3)
    assert not out.parameters["strength_auto"]
    one = denoise_edxs(stack[1], method="tv", strength=0.7)
    np.testing.assert_allclose(one.maps, out.maps[1])
    assert one.dose.shape == ()


# --- bad input ---


@pytest.mark.parametrize("bad, match", [(-1.0, "negative"), (np.nan, "NaN"), (0.5, "whole X-ray counts")])
def test_non_counts_are_refused_naming_the_map(bad, match):
    m = np.random.default_rng(5).poisson(np.full((16, 16), 2.0)).astype(float)
    m[3, 4] = bad
    with pytest.raises(ValueError, match=match) as err:
        denoise_edxs({"Au": np.ones((16, 16)), "Ag": m}, method="gaussian")
    assert "maps['Ag']" in str(err.value)
    with pytest.raises(ValueError, match=f"maps .*{match}|maps holds.*{match}"):
        denoise_edxs(m, method="gaussian")


def test_elements_of_different_shapes_are_refused_naming_the_element():
    with pytest.raises(ValueError, match=r"maps\['Ag'\] has shape \(16, 17\), but maps\['Au'\] has \(16, 16\)"):
        denoise_edxs({"Au": np.ones((16, 16)), "Ag": np.ones((16, 17))}, method="gaussian")


@pytest.mark.parametrize("kw, err, match", [({"method": "median"}, ValueError, "method"),
                                            ({"strength": -1.0}, ValueError, "strength"),
                                            ({"tta": "yes"}, TypeError, "tta"),
                                            ({"dose": [1.0, 2.0]}, ValueError, "dose")])  # fmt: skip
def test_bad_options_are_refused_by_name(kw, err, match):
    with pytest.raises(err, match=match):
        denoise_edxs(np.ones((16, 16)), **{"method": "gaussian", **kw})


def test_maps_of_the_wrong_type_or_rank_are_refused():
    with pytest.raises(TypeError, match="maps"):
        denoise_edxs("counts.h5")
    with pytest.raises(ValueError, match="maps must be a map"):
        denoise_edxs(np.ones(16), method="gaussian")


# --- the network and its honesty ---


@pytest.fixture(scope="module")
def network_maps():
    """A core-shell pair and a solid sphere at 3 counts per pixel, with an absent element."""
    rng = np.random.default_rng(6)
    truth = {**_core_shell(), "Pt": np.zeros((48, 48))}
    return truth, {e: rng.poisson(t) for e, t in truth.items()}


def test_network_denoises_better_than_the_auto_gaussian(network_maps):
    truth, noisy = network_maps
    net = denoise_edxs(noisy)
    gauss = denoise_edxs(noisy, method="gaussian")
    assert net.method == "network" and net.sigma.shape == net.maps.shape and np.all(net.sigma >= 0)
    for e in ("Au", "Ag"):
        assert _psnr(net[e], truth[e]) > _psnr(gauss[e], truth[e]), e


def test_an_absent_element_stays_absent(network_maps):
    _, noisy = network_maps
    for method in DENOISE_METHODS:
        out = denoise_edxs(noisy, method=method)
        assert out["Pt"].max() < 0.05, method  # no counts in, (nearly) none out


@pytest.mark.parametrize("peak", [1.0, 3.0, 10.0, 30.0])
def test_a_solid_particle_gains_no_shell(peak):
    rng = np.random.default_rng(int(peak * 10))
    truth = _sphere(48, 15.0, peak)
    assert not _has_shell(truth)
    noisy = np.stack([rng.poisson(truth) for _ in range(4)])
    out = denoise_edxs(noisy)
    shells = [_has_shell(m) for m in out.maps]
    assert not any(shells), shells


@pytest.mark.parametrize("peak", [1.0, 3.0, 10.0, 30.0])
def test_a_solid_alloy_gains_no_shell_in_the_joint_network(peak):
    rng = np.random.default_rng(int(peak * 10) + 1)
    truth = _sphere(48, 15.0, peak)
    out = denoise_edxs({"Au": rng.poisson(truth), "Ag": rng.poisson(0.6 * truth), "Pd": rng.poisson(truth)})
    assert out.parameters["network"] == "joint"
    shells = [_has_shell(m) for m in out.maps]
    assert not any(shells), shells


def test_the_network_is_joint_for_several_elements_and_single_map_otherwise(network_maps):
    from atomscount.elemental import _net

    _, noisy = network_maps
    both = denoise_edxs({"Au": noisy["Au"], "Ag": noisy["Ag"]})
    assert both.parameters["network"] == "joint"
    assert denoise_edxs(noisy["Au"]).parameters["network"] == "single-map"
    assert denoise_edxs({"Au": noisy["Au"]}).parameters["network"] == "single-map"
    single = denoise_edxs({"Au": noisy["Au"], "Ag": noisy["Ag"]}, joint=False)
    np.testing.assert_allclose(single["Au"], denoise_edxs(noisy["Au"]).maps)
    # the joint network sees each map with the sum of the elements' maps: an array with the elements first works too
    arr = denoise_edxs(np.stack([noisy["Au"], noisy["Ag"]]), joint=True)
    np.testing.assert_allclose(arr.maps, both.maps)
    total = noisy["Au"] + noisy["Ag"]
    ref, _ = _net.predict(np.stack([noisy["Au"], noisy["Ag"]]), model=_net.load_denoiser(joint=True), total=total,
                          margin=_net.FRAME_MARGIN)  # fmt: skip
    alone = denoise_edxs({"Au": noisy["Au"], "Ag": noisy["Ag"]}, blend=1.0)
    np.testing.assert_allclose(alone.maps, np.maximum(ref, 0.0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="joint=True needs several elements"):
        denoise_edxs(noisy["Au"], joint=True)
    with pytest.raises(ValueError, match="model is a single-map network"):
        denoise_edxs(noisy, joint=True, model=_net.load_denoiser())


def test_the_shell_check_finds_a_shell():
    outer, inner = _sphere(48, 15.0, 3.0), _sphere(48, 10.0, 2.0)
    assert _has_shell(outer - inner)


def test_test_time_augmentation_undoes_each_flip_and_rotation(network_maps):
    _, noisy = network_maps
    q = noisy["Ag"][:24, :24]
    q = np.triu(q) + np.triu(q, 1).T  # symmetric about the diagonal
    sym = np.block([[q, q[:, ::-1]], [q[::-1], q[::-1, ::-1]]])  # and under every flip and rotation of the square
    plain, tta = denoise_edxs(sym, blend=1.0), denoise_edxs(sym, tta=True, blend=1.0)
    # every pass sees the same input, so the average is the plain output over the eight symmetries: symmetric
    ops = [np.rot90(m, k) for m in (plain.maps, plain.maps[:, ::-1]) for k in range(4)]
    np.testing.assert_allclose(tta.maps, np.mean(ops, axis=0), rtol=1e-5, atol=1e-6)
    for m in (tta.maps.T, tta.maps[::-1], tta.maps[:, ::-1], np.rot90(tta.maps)):
        np.testing.assert_allclose(m, tta.maps, rtol=1e-5, atol=1e-6)
    plain, tta = denoise_edxs(noisy["Au"]), denoise_edxs(noisy["Au"], tta=True)
    assert 0 < np.abs(tta.maps - plain.maps).max() < 0.5 * plain.maps.max()
    assert np.median(tta.sigma) >= 0.9 * np.median(plain.sigma)
    assert tta.parameters["tta"] and not plain.parameters["tta"]


def test_a_dose_outside_the_training_range_warns_naming_the_range():
    from atomscount.elemental import _net

    lo, hi = _net.load_denoiser()["meta"]["dose_range"]
    m = np.random.default_rng(7).poisson(_sphere(32, 10.0, 20 * hi))
    with pytest.warns(UserWarning, match=f"training range of {lo:g} to {hi:g} counts per pixel"):
        denoise_edxs(m)


# --- result, series and the reconstruction ---


def test_result_round_trips_through_hdf5(tmp_path, network_maps):
    _, noisy = network_maps
    out = denoise_edxs(noisy, method="gaussian")
    back = DenoisedMaps.from_hdf5(out.to_hdf5(tmp_path / "d.h5"))
    np.testing.assert_array_equal(back.maps, out.maps)
    np.testing.assert_array_equal(back.sigma, out.sigma)
    assert back.elements == out.elements and back.method == "gaussian"
    np.testing.assert_array_equal(back.parameters["strength"], out.parameters["strength"])
    tv = denoise_edxs(noisy["Au"], method="tv")
    back = DenoisedMaps.from_hdf5(tv.to_hdf5(tmp_path / "t.h5"))
    assert back.sigma is None and back.elements is None
    assert out.summary()["elements"] == ["Au", "Ag", "Pt"]


def test_denoised_series_feed_the_least_squares_reconstruction():
    from atomscount.elemental import phantoms
    from atomscount.elemental.forward import simulate_edxs
    from atomscount.elemental.reconstruct import reconstruct_separate

    truth = phantoms.core_shell_rod(shape=(16, 16, 16), voxel_size_angstrom=3.0)
    angles = np.linspace(-60, 60, 9)
    edxs = simulate_edxs(truth, 3.0, angles, dose_e_per_angstrom2=2e8, rng=0)
    series, result = denoise_series(edxs, method="gaussian")
    assert set(series) == {"Au", "Ag"} and result.elements == ("Au", "Ag")
    assert series["Au"].provenance["noise"] is False and series["Au"].provenance["denoised"]["method"] == "gaussian"
    np.testing.assert_array_equal(series["Au"].angles, edxs["Au"].angles)
    rec = reconstruct_separate(series, n_iter=10)  # non-integer expected counts are accepted
    assert rec.mask.any()


def test_split_counts_gives_two_halves_that_add_up():
    m = np.random.default_rng(8).poisson(np.full((2, 64, 64), 6.0))
    a, b = split_counts(m, rng=0)
    np.testing.assert_array_equal(a + b, m)
    assert abs(a.mean() - 3.0) < 0.1 and abs(np.corrcoef((a - b).ravel(), m.ravel())[0, 1]) < 0.05
    with pytest.raises(ValueError, match="whole X-ray counts"):
        split_counts(m + 0.5)


# --- fine-tuning ---


@pytest.mark.skipif(not HAS_JAX, reason="fine-tuning needs the learn extra (jax, optax)")
def test_finetune_keeps_the_weights_of_the_lowest_held_out_error(network_maps):
    from atomscount.elemental import _net
    from atomscount.elemental.denoise import finetune_denoiser

    _, noisy = network_maps
    a, b = split_counts(np.stack([noisy["Au"], noisy["Ag"]]), rng=1)
    tuned = finetune_denoiser(a, b, steps=4, seed=0)
    val = tuned["meta"]["finetuned"]["validation"]
    assert tuned["meta"]["finetuned"]["steps"] == 4 and tuned["meta"]["finetuned"]["n_maps"] == 1
    assert val["n_maps"] == 1 and val["best_loss"] <= val["start_loss"] and 0 <= val["best_step"] <= 4
    # the held-out map (the last of two): its error with the returned weights is the recorded best
    mean, _ = _net.predict(a[1], model=tuned, margin=_net.FRAME_MARGIN)
    np.testing.assert_allclose(np.mean((mean - b[1]) ** 2), val["best_loss"], rtol=1e-4)
    base = _net.load_denoiser()
    same = all(np.array_equal(base["params"][k], tuned["params"][k]) for k in base["params"])
    assert same == (val["best_step"] == 0)
    out = denoise_edxs(noisy["Au"], model=tuned)
    assert out.maps.shape == (48, 48) and np.all(np.isfinite(out.maps))


def test_finetune_refuses_halves_of_different_shapes():
    from atomscount.elemental.denoise import finetune_denoiser

    with pytest.raises(ValueError, match="maps_a and maps_b"):
        finetune_denoiser(np.ones((2, 16, 16)), np.ones((2, 16, 8)))


# --- the command line ---


@pytest.mark.parametrize("method", ["network", "gaussian"])
def test_cli_denoises_a_series_folder_for_the_reconstruction(tmp_path, method, capsys):
    from atomscount.cli import main
    from atomscount.elemental.forward import simulate_edxs
    from atomscount.elemental.phantoms import core_shell_rod
    from atomscount.tomo import TiltSeries

    series = tmp_path / "series"
    assert main(["elemental", "simulate", "--size", "16", "--voxel-size", "3", "--angles=-60:60:5", "--dose", "1e7",
                 "--seed", "2", "--out", str(series)]) == 0  # fmt: skip
    out = tmp_path / "den"
    assert main(["elemental", "denoise", str(series), "--method", method, "--format", "svg", "--dpi", "50",
                 "--out", str(out)]) == 0  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    assert names == ["atomscount-run.json", "denoised.h5", "edxs_Ag.h5", "edxs_Au.h5", "figures", "haadf.h5",
                     "truth.npz"]  # fmt: skip
    assert (out / "figures" / "denoised_maps.svg").is_file()
    au = TiltSeries.from_hdf5(out / "edxs_Au.h5")
    noisy = TiltSeries.from_hdf5(series / "edxs_Au.h5")
    api = denoise_edxs({"Ag": TiltSeries.from_hdf5(series / "edxs_Ag.h5").images, "Au": noisy.images}, method=method)
    np.testing.assert_allclose(au.images, api["Au"])  # the API's result with its defaults
    assert au.provenance["noise"] is False and au.provenance["denoised"]["method"] == method
    truth = simulate_edxs(core_shell_rod(shape=(16, 16, 16), voxel_size_angstrom=3.0), 3.0, np.linspace(-60, 60, 5),
                          dose_e_per_angstrom2=1e7, noise=False)["Au"].images  # fmt: skip
    assert np.mean((au.images - truth) ** 2) < np.mean((noisy.images - truth) ** 2)
    assert DenoisedMaps.from_hdf5(out / "denoised.h5").method == method
    assert "denoised.h5" in capsys.readouterr().out
    assert main(["elemental", "reconstruct", str(out), "--method", "separate", "--iterations", "5", "--out",
                 str(tmp_path / "rec")]) == 0  # fmt: skip


def test_cli_single_map_uses_the_single_map_network(tmp_path, capsys):
    from atomscount.cli import main
    from atomscount.tomo import TiltSeries

    series = tmp_path / "series"
    assert main(["elemental", "simulate", "--size", "16", "--voxel-size", "3", "--angles=-60:60:3", "--dose", "1e7",
                 "--seed", "3", "--out", str(series)]) == 0  # fmt: skip
    out = tmp_path / "den"
    assert main(["elemental", "denoise", str(series), "--single-map", "--format", "svg", "--dpi", "50",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "(single-map)" in capsys.readouterr().out
    noisy = TiltSeries.from_hdf5(series / "edxs_Au.h5").images
    np.testing.assert_allclose(TiltSeries.from_hdf5(out / "edxs_Au.h5").images, denoise_edxs(noisy).maps)
    assert DenoisedMaps.from_hdf5(out / "denoised.h5").parameters["network"] == "single-map"
