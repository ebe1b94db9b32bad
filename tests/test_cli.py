import json
import subprocess
import sys

import numpy as np
import tifffile

from atomscount import __version__
from atomscount.cli import main
from atomscount.columns.model import ColumnModel, square_lattice


def test_version_and_help(capsys):
    out = subprocess.run([sys.executable, "-m", "atomscount.cli", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"atomscount {__version__}"
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_fit_command_writes_results_and_figures(tmp_path, capsys):
    pos = square_lattice((80, 80), 0.1, 2.0)
    m = ColumnModel((80, 80), 0.1, pos, np.linspace(0.2, 0.6, len(pos)), 0.45, background=(0.02,))
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, m.image().astype(np.float32), description=json.dumps({"pixel_size_angstrom": 0.1,
                     "normalised": True}))  # fmt: skip
    out = tmp_path / "out"
    assert main(["fit", str(path), "--min-distance", "1.5", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"fit.h5", "columns.csv", "columns.png", "model_residual.png", "scs_map.png", "scs_histogram.png"} <= names
    from atomscount import ColumnFit

    fit = ColumnFit.from_hdf5(out / "fit.h5")
    assert fit.n_columns == len(pos)
    np.testing.assert_allclose(np.sort(fit.scs), np.sort(m.scs), rtol=1e-4)


def test_count_command_counts_a_fitted_image(tmp_path, capsys):
    from atomscount.library import load_default

    lib = load_default("Au", "001")
    pos = square_lattice((100, 100), 0.1, 2.04)
    truth = np.random.default_rng(0).integers(2, 7, len(pos))
    m = ColumnModel((100, 100), 0.1, pos, lib.scs_at(truth) / (2 * np.pi * 0.45**2), 0.45, background=(0.01,))
    tifffile.imwrite(tmp_path / "img.tif", m.image().astype(np.float32),
                     description=json.dumps({"pixel_size_angstrom": 0.1, "normalised": True}))  # fmt: skip
    assert main(["fit", str(tmp_path / "img.tif"), "--out", str(tmp_path / "fit"), "--no-figures"]) == 0
    out = tmp_path / "count"
    assert main(["count", str(tmp_path / "fit" / "fit.h5"), "--library", "Au:001", "--method", "library",
                 "--out", str(out)]) == 0  # fmt: skip
    from atomscount.counting import ColumnCounts

    counts = ColumnCounts.from_hdf5(out / "counts.h5")
    fit = __import__("atomscount").ColumnFit.from_hdf5(tmp_path / "fit" / "fit.h5")
    from scipy.spatial import cKDTree

    _, idx = cKDTree(pos).query(fit.positions)
    np.testing.assert_array_equal(counts.counts, truth[idx])
    assert {"counts.csv", "model.xyz", "model.cif", "count_map.png", "model_3d.png", "summary.json"} <= {
        p.name for p in out.iterdir()}
    assert main(["count", str(tmp_path / "fit" / "fit.h5"), "--library", "Xx:001", "--out", str(tmp_path / "c2")]) == 2
    assert "error" in capsys.readouterr().err


def test_fit_command_on_corrupt_file_fails_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    assert main(["fit", str(bad), "--pixel-size", "0.1", "--out", str(out)]) == 2
    assert "could not read" in capsys.readouterr().err
    assert not out.exists()


def test_demo_fits_and_counts_the_bundled_abtem_particle(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n_found_columns"] == s["n_true_columns"] == s["n_matched"]
    assert s["position_rms_error_angstrom"] < 0.05
    # the bundled image is a real abTEM simulation with known counts
    assert s["counting"]["hybrid"]["exact_fraction"] >= 0.95
    assert s["counting"]["library"]["exact_fraction"] >= 0.9
    assert s["counting"]["icl"]["within_one_fraction"] >= 0.95
    assert abs(s["counting"]["hybrid"]["total_atoms"] - s["true_atoms"]) <= 5
    assert "written to" in capsys.readouterr().out


def test_fit_command_on_blank_image_writes_empty_result(tmp_path, capsys):
    import warnings

    np.save(tmp_path / "blank.npy", np.full((40, 40), 0.01))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(tmp_path / "blank.npy"), "--pixel-size", "0.1", "--out", str(out)]) == 0
    from atomscount import ColumnFit

    assert ColumnFit.from_hdf5(out / "fit.h5").n_columns == 0
    assert "n_columns" in capsys.readouterr().out


def test_mask_invalid_on_an_all_nan_image_says_so(tmp_path, capsys):
    np.save(tmp_path / "nan.npy", np.full((32, 32), np.nan))
    code = main(["fit", str(tmp_path / "nan.npy"), "--pixel-size", "0.1", "--mask-invalid", "--out",
                 str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "has no finite pixels: --mask-invalid leaves nothing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
