"""The EDXS denoiser's network, its training data and its shipped weights (atomscount.elemental._net, .shapes,
.train)."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.signal import correlate

from atomscount.elemental import _net
from atomscount.elemental.shapes import COMPOSITIONS, HELD_OUT_SEED, SHAPES, random_particle, training_maps


def test_training_maps_are_reproducible_from_a_seed_and_scaled_to_their_dose():
    a = training_maps(HELD_OUT_SEED, 4, size=32)
    b = training_maps(HELD_OUT_SEED, 4, size=32)
    c = training_maps(HELD_OUT_SEED + 1, 4, size=32)
    for key in ("noisy", "clean", "dose"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["clean"], c["clean"])
    assert a["noisy"].shape == a["clean"].shape == (4, 32, 32)
    np.testing.assert_array_equal(a["noisy"], np.round(a["noisy"]))  # Poisson counts
    for clean, dose in zip(a["clean"], a["dose"], strict=True):
        assert _net.map_dose(clean) == pytest.approx(dose, rel=1e-9)
        assert 0.5 <= dose <= 100.0
    fixed = training_maps(HELD_OUT_SEED, 3, size=32, dose_range=(3.0, 3.0), absent_fraction=0.0)
    np.testing.assert_allclose(fixed["dose"], 3.0)


def test_absent_elements_have_all_zero_maps():
    data = training_maps(HELD_OUT_SEED, 6, size=16, absent_fraction=1.0)
    absent = [i for i, info in enumerate(data["info"]) if info["element"] not in info["elements"]]
    assert absent
    for i in absent:
        assert data["dose"][i] == 0.0 and not data["clean"][i].any() and not data["noisy"][i].any()


@pytest.mark.parametrize("kind", SHAPES)
def test_every_shape_is_a_particle_inside_the_box_at_bulk_density(kind):
    from atomscount.elemental.phantoms import ATOMIC_DENSITY

    dens, info = random_particle(3, shape=(32, 32, 32), kind=kind, composition="solid", elements=("Au",))
    rho = dens["Au"]
    assert info["kind"] == kind and rho.max() == pytest.approx(ATOMIC_DENSITY["Au"])
    assert (rho >= 0).all() and (rho > 0).sum() > 50
    assert not rho[[0, -1]].any() and not rho[:, [0, -1]].any() and not rho[:, :, [0, -1]].any()


@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_compositions_hold_their_elements_at_a_bulk_total_density(composition):
    from atomscount.elemental.phantoms import ATOMIC_DENSITY

    dens, info = random_particle(5, shape=(24, 24, 24), composition=composition)
    assert sorted(dens) == sorted(info["elements"])
    assert all(d.sum() > 0 for d in dens.values()) or composition in ("janus", "gradient")
    total = sum(dens.values())
    inside = total > 0.999 * total.max()
    lo, hi = min(ATOMIC_DENSITY.values()), max(ATOMIC_DENSITY.values())
    assert inside.any() and lo * 0.999 <= total[inside].min() and total.max() <= hi * 1.001


def test_random_particle_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind must be one of"):
        random_particle(0, kind="torus")
    with pytest.raises(ValueError, match="composition must be one of"):
        random_particle(0, composition="onion")
    with pytest.raises(ValueError, match="elements must be 2 distinct"):
        random_particle(0, composition="janus", elements=("Au", "Au"))
    with pytest.raises(ValueError, match="dose_range"):
        training_maps(0, 1, dose_range=(3.0, 1.0))


def test_map_dose_is_the_mean_count_over_the_thick_part():
    m = np.zeros((40, 40))
    m[10:30, 10:30] = 3.0
    assert _net.map_dose(m) == pytest.approx(3.0)
    assert _net.map_dose(np.zeros((8, 8))) == 0.0
    assert _net.norm_dose(np.zeros((8, 8))) == _net.DOSE_FLOOR


def test_numpy_convolution_matches_a_direct_correlation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    out = _net.conv2d(x, w, b)
    for n in range(2):
        for o in range(4):
            ref = sum(correlate(x[n, c], w[:, :, c, o], mode="same") for c in range(3)) + b[o]
            np.testing.assert_allclose(out[n, o], ref, rtol=1e-4, atol=1e-4)


def test_jax_and_numpy_forward_passes_agree():
    pytest.importorskip("jax")
    from atomscount.elemental.train import jax_forward

    params = _net.init_params((8, 16, 24), seed=2)
    params = {k: v + 0.05 * np.random.default_rng(3).standard_normal(v.shape).astype(np.float32)
              for k, v in params.items()}  # fmt: skip
    x = _net.network_input(np.random.default_rng(1).poisson(3.0, (2, 24, 40)), [3.0, 1.0])
    np.testing.assert_allclose(np.asarray(jax_forward(params, x)), _net.forward(params, x), rtol=1e-4, atol=1e-5)


def test_shipped_weights_load_and_reproduce_their_stored_output():
    model = _net.load_denoiser()
    meta = model["meta"]
    assert meta["trained_on"] in ("cpu", "gpu") and meta["dose_range"] == [0.5, 100.0]
    assert len(meta["loss_history"]["loss"]) > 1 and "3" in meta["held_out"]
    ref = meta["reference"]
    mean, sigma = _net.predict(ref["input"], model=model)
    np.testing.assert_allclose(mean, ref["mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sigma, ref["sigma"], rtol=1e-4, atol=1e-5)
    assert mean.shape == ref["input"].shape and (mean >= 0).all() and (sigma > 0).all()


def test_shipped_metadata_accounts_for_every_training_run():
    meta = _net.load_denoiser()["meta"]
    hist = meta["loss_history"]
    steps = np.asarray(hist["step"])
    assert (np.diff(steps) > 0).all() and steps[-1] == meta["steps"]
    assert np.all(np.diff(hist["seconds"]) >= 0)
    np.testing.assert_allclose(hist["seconds"][-1], meta["training_seconds"], rtol=0.01)
    runs = meta.get("runs", [])
    if runs:  # a continued training: its runs add up to the totals
        assert sum(r["steps"] for r in runs) == meta["steps"]
        np.testing.assert_allclose(sum(r["training_seconds"] for r in runs), meta["training_seconds"], rtol=1e-9)
    for dose in ("1", "3", "10", "30"):
        scores = meta["held_out"][dose]
        assert scores["psnr_network"] > scores["psnr_gaussian"]


def test_network_beats_a_truth_tuned_gaussian_filter_on_held_out_maps():
    data = training_maps(HELD_OUT_SEED + 7, 6, size=48, dose_range=(3.0, 3.0), absent_fraction=0.0)
    mean, _ = _net.predict(data["noisy"])
    net_mse = np.mean((mean - data["clean"]) ** 2)
    gauss_mse = min(np.mean((gaussian_filter(data["noisy"], (0, s, s)) - data["clean"]) ** 2)
                    for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0))  # fmt: skip
    assert net_mse < 0.8 * gauss_mse


def test_an_absent_element_stays_absent():
    mean, sigma = _net.predict(np.zeros((3, 40, 40)))
    assert mean.max() < 0.05 * _net.DOSE_FLOOR and (sigma >= 0).all()


def test_predict_keeps_the_shape_of_single_maps_and_stacks_and_rejects_bad_counts():
    rng = np.random.default_rng(0)
    one = rng.poisson(2.0, (21, 35)).astype(float)
    mean, sigma = _net.predict(one)
    assert mean.shape == sigma.shape == (21, 35)
    stack_mean, _ = _net.predict(np.stack([one, one]), batch=1)
    np.testing.assert_allclose(stack_mean[1], mean, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="counts must be finite and >= 0"):
        _net.predict(-one)
    with pytest.raises(ValueError, match="counts must be"):
        _net.predict(np.zeros(5))


def test_test_time_augmentation_is_equivariant_to_flips_and_turns():
    x = np.random.default_rng(2).poisson(2.0, (21, 35)).astype(float)
    mean, sigma = _net.predict(x, augment=True)
    turned, _ = _net.predict(np.ascontiguousarray(np.rot90(x)[::-1]), augment=True)
    np.testing.assert_allclose(np.rot90(mean)[::-1], turned, rtol=1e-4, atol=1e-5)
    assert mean.shape == sigma.shape == x.shape and (sigma > 0).all()
    with pytest.raises(TypeError, match="augment"):
        _net.predict(x, augment="yes")


def test_save_and_load_round_trip(tmp_path):
    from atomscount.elemental.train import save_denoiser

    params = _net.init_params((4, 8), seed=0)
    ref = {"input": np.ones((8, 8), np.float32), "mean": np.zeros((8, 8), np.float32)}
    path = save_denoiser({"params": params, "meta": {"dose_range": [0.5, 100.0], "reference": ref}},
                         tmp_path / "m.npz")  # fmt: skip
    loaded = _net.load_denoiser(path)
    assert loaded["meta"]["dose_range"] == [0.5, 100.0]
    np.testing.assert_array_equal(loaded["meta"]["reference"]["input"], ref["input"])
    for k, v in params.items():
        np.testing.assert_array_equal(loaded["params"][k], v)
    with pytest.raises(FileNotFoundError, match="path"):
        _net.load_denoiser(tmp_path / "missing.npz")


def test_supervised_and_noise2noise_training_run_and_lower_the_loss():
    pytest.importorskip("jax")
    from atomscount.elemental.train import train_denoiser

    data = training_maps(0, 8, size=16)
    model, hist = train_denoiser(steps=6, batch=4, data=data, channels=(4, 8), log_every=3, progress=False)
    assert set(model["params"]) == set(_net.init_params((4, 8))) and len(hist["loss"]) == 2
    assert model["meta"]["mode"] == "supervised" and np.isfinite(hist["loss"]).all()
    rng = np.random.default_rng(0)
    truth = np.full((1, 16, 16), 4.0)
    pairs = (rng.poisson(truth), rng.poisson(truth))
    tuned, hist = train_denoiser(steps=2, batch=2, model=model, mode="noise2noise", pairs=pairs, crop=16,
                                 log_every=1, progress=False)  # fmt: skip
    assert tuned["meta"]["mode"] == "noise2noise" and len(hist["loss"]) == 2
    assert not np.array_equal(tuned["params"]["head.w"], model["params"]["head.w"])


def test_training_without_jax_says_how_to_install_it(monkeypatch):
    import importlib.util

    from atomscount.elemental import train

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    with pytest.raises(ImportError, match=r"atomscount\[learn\]"):
        train.train_denoiser(steps=1)


# --- the joint network: each element's map with its projection's total ---


def test_projection_maps_are_reproducible_and_hold_whole_projections():
    from atomscount.elemental.train import projection_maps

    a = projection_maps(HELD_OUT_SEED, 7, size=24)
    b = projection_maps(HELD_OUT_SEED, 7, size=24)
    for key in ("noisy", "clean", "total", "group"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["clean"], projection_maps(HELD_OUT_SEED + 1, 7, size=24)["clean"])
    for g in np.unique(a["group"]):
        idx = np.flatnonzero(a["group"] == g)
        infos = [a["info"][i] for i in idx]
        assert sorted(d["element"] for d in infos) == sorted(infos[0]["elements"])  # every element, once
        assert len({d["tilt_degrees"] for d in infos}) == 1
        for i in idx:
            np.testing.assert_array_equal(a["total"][i], a["noisy"][idx].sum(axis=0))
            np.testing.assert_allclose(a["total_clean"][i], a["clean"][idx].sum(axis=0))


def test_a_widened_network_computes_the_single_map_output_whatever_the_total():
    single = _net.load_denoiser()
    joint = {"params": _net.widen_to_joint(single["params"]), "meta": single["meta"]}
    assert _net.is_joint(joint["params"]) and not _net.is_joint(single["params"])
    x = np.random.default_rng(4).poisson(3.0, (2, 20, 36)).astype(float)
    total = x + np.random.default_rng(5).poisson(9.0, x.shape)
    ref, _ = _net.predict(x, model=single)
    np.testing.assert_array_equal(_net.predict(x, model=joint, total=total)[0], ref)


def test_joint_jax_and_numpy_forward_passes_agree():
    pytest.importorskip("jax")
    from atomscount.elemental.train import jax_forward

    params = _net.init_params((8, 16), seed=2, joint=True)
    rng = np.random.default_rng(1)
    x = _net.network_input(rng.poisson(3.0, (2, 16, 24)), [3.0, 1.0], rng.poisson(9.0, (2, 16, 24)), [9.0, 4.0])
    assert x.shape == (2, 4, 16, 24)
    np.testing.assert_allclose(np.asarray(jax_forward(params, x)), _net.forward(params, x), rtol=1e-4, atol=1e-5)


def test_shipped_joint_weights_load_and_reproduce_their_stored_output():
    model = _net.load_denoiser(joint=True)
    meta = model["meta"]
    assert _net.is_joint(model["params"]) and meta["architecture"]["joint"] is True
    assert meta["dose_range"] == [0.5, 100.0] and "3" in meta["held_out"]
    assert meta["warm_start"]["weights"] == "edxs_denoiser.npz"
    ref = meta["reference"]
    mean, sigma = _net.predict(ref["input"], model=model, total=ref["total"])
    np.testing.assert_allclose(mean, ref["mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sigma, ref["sigma"], rtol=1e-4, atol=1e-5)
    steps = np.asarray(meta["loss_history"]["step"])
    assert (np.diff(steps) > 0).all() and steps[-1] == meta["steps"]


def test_joint_network_beats_a_truth_tuned_gaussian_filter_on_held_out_projections():
    from atomscount.elemental.train import projection_maps

    data = projection_maps(HELD_OUT_SEED + 7, 6, size=48, dose_range=(3.0, 3.0))
    mean, _ = _net.predict(data["noisy"], model=_net.load_denoiser(joint=True), total=data["total"])
    net_mse = np.mean((mean - data["clean"]) ** 2)
    gauss_mse = min(np.mean((gaussian_filter(data["noisy"], (0, s, s)) - data["clean"]) ** 2)
                    for s in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0))  # fmt: skip
    assert net_mse < 0.8 * gauss_mse


def test_joint_network_keeps_an_absent_element_absent_beside_a_particle():
    from atomscount.elemental.train import projection_maps

    data = projection_maps(HELD_OUT_SEED + 8, 4, size=48, dose_range=(10.0, 10.0))
    model = _net.load_denoiser(joint=True)
    zeros = np.zeros_like(data["noisy"])
    mean, sigma = _net.predict(zeros, model=model, total=data["total"])  # the totals show particles
    assert data["total"].max() >= 10 and mean.max() < 0.05 and (sigma >= 0).all()


def test_predict_needs_a_total_for_a_joint_model_and_only_then():
    x = np.random.default_rng(0).poisson(2.0, (2, 16, 16))
    with pytest.raises(ValueError, match="total must be given for a joint model"):
        _net.predict(x, model=_net.load_denoiser(joint=True))
    with pytest.raises(ValueError, match="total must be given"):
        _net.predict(x, total=x)
    with pytest.raises(ValueError, match="total must have counts' shape"):
        _net.predict(x, model=_net.load_denoiser(joint=True), total=np.zeros((3, 16, 16)))
    one, _ = _net.predict(x, model=_net.load_denoiser(joint=True), total=x[0])  # one total for every map
    assert one.shape == x.shape


def test_joint_training_runs_from_a_widened_single_map_network():
    pytest.importorskip("jax")
    from atomscount.elemental.train import projection_maps, train_denoiser

    data = projection_maps(0, 8, size=16)
    start = {"params": _net.init_params((4, 8), seed=0), "meta": {}}
    model, hist = train_denoiser(steps=3, batch=4, data=data, model=start, joint=True, log_every=3, progress=False)
    assert _net.is_joint(model["params"]) and model["meta"]["architecture"]["joint"] and np.isfinite(hist["loss"]).all()
    with pytest.raises(ValueError, match="group"):
        train_denoiser(steps=1, data={"clean": data["clean"], "dose": data["dose"]}, joint=True, progress=False)
