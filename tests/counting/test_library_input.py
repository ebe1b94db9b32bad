"""Libraries given as text tables and arrays, refused SCS, the declared-normalised scale and the free-scale scan."""

import warnings

import numpy as np
import pytest

from atomscount.counting import count_atoms, count_by_library, count_hybrid, count_time_series
from atomscount.image import HAADFImage
from atomscount.io import FileFormatError
from atomscount.library import ScsLibrary, load_default, read_library, resolve_library


@pytest.fixture(scope="module")
def pt():
    return load_default("Pt", "001")


def _columns(lib, n=400, lo=1, hi=25, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(lo, hi + 1, n)
    sd = noise * np.mean(np.diff(lib.scs[:hi]))
    return truth, lib.scs_at(truth) + rng.normal(0, sd, n), np.full(n, sd)


def _statstem_file(path, lib, *, zero_row=True, header=True):
    lines = ["% StatSTEM library: Pt [001], 300 kV"] if header else []
    if header:
        lines.append("Atoms\tSCS")
    if zero_row:
        lines.append("0\t0")
    lines += [f"{n}\t{s:.12g}" for n, s in zip(lib.n_atoms, lib.scs, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_statstem_text_library_counts_like_the_hdf5_one(tmp_path, pt):
    path = _statstem_file(tmp_path / "LibraryPt.txt", pt)
    lib = read_library(path, element="Pt", zone_axis="001")
    np.testing.assert_array_equal(lib.n_atoms, pt.n_atoms)  # the 0-atom row is dropped
    np.testing.assert_allclose(lib.scs, pt.scs, rtol=1e-10)
    truth, scs, err = _columns(pt)
    for form in (path, str(path), np.column_stack([pt.n_atoms, pt.scs]), (pt.n_atoms, pt.scs), lib):
        assert np.all(count_by_library(scs, form, scs_errors=err).counts == truth)
    # comma-separated, no header or zero row, with comments and a third column of standard errors
    csv = tmp_path / "lib.csv"
    rows = "".join(f"{n}, {s:.10f}, 0.001  # row\n" for n, s in zip(pt.n_atoms, pt.scs, strict=True))
    csv.write_text("# N, SCS, sem\n" + rows)
    from_csv = resolve_library(str(csv))
    np.testing.assert_allclose(from_csv.scs_sem, 0.001)
    assert np.all(count_hybrid(scs, from_csv, scs_errors=err, normalised=True).counts == truth)


def test_a_library_listing_a_count_twice_is_refused_by_row(tmp_path, pt):
    path = tmp_path / "dup.txt"
    path.write_text("N SCS\n1 0.05\n2 0.10\n2 0.11\n3 0.15\n")
    with pytest.raises(FileFormatError, match=r"'dup.txt'.*atom count 2 is listed twice \(rows 2 and 3, SCS 0.1 "):
        read_library(path)
    with pytest.raises(ValueError, match=r"library: atom count 2 is listed twice \(rows 2 and 3"):
        count_by_library([0.1, 0.2], np.array([[1, 0.05], [2, 0.1], [2, 0.11], [3, 0.15]]))
    # an ScsLibrary built in memory with a repeated count is refused too, not counted one too low
    import dataclasses

    bad = dataclasses.replace(pt, n_atoms=np.r_[1, 1, pt.n_atoms[2:]])
    with pytest.raises(ValueError, match=r"library.n_atoms lists 1 atoms twice"):
        count_hybrid(pt.scs[:10], bad)


def test_counts_and_scs_must_increase_and_be_valid(tmp_path):
    cases = [
        ("1 0.05\n2 0.10\n3 0.09\n", r"SCS must increase strictly with the atom count, got 0.09 for 3 atoms \(row 3\)"),
        ("1 0.05\n3 0.10\n2 0.12\n", r"atom counts must increase strictly, got 2 in row 3 after 3"),
        ("1 0.05\n2.5 0.10\n", r"atom counts must be whole numbers >= 1, got 2.5 in row 2"),
        ("0 0.01\n1 0.05\n", r"the row for 0 atoms must have SCS 0"),
        ("1 0.05\n2 nan\n", r"SCS must be finite, got nan for 2 atoms \(row 2\)"),
        ("1 -0.05\n2 0.1\n", r"SCS must be above zero, got -0.05 for 1 atoms"),
        ("1 0.05\n2 0.10 0.1 7\n", r"line 2: expected 2 columns \(atoms, SCS\) or 3"),
        ("1 0.05\nfoo bar\n", r"line 2: expected numbers \(atoms, SCS\)"),
        ("just words\n", r"holds no rows of numbers"),
    ]
    for i, (text, said) in enumerate(cases):
        path = tmp_path / f"lib{i}.dat"
        path.write_text(text)
        with pytest.raises(ValueError, match=said):
            read_library(path)
    with pytest.raises(ValueError, match=r"library must be a library file .* got 'nowhere.txt'"):
        resolve_library("nowhere.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_library(tmp_path / "missing.txt")


def test_negative_and_nan_scs_are_refused_in_every_entry_point(pt):
    truth, scs, err = _columns(pt, n=60)
    neg = scs.copy()
    neg[[3, 9]] = [-0.01, -0.2]
    nan = scs.copy()
    nan[[5, 7, 11, 12, 20, 30]] = np.nan
    calls = [lambda s, **k: count_atoms(s, max_components=5, **k),
             lambda s, **k: count_atoms(s, method="library", library=pt, **k),
             lambda s, **k: count_atoms(s, method="hybrid", library=pt, **k),
             lambda s, **k: count_by_library(s, pt, **k), lambda s, **k: count_hybrid(s, pt, **k)]  # fmt: skip
    for call in calls:
        with pytest.raises(ValueError, match=r"scs must be >= 0 .* got 2 negative of 60 counted values "
                                             r"\(scs\[3\] = -0.01, scs\[9\] = -0.2\)"):  # fmt: skip
            call(neg)
        with pytest.raises(ValueError, match=r"scs must be finite, got 6 NaN/inf of 60 counted values \(scs\[5\] = "
                                             r"nan, .*, scs\[20\] = nan, \.\.\.\).*mask=fit.converged"):  # fmt: skip
            call(nan)
    with pytest.raises(ValueError, match=r"scs_frames.ravel\(\)\[3\] = -0.01"):
        count_time_series(np.stack([neg, scs]), max_components=5)
    # masked out, NaN marks a column that is not counted
    r = count_hybrid(nan, pt, mask=np.isfinite(nan))
    assert np.all(r.counts[np.isnan(nan)] == -1) and np.all(r.counts[~np.isnan(nan)] == truth[~np.isnan(nan)])
    with pytest.raises(TypeError, match="mask must be an array of bool"):
        count_hybrid(scs, pt, mask=np.ones(60))
    with pytest.raises(ValueError, match=r"mask must have the shape of scs \(60,\), got \(3,\)"):
        count_hybrid(scs, pt, mask=np.ones(3, bool))


def test_declared_normalised_scs_keep_the_library_scale_at_one(pt):
    truth, scs, err = _columns(pt, seed=1)
    # 3 % off: free, the scale follows the data; declared normalised, it stays 1
    free = count_hybrid(1.03 * scs, pt, scs_errors=err)
    held = count_hybrid(1.03 * scs, pt, scs_errors=err, normalised=True)
    assert free.library_scale == pytest.approx(1.03, rel=2e-3)
    assert held.library_scale == 1.0 and any("normalised=True" in n for n in held.notes)
    at_one = count_atoms(scs, method="hybrid", library=pt, scs_errors=err, normalised=True)
    assert at_one.library_scale == 1.0 and np.all(at_one.counts == truth)
    assert count_by_library(scs, pt, scs_errors=err, normalised=True).library_scale == 1.0
    with pytest.raises(TypeError, match="normalised must be True, False or None, got 'yes'"):
        count_hybrid(scs, pt, normalised="yes")
    image = HAADFImage(np.zeros((4, 4)), 0.1, normalised=True)
    assert image.is_normalised and image.metadata["normalised"] is True
    assert not HAADFImage(np.zeros((4, 4)), 0.1, {"normalised": True}, normalised=False).is_normalised
    with pytest.raises(TypeError, match="normalised must be True, False or None, got 1"):
        HAADFImage(np.zeros((4, 4)), 0.1, normalised=1)


@pytest.mark.parametrize("factor", [1e-6, 0.25, 4.0, 1e7])
def test_the_free_scale_scan_reaches_any_factor(pt, factor):
    truth, scs, err = _columns(pt, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hybrid = count_hybrid(factor * scs, pt, scs_errors=factor * err)
        library = count_by_library(factor * scs, pt, scs_errors=factor * err, normalised=False)
    for r in (hybrid, library):
        assert np.all(r.counts == truth)
        assert r.library_scale == pytest.approx(factor, rel=2e-3)
        assert r.metadata["free_scale"]
        assert any("found by a scan" in n for n in r.notes)
    # no prior holds the scale: a factor of 4 is reached whatever the default, and a prior about the scan is allowed
    assert count_hybrid(factor * scs, pt, scale_prior_sd=0.1).library_scale == pytest.approx(factor, rel=2e-3)


def test_the_scan_works_with_a_library_from_a_table_and_without_errors():
    # a synthetic, slightly concave library of 30 counts
    n = np.arange(1, 31)
    lib = ScsLibrary.from_table(n, 0.06 * n**0.9)
    truth, scs, _ = _columns(lib, n=300, hi=20, noise=0.06, seed=3)
    for factor in (1e-6, 1e7):
        r = count_hybrid(factor * scs, lib, normalised=False)
        assert np.all(r.counts == truth) and r.library_scale == pytest.approx(factor, rel=5e-3)


def _rod_column_counts(radius, length):
    """Atoms per projected column of an Au rod along x with a circular cross-section (thickness varies with y)."""
    from ase.build import bulk

    a = bulk("Au", "fcc", cubic=True)
    atoms = a * (int(np.ceil(length / a.cell[0, 0])), int(np.ceil(2 * radius / a.cell[1, 1])) + 1,
                 int(np.ceil(2 * radius / a.cell[2, 2])) + 1)  # fmt: skip
    c = atoms.positions.mean(axis=0)
    atoms = atoms[np.hypot(atoms.positions[:, 1] - c[1], atoms.positions[:, 2] - c[2]) <= radius]
    _, counts = np.unique(np.round(atoms.positions[:, :2] / 0.3).astype(np.int64), axis=0, return_counts=True)
    return counts


def test_a_resolved_wide_spread_passes_the_scan_on_strong_evidence():
    # an Au rod's 1,248 columns (up to 39 atoms) at 0.4 single-atom steps of noise, 10⁴ times the library: the
    # columns spread 0.41 steps about the right scale, but the evidence for it is strong (115)
    au = load_default("Au", "001")
    truth = _rod_column_counts(80.0, 30.0)
    assert truth.size == 1248 and truth.max() == 39
    step = np.diff(np.r_[0, au.scs])[truth - 1]
    scs = np.abs(au.scs_at(truth) + np.random.default_rng(1).normal(0, 0.4 * step))
    r = count_hybrid(1e4 * scs, au)
    assert r.library_scale == pytest.approx(1e4, rel=5e-3)
    assert np.mean(np.abs(r.counts - truth) <= 1) > 0.9
    assert any("accepted for the evidence" in n for n in r.notes)


def test_a_time_series_leaves_unmeasured_frames_out_with_a_mask(pt):
    rng = np.random.default_rng(6)
    truth = np.repeat(rng.integers(2, 9, 120)[None], 5, axis=0)
    sd = 0.08 * np.mean(np.diff(pt.scs[:10]))
    scs = pt.scs_at(truth) + rng.normal(0, sd, truth.shape)
    scs[2, :10] = np.nan  # not measured in frame 2
    with pytest.raises(ValueError, match=r"scs must be finite, got 10 NaN/inf of 600 .*scs_frames.ravel\(\)\[240\]"):
        count_time_series(scs, library=pt, max_components=10, rng=0)
    r = count_time_series(scs, library=pt, max_components=10, mask=np.isfinite(scs), rng=0)
    assert np.all(r.counts[2, :10] == -1)
    ok = r.counts >= 0
    assert np.all(r.counts[ok] == truth[ok])
