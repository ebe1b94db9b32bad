"""``atomscount ltem simulate | tie | retrieve`` on a small vortex disk."""

import numpy as np
import pytest

from atomscount.cli import main
from atomscount.cli.ltem import read_series
from atomscount.ltem import PhaseRetrieval

# a 64² vortex disk of 4 nm pixels at ±20 µm and in focus, 100 electrons per pixel
SIMULATE = ["ltem", "simulate", "--sample", "vortex", "--size", "64", "--pixel-size", "4", "--defocus=-20,0,20",
            "--dose", "100", "--seed", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("ltem") / "sim"
    assert main([*SIMULATE, "--out", str(out)]) == 0
    return out


def test_simulate_writes_the_series_and_its_true_phase(series):
    from atomscount.ltem import simulate_series, vortex_disk

    assert sorted(p.name for p in series.iterdir()) == ["atomscount-run.json", "series.h5", "truth.npz"]
    got = read_series(series / "series.h5")
    np.testing.assert_allclose(got.defoci_nm, [-2e4, 0.0, 2e4])
    assert got.pixel_nm == 4.0 and got.images.shape == (3, 64, 64)
    sample = vortex_disk(shape=(64, 64), pixel_nm=4.0)
    api = simulate_series(sample, [-2e4, 0.0, 2e4], dose_e_per_pixel=100, rng=2)
    np.testing.assert_array_equal(got.images, api.images)  # the same call as the API, the same counts
    with np.load(series / "truth.npz") as z:
        np.testing.assert_allclose(z["phase"], sample.phase(beam_energy_ev=300e3))


def test_tie_and_retrieve_write_a_result_and_figures(series, tmp_path, capsys):
    truth = np.load(series / "truth.npz")["phase"]
    assert main(["ltem", "tie", str(series / "series.h5"), "--out", str(tmp_path / "tie")]) == 0
    args = ["ltem", "retrieve", str(series / "series.h5"), "--fit", "phase,amplitude", "--optimiser", "adam",
            "--iterations", "60", "--format", "svg", "--dpi", "50", "--out", str(tmp_path / "ad")]  # fmt: skip
    assert main(args) == 0
    tie = PhaseRetrieval.from_hdf5(tmp_path / "tie" / "phase.h5")
    ad = PhaseRetrieval.from_hdf5(tmp_path / "ad" / "phase.h5")
    assert tie.method == "tie" and ad.method == "ad" and ad.uncertainty is not None

    def rmse(a):
        d = a - truth
        return np.sqrt(np.mean((d - d.mean()) ** 2))

    assert rmse(ad.phase) < rmse(tie.phase)
    assert {p.name for p in (tmp_path / "ad" / "figures").iterdir()} == {"phase.svg", "induction.svg",
                                                                          "images_model.svg", "loss.svg"}  # fmt: skip
    assert "phase.h5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--fit", "phase,spin"], "fit must be one of"),
     (["--weight", "lots"], "--weight must be 'auto' or a number, got 'lots'")],
)  # fmt: skip
def test_retrieve_bad_options(series, tmp_path, capsys, args, message):
    assert main(["ltem", "retrieve", str(series / "series.h5"), *args, "--out", str(tmp_path / "x")]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_missing_series_file_is_named(tmp_path, capsys):
    assert main(["ltem", "tie", str(tmp_path / "none.h5"), "--out", str(tmp_path / "x")]) != 0
    assert "none.h5" in capsys.readouterr().err
