"""ElementalVolumes: shape checks, the HDF5 round trip, .mrc/.tif export, summary and report."""

import numpy as np
import pytest

from atomscount.elemental.result import FLAG_CLIPPED, FLAG_PARTIAL_VOLUME, ElementalVolumes


def _result(**kw):
    rng = np.random.default_rng(0)
    shape = (4, 5, 6)
    c = rng.uniform(0, 1, (2,) + shape)
    mask = np.zeros(shape, bool)
    mask[1:3, 1:4, 1:5] = True
    flags = np.zeros(shape, np.uint8)
    flags[1, 1, 1] = FLAG_PARTIAL_VOLUME
    flags[2, 2, 2] = FLAG_PARTIAL_VOLUME | FLAG_CLIPPED
    args = dict(elements=("Au", "Ag"), concentration=c, sigma=0.1 * c, density=np.full(shape, 0.058), mask=mask,
                flags=flags, voxel_size_angstrom=0.75, method="test", haadf_weights={"Au": 0.0188, "Ag": 0.0076},
                gamma=1.0, regularisation={"name": "tnv", "lambda": 0.1}, objective=[3.0, 2.0, 1.5],
                converged=False, provenance={"seed": 0})  # fmt: skip
    args.update(kw)
    return ElementalVolumes(**args)


def test_hdf5_round_trip_keeps_every_field(tmp_path):
    r = _result()
    back = ElementalVolumes.from_hdf5(r.to_hdf5(tmp_path / "r.h5"))
    assert back.elements == r.elements
    for name in ("concentration", "sigma", "density", "mask", "flags", "objective"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    assert back.flags.dtype == np.uint8 and back.mask.dtype == bool
    for name in ("voxel_size_angstrom", "method", "haadf_weights", "gamma", "regularisation", "converged",
                 "provenance"):  # fmt: skip
        assert getattr(back, name) == getattr(r, name), name


def test_round_trip_without_density_or_weights(tmp_path):
    r = _result(density=None, haadf_weights=None, gamma=None)
    back = ElementalVolumes.from_hdf5(r.to_hdf5(tmp_path / "r.h5"))
    assert back.density is None and back.haadf_weights is None and back.gamma is None


def test_mrc_and_tif_hold_each_element_with_its_voxel_size(tmp_path):
    import mrcfile
    import tifffile

    r = _result()
    mrcs = r.to_mrc(tmp_path / "mrc")
    tifs = r.to_tif(tmp_path / "tif")
    assert [p.name for p in mrcs] == ["Au.mrc", "Ag.mrc"] and [p.name for p in tifs] == ["Au.tif", "Ag.tif"]
    for i in range(2):
        with mrcfile.open(mrcs[i]) as m:
            np.testing.assert_allclose(m.data, r.concentration[i], rtol=1e-6)
            assert float(m.voxel_size.x) == pytest.approx(0.75)
        np.testing.assert_allclose(tifffile.imread(tifs[i]), r.concentration[i], rtol=1e-6)


def test_summary_is_plain_and_counts_flags():
    import json

    r = _result(regularisation={"name": "tnv", "lambda": np.float64(0.1), "per_element": np.array([0.1, 0.2])})
    s = r.summary()
    json.dumps(s)
    assert s["regularisation"]["per_element"] == [0.1, 0.2]
    assert s["n_particle_voxels"] == 24 and s["n_partial_volume"] == 2 and s["n_clipped"] == 1
    m = r.mask
    assert s["per_element"]["Au"]["mean_concentration"] == pytest.approx(r.concentration[0][m].mean())
    assert s["per_element"]["Au"]["atomic_fraction"] == pytest.approx(r.concentration[0][m].mean())
    text = r.report()
    assert "did NOT converge" in text and "1.5" in text and "Au" in text and "clipped" in text


@pytest.mark.parametrize("field, value, word", [
    ("concentration", np.zeros((3, 4, 5, 6)), "concentration"),
    ("sigma", np.zeros((2, 4, 5, 5)), "sigma"),
    ("mask", np.zeros((4, 5), bool), "mask"),
    ("flags", np.zeros((4, 5, 7), np.uint8), "flags"),
    ("density", np.zeros((1, 5, 6)), "density"),
    ("voxel_size_angstrom", 0.0, "voxel_size_angstrom"),
    ("elements", ("Au", "Au"), "elements"),
])  # fmt: skip
def test_bad_shapes_are_refused_by_name(field, value, word):
    with pytest.raises(ValueError, match=word):
        _result(**{field: value})
