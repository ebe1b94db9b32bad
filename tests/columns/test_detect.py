import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomscount import HAADFImage, add_columns, find_columns, remove_columns
from atomscount.columns.model import ColumnModel, add_poisson_noise, square_lattice


def test_finds_every_column_of_a_noisy_lattice_with_faint_neighbours():
    pos = square_lattice((120, 120), 0.1, 2.0)
    heights = np.where(np.arange(len(pos)) % 3 == 0, 0.08, 0.8)  # faint next to bright
    m = ColumnModel((120, 120), 0.1, pos, heights, 0.45, background=(0.02,))
    img = add_poisson_noise(m.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=0.1, rng=0)
    found = find_columns(HAADFImage(img, 0.1), min_distance_angstrom=1.5, threshold=0.05)
    assert found.shape == pos.shape
    d, idx = cKDTree(pos).query(found)
    assert np.unique(idx).size == len(pos)
    assert d.max() < 0.1


def test_min_distance_merges_close_peaks():
    m = ColumnModel((60, 60), 0.1, [[2.0, 3.0], [2.6, 3.0]], [1.0, 0.9], 0.2)
    found = find_columns(HAADFImage(m.image(), 0.1), min_distance_angstrom=1.0, threshold=0.2)
    assert len(found) == 1 and abs(found[0, 0] - 2.0) < 0.15


def test_flat_image_warns_and_returns_empty():
    with pytest.warns(UserWarning, match="flat"):
        found = find_columns(HAADFImage(np.ones((20, 20)), 0.1), min_distance_angstrom=1.0, threshold=0.2)
    assert found.shape == (0, 2)


def test_bad_arguments_are_named():
    img = HAADFImage(np.ones((20, 20)), 0.1)
    with pytest.raises(ValueError, match="min_distance_angstrom must be > 0, got 0.0"):
        find_columns(img, min_distance_angstrom=0.0, threshold=0.2)
    with pytest.raises(ValueError, match="threshold must be in"):
        find_columns(img, min_distance_angstrom=1.0, threshold=1.5)


def test_add_and_remove_columns():
    pos = np.array([[1.0, 1.0], [3.0, 1.0]])
    with pytest.warns(UserWarning, match="skipped 1"):
        out = add_columns(pos, [[1.1, 1.0], [5.0, 5.0]], min_distance_angstrom=0.5)
    np.testing.assert_array_equal(out, [[1.0, 1.0], [3.0, 1.0], [5.0, 5.0]])
    np.testing.assert_array_equal(remove_columns(out, indices=[0]), [[3.0, 1.0], [5.0, 5.0]])
    np.testing.assert_array_equal(remove_columns(out, near=[[3.1, 1.1]], radius_angstrom=0.3), [[1.0, 1.0], [5.0, 5.0]])
    with pytest.raises(IndexError, match="indices must be in"):
        remove_columns(out, indices=[7])
