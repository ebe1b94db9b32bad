"""`atomscount coreshell` on a small Au@Ag ball whose SCS come from the lensing model."""

import dataclasses
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from atomscount.cli import main  # noqa: E402
from atomscount.columns import ColumnFit  # noqa: E402
from atomscount.coreshell.forward import ForwardModel, LensingTables  # noqa: E402
from atomscount.coreshell.model import CoreShellModel  # noqa: E402
from atomscount.coreshell.search import core_codes  # noqa: E402
from atomscount.coreshell.sites import fcc_sites, group_columns, tilt_rotation  # noqa: E402
from atomscount.counting import ColumnCounts  # noqa: E402
from atomscount.library import load_default_lensing  # noqa: E402

SHIFT = np.array([12.0, 10.0])


def _fit(xy, scs, err) -> ColumnFit:
    n = len(scs)
    one = np.ones(n)
    return ColumnFit(
        positions=xy, positions_error=np.full((n, 2), 0.01), types=np.zeros(n, dtype=np.int64), type_names=("column",),
        heights=one, heights_error=0.01 * one, widths=0.5 * one, widths_error=0.01 * one, scs=scs, scs_error=err,
        voronoi_scs=scs, background=np.zeros(3), background_error=np.zeros(3), converged=np.ones(n, dtype=bool),
        input_index=np.arange(n), reduced_chi2=1.0, n_iterations=5, image_shape=(100, 100), pixel_size_angstrom=0.25,
        normalised=True,
    )  # fmt: skip


def _counts(counts) -> ColumnCounts:
    n = len(counts)
    values = np.unique(counts)
    return ColumnCounts(counts=counts, probability=np.ones(n), count_values=values,
                        posterior=np.eye(len(values))[np.searchsorted(values, counts)], method="library",
                        n_components=len(values), component_means=values.astype(float),
                        component_weights=np.full(len(values), 1.0 / len(values)), component_width=0.1,
                        icl=np.zeros(1), aic=np.zeros(1), bic=np.zeros(1), scs=np.zeros(n))  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coreshell_inputs")
    lensing = load_default_lensing("Au", "Ag", "001")
    pos = fcc_sites(4.08, 8.0)
    pos = pos[np.linalg.norm(pos, axis=1) <= 7.5]
    truth = core_codes(pos, [0.5, 0.0, 0.0], [4.0, 4.0, 4.0])
    t = LensingTables(lensing, core="Au", shell="Ag")
    rng = np.random.default_rng(5)
    files = {}
    for v, axis in enumerate(["001", "110"]):
        cols = group_columns(pos, None if v == 0 else tilt_rotation("001", axis))
        scs = ForwardModel(truth, [cols], [t], [np.zeros(cols.n_columns)], [np.ones(cols.n_columns)]).predicted[0]
        err = 0.02 * scs + 2e-4  # about the Cramér-Rao bound at 1e5 e/Å²
        _fit(cols.xy + SHIFT, scs + rng.normal(0, err), err).to_hdf5(folder / f"fit_{axis}.h5")
        _counts(np.diff(cols.start)).to_hdf5(folder / f"counts_{axis}.h5")
        files[axis] = (folder / f"fit_{axis}.h5", folder / f"counts_{axis}.h5")
    # a lensing model of the [001] geometry stands in for [110], which does not ship yet
    lensing_110 = folder / "auag_110.h5"
    dataclasses.replace(lensing, zone_axis="110").to_hdf5(lensing_110)
    return files, lensing_110, int(np.sum(truth == 2)), len(pos)


FAST = ["--n-anneal", "300", "--n-sample", "100"]


def test_one_view_writes_the_model_figures_and_summary(inputs, tmp_path, capsys):
    files, _, _, n_sites = inputs
    fit, counts = files["001"]
    out = tmp_path / "run"
    code = main(["coreshell", str(fit), "--lensing", "Au:Ag:001", "--counts", str(counts), "--core", "sphere",
                 *FAST, "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in out.iterdir()}
    assert {"model.h5", "model.xyz", "model.cif", "summary.json", "scs_0_001.png", "slice_elements.png",
            "slice_probability.png", "core_counts_0_001.png"} <= names  # fmt: skip
    model = CoreShellModel.from_hdf5(out / "model.h5")
    assert len(model.atoms) == n_sites and model.zone_axes == ("001",)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_sites"] == n_sites and summary["zone_axes"] == ["001"]
    assert len(summary["core_counts"][0]) == model.n_columns[0]
    assert "CoreShellModel(" in capsys.readouterr().out


def test_two_views_write_both_views_figures(inputs, tmp_path, capsys):
    files, lensing_110, _, _ = inputs
    out = tmp_path / "run2"
    code = main(["coreshell", str(files["001"][0]), str(files["110"][0]), "--lensing", "Au:Ag:001", "--lensing",
                 str(lensing_110), "--counts", str(files["001"][1]), "--counts", str(files["110"][1]), *FAST,
                 "--beam2", "0,1,0", "--no-figures", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["zone_axes"] == ["001", "110"] and len(summary["chi2"]) == 2
    assert not list(out.glob("*.png"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--core-element", "Pt"], "is a model for Ag/Au, but the particle is Pt"),
        (["--shell-element", "Au"], "is a model for Ag/Au"),
        (["--zone-axis", "110"], "no --lensing model for zone axis 110"),
        (["--beam2", "0,1,0"], "--beam2 '0,1,0' is the beam of a second fit, but 1 fit is given"),
        (["--max-proposals", "0"], "--max-proposals must be a positive integer or 'none', got '0'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(inputs, tmp_path, capsys, extra, message):
    files, _, _, _ = inputs
    fit, counts = files["001"]
    out = tmp_path / "bad"
    code = main(["coreshell", str(fit), "--lensing", "Au:Ag:001", "--counts", str(counts), *extra, *FAST,
                 "--out", str(out)])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_known_composition_and_shape_fitting_reach_the_search(inputs, tmp_path, capsys):
    files, _, n_core, n_sites = inputs
    fit, counts = files["001"]
    out = tmp_path / "known"
    code = main(["coreshell", str(fit), "--lensing", "Au:Ag:001", "--counts", str(counts), "--n-core",
                 str(n_core - 2), "--no-figures", *FAST, "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    model = CoreShellModel.from_hdf5(out / "model.h5")
    assert int(model.is_core.sum()) == n_core - 2 and model.info["n_core_fixed"] == n_core - 2
    out = tmp_path / "shape"
    # the SCS are the lensing model's own: its scale is 1
    code = main(["coreshell", str(fit), "--lensing", "Au:Ag:001", "--no-figures", "--scale-prior", "1.0,0.02",
                 *FAST, "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr()
    model = CoreShellModel.from_hdf5(out / "model.h5")
    assert model.info["fit_shape"] and abs(len(model.atoms) - n_sites) <= 0.25 * n_sites
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"]["counts"] == []


def test_counts_of_another_fit_are_refused(inputs, tmp_path, capsys):
    files, _, _, _ = inputs
    out = tmp_path / "bad"
    code = main(["coreshell", str(files["001"][0]), "--lensing", "Au:Ag:001", "--counts", str(files["110"][1]),
                 *FAST, "--out", str(out)])  # fmt: skip
    assert code == 2
    assert "columns, fit" in capsys.readouterr().err
    assert not out.exists()


def test_a_search_that_does_not_converge_says_so_last_and_exits_3(inputs, tmp_path, capsys):
    files, _, _, _ = inputs
    fit = ColumnFit.from_hdf5(files["001"][0])
    # SCS a quarter above what the lensing model gives any particle at the scale the search is told
    bright = dataclasses.replace(fit, scs=1.25 * fit.scs, scs_error=1.25 * fit.scs_error)
    bright.to_hdf5(tmp_path / "bright.h5")
    out = tmp_path / "run"
    code = main(["coreshell", str(tmp_path / "bright.h5"), "--lensing", "Au:Ag:001", "--no-figures",
                 "--scale-prior", "1.0,0.02", *FAST, "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 3
    assert printed[-1].startswith("NOT CONVERGED")
    # the files are there to inspect, and they say so too
    summary = json.loads((out / "summary.json").read_text())
    assert summary["converged"] is False


def test_max_proposals_reaches_the_search_and_a_tiny_cap_is_reported(inputs, tmp_path, capsys):
    files, _, _, _ = inputs
    fit, counts = files["001"]
    # 300 + 100 proposals asked for, 100 allowed: the one chain's pass is shortened to fit the cap
    out = tmp_path / "capped"
    code = main(["coreshell", str(fit), "--lensing", "Au:Ag:001", "--counts", str(counts), "--no-figures", *FAST,
                 "--max-proposals", "100", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 3
    assert printed[-1].startswith("NOT CONVERGED") and "stopped at max_proposals=100 " in printed[-1]
    model = CoreShellModel.from_hdf5(out / "model.h5")
    assert model.info["max_proposals"] == 100 and 0 < model.info["n_proposals"] <= 100
    # no cap: the search runs all it is asked for
    out = tmp_path / "uncapped"
    code = main(["coreshell", str(fit), "--lensing", "Au:Ag:001", "--counts", str(counts), "--no-figures", *FAST,
                 "--max-proposals", "none", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr()
    model = CoreShellModel.from_hdf5(out / "model.h5")
    assert model.info["max_proposals"] is None and "max_proposals" not in model.info["convergence"]
