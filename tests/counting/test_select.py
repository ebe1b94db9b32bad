import numpy as np
import pytest

from atomscount.counting import MixtureScan, align_to_library, count_atoms, fit_mixtures, select_components
from atomscount.counting.select import far_below
from atomscount.library import load_default


@pytest.fixture(scope="module")
def au():
    return load_default("Au", "001")


def _mixed_particle(lib, seed):
    """A small particle of mixed columns (as in benchmarks/bench_counting.py): 8-12 counts, spread 2-9x the errors."""
    rng = np.random.default_rng(seed)
    g, n, lo = int(rng.integers(8, 13)), int(rng.integers(100, 301)), int(rng.integers(2, 9))
    counts = np.arange(lo, lo + g)
    truth = rng.choice(counts, n, p=rng.dirichlet(np.full(g, 10.0)))
    ratio = rng.uniform(2, 9)
    step = float(np.mean(np.diff(lib.scs_at(np.arange(lo - 1, lo + g + 1)))))
    error = 0.27 * step / np.hypot(1, ratio)
    scs = lib.scs_at(truth) + rng.normal(0, ratio * error, n) + rng.normal(0, error, n)
    return truth, scs, np.full(n, error)


@pytest.fixture(scope="module")
def hard_case(au):
    truth, scs, err = _mixed_particle(au, 132)
    return truth, scs, err, fit_mixtures(scs, max_components=25, rng=0)


def test_a_g1_global_minimum_does_not_hide_the_resolvable_counts(au, hard_case):
    truth, scs, err, scan = hard_case
    g_true = len(np.unique(truth))
    assert g_true == 11 and int(np.argmin(scan.icl)) == 0  # the global ICL minimum is G = 1
    for kw in ({}, {"scs_errors": err}, {"library_scs": au.scs}, {"library_scs": au.scs, "scs_errors": err}):
        chosen, ranked, notes = select_components(scan, **kw)
        assert chosen.n_components == g_true, kw
        single = next(c for c in ranked if c.n_components == 1)
        assert "physically consistent" not in single.reason.split("; ")
        assert any(n.startswith("chose") and f"G = {g_true} over the global ICL minimum G = 1: " in n for n in notes)
    # through count_atoms, with the library the counts come out right too
    r = count_atoms(scs, library=au, max_components=25, rng=0)
    assert r.n_components == g_true and np.mean(r.counts == truth) > 0.85


def test_a_width_several_times_the_errors_is_noted_not_rejected(hard_case):
    truth, scs, err, scan = hard_case
    chosen, ranked, notes = select_components(scan, scs_errors=err)
    assert chosen.n_components == len(np.unique(truth))
    assert chosen.width_ratio > 4  # the per-column spread is 7.5x the errors here
    assert "x the rms SCS error" in chosen.reason and chosen.penalty < 0.15
    assert any("vary beyond their fit errors" in n and "not held against any G" in n for n in notes)


def test_runners_up_are_named_and_no_reason_is_empty(hard_case):
    truth, scs, err, scan = hard_case
    chosen, ranked, notes = select_components(scan, scs_errors=err)
    assert len(ranked) >= 3 and ranked[0] is chosen
    runners = next(n for n in notes if n.startswith("runners-up: "))
    for c in ranked[1:4]:
        assert f"G = {c.n_components} (" in runners
    assert all(c.reason.strip() for c in ranked)
    assert all(not n.rstrip().endswith((":", ";")) for n in notes)


def _scan_with(icl_values, means, widths, n):
    g = np.arange(1, len(icl_values) + 1)
    icl = np.asarray(icl_values, dtype=float)
    loglik = -(icl - 2 * g * np.log(n)) / 2
    weights = [np.full(len(m), 1 / len(m)) for m in means]
    return MixtureScan(g, loglik, np.zeros(len(g)), [np.asarray(m, float) for m in means], weights,
                       np.asarray(widths, float), n, None, 6, np.ones(len(g), int))  # fmt: skip


def test_a_choice_over_the_global_minimum_always_gives_its_reason():
    # G = 2 global; G = 5 regular but 0.05-0.12 off a smooth curve, nothing else to say: the old
    # code wrote "over the global ICL minimum G = 2: " with nothing after it
    means = [[0.3], [0.2, 0.4], [0.1, 0.3, 0.5], [0.1, 0.2, 0.4, 0.5], [0.1, 0.2, 0.305, 0.4, 0.5]]
    scan = _scan_with([20.0, 10.0, 15.0, 16.0, 12.0], means, [0.15, 0.06, 0.03, 0.025, 0.02], 200)
    chosen, _, notes = select_components(scan)
    assert chosen.n_components == 5
    note = next(n for n in notes if n.startswith("chose"))
    assert "over the global ICL minimum G = 2: " in note
    assert note.split("G = 2: ", 1)[1].strip()


def test_a_library_starting_at_zero_is_rejected(au, hard_case):
    truth, scs, err, scan = hard_case
    bad = np.array([0.0, 0.02, 0.04, 0.06])
    with pytest.raises(ValueError, match=r"library_scs must hold the SCS of 1, 2, \.\.\. atoms.*0\."):
        select_components(scan, library_scs=bad)
    with pytest.raises(ValueError, match=r"library must start above zero, got library\[0\] = 0\b"):
        count_atoms(scs, method="icl", library=bad, max_components=5)
    with pytest.raises(ValueError, match=r"library_scs must increase strictly, got library_scs\[2\] = 0\.02 after"):
        align_to_library([0.02, 0.04], [0.5, 0.5], [0.02, 0.04, 0.02])
    with pytest.raises(ValueError, match=r"scales must be finite and > 0, got \[ 1\. nan\]"):
        align_to_library([0.02, 0.04], [0.5, 0.5], au.scs, scales=[1.0, np.nan])


def _uniform_particle(lib, seed):
    """Counts drawn uniformly from a seeded range, spread 0.1-0.45 single-atom steps."""
    rng = np.random.default_rng(seed)
    n, lo = int(rng.integers(100, 600)), int(rng.integers(1, 8))
    truth = rng.integers(lo, lo + int(rng.integers(4, 20)) + 1, n)
    sd = rng.uniform(0.1, 0.45) * np.mean(np.diff(lib.scs))
    return truth, lib.scs_at(truth) + rng.normal(0, sd, n), np.full(n, sd)


@pytest.mark.parametrize(("seed", "with_library"), [(34, True), (95, False), (259, False)])
def test_the_choice_does_not_hinge_on_floating_point_noise_in_the_scs(au, seed, with_library):
    # Before the SCS were rounded for the fits, a relative change of 1e-13 moved the ICL of these particles by
    # 22, 17 and 17 at some G above the chosen one, changing the runners-up and the notes
    truth, scs, err = _uniform_particle(au, seed)
    kw = dict(max_components=min(25, scs.size // 3), scs_errors=err, library=au if with_library else None, rng=0)
    a = count_atoms(scs, **kw)
    b = count_atoms(scs * (1 + 1e-13), **kw)
    assert a.n_components == b.n_components
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.notes == b.notes
    # the same candidates, scored alike; their ICL, of the exact SCS, moves by 1e-10
    # (the depths, differences of those ICL, too)
    def unscored(cands):
        return [{**c, "icl": 0, "depth": 0, "depth_sigma": 0} for c in cands]

    assert unscored(a.candidates) == unscored(b.candidates)
    for key in ("depth", "depth_sigma"):
        np.testing.assert_allclose([c[key] for c in a.candidates], [c[key] for c in b.candidates], rtol=1e-6,
                                   atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(a.icl, b.icl, rtol=1e-12, atol=1e-8)
    assert np.mean(a.counts - a.counts.min() == truth - truth.min()) > 0.9


def test_no_note_or_candidate_has_an_empty_reason():
    from atomscount.counting import count_atoms
    from atomscount.library import load_default

    lib = load_default("Au", "001")
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n = rng.integers(1, 4 + 2 * seed, 150)
        scs = lib.scs_at(n) * (1 + rng.normal(0, 0.03, n.size))
        for library in (None, lib):
            counts = count_atoms(scs, library=library, max_components=12, rng=0)
            assert all(not note.rstrip().endswith(":") for note in counts.notes), counts.notes
            assert all(c["reason"].strip() for c in counts.candidates), counts.candidates


def _synthetic(lib, n, lo, hi, seed, frac=0.3):
    """SCS as in benchmarks/bench_counting.py: library values plus noise ``frac`` of a mean single-atom step."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(lo, hi + 1, n)
    sd = frac * float(np.mean(np.diff(lib.scs[lo - 2 : hi])))
    return truth, lib.scs_at(truth) + rng.normal(0, sd, n), sd


@pytest.fixture(scope="module")
def au110():
    return load_default("Au", "110")


@pytest.mark.parametrize("seed", [1, 4])
def test_g_is_recovered_at_thirty_thousand_columns(au110, seed):
    # 12 counts 0.3 steps wide: the ICL per column is lowest at G = 11 here or no local minimum sits at 12;
    # the finest physically consistent G does not depend on n that way
    truth, scs, sd = _synthetic(au110, 30000, 5, 16, seed)
    scan = fit_mixtures(scs, max_components=20, rng=0)
    chosen, ranked, notes = select_components(scan)
    assert abs(chosen.n_components - 12) <= 1
    assert chosen.consistent and ranked[0] is chosen and [c.rank for c in ranked] == list(range(20))
    assert sorted(c.n_components for c in ranked) == list(range(1, 21))  # every G is a candidate
    # a G with a count split in two is not consistent
    assert all(not c.consistent for c in ranked if c.n_components > 13)
    assert np.all(np.isfinite(scan.icl_step_sd[1:])) and np.all(scan.icl_step_sd[1:] > 0)


def test_close_candidates_are_noted():
    # G = 6 (one count per component) lies 0.2 above G = 7, whose extra mean splits a count: G = 6 is chosen
    # although it is no ICL local minimum, and the note says how close G = 7 is
    true_means = 0.05 * np.arange(3, 9)
    split = np.sort(np.append(true_means, true_means[2] + 0.01))
    means = [[0.3], [0.2, 0.4], [0.15, 0.25, 0.35], [0.15, 0.2, 0.3, 0.35], [0.15, 0.2, 0.25, 0.3, 0.4], true_means,
             split, np.sort(np.append(split, 0.42))]  # fmt: skip
    icl = [100.0, 90.0, 85.0, 80.0, 75.0, 60.2, 60.0, 70.0]
    scan = _scan_with(icl, means, [0.1, 0.05, 0.03, 0.02, 0.02, 0.008, 0.008, 0.008], 300)
    chosen, ranked, notes = select_components(scan)
    assert chosen.n_components == 6 and chosen.consistent
    seven = next(c for c in ranked if c.n_components == 7)
    assert not seven.consistent and seven.split == 1 and seven.depth == pytest.approx(0.2)
    note = next(n for n in notes if n.startswith("G = 6 and G = 7 are close"))
    assert "G = 7 lies -0.2 from the chosen G = 6" in note and "split in two" in note


def test_columns_far_below_are_left_out_and_do_not_drive_g(au110):
    truth, scs, sd = _synthetic(au110, 6000, 5, 12, 3, frac=0.2)
    rng = np.random.default_rng(0)
    vacuum = rng.uniform(0, 0.3, 40) * au110.scs[4]  # far below the thinnest count (5 atoms)
    x = np.concatenate([scs, vacuum])
    # with them in, the mixture is thrown off the physical G
    first = select_components(fit_mixtures(x, max_components=15, rng=0))[0].n_components
    assert first != 8
    r = count_atoms(x, max_components=15, rng=0)
    assert r.n_components == 8
    assert np.all(r.counts[scs.size :] == -1) and np.all(r.counts[: scs.size] >= 1)
    assert not r.valid[scs.size :].any()
    assert np.mean(r.counts[: scs.size] - r.counts[: scs.size].min() == truth - truth.min()) > 0.97
    assert any(n.startswith("40 of 6040 columns lie far below the lowest component") for n in r.notes)
    # columns one count below the lowest component are real, not outliers
    m = np.array([0.1, 0.2, 0.3, 0.4])
    assert not far_below([0.0, 0.05, 0.2], m, np.full(4, 0.25), 0.01)[1:].any()
    with pytest.raises(ValueError, match="n_sigma must be > 0, got 0"):
        far_below([0.1], m, np.full(4, 0.25), 0.01, n_sigma=0)


def test_columns_of_one_identical_scs_are_one_count_not_a_division_by_zero():
    # coincident mixture means imply a step of zero between counts (a ZeroDivisionError found by the fuzz)
    for kw in ({}, {"dose": 0.5}, {"n_components": 2}):
        counts = count_atoms(np.full(150, 1.0), method="icl", rng=0, **kw)
        assert np.all(counts.counts == 1), kw
