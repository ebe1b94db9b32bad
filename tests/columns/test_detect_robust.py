"""Detection and fitting on a user's image with the defaults: any brightness, vacuum, probe tails, pure noise."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomscount import HAADFImage, detect_columns, fit_columns
from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice


def _match(found, truth, tol):
    if len(found) == 0:
        return 0.0, 0
    d, _ = cKDTree(found).query(truth)
    d2, _ = cKDTree(truth).query(found)
    return float(np.mean(d < tol)), int(np.sum(d2 >= tol))


@pytest.fixture(scope="module")
def lattice():
    pos = square_lattice((64, 64), 0.15, 2.0, margin_angstrom=0.8)
    m = ColumnModel((64, 64), 0.15, pos, heights=np.full(len(pos), 0.3), widths=0.45, background=(0.01,))
    return pos, add_poisson_noise(m.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.15, rng=3)


def test_the_same_columns_and_scs_at_any_brightness_and_offset(lattice):
    pos, img = lattice
    ref = detect_columns(HAADFImage(img, 0.15))
    assert _match(ref.positions, pos, 0.3) == (1.0, 0)
    ref_fit = fit_columns(HAADFImage(img, 0.15), ref.positions, noise="poisson")
    assert ref_fit.converged.all()
    for factor in (1e-6, 1e-3, 1e3, 1e7, 1e9):
        det = detect_columns(HAADFImage(img * factor, 0.15))
        np.testing.assert_allclose(det.positions, ref.positions, atol=1e-9)
        fit = fit_columns(HAADFImage(img * factor, 0.15), det.positions, noise="poisson")
        assert fit.converged.all()  # errors stay finite at any brightness
        np.testing.assert_allclose(fit.scs / factor, ref_fit.scs, rtol=1e-6)
        np.testing.assert_allclose(fit.scs_error / factor, ref_fit.scs_error, rtol=1e-6)
    offset = detect_columns(HAADFImage(img * 1e4 + 3e4, 0.15))  # raw counts on a detector offset
    np.testing.assert_allclose(offset.positions, ref.positions, atol=1e-9)


def _particle_with_probe_tails(rng, noise):
    """A round particle of columns in vacuum; each column a Gaussian with a ring at 2.5 Å at 0.75 % of its peak."""
    shape, pixel = (120, 120), 0.15
    pos = square_lattice(shape, pixel, 2.0)
    centre = 0.5 * np.array(shape[::-1]) * pixel
    pos = pos[np.hypot(*(pos - centre).T) < 5.5]
    heights = rng.uniform(0.1, 0.5, len(pos))
    yy, xx = np.mgrid[: shape[0], : shape[1]] * pixel
    img = np.full(shape, 1e-4)
    for (x0, y0), h in zip(pos, heights, strict=True):
        r = np.hypot(xx - x0, yy - y0)
        img += h * (np.exp(-(r**2) / (2 * 0.4**2)) + 0.0075 * np.exp(-((r - 2.5) ** 2) / (2 * 0.3**2)))
    if noise:
        img = add_poisson_noise(img, dose_e_per_angstrom2=5e4, pixel_size_angstrom=pixel, rng=rng)
    return pos, HAADFImage(img, pixel)


@pytest.mark.parametrize("noise", [False, True])
def test_probe_tails_beside_a_particle_in_vacuum_are_not_columns(noise):
    pos, image = _particle_with_probe_tails(np.random.default_rng(5), noise)
    det = detect_columns(image)
    assert _match(det.positions, pos, 0.3) == (1.0, 0)


def test_an_empty_detection_warns_in_the_api_and_fails_the_cli(tmp_path, capsys):
    from atomscount.cli import main

    flat = np.full((64, 64), 7.0)
    with pytest.warns(UserWarning, match="image is flat: no columns found"):
        det = detect_columns(HAADFImage(flat, 0.1), min_distance_angstrom=1.0)
    assert det.n_columns == 0
    np.save(tmp_path / "noise.npy", np.random.default_rng(0).normal(1.0, 0.1, (80, 80)))
    with pytest.warns(UserWarning, match="not normalised"):
        code = main(["detect", str(tmp_path / "noise.npy"), "--pixel-size", "0.1", "--out", str(tmp_path / "out")])
    assert code == 2 and not (tmp_path / "out").exists()
    assert "no lattice found" in capsys.readouterr().err
