import numpy as np
import pytest
from ase.cluster import Octahedron
from ase.io import read
from scipy.spatial import cKDTree

from atomscount.counting import model_from_counts, write_model


def _projected(atoms):
    key = np.round(atoms.positions[:, :2] / 0.3).astype(int)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    centres = np.array([atoms.positions[inv.ravel() == k, :2].mean(axis=0) for k in range(len(counts))])
    return centres, counts


def test_counts_of_a_symmetric_particle_rebuild_it_atom_for_atom():
    particle = Octahedron("Au", 7, cutoff=2)
    centres, counts = _projected(particle)
    angle = np.deg2rad(23.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    noisy = centres @ rot.T + [20.0, 25.0] + np.random.default_rng(0).normal(0, 0.04, centres.shape)
    model = model_from_counts(noisy, counts, "Au", "001")
    assert len(model) == len(particle) and set(model.get_chemical_symbols()) == {"Au"}
    assert model.info["registration"]["rms_misfit"] < 0.1
    back = model.positions.copy()
    back[:, :2] = (back[:, :2] - [20.0, 25.0]) @ rot
    d, _ = cKDTree(particle.positions - particle.positions.mean(axis=0)).query(back - back.mean(axis=0))
    assert d.max() < 0.02
    np.testing.assert_array_equal(np.bincount(model.arrays["column"]), counts)


def test_top_alignment_starts_every_column_at_the_entrance():
    centres = np.array([[0.0, 0.0], [2.04, 0.0], [0.0, 2.04], [2.04, 2.04]]) + 10
    model = model_from_counts(centres, [3, 5, 2, 4], "Au", "001", alignment="top")
    z = model.positions[:, 2]
    tops = [z[model.arrays["column"] == i].min() for i in range(4)]
    assert np.ptp(tops) <= 2.04 + 1e-6  # within one layer: columns sit on alternating sublattices
    spacing = np.diff(np.sort(z[model.arrays["column"] == 1]))
    np.testing.assert_allclose(spacing, 4.078, atol=0.01)


def test_export_and_bad_input(tmp_path):
    centres = np.array([[0.0, 0.0], [2.04, 0.0], [0.0, 2.04], [2.04, 2.04]]) + 10
    model = model_from_counts(centres, [3, 5, 2, 4], "Au", "001")
    write_model(model, tmp_path / "m.xyz")
    write_model(model, tmp_path / "m.cif")
    xyz = read(tmp_path / "m.xyz")
    assert len(xyz) == 14 and np.array_equal(xyz.arrays["column"], model.arrays["column"])
    assert len(read(tmp_path / "m.cif")) == 14
    with pytest.raises(ValueError, match=".xyz or .cif"):
        write_model(model, tmp_path / "m.pdb")
    with pytest.raises(ValueError, match="one entry per column"):
        model_from_counts(centres, [1, 2], "Au", "001")
    with pytest.raises(ValueError, match="alignment"):
        model_from_counts(centres, [1, 2, 3, 4], "Au", "001", alignment="middle")
