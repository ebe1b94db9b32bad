"""Differentiable phase retrieval: its gradient against finite differences, a noise-free retrieval that
beats TIE, the defocus found from a wrong start, the Fisher uncertainty against the exact Jacobian, the
bad inputs, the expected Poisson deviance and the fall-back to TV when the spectral prior cannot explain a
sharp edge, with the vacuum round the island made flat."""

import numpy as np
import pytest

from atomscount.ltem.forward import fresnel_image
from atomscount.ltem.result import LTEMSeries
from atomscount.ltem.retrieve import _expected_deviance, _fisher_uncertainty, _objective, retrieve_phase
from atomscount.ltem.samples import vortex_disk
from atomscount.ltem.spectral import ctf_wiener
from atomscount.ltem.tie import tie

DEFOCI = [-2e4, 0.0, 2e4]  # [nm]


def _rmse(a, b):
    d = a - b
    d -= d.mean()
    return float(np.sqrt(np.mean(d**2)))


@pytest.fixture(scope="module")
def vortex():
    import jax

    sample = vortex_disk(shape=(64, 64), radius_nm=45.0)
    truth = sample.phase(beam_energy_ev=300e3)
    # jitted: eager JAX compiles each operation on its own, which is slower here than the whole model
    images = jax.jit(lambda p: fresnel_image(p, pixel_nm=2.0, defocus_nm=np.array(DEFOCI), beam_energy_ev=300e3))
    return truth, LTEMSeries(np.asarray(images(truth), dtype=np.float64), DEFOCI, pixel_nm=2.0)


def test_gradient_matches_finite_differences(vortex):
    import jax

    truth, series = vortex
    counts = LTEMSeries(np.round(series.images * 50.0), DEFOCI, pixel_nm=series.pixel_nm)
    rng = np.random.default_rng(0)
    free = {"phase": (0.9 * truth).astype(np.float32), "log_amplitude": np.zeros((64, 64), np.float32),
            "defocus": np.array([0.05, 0.0, -0.03], np.float32)}  # fmt: skip
    fixed = {k: np.zeros((), np.float32) for k in ("cs", "divergence", "defocus_spread")}
    scales = {"defocus": 2e4, "cs": 1e6, "divergence": 1e-6, "defocus_spread": 10.0}
    loss, _, _ = _objective(counts, np.full(3, 50.0), fixed, scales, "tv")
    loss = jax.jit(loss)
    grad = jax.jit(jax.grad(loss))(free, 0.01)
    for name, eps in (("phase", 1e-2), ("log_amplitude", 1e-2), ("defocus", 1e-3)):
        v = rng.normal(size=free[name].shape).astype(np.float32)
        step = {**free, name: free[name] + eps * v}
        back = {**free, name: free[name] - eps * v}
        fd = (float(loss(step, 0.01)) - float(loss(back, 0.01))) / (2 * eps)
        assert float(np.sum(np.asarray(grad[name]) * v)) == pytest.approx(fd, rel=2e-2), name


def test_noise_free_tv_retrieval_beats_tie(vortex):
    truth, series = vortex
    result = retrieve_phase(series, fit=("phase", "amplitude"), regulariser="tv", optimiser="adam", n_iter=200,
                            uncertainty=False, progress=False)  # fmt: skip
    assert result.method == "ad" and result.parameters["start"] == "tie"
    assert _rmse(result.phase, truth) < 0.5 * _rmse(tie(series).phase, truth)
    assert result.loss_history[-1] < result.loss_history[0]


def test_defocus_recovered_from_a_wrong_start(vortex):
    truth, series = vortex
    wrong = [1.2 * d for d in DEFOCI]
    result = retrieve_phase(series, wrong, fit=("defocus",), initial=truth, n_iter=40, uncertainty=False,
                            progress=False)  # fmt: skip
    found = np.asarray(result.parameters["defocus_nm"])
    assert found[[0, 2]] == pytest.approx(np.asarray(DEFOCI)[[0, 2]], rel=0.02)
    assert abs(found[1]) < 0.02 * 2e4


def test_defocus_scale_recovered_from_a_wrong_start(vortex):
    # one factor for every image, from 25 % too much: the scan alone finds it (no L-BFGS step needed)
    truth, series = vortex
    wrong = [1.25 * d for d in DEFOCI]
    result = retrieve_phase(series, wrong, fit=("defocus_scale",), initial=truth, n_iter=1, uncertainty=False,
                            progress=False)  # fmt: skip
    assert result.parameters["defocus_scale"] == pytest.approx(0.8, rel=0.005)
    assert np.asarray(result.parameters["defocus_nm"]) == pytest.approx(DEFOCI, rel=0.005, abs=1.0)


def test_single_image_beats_single_image_tie_on_a_wall():
    # one Fresnel image of a 180° wall at 100 e/px: the spectral retrieval beats single-image TIE (0.21 against
    # 0.31 rad)
    from atomscount.ltem.forward import simulate_series
    from atomscount.ltem.samples import domain_wall
    from atomscount.ltem.tie import single_image_tie

    sample = domain_wall(shape=(64, 64), pixel_nm=2.0)
    truth = sample.phase(beam_energy_ev=300e3)
    series = simulate_series(sample, [2e4], dose_e_per_pixel=100, rng=0)
    result = retrieve_phase(series, fit=("phase", "amplitude"), n_iter=100, uncertainty=False, progress=False)
    sitie = single_image_tie(series.images[0], 2e4, pixel_nm=2.0, beam_energy_ev=300e3)
    assert _rmse(result.phase, truth) < 0.8 * _rmse(sitie.phase, truth)


def test_fisher_uncertainty_matches_the_exact_jacobian():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    phase = (0.5 * rng.normal(size=(16, 16))).astype(np.float32)
    dose = np.array([30.0, 30.0])

    def images(free):
        return fresnel_image(free["phase"], pixel_nm=2.0, defocus_nm=jnp.array([-5e3, 5e3]), beam_energy_ev=300e3)

    sigma = _fisher_uncertainty(images, {"phase": phase}, dose, 0)
    mu = dose[:, None, None] * np.asarray(jax.jit(images)({"phase": phase}))
    jac = np.asarray(jax.jit(jax.jacfwd(lambda p: 30.0 * images({"phase": p})))(phase)).reshape(mu.size, -1)
    exact = 1.0 / np.sqrt(np.sum(jac**2 / mu.reshape(-1, 1), axis=0))
    assert np.median(sigma.ravel() / exact) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"fit": ("phase", "magnetisation")}, "fit must be one of"),
     ({"regulariser": "l1"}, "regulariser must be one of"),
     ({"vacuum": "round"}, "vacuum must be one of"),
     ({"weight": -1.0}, "weight must be 'auto' or a number >= 0, got -1.0"),
     ({"n_iter": 0}, "n_iter"),
     ({"fit": ("defocus", "defocus_scale")}, "fit must not name both 'defocus' and 'defocus_scale'"),
     ({"optimiser": "sgd"}, "optimiser must be one of"),
     ({"initial": np.zeros((8, 8))}, "initial must be a PhaseRetrieval or a phase map of shape \\(64, 64\\)")],
)  # fmt: skip
def test_bad_options(vortex, kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieve_phase(vortex[1], progress=False, **kwargs)


def test_bad_images():
    images = np.ones((2, 16, 16))
    with pytest.raises(ValueError, match="defocus_nm must be given"):
        retrieve_phase(images, pixel_nm=2.0)
    with pytest.raises(ValueError, match="defoci_nm must have one value per image"):
        retrieve_phase(images, [1e4], pixel_nm=2.0)
    with pytest.raises(ValueError, match="images must all have one shape"):
        retrieve_phase([np.ones((16, 16)), np.ones((16, 8))], [0.0, 1e4], pixel_nm=2.0)
    with pytest.raises(ValueError, match="defocus_nm must not be all zero"):
        retrieve_phase(np.ones((16, 16)), [0.0], pixel_nm=2.0, progress=False)


def test_expected_deviance_of_poisson_counts():
    # the mean Poisson deviance per count of mean μ is 1 + 1/(6μ) + O(1/μ²): 1.0017 at μ = 100
    flat = {"phase": np.zeros((256, 256))}
    value = _expected_deviance(lambda free: np.ones((1, 256, 256)), flat, [100.0], 0)
    assert value == pytest.approx(1.0 + 1.0 / 600.0, abs=0.01)


def test_sharp_edge_falls_back_to_tv():
    # a disk whose rim is a phase step of about 5 rad over 2 nm (a pixel): the spectral prior cannot explain
    # its counts, so the rule retries with TV from TIE and keeps the fit that explains them better
    truth = vortex_disk(shape=(64, 64), radius_nm=45.0).phase(beam_energy_ev=300e3)
    images = fresnel_image(truth, pixel_nm=2.0, defocus_nm=np.array(DEFOCI), beam_energy_ev=300e3)
    counts = np.random.default_rng(0).poisson(100.0 * np.clip(np.asarray(images), 0, None)).astype(float)
    series = LTEMSeries(counts, DEFOCI, pixel_nm=2.0)
    result = retrieve_phase(series, fit=("phase", "amplitude"), n_iter=40, uncertainty=False, progress=False)
    p = result.parameters
    assert p["path"] == "tv (spectral prior inadequate)"
    # on this small field the vacuum correction would move modes the counts see: refused by its deviance check
    assert not p["vacuum"]["applied"] and p["vacuum"]["deviance_after"] > 1.02 * p["vacuum"]["deviance_before"]
    assert p["spectral_deviance"] > 2 * p["expected_deviance"]
    assert p["deviance"] <= 1.1 * p["expected_deviance"]  # TV explains the counts to their noise
    assert _rmse(result.phase, truth) < 0.6 * _rmse(tie(series).phase, truth)
    assert _rmse(result.phase, truth) < 0.4 * _rmse(ctf_wiener(series).phase, truth)


def _fit_with_slow_error(truth):
    """(counts at 100 e/px of the three DEFOCI, their spectral precision P, a TV-path fit): the fit is the truth
    plus an error in the slowest modes (up to 3 cycles per field), drawn with the variance 1/P of each mode,
    the error the images leave there. Seeded."""
    from atomscount.ltem.result import PhaseRetrieval
    from atomscount.ltem.spectral import _spectral_terms

    n = truth.shape[0]
    images = fresnel_image(truth, pixel_nm=2.0, defocus_nm=np.array(DEFOCI), beam_energy_ev=300e3)
    rng = np.random.default_rng(1)
    counts = LTEMSeries(rng.poisson(100 * np.clip(np.asarray(images), 0, None)).astype(float), DEFOCI, pixel_nm=2.0)
    precision = _spectral_terms(counts)["precision"]
    f = np.fft.fftfreq(n) * n
    slow = (np.hypot(*np.meshgrid(f, f, indexing="ij")) <= 3) & (precision > 0)
    noise = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / np.sqrt(2 * np.where(slow, precision, 1))
    phase = truth + np.fft.ifft2(np.where(slow, noise, 0), norm="ortho").real
    params = {"defocus_nm": DEFOCI, "cs_nm": 0.0, "divergence_rad": 0.0, "defocus_spread_nm": 0.0, "path": "tv"}
    fitted = PhaseRetrieval(phase=phase, amplitude=np.ones_like(phase), pixel_nm=2.0, parameters=params, method="ad")
    return counts, precision, fitted


def test_vacuum_correction_of_a_fit_keeps_what_the_counts_allow():
    # a 128² disk at 100 e/px whose fitted phase carries the error the images leave in the slowest modes (up to
    # 3 cycles per field, drawn with the variance 1/P of each mode): the correction that flattens the vacuum
    # brings it closer to the truth and is kept, since the counts hardly see those modes
    from atomscount.ltem.retrieve import _vacuum_corrected

    truth = vortex_disk(shape=(128, 128), radius_nm=90.0).phase(beam_energy_ev=300e3)
    counts, precision, fitted = _fit_with_slow_error(truth)
    phase = fitted.phase
    out = _vacuum_corrected(fitted, counts, counts.images.mean(axis=(1, 2)), precision)
    assert out.parameters["vacuum"]["applied"] and out.parameters["path"] == "tv + vacuum flattened"
    assert _rmse(out.phase, truth) < 0.5 * _rmse(phase, truth)
    # the vortex's flux closes: the default ("auto") finds no stray field and takes the vacuum as flat
    vac = out.parameters["vacuum"]
    assert vac["asked"] == "auto" and vac["model"] == "flat" and vac["stray_statistic"] < vac["stray_threshold"]


def test_vacuum_correction_of_a_uniformly_magnetised_disk_keeps_its_stray_field():
    # a 128² disk magnetised at 0.7 rad from x, at 100 e/px, whose fitted phase carries the slow-mode error of
    # the test above: its vacuum holds the stray field, which the default finds and explains, so the correction
    # lowers the error; taking the vacuum as flat (model="flat", for flux-closed islands) more than doubles it
    from atomscount.ltem.retrieve import _vacuum_corrected
    from atomscount.ltem.samples import MagneticSample

    disk = vortex_disk(shape=(128, 128), radius_nm=90.0)
    m = (disk.thickness_nm > 0.5 * disk.thickness_nm.max()).astype(float)
    uniform = MagneticSample(np.cos(0.7) * m, np.sin(0.7) * m, 0 * m, disk.thickness_nm, 2.0, disk.ms_a_per_m,
                             disk.mean_inner_potential_v, "uniform disk")  # fmt: skip
    truth = uniform.phase(beam_energy_ev=300e3)
    counts, precision, fitted = _fit_with_slow_error(truth)
    phase = fitted.phase
    dose = counts.images.mean(axis=(1, 2))
    out = _vacuum_corrected(fitted, counts, dose, precision)
    # the default ("auto") finds the stray field (its test statistic above the 1 % level) and keeps it
    vac = out.parameters["vacuum"]
    assert vac["applied"] and vac["asked"] == "auto" and vac["model"] == "stray"
    assert vac["stray_statistic"] > vac["stray_threshold"]
    assert _rmse(out.phase, truth) < 0.6 * _rmse(phase, truth)
    flat = _vacuum_corrected(fitted, counts, dose, precision, model="flat")
    assert _rmse(flat.phase, truth) > 2 * _rmse(phase, truth)
    assert _vacuum_corrected(fitted, counts, dose, precision, model="none").parameters["vacuum"] == "not asked"
