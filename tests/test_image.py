import numpy as np
import pytest

from atomscount import HAADFImage, normalise
from atomscount.image import angstrom_to_pixels, pixels_to_angstrom


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
        (np.zeros((4, 4)), 1e300, ValueError, r"pixel_size_angstrom must lie in \[0.0001, 100000\] Å, got 1e\+300"),
        (np.zeros((4, 4)), 1e-5, ValueError, r"pixel_size_angstrom must lie in \[0.0001, 100000\] Å, got 1e-05"),
        (np.zeros((4, 4)), "0.1", TypeError, "pixel_size_angstrom must be a real number, got '0.1'"),
        (np.zeros((4, 4), complex), 0.1, TypeError, "data must hold real numbers, got dtype complex128"),
        (np.array([["a"]]), 0.1, TypeError, "data must hold real numbers"),
    ],
)
def test_bad_images_are_refused_with_named_argument(data, pixel, exc, match):
    with pytest.raises(exc, match=match):
        HAADFImage(data, pixel)


def test_pixel_size_range_ends_are_accepted():
    assert HAADFImage(np.zeros((2, 2)), 1e-4).pixel_size_angstrom == 1e-4
    assert HAADFImage(np.zeros((2, 2)), 1e5).extent_angstrom == (2e5, 2e5)


@pytest.mark.parametrize(
    "metadata,match",
    [
        ({"normalised": "false"}, "metadata\\['normalised'\\] must be a bool, got 'false'"),
        ({"normalised": 1}, "metadata\\['normalised'\\] must be a bool, got 1"),
        ([("normalised", True)], "metadata must be a dict"),
    ],
)
def test_metadata_is_checked(metadata, match):
    with pytest.raises(TypeError, match=match):
        HAADFImage(np.zeros((2, 2)), 0.1, metadata)


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


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"detector_vacuum": "1e4", "detector_black": 100.0}, TypeError, "detector_vacuum must be a real number"),
        ({"detector_vacuum": 1e4, "detector_black": None}, TypeError, "detector_black must be a real number, got None"),
        (
            {"detector_vacuum": True, "detector_black": 0.0},
            TypeError,
            "detector_vacuum must be a real number, got True",
        ),
        ({"detector_vacuum": np.inf, "detector_black": 0.0}, ValueError, "detector_vacuum must be finite, got inf"),
        ({"detector_vacuum": 1e4, "detector_black": np.nan}, ValueError, "detector_black must be finite, got nan"),
    ],
)
def test_normalise_checks_each_reading_by_name(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        normalise(HAADFImage(np.ones((2, 2)), 0.1), **kwargs)


def test_coordinate_helpers_check_their_arguments():
    img = HAADFImage(np.zeros((10, 20)), 0.5)
    np.testing.assert_allclose(pixels_to_angstrom([2, 3], 0.5), [[1.5, 1.0]])
    assert angstrom_to_pixels([], 0.5).shape == (0, 2)
    with pytest.raises(ValueError, match=r"rows_cols must have shape \(n, 2\), got \(3,\)"):
        pixels_to_angstrom([1, 2, 3], 0.5)
    with pytest.raises(ValueError, match=r"positions must have shape \(n, 2\), got \(2, 3\)"):
        img.to_pixels(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="pixel_size_angstrom must be > 0, got -0.5"):
        angstrom_to_pixels([[1.0, 1.0]], -0.5)
    with pytest.raises(TypeError, match="margin_angstrom must be a real number, got '1'"):
        img.contains([[1.0, 1.0]], margin_angstrom="1")
    with pytest.raises(ValueError, match="margin_angstrom must be finite, got nan"):
        img.contains([[1.0, 1.0]], margin_angstrom=np.nan)
    assert img.contains([[0.2, 0.2], [5.0, 2.0]], margin_angstrom=-0.5).tolist() == [False, True]


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
