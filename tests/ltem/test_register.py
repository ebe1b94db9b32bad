"""Registration of a through-focus series: known shifts, magnifications and rotations are recovered."""

import numpy as np
import pytest
from scipy import ndimage

from atomscount.ltem.register import apply_transform, register_images, register_series
from atomscount.ltem.result import LTEMSeries


def _texture(seed=0, shape=(96, 96)):
    return ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.0)


def test_register_recovers_shift_magnification_rotation():
    ref = _texture()
    truth = (3.3, -1.6, 1.02, 1.5)
    moved = apply_transform(ref, shift_px=truth[:2], magnification=truth[2], rotation_deg=truth[3])
    registered, transforms = register_images(np.stack([ref, moved]), reference=0)
    assert np.allclose(transforms[0], (0, 0, 1, 0))
    assert np.allclose(transforms[1, :2], truth[:2], atol=0.25)
    assert transforms[1, 2] == pytest.approx(truth[2], abs=0.003)
    assert transforms[1, 3] == pytest.approx(truth[3], abs=0.2)
    inner = (slice(12, -12), slice(12, -12))
    assert np.abs(registered[1] - ref)[inner].max() < 0.2 * np.abs(ref).max()


def test_register_series_keeps_metadata_and_uses_the_in_focus_reference():
    ref = _texture(1)
    images = np.stack([apply_transform(ref, shift_px=(2.0, 1.0)), ref, apply_transform(ref, shift_px=(-1.0, 2.5))])
    series = LTEMSeries(images + 5.0, defoci_nm=[-1e5, 0.0, 1e5], pixel_nm=2.0)
    out, transforms = register_series(series, scale_rotation=False)
    assert np.allclose(transforms[:, :2], [(2.0, 1.0), (0, 0), (-1.0, 2.5)], atol=0.15)
    assert np.array_equal(out.defoci_nm, series.defoci_nm) and out.pixel_nm == 2.0
    assert out.provenance["registration"]["reference"] == 1


@pytest.mark.parametrize(
    ("images", "kwargs", "match"),
    [(np.zeros((32, 32)), {}, "images must be a \\(k, ny, nx\\)"),
     (np.full((2, 32, 32), np.nan), {}, "images has 2048 NaN"),
     (np.zeros((2, 32, 32)), {"reference": 2}, "reference")],
)  # fmt: skip
def test_register_bad_input(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        register_images(images, **kwargs)
