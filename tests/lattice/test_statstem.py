"""read_statstem and write_statstem on small .mat files with the structure of StatSTEM's own."""

import dataclasses

import numpy as np
import pytest
import scipy.io

from atomscount import HAADFImage, fit_columns
from atomscount.columns.model import ColumnModel, add_poisson_noise
from atomscount.lattice import StatSTEMResult, read_statstem, write_statstem

DX = 0.25  # [Å]


def _truth():
    pos = np.array([[2.0, 2.1], [5.0, 2.0], [3.5, 4.6], [6.5, 4.5], [2.1, 7.0], [5.1, 7.1]])
    kind = np.array([0, 0, 1, 1, 0, 0])
    model = ColumnModel((36, 36), DX, pos, heights=np.where(kind == 0, 900.0, 400.0),
                        widths=np.where(kind == 0, 0.6, 0.5), background=(100.0,), types=kind)  # fmt: skip
    return pos, kind, model


def _statstem_file(path, *, counting=True):
    """A file laid out as StatSTEM's tutorial file: structs input, output, strainmapping (and atomcounting)."""
    pos, kind, model = _truth()
    n = len(pos)
    stat_xy = pos + DX  # StatSTEM puts pixel (1, 1) at (dx, dx)
    eta, rho = model.heights, model.widths
    projunit = {"a": 5.85, "b": 5.85, "ang": np.pi / 2, "coor2D": np.array([[0, 0], [0.5, 0.5]]),
                "atom2D": np.array(["Pb", "Cs"], dtype=object)}  # fmt: skip
    data = {
        "input": {"obs": np.rint(model.image()).astype(np.uint16), "dx": DX,
                  "coordinates": np.column_stack([stat_xy, kind + 1.0]),
                  "types": np.array(["Pb", "Cs"], dtype=object), "projUnit": projunit},
        "output": {"coordinates": stat_xy, "rho": rho, "eta": eta, "zeta": 100.0, "model": model.image(),
                   "volumes": 2 * np.pi * eta * rho**2, "lsq": 12.5},
        "strainmapping": {"eps_xx": np.linspace(-0.01, 0.01, n), "errEps_xx": np.full(n, 0.002),
                          "a": np.array([5.85, 0.05]), "teta": np.array([0.01, 0.002])},
    }  # fmt: skip
    if counting:
        # two components: SCS near 1600 -> 1 atom, near 3400 -> 2 atoms (offset 0)
        comp = np.empty(2, dtype=object)
        comp[0] = {"mu": np.array([2500.0]), "Sigma": np.array([[4e5]]), "PComponents": np.array([1.0])}
        comp[1] = {"mu": np.array([3400.0, 1600.0]), "Sigma": np.array([[1e4]]), "PComponents": np.array([0.6, 0.4])}
        vol = np.array([3390.0, 3410.0, 1590.0, 1610.0, 3395.0, 3405.0])
        data["atomcounting"] = {"volumes": vol, "estimatedDistributions": comp.reshape(1, 2), "mLogLik": [1.0, 2.0],
                                "selMin": 2.0, "offset": 0.0}  # fmt: skip
    scipy.io.savemat(path, data)
    return pos, kind, model


def test_a_statstem_file_is_read_into_the_package_types_and_conventions(tmp_path):
    pos, kind, model = _statstem_file(tmp_path / "s.mat")
    res = read_statstem(tmp_path / "s.mat")
    assert isinstance(res, StatSTEMResult)
    assert res.image.pixel_size_angstrom == DX and res.image.shape == (36, 36)
    assert res.type_names == ("Pb", "Cs")
    assert res.types.tolist() == kind.tolist()
    assert np.allclose(res.positions, pos, atol=1e-12)  # one pixel less than StatSTEM's coordinates
    fit = res.fit
    assert np.allclose(fit.positions, pos, atol=1e-12)
    assert np.allclose(fit.widths, model.widths) and np.allclose(fit.heights, model.heights)
    assert np.allclose(fit.scs, model.scs) and fit.background[0] == 100.0
    assert fit.width_mode == "shared" and fit.metadata["lsq"] == 12.5
    # the convention is right: the model this package renders from the file is StatSTEM's model
    assert np.allclose(fit.model().image(), model.image(), atol=1e-6 * model.image().max())
    assert res.counts.tolist() == [2, 2, 1, 1, 2, 2]
    assert np.allclose(res.strain["eps_xx"], np.linspace(-0.01, 0.01, 6))
    assert res.summary()["columns_per_type"] == {"Pb": 4, "Cs": 2}


def test_read_fit_write_read_loses_nothing(tmp_path):
    _, _, model = _statstem_file(tmp_path / "s.mat", counting=False)
    res = read_statstem(tmp_path / "s.mat")
    image = HAADFImage(add_poisson_noise(model.image() / 1e3, dose_e_per_angstrom2=5e5, pixel_size_angstrom=DX,
                                         rng=0), DX, normalised=True)  # fmt: skip
    fit = fit_columns(image, res.positions, types=np.array(res.type_names)[res.types], keep_residual=True)
    write_statstem(fit, tmp_path / "back.mat", image=image)
    back = read_statstem(tmp_path / "back.mat")
    assert np.array_equal(back.image.data, image.data) and back.image.pixel_size_angstrom == DX
    for f in dataclasses.fields(fit):
        mine, theirs = getattr(fit, f.name), getattr(back.fit, f.name)
        if isinstance(mine, np.ndarray):
            assert theirs.dtype == mine.dtype and np.array_equal(theirs, mine, equal_nan=True), f.name
        else:
            assert theirs == mine, f.name
    # StatSTEM's own fields alone carry the same fit (to rounding in the pixel shift)
    mat = scipy.io.loadmat(tmp_path / "back.mat", squeeze_me=True, struct_as_record=False)
    assert np.allclose(mat["output"].coordinates - DX, fit.positions, rtol=0, atol=1e-12)
    assert np.array_equal(mat["output"].rho, fit.widths) and np.array_equal(mat["output"].volumes, fit.scs)
    assert mat["input"].coordinates[:, 2].tolist() == (fit.types + 1).tolist()
    assert list(mat["input"].types) == list(fit.type_names)


def test_a_file_changed_in_statstem_after_writing_is_read_from_statstems_fields(tmp_path):
    _, kind, model = _statstem_file(tmp_path / "s.mat", counting=False)
    image = HAADFImage(model.image(), DX)
    fit = fit_columns(image, read_statstem(tmp_path / "s.mat").positions, types=kind)
    write_statstem(fit, tmp_path / "w.mat", image=image)
    mat = scipy.io.loadmat(tmp_path / "w.mat", squeeze_me=False, struct_as_record=True)
    mat["output"]["coordinates"][0, 0][0, 0] += 0.5  # a column moved by hand in StatSTEM
    scipy.io.savemat(tmp_path / "w.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.warns(UserWarning, match="changed after atomscount wrote"):
        back = read_statstem(tmp_path / "w.mat")
    assert back.fit.positions[0, 0] == pytest.approx(fit.positions[0, 0] + 0.5, abs=1e-12)
    assert np.isnan(back.fit.scs_error).all()


def test_files_that_are_not_statstem_results_are_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        read_statstem(tmp_path / "nope.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"something": np.ones(3)})
    with pytest.raises(ValueError, match="holds no StatSTEM image"):
        read_statstem(tmp_path / "other.mat")
    (tmp_path / "text.mat").write_text("not a MATLAB file")
    with pytest.raises(ValueError, match="not a MATLAB file"):
        read_statstem(tmp_path / "text.mat")
    _, kind, model = _truth()
    image = HAADFImage(model.image(), DX)
    fit = fit_columns(image, model.positions, types=kind)
    with pytest.raises(ValueError, match="image must be the fitted one"):
        write_statstem(fit, tmp_path / "x.mat", image=HAADFImage(model.image()[:30], DX))


def test_the_fit_command_takes_positions_and_image_from_a_statstem_file(tmp_path, capsys):
    from atomscount import ColumnFit
    from atomscount.cli import main

    pos, kind, _ = _statstem_file(tmp_path / "s.mat", counting=False)
    out = tmp_path / "fit"
    with pytest.warns(UserWarning, match="not normalised"):  # StatSTEM's images are detector counts
        assert main(["fit", str(tmp_path / "s.mat"), "--positions", str(tmp_path / "s.mat"), "--no-figures",
                     "--out", str(out)]) == 0  # fmt: skip
    fit = ColumnFit.from_hdf5(out / "fit.h5")
    assert fit.type_names == ("Cs", "Pb") and fit.n_columns == len(pos)
    assert np.abs(fit.positions - pos).max() < 0.01  # the noise-free image's own columns
    assert np.array_equal(np.array(fit.type_names)[fit.types], np.array(["Pb", "Cs"])[kind])


def _write_v73(path, data):
    """A MATLAB 7.3 file (HDF5 behind a 512-byte MATLAB header), laid out as MATLAB writes structs."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(group, name, value):
            if isinstance(value, dict):
                sub = group.create_group(name)
                sub.attrs["MATLAB_class"] = np.bytes_("struct")
                for k, v in value.items():
                    put(sub, k, v)
            elif isinstance(value, list):  # a cell array of strings
                ref_list = []
                for k, text in enumerate(value):
                    ds = refs.create_dataset(f"{name}{k}", data=np.array([[ord(c)] for c in text], np.uint16))
                    ds.attrs["MATLAB_class"] = np.bytes_("char")
                    ref_list.append(ds.ref)
                ds = group.create_dataset(name, data=np.array([ref_list], dtype=h5py.ref_dtype))
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
            else:  # MATLAB is column-major: HDF5 sees the transpose
                ds = group.create_dataset(name, data=np.atleast_2d(np.asarray(value, float)).T)
                ds.attrs["MATLAB_class"] = np.bytes_("double")

        for key, value in data.items():
            put(f, key, value)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sun Dec  6 05:00:00 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")


def test_a_matlab_7_3_file_is_read_like_a_version_5_one(tmp_path):
    pos, kind, model = _truth()
    eta, rho = model.heights, model.widths
    _write_v73(tmp_path / "v73.mat", {
        "input": {"obs": model.image(), "dx": DX, "coordinates": np.column_stack([pos + DX, kind + 1.0]),
                  "types": ["Pb", "Cs"]},
        "output": {"coordinates": pos + DX, "rho": rho[None, :], "eta": eta[None, :], "zeta": 100.0,
                   "volumes": (2 * np.pi * eta * rho**2)[None, :]},
    })  # fmt: skip
    res = read_statstem(tmp_path / "v73.mat")
    assert res.type_names == ("Pb", "Cs") and res.types.tolist() == kind.tolist()
    assert np.array_equal(res.image.data, model.image()) and res.image.pixel_size_angstrom == DX
    assert np.allclose(res.fit.positions, pos, atol=1e-12) and np.array_equal(res.fit.widths, rho)
    assert np.allclose(res.fit.model().image(), model.image(), atol=1e-6 * model.image().max())
