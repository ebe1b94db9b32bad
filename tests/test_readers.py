"""Issue 12: choosing a signal and a frame, DigitalMicrograph TIFF calibration, .hspy and .mrc.

Every test writes its own small file: with rosettasciio's writers where they
exist, with tifffile, or (MRC) with NumPy following the MRC2014 header layout.
"""

import warnings

import h5py
import numpy as np
import pytest
import tifffile

from atomscount import read_image
from atomscount.io import FileFormatError
from atomscount.readers import _choose_signal, _Signal


def _signal(data, title="", *, scale=0.015, units="nm", n_nav=0):
    """A signal dict as rosettasciio's writers take it."""
    data = np.asarray(data)
    names = "zyx"[-data.ndim :] if data.ndim > 1 else "E"
    axes = [{"name": name, "size": size, "scale": scale, "offset": 0.0, "units": units, "navigate": i < n_nav}
            for i, (name, size) in enumerate(zip(names, data.shape, strict=True))]  # fmt: skip
    return {"data": data, "axes": axes, "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""}},
            "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False},
            "package_info": {"name": "", "version": ""}, "learning_results": {}, "models": {}}  # fmt: skip


def _emd(path, signals):
    """An EMD (NCEM) file holding ``signals`` (written one by one by rosettasciio, then gathered)."""
    from rsciio.emd import file_writer

    file_writer(str(path), signals[0])
    for i, sig in enumerate(signals[1:]):
        part = path.with_name(f"{path.stem}-part{i}.emd")
        file_writer(str(part), sig)
        title = sig["metadata"]["General"]["title"]
        with h5py.File(path, "a") as whole, h5py.File(part, "r") as one:
            one.copy(f"signals/{title}", whole["signals"], title)
        part.unlink()
    return path


def _images(n, shape=(6, 7), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(shape).astype(np.float32) for _ in range(n)]


# ------------------------------------------------------------------- signals


def test_two_signal_emd_reads_haadf_by_title(tmp_path):
    dpc, haadf = _images(2)
    path = _emd(tmp_path / "two.emd", [_signal(dpc, "DPC"), _signal(haadf, "HAADF")])
    image = read_image(path)
    np.testing.assert_array_equal(image.data, haadf)
    assert image.metadata["title"] == "HAADF" and image.metadata["signal"] == 1
    assert image.pixel_size_angstrom == pytest.approx(0.15)
    np.testing.assert_array_equal(read_image(path, signal="haadf").data, haadf)
    np.testing.assert_array_equal(read_image(path, signal=0).data, dpc)
    np.testing.assert_array_equal(read_image(path, signal="DPC").data, dpc)
    assert read_image(path, signal=np.int64(1)).metadata["title"] == "HAADF"


def test_a_file_without_a_haadf_image_is_refused_with_its_titles(tmp_path):
    path = _emd(tmp_path / "two.emd", [_signal(im, t) for im, t in zip(_images(2), ("DPC", "BF"), strict=True)])
    # listed in the order rosettasciio (and HyperSpy) gives them
    with pytest.raises(ValueError, match=r"two.emd' holds 2 signals: 0 'BF' \(image 6×7\), 1 'DPC' \(image 6×7\); "
                                         r"none is an image titled HAADF, ADF or DF: pass signal="):  # fmt: skip
        read_image(path)
    assert read_image(path, signal="BF").metadata["title"] == "BF"


def test_unknown_title_or_index_names_signal_and_lists_the_file(tmp_path):
    path = _emd(tmp_path / "two.emd", [_signal(im, t) for im, t in zip(_images(2), ("DPC", "HAADF"), strict=True)])
    with pytest.raises(ValueError, match=r"signal 'ABF' is not a title in .*two.emd' holds 2 signals: 0 'DPC'.*"
                                         r"1 'HAADF'"):  # fmt: skip
        read_image(path, signal="ABF")
    with pytest.raises(ValueError, match=r"signal must be < 2: .*0 'DPC'.*1 'HAADF'.*; got 2"):
        read_image(path, signal=2)


@pytest.mark.parametrize("signal,exc,match", [
    (-1, ValueError, "signal must be an integer >= 0 or a title, got -1"),
    (1.0, TypeError, r"signal must be an integer >= 0 or a title, got 1.0 \(float\)"),
    (True, TypeError, r"signal must be an integer >= 0 or a title, got True \(bool\)"),
    ("  ", ValueError, "signal must be a title or an index, got '  '"),
])  # fmt: skip
def test_signal_is_checked_before_reading(tmp_path, signal, exc, match):
    with pytest.raises(exc, match=match):
        read_image(tmp_path / "does-not-matter.emd", signal=signal)


def test_several_haadf_images_are_not_chosen_between(tmp_path):
    path = _emd(tmp_path / "two.emd", [_signal(im, t) for im, t in zip(_images(2), ("HAADF 1", "HAADF 2"),
                                                                        strict=True)])  # fmt: skip
    with pytest.raises(ValueError, match=r"several are titled like HAADF images \(\[0, 1\]\): pass signal="):
        read_image(path)


def test_a_spectrum_beside_the_image_is_skipped_and_refused_when_asked_for(tmp_path):
    spectrum = _signal(np.arange(10, dtype=np.float32), "HAADF spectrum", scale=0.01, units="keV")
    path = _emd(tmp_path / "si.emd", [spectrum, _signal(_images(1)[0], "DF4")])
    assert read_image(path).metadata["title"] == "DF4"
    said = r"signal 1 of .*si.emd' is not an image; the file holds 0 'DF4' \(image 6×7\), 1 'HAADF spectrum' "
    with pytest.raises(FileFormatError, match=said + r"\(not an image: shape \(10,\)\)"):
        read_image(path, signal=1)


def _sig(title, shape=(4, 4), is_image=True):
    return _Signal(np.zeros(shape), None, {}, title=title, is_image=is_image)


@pytest.mark.parametrize("titles,expected", [
    (["DPC", "HAADF"], 1),
    (["DF4", "ADF"], 1),  # ADF before DF
    (["ADF2", "HAADF_image"], 1),  # HAADF before ADF; words end at digits and underscores
    (["BF-S", "iDPC", "DF-I"], 2),
    (["ABF", "DF4-A"], 1),
    (["HAADF-STEM"], 0),
    (["anything"], 0),  # the one signal of a file is read whatever its title
])  # fmt: skip
def test_default_signal_follows_the_detector_named_in_the_title(titles, expected):
    assert _choose_signal([_sig(t) for t in titles], None, "f.emd") == expected


@pytest.mark.parametrize("titles", [["BF", "DPC"], ["DF4-A", "DF4-B"], ["PDF", "EDF"], ["idpc", "abf"]])
def test_no_default_signal_when_no_single_title_names_a_dark_field_detector(titles):
    with pytest.raises(ValueError, match="pass signal="):
        _choose_signal([_sig(t) for t in titles], None, "f.emd")


def test_a_single_signal_file_takes_signal_0_only(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((5, 5)))
    assert read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1, signal=0).shape == (5, 5)
    assert "signal" not in read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1).metadata
    with pytest.raises(ValueError, match=r"signal must be < 1: .*one.npy' holds 1 signal: 0 untitled \(image 5×5\)"):
        read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1, signal=1)
    with pytest.raises(ValueError, match="signal 'HAADF' is not a title in"):
        read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1, signal="HAADF")


# ------------------------------------------------------------------- frames


@pytest.fixture
def stack():
    return np.stack(_images(3, seed=1)).astype(np.float64)


@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_a_frame_or_the_mean_of_a_stack(tmp_path, stack, suffix):
    path = tmp_path / f"stack{suffix}"
    if suffix == ".npy":
        np.save(path, stack)
    else:
        tifffile.imwrite(path, stack.astype(np.float32), photometric="minisblack")
    image = read_image(path, pixel_size_angstrom=0.1, frame=2)
    np.testing.assert_allclose(image.data, stack[2], rtol=1e-6)
    assert image.metadata["frame"] == 2 and image.metadata["n_frames"] == 3
    mean = read_image(path, pixel_size_angstrom=0.1, frame="mean")
    np.testing.assert_allclose(mean.data, (stack[0] + stack[1] + stack[2]) / 3, rtol=1e-6)
    assert mean.metadata["frames_averaged"] == 3 and "frame" not in mean.metadata


def test_a_stack_read_without_a_frame_warns_and_gives_frame_0(tmp_path, stack):
    np.save(tmp_path / "stack.npy", stack)
    with pytest.warns(UserWarning, match=r"stack.npy' holds 3 frames; using frame 0: pass frame='mean'"):
        image = read_image(tmp_path / "stack.npy", pixel_size_angstrom=0.1)
    np.testing.assert_array_equal(image.data, stack[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "stack.npy", pixel_size_angstrom=0.1, frame=0)  # asked for: no warning
        np.save(tmp_path / "one.npy", stack[:1])
        assert read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1).metadata["n_frames"] == 1


def test_mean_of_a_single_image_is_the_image(tmp_path, stack):
    np.save(tmp_path / "one.npy", stack[0])
    image = read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1, frame="Mean")
    np.testing.assert_array_equal(image.data, stack[0])
    assert image.metadata["frames_averaged"] == 1


def test_a_time_series_in_hspy_is_a_stack_of_frames(tmp_path, stack):
    from rsciio.hspy import file_writer

    file_writer(str(tmp_path / "series.hspy"), _signal(stack, "HAADF", n_nav=1), show_progressbar=False)
    with pytest.warns(UserWarning, match="holds 3 frames"):
        read_image(tmp_path / "series.hspy")
    image = read_image(tmp_path / "series.hspy", frame="mean")
    np.testing.assert_allclose(image.data, stack.mean(axis=0))
    assert image.pixel_size_angstrom == pytest.approx(0.15)


# ------------------------------------------------------------------- calibrations and formats


def _dm_tags(unit: str, dx: float, dy: float | None = None):
    """The private tags DigitalMicrograph writes its calibration to (rosettasciio reads them)."""
    dy = dx if dy is None else dy
    unit = unit.encode("latin-1")
    return [(65003, "s", 0, unit, False), (65004, "s", 0, unit, False), (65009, "d", 1, dx, False),
            (65010, "d", 1, dy, False)]  # fmt: skip


@pytest.mark.parametrize("unit,scale,angstrom", [("µm", 0.01687, 168.7), ("nm", 0.02, 0.2), ("μm", 1e-5, 0.1)])
def test_digitalmicrograph_tiff_calibration_is_read(tmp_path, unit, scale, angstrom):
    data = _images(1)[0]
    # as DigitalMicrograph exports: 72 pixels per inch in the standard tags, the calibration in its own
    tifffile.imwrite(tmp_path / "dm.tif", data, resolution=(72, 72), resolutionunit="inch",
                     extratags=_dm_tags(unit.replace("\u03bc", "\u00b5"), scale))  # fmt: skip
    image = read_image(tmp_path / "dm.tif")
    assert image.pixel_size_angstrom == pytest.approx(angstrom, rel=1e-9)
    assert image.metadata["pixel_size_source"] == "file"
    np.testing.assert_array_equal(image.data, data)


def test_tiff_written_by_rosettasciio_keeps_its_calibration(tmp_path):
    from rsciio.tiff import file_writer

    data = _images(1)[0]
    file_writer(str(tmp_path / "rs.tif"), _signal(data, scale=0.01687, units="µm"))
    assert read_image(tmp_path / "rs.tif").pixel_size_angstrom == pytest.approx(168.7, rel=1e-6)
    file_writer(str(tmp_path / "nm.tif"), _signal(data, scale=0.0125, units="nm"))
    assert read_image(tmp_path / "nm.tif").pixel_size_angstrom == pytest.approx(0.125, rel=1e-6)


def test_non_square_pixels_are_refused_unless_a_pixel_size_is_given(tmp_path):
    tifffile.imwrite(tmp_path / "dm.tif", _images(1)[0], extratags=_dm_tags("nm", 0.02, dy=0.03))
    with pytest.raises(FileFormatError, match=r"dm.tif' has non-square pixels \(0.3 Å high, 0.2 Å wide\)"):
        read_image(tmp_path / "dm.tif")
    assert read_image(tmp_path / "dm.tif", pixel_size_angstrom=0.2).pixel_size_angstrom == 0.2


def test_an_uncalibrated_tiff_still_asks_for_the_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", _images(1)[0])
    with pytest.raises(ValueError, match="pixel_size_angstrom must be given: .*plain.tif' has no length calibration"):
        read_image(tmp_path / "plain.tif")


def test_hspy_is_read_through_rosettasciio(tmp_path):
    from rsciio.hspy import file_writer

    data = _images(1)[0]
    signal = _signal(data, "HAADF", scale=0.012, units="nm")
    signal["metadata"]["Acquisition_instrument"] = {"TEM": {"beam_energy": 300.0, "convergence_angle": 21.4}}
    file_writer(str(tmp_path / "a.hspy"), signal, show_progressbar=False)
    image = read_image(tmp_path / "a.hspy")
    np.testing.assert_array_equal(image.data, data)
    assert image.pixel_size_angstrom == pytest.approx(0.12)
    assert image.metadata["format"] == "hspy" and image.metadata["title"] == "HAADF"
    assert image.metadata["microscope"] == {"energy_ev": 300e3, "semiangle_mrad": 21.4}


def _write_mrc(path, data, pixel_angstrom):
    """An MRC2014 file: a 1024-byte header of 4-byte words, then float32 (mode 2) data, x fastest."""
    data = np.asarray(data, dtype="<f4")
    nz, ny, nx = data.shape if data.ndim == 3 else (1, *data.shape)
    words = np.zeros(256, dtype="<i4")
    floats = words.view("<f4")
    words[0:4] = nx, ny, nz, 2  # NX, NY, NZ, MODE
    words[7:10] = nx, ny, nz  # MX, MY, MZ: sampling along each axis
    floats[10:13] = nx * pixel_angstrom, ny * pixel_angstrom, nz * pixel_angstrom  # CELLA [Å]
    floats[13:16] = 90.0  # CELLB
    words[16:19] = 1, 2, 3  # MAPC, MAPR, MAPS
    floats[19:22] = data.min(), data.max(), data.mean()
    header = bytearray(words.tobytes())
    header[208:212] = b"MAP "
    header[212:216] = bytes([0x44, 0x44, 0, 0])  # little-endian
    path.write_bytes(bytes(header) + data.tobytes())


def test_mrc_is_read_through_rosettasciio(tmp_path, stack):
    data = _images(1)[0]
    _write_mrc(tmp_path / "a.mrc", data, 0.25)
    image = read_image(tmp_path / "a.mrc")
    np.testing.assert_array_equal(image.data, data)
    assert image.pixel_size_angstrom == pytest.approx(0.25) and image.metadata["format"] == "mrc"
    _write_mrc(tmp_path / "stack.mrc", stack, 0.25)
    image = read_image(tmp_path / "stack.mrc", frame=1)
    np.testing.assert_allclose(image.data, stack[1], rtol=1e-6)
    (tmp_path / "bad.mrc").write_bytes(b"\x00" * 100)
    with pytest.raises(FileFormatError, match="could not read .*bad.mrc"):
        read_image(tmp_path / "bad.mrc")


# ------------------------------------------- issue 26: PNG and JPEG, files that are not what they say


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_png_is_read_exactly_with_a_warning_and_only_with_a_pixel_size(tmp_path, dtype):
    from PIL import Image

    data = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, (12, 9), endpoint=True).astype(dtype)
    Image.fromarray(data).save(tmp_path / "img.png")
    with pytest.warns(UserWarning, match=rf"{np.iinfo(dtype).bits}-bit PNG image: its values are display levels"):
        image = read_image(tmp_path / "img.png", pixel_size_angstrom=0.2)
    np.testing.assert_array_equal(image.data, data)
    assert image.pixel_size_angstrom == 0.2 and image.metadata["format"] == "png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="pixel_size_angstrom must be given"):
            read_image(tmp_path / "img.png")


def test_grey_jpeg_is_read_with_a_warning_that_names_the_lossy_compression(tmp_path):
    from PIL import Image

    data = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    Image.fromarray(data).save(tmp_path / "img.jpg", quality=100)
    with pytest.warns(UserWarning, match="JPEG image: .* after lossy compression"):
        image = read_image(tmp_path / "img.jpg", pixel_size_angstrom=0.1)
    assert image.data.shape == (16, 16)
    assert np.abs(image.data - data).max() <= 3  # quality 100: within a few display levels


def test_colour_png_is_refused_and_a_grey_one_saved_as_rgb_is_read_with_a_warning(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 255, (8, 8, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(FileFormatError, match="colour image .* not a measurement"):
            read_image(tmp_path / "colour.png", pixel_size_angstrom=0.1)
    Image.fromarray(np.repeat(rgb[..., :1], 3, axis=2)).save(tmp_path / "grey.png")
    with pytest.warns(UserWarning) as record:
        image = read_image(tmp_path / "grey.png", pixel_size_angstrom=0.1)
    np.testing.assert_array_equal(image.data, rgb[..., 0])
    assert any("display levels" in str(w.message) for w in record)


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + bytes(40), b"x_angstrom,y_angstrom\n1,2\n"])
def test_a_png_or_text_file_named_npy_is_refused_without_numpy_pickle_advice(tmp_path, content):
    (tmp_path / "img.npy").write_bytes(content)
    with pytest.raises(FileFormatError, match=r"is not a \.npy array .*give the file its real extension") as exc:
        read_image(tmp_path / "img.npy", pixel_size_angstrom=0.1)
    assert "pickle" not in str(exc.value)
    (tmp_path / "img.npz").write_bytes(content)
    with pytest.raises(FileFormatError, match=r"is not a \.npz archive"):
        read_image(tmp_path / "img.npz", pixel_size_angstrom=0.1)


def test_an_npy_of_python_objects_is_refused_as_unsafe_not_loaded(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([[None, 1], [2, 3]], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match="holds Python objects, .* not loaded") as exc:
        read_image(tmp_path / "obj.npy", pixel_size_angstrom=0.1)
    assert "allow_pickle" not in str(exc.value)


def test_reading_a_tiff_leaves_no_file_open(tmp_path):
    import gc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tifffile on (3, rows, cols) without photometric
        tifffile.imwrite(tmp_path / "planar.tif", np.ones((3, 8, 8), np.float32))  # rosettasciio fails on it
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for kw in ({}, {"pixel_size_angstrom": 0.1}):
            try:
                read_image(tmp_path / "planar.tif", **kw)
            except ValueError:
                pass
        gc.collect()
    assert not [w for w in record if issubclass(w.category, ResourceWarning)]
