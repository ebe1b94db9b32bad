"""Atom tracing, classification and comparison on the centre of the Yang et al. (2017) FePt model."""

import numpy as np
import pytest

from atomscount.tomo import reconstruct, simulate_tilt_series
from atomscount.tomo.classify import classify_atoms, compare_models
from atomscount.tomo.trace import TracedAtoms, trace_atoms

from ._fept import fept_centre as centre_atoms


@pytest.fixture(scope="module")
def fept_centre():
    pos, sym = centre_atoms(11.0)
    series = simulate_tilt_series(pos, np.linspace(-65.0, 64.0, 46), pixel_size_angstrom=0.3725, symbols=list(sym),
                                  probe_blur_angstrom=0.4, dose_e_per_angstrom2=1e5, rng=0)  # fmt: skip
    volume = reconstruct(series, n_iter=40, progress=False)
    return pos, sym, volume, trace_atoms(volume)


def test_tracing_finds_the_atoms_where_they_are(fept_centre):
    pos, sym, _, traced = fept_centre
    assert isinstance(traced, TracedAtoms) and len(traced) >= len(pos)
    classified = classify_atoms(traced, 3, names=["non-atom", "Fe", "Pt"], rng=0)
    el = classified.elements()
    atoms = el != "non-atom"
    scores = compare_models(classified.positions[atoms], el[atoms], pos, sym)
    # measured at 1e5 e/Å²: recall 0.99, precision 1.0, 12 pm, every matched atom's element right
    assert scores["recall"] > 0.95 and scores["precision"] > 0.95, scores
    assert scores["rmsd_pm"] < 25.0, scores
    assert scores["per_element_accuracy"]["Fe"] > 0.9 and scores["per_element_accuracy"]["Pt"] > 0.95, scores
    again = classify_atoms(traced, 3, names=["non-atom", "Fe", "Pt"], rng=0)
    np.testing.assert_array_equal(again.labels, classified.labels)  # reproducible


def test_compare_models_counts_matches_and_swaps():
    truth = np.array([[0.0, 0, 0], [3.0, 0, 0], [0, 3.0, 0]])
    traced = truth + [[0.1, 0, 0], [0, 0.2, 0], [0, 0, 0]]
    scores = compare_models(np.vstack([traced, [[9.0, 9, 9]]]), ["Fe", "Pt", "Fe", "Pt"], truth, ["Fe", "Pt", "Pt"])
    assert scores["recall"] == 1.0 and scores["precision"] == 0.75
    assert scores["rmsd_pm"] == pytest.approx(100 * np.sqrt((0.01 + 0.04) / 3))
    assert scores["per_element_accuracy"] == {"Fe": 1.0, "Pt": 0.5}


def test_bad_classification_input_is_named(fept_centre):
    *_, traced = fept_centre
    with pytest.raises(ValueError, match="n_classes"):
        classify_atoms(traced, 1)
    with pytest.raises(ValueError, match="names has 2 entries"):
        classify_atoms(traced, 3, names=["a", "b"])
    with pytest.raises(ValueError, match="not classified"):
        traced.elements()


def test_classified_atoms_write_an_xyz(fept_centre, tmp_path):
    import ase.io

    *_, traced = fept_centre
    classified = classify_atoms(traced, 3, names=["non-atom", "Fe", "Pt"], rng=0)
    path = classified.write_xyz(tmp_path / "atoms.xyz")
    back = ase.io.read(path)
    assert len(back) == int(np.sum(classified.elements() != "non-atom"))
    assert set(back.get_chemical_symbols()) == {"Fe", "Pt"}


def test_non_atom_class_widens_by_the_model_error_of_empty_sites():
    # fitted integrals of empty sites scatter more than their statistical errors say (a forward
    # model that is not the data's, as on multislice projections): the non-atom class must take
    # them rather than the lightest element
    from atomscount.tomo.classify import _gmm_1d

    rng = np.random.default_rng(4)
    empty = rng.normal(0.0, 0.5, 120)  # five times their stated error
    fe = rng.normal(3.0, 0.3, 60)
    pt = rng.normal(15.0, 0.6, 300)
    values = np.concatenate([empty, fe, pt])
    sd = np.full(len(values), 0.1)
    truth = np.repeat([0, 1, 2], [len(empty), len(fe), len(pt)])
    labels = _gmm_1d(values, 3, np.random.default_rng(0), log=False, null_sd=sd)
    assert np.mean(labels == truth) > 0.99
    # with errors that do describe the empty sites nothing changes
    empty_ok = rng.normal(0.0, 0.1, 120)
    labels = _gmm_1d(np.concatenate([empty_ok, fe, pt]), 3, np.random.default_rng(0), log=False, null_sd=sd)
    assert np.mean(labels == truth) > 0.99
