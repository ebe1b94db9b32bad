"""composition_from_haadf: fitted levels, concentrations ± σ, flags, the missing wedge, and bad input."""

import numpy as np
import pytest
from scipy import ndimage

from atomscount.elemental.composition import (
    composition_from_haadf,
    fit_interface_width,
    fit_pure_levels,
    wedge_elongation,
)
from atomscount.elemental.forward import default_haadf_weights
from atomscount.elemental.phantoms import core_shell_rod
from atomscount.elemental.result import FLAG_CLIPPED, FLAG_PARTIAL_VOLUME

VOXEL = 0.75
W = default_haadf_weights(["Au", "Ag"])


def _volume(noise=0.0, width=0.0, shape=(40, 48, 40), rng=0):
    """A 'reconstruction' of a rod without projecting: Σ w·n per voxel [1/Å], plus Gaussian noise."""
    d = core_shell_rod(shape=shape, voxel_size_angstrom=VOXEL, interface_width_angstrom=width)
    vol = W["Au"] * d["Au"] + W["Ag"] * d["Ag"]
    total = d["Au"] + d["Ag"]
    frac = np.where(total > 0, d["Au"] / np.where(total > 0, total, 1.0), 0.0)
    levels = {"Au": W["Au"] * d["Au"].max(), "Ag": W["Ag"] * d["Ag"].max()}
    return vol + np.random.default_rng(rng).normal(0.0, noise, vol.shape), frac, total, levels


def test_levels_are_fitted_from_the_particle():
    vol, frac, total, levels = _volume(noise=5e-5)
    r = composition_from_haadf(vol, ("Au", "Ag"), voxel_size_angstrom=VOXEL)
    got = r.provenance["levels"]
    span = levels["Au"] - levels["Ag"]
    assert abs(got["Au"] - levels["Au"]) < 0.03 * span and abs(got["Ag"] - levels["Ag"]) < 0.03 * span
    assert r.provenance["voxel_noise"] == pytest.approx(5e-5, rel=0.15)
    assert r.method == "haadf-composition" and r.elements == ("Au", "Ag")


def test_z_contrast_levels_are_the_absolute_pure_levels():
    vol, frac, total, levels = _volume(noise=5e-5)
    r = composition_from_haadf(vol, ("Au", "Ag"), levels="z-contrast", voxel_size_angstrom=VOXEL)
    for e in ("Au", "Ag"):
        assert r.provenance["levels"][e] == pytest.approx(levels[e], rel=1e-9)
    assert r.provenance["levels_from"] == "z-contrast"


def test_concentrations_match_the_truth_within_their_sigma():
    vol, frac, total, levels = _volume(noise=5e-5, width=2.0)
    r = composition_from_haadf(vol, ("Ag", "Au"), levels=levels, voxel_size_angstrom=VOXEL)
    inner = r.mask & (r.flags == 0)
    au = r.concentration[1]
    np.testing.assert_allclose(r.concentration.sum(axis=0)[r.mask], 1.0)
    pulls = (au - frac)[inner] / r.sigma[1][inner]
    assert np.abs(pulls.mean()) < 0.1 and 0.85 < pulls.std() < 1.15
    assert np.sqrt(np.mean((au - frac)[inner] ** 2)) < 0.1


def test_surface_voxels_are_flagged_partial_volume_and_outliers_clipped():
    vol, frac, total, levels = _volume()
    vol[20, 24, 20] = 3 * levels["Au"]  # an artefact inside the core
    r = composition_from_haadf(vol, ("Au", "Ag"), levels=levels, voxel_size_angstrom=VOXEL)
    partial = (r.flags & FLAG_PARTIAL_VOLUME).astype(bool)
    clipped = (r.flags & FLAG_CLIPPED).astype(bool)
    truly_partial = r.mask & (total < 0.999 * total.max() * 0.99)
    assert partial[truly_partial].all()  # every partly filled voxel is flagged
    assert clipped[20, 24, 20] and r.concentration[0][20, 24, 20] == 1.0
    assert (clipped & ~partial).sum() == 1  # inside, only the artefact is out of range
    assert not r.mask[0, 0, 0] and r.concentration[:, 0, 0, 0].tolist() == [0.0, 0.0]


def test_the_missing_wedge_thickens_the_flagged_band_along_the_beam():
    vol, *_, levels = _volume()
    flat = composition_from_haadf(vol, levels=levels, voxel_size_angstrom=VOXEL)
    wedge = composition_from_haadf(vol, levels=levels, voxel_size_angstrom=VOXEL, max_tilt_degrees=60)
    assert wedge_elongation(60) > 1.3
    band = lambda r, axis: ((r.flags & FLAG_PARTIAL_VOLUME).astype(bool) & r.mask).take(24, axis=1)  # noqa: E731
    # along z (axis 0) through the centre the band grows; along x it stays
    assert band(wedge, 0)[:, 20].sum() > band(flat, 0)[:, 20].sum()
    assert band(wedge, 0)[20, :].sum() == band(flat, 0)[20, :].sum()


def test_a_reconstructed_rod_gives_back_its_interface_width():
    from atomscount.elemental.forward import simulate_haadf
    from atomscount.tomo import reconstruct

    d = core_shell_rod(shape=(48, 16, 48), voxel_size_angstrom=VOXEL, interface_width_angstrom=2.0)
    series = simulate_haadf(d, VOXEL, np.arange(-70.0, 71.0, 5.0))  # ±70° in 5° steps, noise-free
    vol = reconstruct(series, n_iter=50, progress=False)
    r = composition_from_haadf(vol, ("Au", "Ag"), max_tilt_degrees=70)
    good = r.mask & ((r.flags & FLAG_PARTIAL_VOLUME) == 0)
    total = d["Au"] + d["Ag"]
    truth = fit_interface_width(np.where(total > 0, d["Au"] / np.where(total > 0, total, 1), 0), VOXEL,
                                mask=good, central_fraction=1.0)  # fmt: skip
    fit = fit_interface_width(r.concentration[0], VOXEL, mask=good, central_fraction=1.0)
    assert fit["width_angstrom"] == pytest.approx(truth["width_angstrom"], rel=0.2)  # the target
    assert fit["radius_angstrom"] == pytest.approx(truth["radius_angstrom"], abs=VOXEL)


def test_fit_pure_levels_on_a_known_mixture():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(1.0, 0.05, 3000), rng.normal(2.0, 0.05, 2000), 1 + rng.uniform(0, 1, 1000)
                        + rng.normal(0, 0.05, 1000)])  # fmt: skip
    fit = fit_pure_levels(x)
    assert fit["low"] == pytest.approx(1.0, abs=0.01) and fit["high"] == pytest.approx(2.0, abs=0.01)
    assert fit["noise"] == pytest.approx(0.05, rel=0.1)
    np.testing.assert_allclose(fit["weights"], [0.5, 1 / 3, 1 / 6], atol=0.03)


@pytest.mark.parametrize("make, kw, exc, word", [
    (lambda v: np.zeros_like(v), {}, ValueError, "volume has no particle"),
    (lambda v: np.random.default_rng(0).normal(0, 1e-4, v.shape), {}, ValueError, "volume has no particle"),
    (lambda v: v, {"elements": ("Au", "Ag", "Pt")}, ValueError, "elements"),
    (lambda v: v, {"elements": ("Au", "Au")}, ValueError, "elements"),
    (lambda v: v, {"levels": (1e-3, 1e-3)}, ValueError, "levels"),
    (lambda v: v, {"levels": (1e-3,)}, ValueError, "levels"),
    (lambda v: v, {"levels": {"Au": 1e-3}}, ValueError, "levels"),
    (lambda v: v, {"voxel_size_angstrom": None}, ValueError, "voxel_size_angstrom"),
    (lambda v: v, {"voxel_size_angstrom": -1.0}, ValueError, "voxel_size_angstrom"),
    (lambda v: v, {"max_tilt_degrees": 95}, ValueError, "max_tilt_degrees"),
    (lambda v: v, {"smooth_angstrom": -1.0}, ValueError, "smooth_angstrom"),
    (lambda v: v, {"levels": "library"}, ValueError, "levels"),
    (lambda v: v, {"levels": "z-contrast", "elements": ("Au", "Xe")}, ValueError, "bulk density"),
    (lambda v: np.where(v > 0, 1e-3, 0.0), {}, ValueError, "give levels"),
    (lambda v: np.where(v > 0, np.nan, 0.0), {}, ValueError, "volume"),
    (lambda v: v[0], {}, ValueError, "volume"),
])  # fmt: skip
def test_bad_input_is_refused_by_name(make, kw, exc, word):
    vol, *_ = _volume()
    args = {"voxel_size_angstrom": VOXEL, **kw}
    elements = args.pop("elements", ("Au", "Ag"))
    with pytest.raises(exc, match=word):
        composition_from_haadf(make(vol), elements, **args)


def test_smoothing_lowers_the_noise_of_a_noisy_volume():
    vol, frac, total, levels = _volume(noise=3e-4, width=2.0)
    raw = composition_from_haadf(vol, levels=levels, voxel_size_angstrom=VOXEL)
    smooth = composition_from_haadf(vol, levels=levels, voxel_size_angstrom=VOXEL, smooth_angstrom=1.0)
    assert smooth.provenance["voxel_noise"] < 0.5 * raw.provenance["voxel_noise"]
    inner = raw.mask & (raw.flags & FLAG_PARTIAL_VOLUME == 0)
    rmse = [np.sqrt(np.mean((r.concentration[0] - frac)[inner] ** 2)) for r in (raw, smooth)]
    assert rmse[1] < rmse[0]


def test_smoothing_is_not_needed_for_the_mask():
    # the mask of a noisy volume is one solid particle (holes filled, specks dropped)
    vol, frac, total, levels = _volume(noise=1.5e-4)
    r = composition_from_haadf(vol, levels=levels, voxel_size_angstrom=VOXEL)
    assert ndimage.label(r.mask)[1] == 1
    assert abs(int(r.mask.sum()) - int((total > 0.5 * total.max()).sum())) < 0.1 * (total > 0).sum()
