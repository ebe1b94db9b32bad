import numpy as np
import pytest

from atomscount import HAADFImage, normalise


def test_coordinates_round_trip_and_follow_row_col_convention():
    img = HAADFImage(np.zeros((10, 20)), 0.5)
    xy = img.to_angstrom([[2, 3]])
    np.testing.assert_allclose(xy, [[1.5, 1.0]])
    np.testing.assert_allclose(img.to_pixels(xy), [[2, 3]])
    assert img.contains([[9.5, 4.5], [9.6, 0.0]]).tolist() == [True, False]


@pytest.mark.parametrize(
    "data,pixel,exc,match",
    [
        (np.zeros((3, 3, 3)), 0.1, ValueError, "data must be a 2D array, got 3D"),
        (np.zeros((0, 4)), 0.1, ValueError, "data must not be empty"),
        (np.zeros((4, 4)), 0.0, ValueError, "pixel_size_angstrom must be > 0, got 0.0"),
        (np.zeros((4, 4)), -1.0, ValueError, "pixel_size_angstrom must be > 0, got -1.0"),
        (np.zeros((4, 4)), float("nan"), ValueError, "pixel_size_angstrom must be finite"),
        (np.array([["a"]]), 0.1, TypeError, "data must hold real numbers"),
    ],
)
def test_bad_images_are_refused_with_named_argument(data, pixel, exc, match):
    with pytest.raises(exc, match=match):
        HAADFImage(data, pixel)


def test_image_is_immutable():
    img = HAADFImage(np.zeros((4, 4)), 0.1)
    with pytest.raises(ValueError):
        img.data[0, 0] = 1.0


def test_normalise_maps_black_to_zero_and_vacuum_to_one():
    raw = HAADFImage(np.array([[100.0, 1100.0, 10100.0]]), 0.1)
    out = normalise(raw, detector_vacuum=10100.0, detector_black=100.0)
    np.testing.assert_allclose(out.data, [[0.0, 0.1, 1.0]])
    assert out.is_normalised and out.metadata["detector_black"] == 100.0
    with pytest.raises(ValueError, match="already normalised"):
        out.normalise(detector_vacuum=2.0, detector_black=1.0)
    with pytest.raises(ValueError, match="detector_vacuum must be > detector_black"):
        normalise(raw, detector_vacuum=50.0, detector_black=100.0)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=5),
    pixel=st.floats(1e-3, 10.0),
)
def test_pixel_angstrom_conversion_round_trips(rows, pixel):
    img = HAADFImage(np.zeros((2, 2)), pixel)
    rc = np.column_stack([rows, rows[::-1]])
    np.testing.assert_allclose(img.to_pixels(img.to_angstrom(rc)), rc, rtol=1e-12, atol=1e-9)
