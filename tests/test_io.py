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
    with pytest.raises(FileFormatError, match="could not read .* as .png"):
        read_image(tmp_path / "a.png")
    (tmp_path / "a.bmp").write_bytes(b"")
    with pytest.raises(FileFormatError, match="unsupported extension '.bmp'"):
        read_image(tmp_path / "a.bmp")
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
        f.attrs["atomscount_min_reader_format"] = 99
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


def test_writing_under_a_file_or_onto_a_folder_names_the_path_not_a_temporary_file(results, tmp_path):
    (tmp_path / "plain").write_text("a file")
    fit = next(r for r in results if hasattr(r, "to_csv"))
    with pytest.raises(NotADirectoryError) as exc:
        fit.to_csv(tmp_path / "plain" / "columns.csv")
    assert "'plain' is a file, not a folder" in str(exc.value).replace(str(tmp_path) + "/", "")
    assert ".tmp" not in str(exc.value)
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        fit.to_hdf5(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


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


# ------------------------------------------------------------------- damaged result files


@pytest.fixture(scope="module")
def results():
    """A real ColumnFit, ColumnCounts and ColumnDetection, small enough to damage quickly."""
    from atomscount import HAADFImage, fit_columns
    from atomscount.columns.detect_model import ColumnDetection
    from atomscount.columns.model import ColumnModel
    from atomscount.counting import count_atoms

    rng = np.random.default_rng(1)
    pos = np.array([[1.0, 1.0], [2.6, 1.0], [1.0, 2.6], [2.6, 2.6]])
    img = ColumnModel((40, 40), 0.1, pos, heights=[0.3, 0.4, 0.35, 0.3], widths=0.4, background=(0.01,)).image()
    fit = fit_columns(HAADFImage(img + rng.normal(0, 0.002, img.shape), 0.1), pos + rng.normal(0, 0.05, pos.shape))
    scs = np.concatenate([rng.normal(k, 0.05, 10) for k in (1.0, 2.0, 3.0)])
    counts = count_atoms(scs, method="library", library=[1.0, 2.0, 3.0, 4.0])
    det = ColumnDetection(positions=pos, significance=[30.0, 40.0, 35.0, 30.0], penalty=14.3, spacing_angstrom=1.6,
                          min_distance_angstrom=1.1, n_initial=5, added=np.zeros((0, 2)), removed=[[3.0, 3.0]],
                          n_rounds=2, pixel_size_angstrom=0.1, image_shape=(40, 40), notes=["one note"])  # fmt: skip
    return [fit, counts, det]


def _same(a, b) -> bool:
    """Field-by-field equality of two result dataclasses (arrays by value and dtype)."""
    import dataclasses

    if type(a) is not type(b):
        return False
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype):
                return False
            if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                return False
        elif x != y:
            return False
    return True


def _read_or_refuse(cls, path, original, *names):
    """Read ``path``: it must give the original back, or FileFormatError/OSError naming the file (and ``names``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. a damaged version number that still reads
        try:
            back = cls.from_hdf5(path)
        except (FileFormatError, OSError) as exc:
            assert str(path) in str(exc)
            for name in names:
                assert name in str(exc)
            return exc
    assert _same(back, original), f"{path} read back as different values"
    return None


def test_results_round_trip(results, tmp_path):
    for res in results:
        path = tmp_path / "r.h5"
        res.to_hdf5(path)
        assert _same(type(res).from_hdf5(path), res)


def test_deleting_any_field_is_refused_naming_it(results, tmp_path):
    import json
    import shutil

    for res in results:
        original = tmp_path / "original.h5"
        res.to_hdf5(original)
        with h5py.File(original, "r") as f:
            nodes = []
            f.visit(nodes.append)
            items = [("attr", name) for name in f.attrs] + [("node", name) for name in nodes]
            items += [("json", key) for key in json.loads(f.attrs["attrs_json"])]
        harmless = {("attr", "atomscount_version"), ("attr", "atomscount_min_reader_format")}
        for how, name in items:
            path = tmp_path / f"{type(res).__name__}-{how}-{name.replace('/', '-')}.h5"
            shutil.copy(original, path)
            with h5py.File(path, "a") as f:
                if how == "attr":
                    del f.attrs[name]
                elif how == "node":
                    del f[name]
                else:  # as a tool editing the JSON would leave it
                    attrs = json.loads(f.attrs["attrs_json"])
                    del attrs[name]
                    f.attrs["attrs_json"] = json.dumps(attrs)
            exc = _read_or_refuse(type(res), path, res, name.split("/")[-1])
            assert (exc is None) == ((how, name) in harmless), (how, name, exc)


@pytest.mark.parametrize("seed", range(3))
def test_changed_bytes_are_refused_or_harmless(results, tmp_path, seed):
    rng = np.random.default_rng(seed)
    for res in results:
        original = tmp_path / "original.h5"
        res.to_hdf5(original)
        data = original.read_bytes()
        refused = 0
        for trial in range(40):
            bad = bytearray(data)
            # run of 1-8 bytes, in the header and arrays region HDF5 itself reads first
            offset = int(rng.integers(0, len(data) - 8))
            bad[offset : offset + int(rng.integers(1, 9))] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()[:8]
            path = tmp_path / f"{type(res).__name__}-{trial}.h5"
            path.write_bytes(bytes(bad[: len(data)]))
            refused += _read_or_refuse(type(res), path, res) is not None
        assert refused > 0


def test_truncated_files_are_refused(results, tmp_path):
    for res in results:
        original = tmp_path / "original.h5"
        res.to_hdf5(original)
        data = original.read_bytes()
        for keep in (0, 8, 96, 512, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
            path = tmp_path / f"{type(res).__name__}-{keep}.h5"
            path.write_bytes(data[:keep])
            assert _read_or_refuse(type(res), path, res) is not None, keep


def test_the_reported_corruptions_give_one_clear_error(results, tmp_path):
    fit, counts, _ = results
    path = tmp_path / "counts.h5"
    counts.to_hdf5(path)
    with h5py.File(path, "a") as f:
        del f["arrays/posterior"]
    with pytest.raises(FileFormatError, match="dataset 'posterior' is missing"):
        type(counts).from_hdf5(path)
    fit.to_hdf5(path := tmp_path / "fit.h5")
    with h5py.File(path, "a") as f:
        f.attrs["attrs_json"] = f.attrs["attrs_json"][:-5]
    with pytest.raises(FileFormatError, match="attribute 'attrs_json' is damaged.*JSONDecodeError"):
        type(fit).from_hdf5(path)
    fit.to_hdf5(path)
    with h5py.File(path, "a") as f:
        f["arrays/heights"][0] = 123.0
    with pytest.raises(FileFormatError, match="dataset 'heights' is damaged"):
        type(fit).from_hdf5(path)


# ------------------------------------------------------------------- newer result files


def test_fields_from_a_newer_version_are_ignored_with_a_warning(results, tmp_path):
    fit = results[0]
    path = tmp_path / "fit.h5"
    fit.to_hdf5(path)
    arrays, attrs = read_hdf5(path, "ColumnFit")
    write_hdf5(path, "ColumnFit", {**arrays, "new_array": np.ones(3)}, {**attrs, "new_setting": "x"})
    with pytest.warns(UserWarning, match=r"ignoring fields \['new_array', 'new_setting'\]"):
        back = type(fit).from_hdf5(path)
    assert _same(back, fit)


def test_newer_format_is_read_when_it_says_it_is_compatible(results, tmp_path):
    det = results[2]
    path = tmp_path / "det.h5"
    det.to_hdf5(path)
    with h5py.File(path, "a") as f:
        f.attrs["atomscount_format"] = 3
    with pytest.warns(UserWarning, match="format version 3, newer than this atomscount's 2"):
        assert _same(type(det).from_hdf5(path), det)
    with h5py.File(path, "a") as f:
        f.attrs["atomscount_min_reader_format"] = 3
    with pytest.raises(FileFormatError, match="readable from format 3.*update atomscount"):
        type(det).from_hdf5(path)


def test_a_field_the_reader_needs_missing_from_a_consistent_file(results, tmp_path):
    det = results[2]
    path = tmp_path / "det.h5"
    det.to_hdf5(path)
    arrays, attrs = read_hdf5(path, "ColumnDetection")
    del attrs["penalty"]
    write_hdf5(path, "ColumnDetection", arrays, attrs)
    with pytest.raises(FileFormatError, match=r"lacks the ColumnDetection fields \['penalty'\]"):
        type(det).from_hdf5(path)
    arrays, attrs = read_hdf5(path, "ColumnDetection")
    with pytest.raises(FileFormatError, match="has no attribute 'penalty'"):
        attrs["penalty"]


def test_format_1_files_without_checksums_are_still_read(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.attrs["atomscount_kind"] = "Thing"
        f.attrs["atomscount_format"] = 1
        f.attrs["attrs_json"] = '{"x": 1}'
        f.create_group("arrays").create_dataset("a", data=np.arange(3))
    arrays, attrs = read_hdf5(path, "Thing")
    assert attrs == {"x": 1} and arrays["a"].tolist() == [0, 1, 2]


# ------------------------------------------------------------------- images


def test_rgb_tiff_is_never_read_as_frames(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "colour.tif", colour, photometric="rgb")
    with pytest.raises(FileFormatError, match="colour.tif.*colour image"):
        read_image(tmp_path / "colour.tif", pixel_size_angstrom=0.1)
    grey = np.repeat(colour[..., :1], 3, axis=-1)
    tifffile.imwrite(tmp_path / "grey.tif", grey, photometric="rgb")
    with pytest.warns(UserWarning, match="grey.tif.*3 samples per pixel"):
        img = read_image(tmp_path / "grey.tif", pixel_size_angstrom=0.1)
    np.testing.assert_array_equal(img.data, colour[..., 0])
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(colour, -1, 0), photometric="rgb", planarconfig="separate")
    with pytest.raises(FileFormatError, match="planar.tif.*colour image"):
        read_image(tmp_path / "planar.tif", pixel_size_angstrom=0.1)
    tifffile.imwrite(tmp_path / "alpha.tif", np.stack([colour[..., 0], colour[..., 1]], -1), photometric="minisblack",
                     extrasamples=["unassalpha"])  # fmt: skip
    with pytest.warns(UserWarning, match="alpha.tif.*2 samples per pixel"):
        assert read_image(tmp_path / "alpha.tif", pixel_size_angstrom=0.1).shape == (32, 32)
    tifffile.imwrite(tmp_path / "palette.tif", colour[..., 0], photometric="palette",
                     colormap=np.tile(np.arange(256, dtype=np.uint16) * 257, (3, 1)))  # fmt: skip
    with pytest.raises(FileFormatError, match="palette.tif.*PALETTE"):
        read_image(tmp_path / "palette.tif", pixel_size_angstrom=0.1)


def test_rgb_npy_is_never_read_as_frames(tmp_path):
    colour = np.random.default_rng(0).integers(0, 256, (32, 32, 4), dtype=np.uint8)
    np.save(tmp_path / "rgba.npy", colour)
    with pytest.raises(FileFormatError, match="rgba.npy.*4 samples per pixel"):
        read_image(tmp_path / "rgba.npy", pixel_size_angstrom=0.1)
    stack = np.random.default_rng(1).random((3, 32, 32))  # three float frames stay frames
    np.save(tmp_path / "stack.npy", stack)
    np.testing.assert_array_equal(read_image(tmp_path / "stack.npy", pixel_size_angstrom=0.1, frame=2).data, stack[2])


@pytest.mark.parametrize("frame,exc,match", [
    (1.5, TypeError, r"frame must be an integer >= 0 or 'mean', got 1.5 \(float\)"),
    (True, TypeError, r"frame must be an integer >= 0 or 'mean', got True \(bool\)"),
    ("0", ValueError, r"frame must be an integer >= 0 or 'mean', got '0'"),
    ("average", ValueError, r"frame must be an integer >= 0 or 'mean', got 'average'"),
    (-1, ValueError, "frame must be an integer >= 0 or 'mean', got -1"),
    (3, ValueError, "frame must be < 3: .*stack.npy' holds 3 frames, got 3"),
])  # fmt: skip
def test_frame_is_checked_by_name(tmp_path, frame, exc, match):
    np.save(tmp_path / "stack.npy", np.random.default_rng(0).random((3, 8, 8)))
    with pytest.raises(exc, match=match):
        read_image(tmp_path / "stack.npy", pixel_size_angstrom=0.1, frame=frame)


def test_frame_of_a_single_image(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((8, 8)))
    assert read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1, frame=np.int64(0)).shape == (8, 8)
    with pytest.raises(ValueError, match="frame must be 0: .*one.npy' holds 1 frame, got 1"):
        read_image(tmp_path / "one.npy", pixel_size_angstrom=0.1, frame=1)


def test_complex_images_are_refused(tmp_path):
    data = np.random.default_rng(0).random((8, 8)) * (1 + 1j)
    np.save(tmp_path / "c.npy", data)
    with pytest.raises(FileFormatError, match=r"c.npy' holds complex data \(complex128\)"):
        read_image(tmp_path / "c.npy", pixel_size_angstrom=0.1)
    tifffile.imwrite(tmp_path / "c.tif", data.astype(np.complex64))
    with pytest.raises(FileFormatError, match=r"c.tif' holds complex data \(complex64\)"):
        read_image(tmp_path / "c.tif", pixel_size_angstrom=0.1)


@pytest.mark.parametrize("flag,expected", [(True, True), (False, False), ("false", False), ("True", True), (0, False),
                                           ("no", False)])  # fmt: skip
def test_normalised_flag_in_tiff_description_is_parsed(tmp_path, flag, expected):
    import json

    desc = json.dumps({"pixel_size_angstrom": 0.1, "normalised": flag})
    tifffile.imwrite(tmp_path / "a.tif", np.ones((4, 4), np.float32), description=desc)
    image = read_image(tmp_path / "a.tif")
    assert image.is_normalised is expected and image.metadata["normalised"] is expected


def test_unusable_normalised_flag_or_calibration_names_the_file(tmp_path):
    import json

    tifffile.imwrite(tmp_path / "a.tif", np.ones((4, 4), np.float32),
                     description=json.dumps({"pixel_size_angstrom": 0.1, "normalised": "maybe"}))  # fmt: skip
    with pytest.raises(FileFormatError, match="a.tif': 'normalised' in the TIFF description must be true or false, "
                                              "got 'maybe'"):  # fmt: skip
        read_image(tmp_path / "a.tif")
    tifffile.imwrite(tmp_path / "b.tif", np.ones((4, 4), np.float32),
                     description=json.dumps({"pixel_size_angstrom": 1e300}))  # fmt: skip
    with pytest.raises(FileFormatError, match="b.tif' has an unusable calibration .*pixel_size_angstrom must lie in"):
        read_image(tmp_path / "b.tif")
    assert read_image(tmp_path / "b.tif", pixel_size_angstrom=0.2).pixel_size_angstrom == 0.2


@pytest.mark.parametrize("pixel,exc,match", [
    (1e300, ValueError, r"pixel_size_angstrom must lie in \[0.0001, 100000\] Å, got 1e\+300"),
    ("0.1", TypeError, "pixel_size_angstrom must be a real number, got '0.1'"),
    (float("inf"), ValueError, "pixel_size_angstrom must be finite"),
])  # fmt: skip
def test_pixel_size_argument_is_checked_before_reading(tmp_path, pixel, exc, match):
    with pytest.raises(exc, match=match):
        read_image(tmp_path / "does-not-matter.npy", pixel_size_angstrom=pixel)


def test_path_must_be_a_path(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or Path, got 3"):
        read_image(3)


def test_strings_are_stored_without_a_heap_hdf5_cannot_check(tmp_path):
    # variable-length strings live in HDF5's global heap ("GCOL"), where one changed byte hung the reader
    path = tmp_path / "s.h5"
    write_hdf5(path, "Thing", {"names": np.array(["ab", "Å", ""]), "none": np.array([], dtype=str)}, {"note": "Å"})
    assert b"GCOL" not in path.read_bytes()
    arrays, attrs = read_hdf5(path, "Thing")
    assert arrays["names"].tolist() == ["ab", "Å", ""] and arrays["none"].shape == (0,) and attrs == {"note": "Å"}


def test_library_files_from_a_newer_version_are_read_with_a_warning(tmp_path):
    from atomscount.library import MixedColumns, ScsLibrary

    n = np.arange(1, 5)
    lib = ScsLibrary("Au", "001", n, 0.1 * n, np.zeros(4), (0.1 * n)[None], {}, np.zeros(1, np.uint64),
                     {"amplitude": 0.0, "n_sat": 1.0, "slope": 0.1, "offset": 0.0})  # fmt: skip
    mixed = MixedColumns(np.array([["Au", "Ag"]]), np.array([[0.1, 0.2]]), np.zeros((1, 2)), {},
                         np.zeros(1, np.uint64))  # fmt: skip
    for res, kind in ((lib, "ScsLibrary"), (mixed, "MixedColumns")):
        path = tmp_path / f"{kind}.h5"
        res.to_hdf5(path)
        arrays, attrs = read_hdf5(path, kind)
        write_hdf5(path, kind, {**arrays, "new_array": np.ones(2)}, {**attrs, "new_setting": 1})
        with pytest.warns(UserWarning, match=r"ignoring fields \['new_array', 'new_setting'\].*" + kind):
            back = type(res).from_hdf5(path)
        np.testing.assert_array_equal(back.scs, res.scs)
