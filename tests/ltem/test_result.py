"""LTEMSeries validation and the PhaseRetrieval HDF5 round trip."""

import numpy as np
import pytest

from atomscount.ltem import LTEMSeries, PhaseRetrieval, colour_wheel, induction_map


def test_series_takes_a_single_image_and_finds_the_in_focus_one():
    s = LTEMSeries(np.ones((8, 8)), 0.0, pixel_nm=2.0)
    assert len(s) == 1 and s.shape == (8, 8) and s.in_focus_index() == 0
    s3 = LTEMSeries([np.ones((8, 8))] * 3, [-1e3, 0, 1e3], pixel_nm=2.0, beam_energy_ev=200e3)
    assert s3.in_focus_index() == 1 and "3 images" in repr(s3)


def test_bad_series_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"images\[1\] has shape \(8, 9\)"):
        LTEMSeries([np.ones((8, 8)), np.ones((8, 9))], [0, 1], pixel_nm=1.0)
    with pytest.raises(ValueError, match="defoci_nm must have one value per image"):
        LTEMSeries(np.ones((3, 8, 8)), [0, 1], pixel_nm=1.0)
    bad = np.ones((2, 8, 8))
    bad[1, 4, 4] = np.nan
    with pytest.raises(ValueError, match=r"images\[1\] has 1 NaN"):
        LTEMSeries(bad, [0, 1], pixel_nm=1.0)
    with pytest.raises(ValueError, match="pixel_nm"):
        LTEMSeries(np.ones((8, 8)), 0, pixel_nm=-1)
    with pytest.raises(ValueError, match="beam_energy_ev"):
        LTEMSeries(np.ones((8, 8)), 0, pixel_nm=1, beam_energy_ev=0)
    with pytest.raises(ValueError, match="defoci_nm must be finite"):
        LTEMSeries(np.ones((8, 8)), np.inf, pixel_nm=1)
    with pytest.raises(ValueError, match="images must be one 2D image"):
        LTEMSeries(np.ones((2, 2, 8, 8)), [0, 1], pixel_nm=1)


def test_phase_retrieval_round_trips_through_hdf5(tmp_path):
    rng = np.random.default_rng(0)
    phase = rng.normal(size=(16, 16))
    r = PhaseRetrieval(phase, np.ones((16, 16)), 2.0, parameters={"defocus_nm": 1.5e4, "cs_nm": 1e6},
                       loss_history=[3.0, 2.0, 1.5], method="ad", uncertainty=np.full((16, 16), 0.1),
                       provenance={"seed": 0})  # fmt: skip
    back = PhaseRetrieval.from_hdf5(r.to_hdf5(tmp_path / "r.h5"))
    for name in ("phase", "amplitude", "induction", "loss_history", "uncertainty"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    assert back.parameters == r.parameters and back.method == "ad" and back.provenance == {"seed": 0}
    none = PhaseRetrieval(phase, np.ones((16, 16)), 2.0)
    again = PhaseRetrieval.from_hdf5(none.to_hdf5(tmp_path / "n.h5"))
    assert again.uncertainty is None and again.loss_history.size == 0
    assert "PhaseRetrieval (ad)" in r.report() and "3 iterations" in r.report()
    assert r.summary()["median_uncertainty_rad"] == pytest.approx(0.1)


def test_phase_retrieval_computes_the_induction_and_checks_shapes():
    y, x = np.mgrid[0:16, 0:16] * 2.0
    r = PhaseRetrieval(0.01 * x, np.ones((16, 16)), 2.0)  # ∂φ/∂x = 0.01 rad/nm: by = 6.582 T nm
    np.testing.assert_allclose(r.induction[1], 6.582119569, rtol=1e-9)
    np.testing.assert_allclose(r.induction[0], 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="amplitude"):
        PhaseRetrieval(np.zeros((4, 4)), np.ones((4, 5)), 1.0)
    with pytest.raises(ValueError, match="uncertainty"):
        PhaseRetrieval(np.zeros((4, 4)), np.ones((4, 4)), 1.0, uncertainty=np.ones(3))


def test_colour_wheel_hue_follows_the_direction_and_brightness_the_magnitude():
    bx = np.array([[1.0, 0.0, -1.0, 0.0, 0.0]])
    by = np.array([[0.0, 1.0, 0.0, -1.0, 0.0]])
    rgb = colour_wheel(bx, by, saturation=1.0)
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0])  # +x red
    np.testing.assert_allclose(rgb[0, 2], [0, 1, 1])  # -x cyan
    np.testing.assert_allclose(rgb[0, 4], [0, 0, 0])  # no field: black
    assert rgb.shape == (1, 5, 3)
    with pytest.raises(ValueError, match="saturation"):
        colour_wheel(bx, by, saturation=0)
    with pytest.raises(ValueError, match="pixel_nm"):
        induction_map(np.zeros((4, 4)), 0)


def test_series_reads_one_file_per_defocus_with_the_package_readers(tmp_path):
    import tifffile

    rng = np.random.default_rng(2)
    stack = rng.poisson(50, size=(3, 16, 16)).astype(np.float32)
    paths = []
    for i, im in enumerate(stack):
        paths.append(tmp_path / f"df{i}.npy")
        np.save(paths[-1], im)
    s = LTEMSeries.from_files(paths, [-1e3, 0, 1e3], pixel_nm=2.5, beam_energy_ev=200e3)
    np.testing.assert_array_equal(s.images, stack)
    assert s.pixel_nm == pytest.approx(2.5) and s.provenance["files"] == [str(p) for p in paths]
    with pytest.raises(ValueError, match="defoci_nm must have one value per file"):
        LTEMSeries.from_files(paths, [0, 1e3], pixel_nm=2.5)
    tifffile.imwrite(tmp_path / "small.tif", stack[0][:8])
    with pytest.raises(ValueError, match="small.tif holds a"):
        LTEMSeries.from_files([paths[0], tmp_path / "small.tif"], [0, 1e3], pixel_nm=2.5)
