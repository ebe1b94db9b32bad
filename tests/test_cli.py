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
    # fit.h5 keeps the data, so that maps drawn from it alone (atomscount count fit.h5) show the image
    np.testing.assert_allclose(fit.model().image() + fit.residual, m.image(), atol=1e-5)


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
        p.name for p in out.iterdir()
    }
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


def test_fit_command_on_blank_image_stops_and_writes_nothing(tmp_path, capsys):
    # an empty result is never silent: the run stops with exit 2, says why, and leaves no folder
    import warnings

    np.save(tmp_path / "blank.npy", np.full((40, 40), 0.01))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(tmp_path / "blank.npy"), "--pixel-size", "0.1", "--out", str(out)]) == 2
    assert "image is flat: no columns found" in capsys.readouterr().err
    assert not out.exists()


def test_mask_invalid_on_an_all_nan_image_says_so(tmp_path, capsys):
    np.save(tmp_path / "nan.npy", np.full((32, 32), np.nan))
    code = main(["fit", str(tmp_path / "nan.npy"), "--pixel-size", "0.1", "--mask-invalid", "--out",
                 str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert "has no finite pixels: --mask-invalid leaves nothing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _subparsers(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subparsers(sub, (*prefix, name))


def test_every_option_of_every_subcommand_has_help_and_shows_its_default(capsys):
    """A default is shown where there is one; a required option and a None default show none
    (the help says what happens when the option is not given)."""
    import argparse

    import pytest

    from atomscount.cli import _parser

    seen = 0
    for path, sub in _subparsers(_parser()):
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or not action.option_strings:
                continue
            assert action.help, f"{' '.join(path)} {action.option_strings[0]} has no help text"
            if action.default not in (argparse.SUPPRESS, None) and action.required is False:
                assert f"(default: {action.default})" in text, f"{' '.join(path)} {action.option_strings[0]}"
            seen += 1
        assert "(default: None)" not in text, " ".join(path)
    assert seen > 40


def test_an_error_from_the_api_names_the_option_not_the_python_argument(tmp_path, capsys):
    pos = square_lattice((64, 64), 0.1, 1.6)
    m = ColumnModel((64, 64), 0.1, pos, np.full(len(pos), 0.3), 0.4, background=(0.02,))
    np.save(tmp_path / "img.npy", m.image())
    base = ["detect", str(tmp_path / "img.npy"), "--pixel-size", "0.1", "--normalised", "--out", str(tmp_path / "out")]
    assert main([*base, "--min-distance", "1e9"]) == 2
    err = capsys.readouterr().err
    assert "--min-distance must be smaller than the image" in err and "min_distance_angstrom" not in err
    assert main([*base, "--threshold", "0.3", "--exclude-border", "1e6"]) == 2
    assert "--exclude-border must be smaller than the image" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "img.npy"), "--pixel-size", "-0.1", "--out", str(tmp_path / "out")]) == 2
    assert "--pixel-size must be" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "nothing.npy"), "--pixel-size", "0.1", "--out", str(tmp_path / "out")]) == 2
    assert "error: image does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_option_names_replace_python_names_only_as_whole_names():
    from atomscount.cli import _parser
    from atomscount.cli.main import _option_names

    fit = dict(_subparsers(_parser()))[("fit",)]
    assert _option_names("max_iter must be >= 1, got 0", fit) == "--max-iter must be >= 1, got 0"
    assert _option_names("threshold must be a real number", fit) == "--threshold must be a real number"
    assert _option_names("a relative threshold of 0.3 finds peaks", fit) == "a relative threshold of 0.3 finds peaks"
    assert _option_names("image.data has 3 NaN/inf pixels", fit) == "image.data has 3 NaN/inf pixels"
    trace = dict(_subparsers(_parser()))[("tomo", "trace")]
    assert _option_names("n_classes must be >= 2, got 1", trace) == "--classes must be >= 2, got 1"
    assert _option_names("pixel_size_angstrom must be > 0", trace) == "pixel_size_angstrom must be > 0"


def test_help_and_an_argument_error_import_no_numerical_code():
    code = ("import sys\nfrom atomscount.cli import main\n"
            "try:\n    main(['fit', 'x.tif', '--out', 'o', '--min-distance', 'abc'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'scipy', 'numba', 'matplotlib', 'atomscount.columns') "
            "if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "--min-distance: invalid float value" in out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_defaults_equal_the_api_defaults():
    import inspect

    from atomscount import fit_columns
    from atomscount.cli import _parser

    sub = dict(_subparsers(_parser()))[("fit",)]
    api = inspect.signature(fit_columns).parameters
    for option, name in [("width", "width"), ("background", "background"), ("noise", "noise"),
                         ("max_iter", "max_iter")]:  # fmt: skip
        assert sub.get_default(option) == api[name].default, option


def test_a_missing_pixel_size_names_the_option(tmp_path, capsys):
    np.save(tmp_path / "img.npy", np.ones((32, 32)))
    assert main(["fit", str(tmp_path / "img.npy"), "--out", str(tmp_path / "out")]) == 2
    assert "give --pixel-size" in capsys.readouterr().err


def test_detect_then_fit_with_edited_positions_and_types(tmp_path, capsys):
    import csv

    pos = square_lattice((80, 80), 0.1, 2.0)
    heights = np.where(np.arange(len(pos)) % 2 == 0, 0.3, 0.6)
    m = ColumnModel((80, 80), 0.1, pos, heights, 0.45, background=(0.02,))
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, m.image().astype(np.float32), description=json.dumps({"pixel_size_angstrom": 0.1,
                     "normalised": True}))  # fmt: skip
    assert main(["detect", str(path), "--out", str(tmp_path / "det")]) == 0
    assert {"columns.csv", "detection.h5", "detection.png", "atomscount-run.json"} <= {
        p.name for p in (tmp_path / "det").iterdir()}  # fmt: skip
    with open(tmp_path / "det" / "columns.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(pos)
    # the user labels the two sublattices by brightness and fits with one width per type
    from scipy.spatial import cKDTree

    found = np.array([[float(r["x_angstrom"]), float(r["y_angstrom"])] for r in rows])
    _, idx = cKDTree(pos).query(found)
    for r, i in zip(rows, idx, strict=True):
        r["type"] = "bright" if heights[i] > 0.5 else "faint"
    with open(tmp_path / "typed.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["x_angstrom", "y_angstrom", "type"])
        w.writeheader()
        w.writerows(rows)
    assert main(["fit", str(path), "--types", str(tmp_path / "typed.csv"), "--no-figures",
                 "--out", str(tmp_path / "fit")]) == 0  # fmt: skip
    from atomscount import ColumnFit

    fit = ColumnFit.from_hdf5(tmp_path / "fit" / "fit.h5")
    assert fit.type_names == ("bright", "faint")
    np.testing.assert_allclose(np.sort(fit.scs), np.sort(m.scs), rtol=1e-4)


def test_count_refuses_a_library_for_an_unnormalised_fit_unless_hybrid(tmp_path, capsys):
    from atomscount.library import load_default

    lib = load_default("Au", "001")
    pos = square_lattice((100, 100), 0.1, 2.04)
    truth = np.random.default_rng(0).integers(2, 7, len(pos))
    heights = lib.scs_at(truth) / (2 * np.pi * 0.45**2)
    raw = ColumnModel((100, 100), 0.1, pos, heights, 0.45, background=(0.01,)).image() * 5e4 + 1e3
    tifffile.imwrite(tmp_path / "raw.tif", raw.astype(np.float32),
                     description=json.dumps({"pixel_size_angstrom": 0.1, "normalised": False}))  # fmt: skip
    import pytest

    with pytest.warns(UserWarning, match="not normalised"):
        assert main(["fit", str(tmp_path / "raw.tif"), "--out", str(tmp_path / "fit"), "--no-figures"]) == 0
    fit_h5 = str(tmp_path / "fit" / "fit.h5")
    assert main(["count", fit_h5, "--library", "Au:001", "--method", "library", "--out", str(tmp_path / "c")]) == 2
    assert "use --method hybrid" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert main(["count", fit_h5, "--library", "Au:001", "--method", "hybrid", "--out", str(tmp_path / "h")]) == 0
    from atomscount import ColumnFit
    from atomscount.counting import ColumnCounts

    counts = ColumnCounts.from_hdf5(tmp_path / "h" / "counts.h5")
    fit = ColumnFit.from_hdf5(fit_h5)
    from scipy.spatial import cKDTree

    _, idx = cKDTree(pos).query(fit.positions)
    assert np.mean(counts.counts == truth[idx]) > 0.95
    assert counts.counts.max() < 10  # never capped at the library's end
    assert counts.library_scale == pytest.approx(5e4, rel=0.05)


def test_frame_option_picks_or_averages_a_stack(tmp_path, capsys):
    import pytest

    pos = square_lattice((64, 64), 0.1, 1.6)
    frames = [ColumnModel((64, 64), 0.1, pos, np.full(len(pos), h), 0.4, background=(0.02,)).image()
              for h in (0.2, 0.4, 0.6)]  # fmt: skip
    np.save(tmp_path / "stack.npy", np.stack(frames))
    args = ["--pixel-size", "0.1", "--threshold", "0.2", "--min-distance", "1.2", "--no-figures"]
    from atomscount import ColumnFit

    with pytest.warns(UserWarning):
        assert main(["fit", str(tmp_path / "stack.npy"), *args, "--frame", "mean", "--out", str(tmp_path / "m")]) == 0
        assert main(["fit", str(tmp_path / "stack.npy"), *args, "--frame", "2", "--out", str(tmp_path / "f2")]) == 0
    mean = ColumnFit.from_hdf5(tmp_path / "m" / "fit.h5")
    last = ColumnFit.from_hdf5(tmp_path / "f2" / "fit.h5")
    np.testing.assert_allclose(np.median(mean.heights), 0.4, rtol=1e-3)
    np.testing.assert_allclose(np.median(last.heights), 0.6, rtol=1e-3)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["fit", str(tmp_path / "stack.npy"), *args, "--out", str(tmp_path / "f0")]) == 0
    assert any("3 frames" in str(w.message) for w in caught)


def test_count_reads_a_text_library_and_normalised_holds_the_scale(tmp_path, capsys):
    from atomscount import ColumnFit
    from atomscount.counting import ColumnCounts
    from atomscount.library import load_default

    lib = load_default("Au", "001")
    rows = "".join(f"{n} {s:.12g}\n" for n, s in zip(lib.n_atoms, lib.scs, strict=True))
    (tmp_path / "LibraryAu.txt").write_text("% StatSTEM library\nN SCS\n0 0\n" + rows)
    pos = square_lattice((100, 100), 0.1, 2.04)
    truth = np.random.default_rng(0).integers(2, 7, len(pos))
    m = ColumnModel((100, 100), 0.1, pos, lib.scs_at(truth) / (2 * np.pi * 0.45**2), 0.45, background=(0.01,))
    # the file does not say the image is normalised: --normalised declares it, and fit.h5 keeps it
    tifffile.imwrite(tmp_path / "img.tif", m.image().astype(np.float32),
                     description=json.dumps({"pixel_size_angstrom": 0.1}))  # fmt: skip
    assert main(["fit", str(tmp_path / "img.tif"), "--normalised", "--out", str(tmp_path / "fit"), "--no-figures"]) == 0
    fit_h5 = str(tmp_path / "fit" / "fit.h5")
    fit = ColumnFit.from_hdf5(fit_h5)
    assert fit.normalised is True
    from scipy.spatial import cKDTree

    _, idx = cKDTree(pos).query(fit.positions)
    for method in ("library", "hybrid"):
        out = tmp_path / method
        assert main(["count", fit_h5, "--library", str(tmp_path / "LibraryAu.txt"), "--method", method,
                     "--crystal", "Au", "--zone-axis", "001", "--out", str(out)]) == 0  # fmt: skip
        counts = ColumnCounts.from_hdf5(out / "counts.h5")
        np.testing.assert_array_equal(counts.counts, truth[idx])
        assert counts.library_scale == 1.0
    assert main(["count", fit_h5, "--library", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "--library file" in err and "does not exist" in err
    # a converged column with a negative SCS is left out with a warning and a note, not counted
    import dataclasses

    import pytest

    scs = fit.scs.copy()
    scs[3] = -0.01
    dataclasses.replace(fit, scs=scs).to_hdf5(tmp_path / "neg.h5")
    with pytest.warns(UserWarning) as record:
        assert main(["count", str(tmp_path / "neg.h5"), "--library", "Au:001", "--method", "hybrid",
                     "--out", str(tmp_path / "neg")]) == 0  # fmt: skip
    said = [str(w.message) for w in record]
    assert any(m.startswith("1 converged columns with a negative or NaN SCS are not counted (-1): 3 ") for m in said)
    assert all("negative or NaN SCS" in m or "without a count get no atoms" in m for m in said)
    counts = ColumnCounts.from_hdf5(tmp_path / "neg" / "counts.h5")
    assert counts.counts[3] == -1 and any("negative or NaN SCS" in n for n in counts.notes)
    np.testing.assert_array_equal(np.delete(counts.counts, 3), np.delete(truth[idx], 3))


def test_every_command_that_draws_takes_format_and_dpi():
    from atomscount._figures import FIGURE_FORMATS
    from atomscount.cli import _parser
    from atomscount.cli._run import FIGURE_FORMATS as CLI_FORMATS

    assert CLI_FORMATS == FIGURE_FORMATS  # named twice so that parsing imports no matplotlib
    drawing = {("demo",), ("detect",), ("fit",), ("count",), ("coreshell",), ("tomo", "reconstruct"),
               ("tomo", "trace"), ("library", "show"), ("strain",), ("elemental", "reconstruct"),
               ("elemental", "composition")}  # fmt: skip
    subs = dict(_subparsers(_parser()))
    for path in drawing:
        options = {o for a in subs[path]._actions for o in a.option_strings}
        assert {"--format", "--dpi"} <= options, path


def test_format_and_dpi_reach_the_figures_and_a_bad_dpi_stops_at_parsing(tmp_path, capsys):
    import pytest

    pos = square_lattice((48, 48), 0.1, 1.6)
    m = ColumnModel((48, 48), 0.1, pos, np.full(len(pos), 0.3), 0.4, background=(0.02,))
    np.save(tmp_path / "img.npy", m.image())
    base = ["fit", str(tmp_path / "img.npy"), "--pixel-size", "0.1", "--normalised", "--min-distance", "1.2"]
    for bad in ("-1", "0", "1e9", "abc"):
        with pytest.raises(SystemExit) as exc:
            main([*base, "--out", str(tmp_path / "out"), "--dpi", bad])
        assert exc.value.code == 2
        assert "argument --dpi: must" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "out"), "--format", "svg", "--dpi", "72"]) == 0
    figures = {p.suffix for p in (tmp_path / "out").iterdir() if p.suffix in (".png", ".pdf", ".svg")}
    assert figures == {".svg"}
    assert main(["library", "show", "Au:001", "--plot", str(tmp_path / "au"), "--format", "pdf"]) == 0
    assert (tmp_path / "au.pdf").read_bytes()[:5] == b"%PDF-"
