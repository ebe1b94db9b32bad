"""Tracing an amorphous three-element particle without lattice proposals, and classifying it into four classes."""

import numpy as np
import pytest

from atomscount.tomo import (
    classify_atoms,
    compare_models,
    random_packing,
    reconstruct,
    refine_atoms,
    simulate_tilt_series,
    trace_atoms,
)
from atomscount.tomo.trace import TracedAtoms

NAMES = ["non-atom", "Si", "Ge", "Sn"]


@pytest.fixture(scope="module")
def amorphous():
    atoms = random_packing(150, rng=2)
    pos, sym = atoms.positions, np.array(atoms.get_chemical_symbols())
    series = simulate_tilt_series(pos, np.linspace(-70.0, 70.0, 36), pixel_size_angstrom=0.4, symbols=list(sym),
                                  probe_blur_angstrom=0.4, dose_e_per_angstrom2=1e5, rng=0)  # fmt: skip
    volume = reconstruct(series, n_iter=30, progress=False)
    traced = trace_atoms(volume)
    refined = refine_atoms(traced, series, volume, progress=False)
    return pos, sym, traced, refined


def test_tracing_detects_no_lattice_and_sets_the_distance_from_the_data(amorphous):
    pos, sym, traced, refined = amorphous
    assert traced.tracing["lattice"] == "none" and traced.tracing["lattice_source"] == "detected"
    assert traced.tracing["min_distance_source"] == "data"
    # 0.8 times the onset of the first peak: the closest pairs (Si-Si) are 2.3 Å apart
    assert 1.6 < traced.tracing["min_distance_angstrom"] < 2.3, traced.tracing
    assert refined.refinement["lattice"] == "none"
    assert all(r.get("n_added_lattice", 0) == 0 for r in refined.refinement["rounds"])


def test_amorphous_particle_is_traced_and_classified_into_three_elements(amorphous):
    pos, sym, traced, refined = amorphous
    classified = classify_atoms(refined, 4, names=NAMES, rng=0)
    assert classified.class_names == tuple(NAMES)
    el = classified.elements()
    keep = el != "non-atom"
    scores = compare_models(classified.positions[keep], el[keep], pos, sym)
    assert scores["recall"] >= 0.95 and scores["precision"] >= 0.95, scores
    assert scores["rmsd_pm"] < 30.0, scores
    assert scores["classification_accuracy"] >= 0.95, scores
    assert set(scores["per_element_accuracy"]) == {"Si", "Ge", "Sn"}


def test_four_classes_with_known_labels():
    # integrals of three elements and of noise, each with its standard error, in shuffled order
    rng = np.random.default_rng(5)
    truth = np.repeat([0, 1, 2, 3], [60, 80, 70, 50])
    means = np.array([0.0, 1.0e-3, 4.0e-3, 8.6e-3])
    err = np.full(len(truth), 1.5e-4)
    strength = means[truth] + rng.normal(0.0, 1.5e-4, len(truth))
    order = rng.permutation(len(truth))
    truth, strength = truth[order], strength[order]
    pos = rng.uniform(-20, 20, (len(truth), 3))
    traced = TracedAtoms(pos, np.ones(len(truth)), np.ones(len(truth)), np.ones(len(truth)), np.ones((len(truth), 27)),
                         0.4, strength=strength, strength_error=err)  # fmt: skip
    classified = classify_atoms(traced, 4, names=NAMES, rng=0)
    np.testing.assert_array_equal(classified.labels, truth)
    assert list(classified.elements()[:3]) == [NAMES[t] for t in truth[:3]]
    assert "60 non-atom, 80 Si, 70 Ge, 50 Sn" in repr(classified)
    with pytest.raises(ValueError, match="names has 3 entries for n_classes = 4"):
        classify_atoms(traced, 4, names=NAMES[:3])


def test_the_user_can_say_there_is_no_lattice(amorphous):
    pos, sym, traced, refined = amorphous
    with pytest.raises(ValueError, match="lattice"):
        trace_atoms(_volume_like(traced), lattice="glass")


def _volume_like(traced):
    from atomscount.tomo import Volume

    return Volume(np.zeros((5, 5, 5)), traced.pixel_size_angstrom, np.array([1.0]), {})


def test_light_atoms_beside_heavy_ones_are_recovered_at_a_realistic_dose():
    # at 1e4 e/Å² the tracing misses 10 of the 25 Si atoms within 2.5 Å of a Ge or Sn atom (their maxima merge
    # into the heavy neighbour's); the refinement's matched filter of the residual finds them (the maxima of
    # a residual reconstructed by a few SIRT iterations found 22)
    atoms = random_packing(150, rng=2)
    pos, sym = atoms.positions, np.array(atoms.get_chemical_symbols())
    series = simulate_tilt_series(pos, np.linspace(-70.0, 70.0, 36), pixel_size_angstrom=0.4, symbols=list(sym),
                                  probe_blur_angstrom=0.4, dose_e_per_angstrom2=1e4, rng=0)  # fmt: skip
    volume = reconstruct(series, n_iter=30, progress=False)
    traced = trace_atoms(volume)
    refined = refine_atoms(traced, series, volume, progress=False)
    classified = classify_atoms(refined, 4, names=NAMES, rng=0)
    el = classified.elements()
    found = classified.positions[el != "non-atom"]
    heavy = pos[sym != "Si"]
    close = (sym == "Si") & (np.min(np.linalg.norm(pos[:, None] - heavy[None], axis=2), axis=1) < 2.5)
    assert close.sum() == 25

    def hits(p):
        return np.min(np.linalg.norm(pos[close][:, None] - p[None], axis=2), axis=1) < 0.8

    assert hits(traced.positions).sum() <= 16
    assert hits(found).sum() >= 24
    scores = compare_models(found, el[el != "non-atom"], pos, sym)
    assert scores["recall"] >= 0.99 and scores["precision"] >= 0.97, scores
