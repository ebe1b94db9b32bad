"""Issue 26: hostile inputs to the 3D stages, each refused naming the argument, or warned about."""

import numpy as np
import pytest

from atomscount.tomo import compare_models, simulate_tilt_series, trace_atoms
from atomscount.tomo.reconstruct import Volume

PT2 = ["Pt", "Pt"]


def _volume(data, pixel=0.5):
    return Volume(np.asarray(data, dtype=np.float64), pixel, np.zeros(0))


def test_trace_atoms_refuses_a_nan_volume_naming_its_voxels():
    data = np.zeros((8, 8, 8))
    data[4, 4, 4] = 1.0
    data[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"volume.data must be finite, got 1 NaN/inf voxels .* z, y, x = \(1, 2, 3\)"):
        trace_atoms(_volume(data))
    with pytest.raises(ValueError, match="volume.data must be finite, got 512 NaN/inf voxels"):
        trace_atoms(_volume(np.full((8, 8, 8), np.nan)))


@pytest.mark.parametrize(("shape", "match"), [((8, 8), "must be a 3D array .* got 2D"),
                                              ((2, 8, 8), "at least 3 voxels along each axis")])  # fmt: skip
def test_trace_atoms_refuses_a_volume_of_the_wrong_shape(shape, match):
    with pytest.raises(ValueError, match=match):
        trace_atoms(_volume(np.ones(shape)))


def test_trace_atoms_threshold_must_be_a_number():
    with pytest.raises(TypeError, match="threshold must be a real number, got '0.1'"):
        trace_atoms(_volume(np.ones((8, 8, 8))), threshold="0.1")


def test_compare_models_names_a_nan_position_and_an_empty_truth():
    good = np.zeros((2, 3)) + [[0, 0, 0], [3, 0, 0]]
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"traced_positions must be finite, got 1 atoms .* traced_positions\[1\]"):
        compare_models(bad, ["Fe", "Pt"], good, ["Fe", "Pt"])
    with pytest.raises(ValueError, match=r"truth_positions must be finite"):
        compare_models(good, ["Fe", "Pt"], bad, ["Fe", "Pt"])
    with pytest.raises(ValueError, match=r"truth_positions must have shape \(n, 3\)"):
        compare_models(good, ["Fe", "Pt"], good[:, :2], ["Fe", "Pt"])
    with pytest.raises(ValueError, match="truth_positions must hold at least one atom"):
        compare_models(good, ["Fe", "Pt"], np.zeros((0, 3)), [])
    assert compare_models(good, ["Fe", "Pt"], good, ["Fe", "Pt"])["recall"] == 1.0


def test_simulate_tilt_series_warns_when_the_atoms_leave_the_field():
    far = np.array([[100.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    with pytest.warns(UserWarning, match="2 of 2 atoms lie outside the field .* in 3 of 3 projections: every atom"):
        series = simulate_tilt_series(far, [-30.0, 0.0, 30.0], pixel_size_angstrom=0.5, shape=(16, 16), symbols=PT2)
    assert np.all(series.images == 0)  # what the warning is about
    near = np.array([[0.0, 0.0, 0.0], [3.5, 0.0, 0.0]])  # the second leaves a 16-pixel field at 0°, not at ±70°
    with pytest.warns(UserWarning, match=r"1 of 2 atoms lie outside the field .* in 1 of 3 projections;"):
        simulate_tilt_series(near, [-70.0, 0.0, 70.0], pixel_size_angstrom=0.4, shape=(16, 16), symbols=PT2)
    simulate_tilt_series(near, [-70.0, 0.0, 70.0], pixel_size_angstrom=0.4, symbols=PT2)  # default field: silent


@pytest.mark.parametrize("shape", [(16,), (16, 0), (16, 16.5)])
def test_simulate_tilt_series_shape_is_two_positive_integers(shape):
    with pytest.raises((ValueError, TypeError), match="shape must"):
        simulate_tilt_series(np.zeros((1, 3)), [0.0], pixel_size_angstrom=0.5, shape=shape, symbols=["Pt"])


def test_simulate_tilt_series_refuses_a_field_too_large_for_memory():
    """An atom 10⁶ Å off (nm or m taken for Å) asked the default field for 10¹⁴ pixels."""
    with pytest.raises(ValueError, match=r"1 projections of \d+x\d+ pixels .* would need .* GiB, over the limit"):
        simulate_tilt_series(np.array([[1e6, 0.0, 0.0], [0.0, 0.0, 0.0]]), [0.0], pixel_size_angstrom=0.3, symbols=PT2)
