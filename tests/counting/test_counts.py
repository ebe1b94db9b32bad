import warnings

import numpy as np
import pytest

from atomscount.counting import ColumnCounts, count_atoms, count_by_library, count_hybrid, count_time_series
from atomscount.library import load_default


@pytest.fixture(scope="module")
def au():
    return load_default("Au", "001")


def _columns(lib, lo, hi, n, noise_fraction, seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(lo, hi + 1, n)
    sd = noise_fraction * np.mean(np.diff(lib.scs))
    return truth, lib.scs_at(truth) + rng.normal(0, sd, n), np.full(n, sd)


def test_library_counting_is_exact_at_low_noise_and_posteriors_are_normalised(au):
    truth, scs, err = _columns(au, 1, 40, 500, 0.08, 0)
    r = count_by_library(scs, au, scs_errors=err)
    assert np.mean(r.counts == truth) == 1.0
    np.testing.assert_allclose(r.posterior.sum(axis=1), 1.0)
    # increments shrink with thickness: thin columns are sure, thick ones less so
    assert np.all(r.probability[truth <= 10] > 0.99)
    assert np.mean(r.probability[truth > 30]) < np.mean(r.probability[truth <= 10])
    assert r.total_atoms == truth.sum()


def test_library_counting_warns_when_the_normalisation_is_off(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    with pytest.warns(UserWarning, match="about 1.200 times the library"):
        count_by_library(1.2 * scs, au, scs_errors=1.2 * err)


def test_hybrid_absorbs_a_normalisation_error_and_reports_the_scale(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    r = count_hybrid(1.15 * scs, au, scs_errors=1.15 * err)
    assert r.library_scale == pytest.approx(1.15, rel=0.01)
    assert np.mean(r.counts == truth) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = count_by_library(1.15 * scs, au, scs_errors=1.15 * err)
    assert np.mean(plain.counts == truth) < 0.5  # the plain comparison is thrown off


def test_icl_counting_with_a_library_aligns_the_counts(au):
    truth, scs, err = _columns(au, 4, 15, 600, 0.12, 2)
    r = count_atoms(scs, method="icl", library=au, scs_errors=err, max_components=20, rng=0)
    assert r.n_components == 12
    assert np.mean(r.counts == truth) > 0.97
    assert r.icl.shape == (20,) and r.aic.shape == (20,) and r.bic.shape == (20,)
    assert r.candidates and r.candidates[0]["n_components"] == 12


def test_nan_scs_are_dropped_and_small_samples_limit_g(au):
    truth, scs, err = _columns(au, 1, 5, 30, 0.05, 3)
    scs[4] = np.nan
    with pytest.warns(UserWarning) as rec:
        r = count_atoms(scs, max_components=50, scs_errors=err, rng=0)
    msgs = " ".join(str(w.message) for w in rec)
    assert "dropped 1 NaN" in msgs and "max_components limited to 9" in msgs
    assert r.counts[4] == -1 and r.icl.shape == (9,)
    with pytest.raises(ValueError, match="scs must not be empty"):
        count_atoms([])
    with pytest.raises(ValueError, match="method"):
        count_atoms(scs, method="magic")
    with pytest.raises(ValueError, match="needs a library"):
        count_atoms(scs, method="library")
    with pytest.raises(ValueError, match="max_components must be within 1..150"):
        count_atoms(scs, max_components=151)


def test_time_series_coupling_fixes_isolated_errors(au):
    rng = np.random.default_rng(4)
    n_frames, n_cols = 12, 200
    base = rng.integers(3, 12, n_cols)
    truth = np.repeat(base[None], n_frames, axis=0)
    truth[6:, :20] -= 1  # 20 columns lose an atom half-way
    sd = 0.3 * np.mean(np.diff(au.scs))
    scs = au.scs_at(truth) + rng.normal(0, sd, truth.shape)
    r = count_time_series(scs, library=au, scs_errors=np.full(truth.shape, sd), max_components=15, rng=0)
    independent = np.array(r.metadata["independent_counts"])
    assert r.counts.shape == truth.shape
    # the coupling removes most of the independent per-frame errors
    assert 1 - np.mean(r.counts == truth) < (1 - np.mean(independent == truth)) / 3
    np.testing.assert_array_equal(r.total_atoms.shape, (n_frames,))


def test_round_trips(tmp_path, au):
    truth, scs, err = _columns(au, 1, 8, 120, 0.1, 5)
    r = count_atoms(scs, library=au, scs_errors=err, max_components=12, rng=0)
    r.to_hdf5(tmp_path / "c.h5")
    back = ColumnCounts.from_hdf5(tmp_path / "c.h5")
    for name in ColumnCounts._ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    assert back.candidates == r.candidates and back.notes == r.notes and back.n_components == r.n_components
    r.to_csv(tmp_path / "c.csv")
    table = ColumnCounts.read_csv(tmp_path / "c.csv")
    np.testing.assert_array_equal(table["counts"], r.counts)
    np.testing.assert_allclose(table["scs"], r.scs, rtol=1e-7)


def test_icl_with_a_library_handles_counts_absent_from_the_particle(au):
    rng = np.random.default_rng(8)
    present = np.array([2, 6, 8, 9, 10, 13])
    truth = rng.choice(present, 600)
    sd = 0.1 * np.mean(np.diff(au.scs))
    scs = au.scs_at(truth) + rng.normal(0, sd, truth.size)
    r = count_atoms(scs, library=au, scs_errors=np.full(truth.size, sd), max_components=15, rng=0)
    np.testing.assert_array_equal(r.count_values, present)
    assert np.mean(r.counts == truth) > 0.99
    assert "absent" in next(n for n in r.notes if n.startswith("chose"))


def test_hybrid_keeps_the_scale_at_one_unless_the_data_say_otherwise(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    r = count_hybrid(scs, au, scs_errors=err)
    assert r.library_scale == pytest.approx(1.0, abs=1e-9) and any("held at 1" in n for n in r.notes)
    assert np.mean(r.counts == truth) == 1.0


def test_a_library_for_other_microscope_settings_is_flagged(au):
    from atomscount.counting import check_library_settings

    truth, scs, err = _columns(au, 2, 10, 100, 0.05, 1)
    assert check_library_settings(au, {"energy_ev": 300e3, "outer_angle_mrad": 200.0}) == []
    msgs = check_library_settings(au, {"energy_ev": 200e3, "inner_angle_mrad": 90.0})
    assert len(msgs) == 2 and "energy_ev = 300000 but the image has 200000" in msgs[0]
    with pytest.warns(UserWarning, match="other microscope settings"):
        r = count_atoms(scs, method="library", library=au, scs_errors=err, microscope={"energy_ev": 200e3})
    assert any("other microscope settings" in n for n in r.notes)


def test_hybrid_fits_the_scale_of_unnormalised_scs_freely(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    r = count_hybrid(1e4 * scs, au, scs_errors=1e4 * err)  # detector counts, not a fraction of the beam
    assert np.mean(r.counts == truth) == 1.0
    assert r.library_scale == pytest.approx(1e4, rel=0.01)
    assert r.metadata["free_scale"]
    note = next(n for n in r.notes if "fitted freely" in n)
    assert "times the library's largest SCS" in note and "HAADFImage.normalise(detector_vacuum=" in note
    # the same through count_atoms, and far below the library as well
    assert np.mean(count_atoms(1e-3 * scs, method="hybrid", library=au, scs_errors=1e-3 * err).counts == truth) == 1.0


def test_unnormalised_scs_that_fix_no_scale_stop_with_the_ratio(au):
    rng = np.random.default_rng(9)
    one_count = 1e4 * (au.scs_at(np.full(200, 5)) + rng.normal(0, 0.002, 200))  # one thickness: no step to see
    said = r"is 1,4\d\d times the library's largest SCS.*no scale can be fitted.*HAADFImage.normalise\("
    with pytest.raises(ValueError, match=said):
        count_hybrid(one_count, au)
    truth, scs, err = _columns(au, 3, 12, 300, 1.0, 2)  # a whole step of noise: counts not resolved
    with pytest.raises(ValueError, match="single counts are not resolved well enough to fix the scale"):
        count_hybrid(1e4 * scs, au, scs_errors=1e4 * err)


def test_library_counting_refuses_unnormalised_scs_instead_of_capping(au):
    truth, scs, err = _columns(au, 2, 20, 400, 0.05, 1)
    said = r"median SCS .* is 3,3\d\d times the library's largest SCS \(0.63\d+ Å² at 40 atoms\).*HAADFImage.normalise"
    for method in ("library", "icl"):
        with pytest.raises(ValueError, match=said):
            count_atoms(1e4 * scs, method=method, library=au, scs_errors=1e4 * err, max_components=5)
    with pytest.raises(ValueError, match="method='hybrid'"):
        count_by_library(1e4 * scs, au)


def test_first_count_must_be_a_positive_integer(au):
    truth, scs, err = _columns(au, 1, 4, 120, 0.05, 6)
    for bad in (-5, 0, 2.5, True):
        with pytest.raises(ValueError, match=f"first_count must be an integer >= 1 .* got {bad!r}"):
            count_atoms(scs, first_count=bad, max_components=6)
    r = count_atoms(scs, first_count=3, scs_errors=err, max_components=6, rng=0)
    np.testing.assert_array_equal(r.count_values, [3, 4, 5, 6])
    np.testing.assert_array_equal(r.counts, truth + 2)
