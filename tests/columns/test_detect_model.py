import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomscount import ColumnDetection, HAADFImage, detect_columns, estimate_spacing, find_columns
from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice


def _non_gaussian_raw_lattice(rng, shape=(100, 110), pixel=0.3, spacing=2.0, background=2.0e4):
    """Columns with Lorentzian tails in raw detector counts on a background; about a third of them faint."""
    pos = square_lattice(shape, pixel, spacing, margin_angstrom=1.0) + rng.normal(0, 0.03, (1, 2))
    amp = np.where(rng.random(len(pos)) < 0.3, 1.5e3, 1.0e4)
    yy, xx = np.mgrid[: shape[0], : shape[1]] * pixel
    img = np.full(shape, background)
    for (x0, y0), a in zip(pos, amp, strict=True):
        r2 = (xx - x0) ** 2 + (yy - y0) ** 2
        img += a * (np.exp(-r2 / (2 * 0.45**2)) + 0.15 * 0.3**2 / (r2 + 0.3**2))
    return pos, rng.poisson(img).astype(float)


def _match(found, truth, tol):
    d, _ = cKDTree(found).query(truth)
    d2, _ = cKDTree(truth).query(found)
    return np.mean(d < tol), np.mean(d2 >= tol)


def test_detects_faint_non_gaussian_columns_in_raw_counts_without_any_setting():
    pos, img = _non_gaussian_raw_lattice(np.random.default_rng(0))
    det = detect_columns(HAADFImage(img, 0.3))
    recall, spurious = _match(det.positions, pos, 0.5)
    assert recall == 1.0 and spurious == 0.0
    assert det.spacing_angstrom == pytest.approx(2.0, abs=0.05)
    # the BIC penalty is 3 ln N, or ln N for a column on a site the lattice predicts (its position is known)
    assert np.all(det.significance**2 > det.penalty / 3)
    # the plain detector at its old default threshold misses the faint columns
    plain = find_columns(HAADFImage(img, 0.3), min_distance_angstrom=1.4, threshold=0.2)
    assert _match(plain, pos, 0.5)[0] < 0.9


def test_spurious_starts_are_removed_and_reported():
    pos = square_lattice((64, 64), 0.1, 1.6)
    m = ColumnModel((64, 64), 0.1, pos, heights=np.full(len(pos), 0.4), widths=0.4, background=(0.02,))
    img = add_poisson_noise(m.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.1, rng=2)
    det = detect_columns(HAADFImage(img, 0.1), min_distance_angstrom=1.1)
    assert _match(det.positions, pos, 0.3) == (1.0, 0.0)
    assert det.n_initial > len(pos)  # noise maxima in the margins were tried...
    assert len(det.removed) >= det.n_initial - len(pos)  # ...and removed by the BIC
    assert any("removed" in n for n in det.notes)
    assert isinstance(det, ColumnDetection) and "removed" in repr(det)


def test_missing_column_is_added_from_the_residual():
    pos = square_lattice((84, 84), 0.1, 2.4, margin_angstrom=1.5)
    m = ColumnModel((84, 84), 0.1, pos, heights=np.full(len(pos), 0.4), widths=0.4, background=(0.02,))
    img = add_poisson_noise(m.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.1, rng=4)
    # a faint column on the flank of a bright one: no local maximum of its own
    hidden = pos[4] + [1.0, 0.0]
    extra = ColumnModel((84, 84), 0.1, [hidden], heights=[0.12], widths=0.4).image()
    img = img + add_poisson_noise(extra, dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.1, rng=5)
    det = detect_columns(HAADFImage(img, 0.1), min_distance_angstrom=0.8)
    d, _ = cKDTree(det.positions).query(np.vstack([pos, hidden]))
    assert np.all(d < 0.2)
    assert len(det.added) >= 1


def test_detection_round_trips_hdf5(tmp_path):
    pos = square_lattice((48, 48), 0.1, 1.6)
    m = ColumnModel((48, 48), 0.1, pos, heights=np.full(len(pos), 0.4), widths=0.4, background=(0.02,))
    det = detect_columns(HAADFImage(m.image() + 1e-4, 0.1), min_distance_angstrom=1.1)
    det.to_hdf5(tmp_path / "d.h5")
    back = ColumnDetection.from_hdf5(tmp_path / "d.h5")
    np.testing.assert_array_equal(back.positions, det.positions)
    assert back.notes == det.notes and back.summary() == det.summary()


@pytest.mark.parametrize("spacing,pixel", [(2.04, 0.2), (2.8, 0.35), (1.6, 0.1)])
def test_spacing_estimate_of_a_particle(spacing, pixel):
    rng = np.random.default_rng(1)
    shape = (128, 128)
    pos = square_lattice(shape, pixel, spacing)
    centre = 0.5 * np.array(shape[::-1]) * pixel
    inside = np.hypot(*(pos - centre).T) < 0.35 * shape[0] * pixel  # a round particle on vacuum
    m = ColumnModel(
        shape, pixel, pos[inside], heights=rng.uniform(0.1, 0.5, inside.sum()), widths=0.45, background=(0.005,)
    )
    img = add_poisson_noise(m.image(), dose_e_per_angstrom2=2e4, pixel_size_angstrom=pixel, rng=2)
    assert estimate_spacing(HAADFImage(img, pixel)) == pytest.approx(spacing, rel=0.03)


def test_no_lattice_or_unresolved_columns_are_clear_errors():
    rng = np.random.default_rng(0)
    noise = HAADFImage(rng.poisson(100, (68, 68)).astype(float), 2.5)
    with pytest.raises(ValueError, match="no lattice found"):
        detect_columns(noise)
    # a minimum distance under 2 pixels cannot separate columns
    pos = square_lattice((96, 96), 1.0, 3.0)
    img = ColumnModel((96, 96), 1.0, pos, heights=np.ones(len(pos)), widths=0.6).image()
    with pytest.raises(ValueError, match="min_distance_angstrom must be at least 2 pixels"):
        detect_columns(HAADFImage(img, 1.0), min_distance_angstrom=1.0)


@pytest.mark.parametrize("raw", [False, True])
def test_defaults_find_every_column_of_an_independent_abtem_particle(raw):
    # Cu [110], 0.3 Å pixels, 1-12 atoms per column: a real multislice image made by
    # simulations/make_benchmark_images.py, not by the package's column model
    from pathlib import Path

    data = np.load(Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "cu110_particle.npz")
    px = float(data["pixel_size_angstrom"])
    clean = np.clip(data["clean"].astype(float), 0, None)
    if raw:  # detector counts on a large background
        img = np.random.default_rng(1).poisson(2.0e4 + 4.0e4 * clean / clean.max()).astype(float)
    else:
        img = add_poisson_noise(clean, dose_e_per_angstrom2=1e5, pixel_size_angstrom=px, rng=1)
    det = detect_columns(HAADFImage(img, px))
    assert _match(det.positions, data["positions"], 0.5) == (1.0, 0.0)
    assert det.spacing_angstrom == pytest.approx(3.615 * np.sqrt(3 / 8), rel=0.03)  # [110] nearest neighbours
