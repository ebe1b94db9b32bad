import h5py
import numpy as np
import pytest
import tifffile

from atomscount import read_image
from atomscount.io import FileFormatError, atomic_path, read_hdf5, write_hdf5


def test_tiff_calibration_in_nm_is_read_as_angstrom(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "nm"})
    img = read_image(path)
    assert img.pixel_size_angstrom == pytest.approx(0.2)
    np.testing.assert_array_equal(img.data, data)
    assert img.metadata["pixel_size_source"] == "file"


def test_npy_needs_a_pixel_size(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((5, 5)))
    with pytest.raises(ValueError, match="pixel_size_angstrom must be given"):
        read_image(tmp_path / "a.npy")
    assert read_image(tmp_path / "a.npy", pixel_size_angstrom=0.1).shape == (5, 5)
    with pytest.raises(ValueError, match="pixel_size_angstrom must be > 0, got 0.0"):
        read_image(tmp_path / "a.npy", pixel_size_angstrom=0.0)


def test_emd_read_through_rosettasciio_keeps_calibration(tmp_path):
    from rsciio.emd import file_writer

    data = np.random.default_rng(0).random((6, 7)).astype(np.float32)
    signal = {
        "data": data,
        "axes": [
            {"name": "y", "size": 6, "scale": 0.015, "offset": 0.0, "units": "nm", "navigate": False},
            {"name": "x", "size": 7, "scale": 0.015, "offset": 0.0, "units": "nm", "navigate": False},
        ],
        "metadata": {"General": {"title": "haadf"}, "Signal": {"signal_type": ""}},
        "original_metadata": {},
    }
    file_writer(str(tmp_path / "a.emd"), signal)
    img = read_image(tmp_path / "a.emd")
    assert img.pixel_size_angstrom == pytest.approx(0.15)
    np.testing.assert_allclose(img.data, data)


def test_corrupt_unknown_and_missing_files_are_refused(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(FileFormatError, match="could not read"):
        read_image(tmp_path / "bad.tif", pixel_size_angstrom=0.1)
    (tmp_path / "bad.dm4").write_bytes(b"\x00" * 64)
    with pytest.raises(FileFormatError):
        read_image(tmp_path / "bad.dm4")
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(FileFormatError, match="unsupported extension '.png'"):
        read_image(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        read_image(tmp_path / "nope.tif")
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4, 5)))
    with pytest.raises(FileFormatError, match="4D"):
        read_image(tmp_path / "cube.npy", pixel_size_angstrom=0.1)


def test_hdf5_refuses_other_versions_and_kinds(tmp_path):
    path = tmp_path / "r.h5"
    write_hdf5(path, "Thing", {"a": np.arange(3)}, {"x": 1})
    arrays, attrs = read_hdf5(path, "Thing")
    assert attrs == {"x": 1} and arrays["a"].tolist() == [0, 1, 2]
    with pytest.raises(FileFormatError, match="holds 'Thing', expected 'Other'"):
        read_hdf5(path, "Other")
    with h5py.File(path, "a") as f:
        f.attrs["atomscount_format"] = 99
    with pytest.raises(FileFormatError, match="format version 99"):
        read_hdf5(path, "Thing")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(FileFormatError, match="not a readable HDF5"):
        read_hdf5(tmp_path / "junk.h5", "Thing")


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_tiff_microscope_settings_reach_the_fit(tmp_path):
    import json

    import tifffile

    from atomscount import fit_columns, read_image
    from atomscount.columns.model import ColumnModel

    m = ColumnModel((40, 40), 0.1, [[2.0, 2.0]], 0.5, 0.45, background=(0.01,))
    tifffile.imwrite(tmp_path / "a.tif", m.image().astype("float32"),
                     description=json.dumps({"pixel_size_angstrom": 0.1, "normalised": True,
                                             "microscope": {"energy_ev": 200e3, "semiangle_mrad": 25.0}}))  # fmt: skip
    image = read_image(tmp_path / "a.tif")
    assert image.metadata["microscope"] == {"energy_ev": 200e3, "semiangle_mrad": 25.0}
    assert fit_columns(image, [[2.0, 2.0]]).metadata["microscope"]["energy_ev"] == 200e3
