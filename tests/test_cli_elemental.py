"""``atomscount elemental simulate | reconstruct | composition`` on a tiny phantom."""

import numpy as np
import pytest

from atomscount.cli import main
from atomscount.elemental.result import ElementalVolumes
from atomscount.tomo import TiltSeries

# a 16³ Au@Ag rod of 3 Å voxels, 7 tilts: the series folder every test below reads
SIMULATE = ["elemental", "simulate", "--size", "16", "--voxel-size", "3", "--angles=-60:60:7", "--dose", "2e8",
            "--seed", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("elemental") / "series"
    assert main([*SIMULATE, "--out", str(out)]) == 0
    return out


def test_simulate_writes_a_series_folder_of_the_phantom(series):
    from atomscount.elemental.forward import simulate_edxs
    from atomscount.elemental.phantoms import core_shell_rod

    names = sorted(p.name for p in series.iterdir())
    assert names == ["atomscount-run.json", "edxs_Ag.h5", "edxs_Au.h5", "haadf.h5", "truth.npz"]
    truth = core_shell_rod(shape=(16, 16, 16), voxel_size_angstrom=3.0)
    with np.load(series / "truth.npz") as z:
        np.testing.assert_array_equal(z["Au"], truth["Au"])
    au = TiltSeries.from_hdf5(series / "edxs_Au.h5")
    np.testing.assert_allclose(au.angles[:, 1], np.linspace(-60, 60, 7))
    # the same call as the API with the same seed: the same counts
    api = simulate_edxs(truth, 3.0, np.linspace(-60, 60, 7), dose_e_per_angstrom2=2e8, rng=3)
    np.testing.assert_array_equal(au.images, api["Au"].images)
    assert np.all(au.images == np.round(au.images)) and au.images.sum() > 0


@pytest.mark.parametrize("method", ["separate", "multimodal"])
def test_reconstruct_writes_a_result_figures_and_exports(series, tmp_path, method, capsys):
    out = tmp_path / "rec"
    args = ["elemental", "reconstruct", str(series), "--method", method, "--iterations", "8", "--export",
            "--format", "svg", "--dpi", "50", "--out", str(out)]  # fmt: skip
    with pytest.warns(RuntimeWarning) if method == "multimodal" else _nothing():  # 8 iterations do not converge
        assert main(args) == 0
    result = ElementalVolumes.from_hdf5(out / "elemental.h5")
    assert result.elements == ("Ag", "Au") or result.elements == ("Au", "Ag")
    assert result.shape == (16, 16, 16)
    assert result.mask.any() and np.all((result.concentration >= 0) & (result.concentration <= 1))
    assert {p.suffix for p in (out / "figures").iterdir()} == {".svg"}
    assert (out / "figures" / "orthoslices.svg").is_file()
    assert len(list((out / "mrc").iterdir())) == 2 and len(list((out / "tif").iterdir())) == 2
    assert "elemental.h5" in capsys.readouterr().out


def test_composition_of_a_haadf_reconstruction(series, tmp_path):
    from atomscount.tomo import reconstruct

    volume = reconstruct(TiltSeries.from_hdf5(series / "haadf.h5"), n_iter=20, progress=False)
    volume.to_hdf5(tmp_path / "vol.h5")
    out = tmp_path / "comp"
    assert main(["elemental", "composition", str(tmp_path / "vol.h5"), "--elements", "Au,Ag", "--max-tilt", "60",
                 "--format", "svg", "--dpi", "50", "--out", str(out)]) == 0  # fmt: skip
    result = ElementalVolumes.from_hdf5(out / "elemental.h5")
    assert result.method == "haadf-composition" and result.elements == ("Au", "Ag")
    np.testing.assert_allclose(result.concentration.sum(axis=0)[result.mask], 1.0, atol=1e-9)


@pytest.mark.parametrize("argv, match", [
    (["reconstruct", "missing-folder", "--out", "o"], "series folder"),
    (["composition", "missing.h5", "--out", "o"], "volume file"),
    (["composition", "missing.h5", "--levels", "1,x", "--out", "o"], "--levels"),
    (["simulate", "--size", "16", "--dose", "-1", "--out", "o"], "--dose"),
    (["simulate", "--size", "16", "--dose", "1", "--voxel-size", "0", "--out", "o"], "--voxel-size"),
])  # fmt: skip
def test_bad_input_is_an_error_naming_the_option(tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    assert main(["elemental", *argv]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_empty_series_folder_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["elemental", "reconstruct", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "edxs_ELEMENT.h5" in capsys.readouterr().err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_options_defaults_are_the_apis():
    import inspect

    from atomscount.cli import _parser
    from atomscount.elemental.forward import simulate_edxs
    from atomscount.elemental.phantoms import core_shell_rod
    from atomscount.elemental.reconstruct import reconstruct_elemental, reconstruct_separate

    def default(func, name):
        return inspect.signature(func).parameters[name].default

    subs = _parser()._subparsers._group_actions[0].choices["elemental"]._subparsers._group_actions[0].choices
    simulate, reconstruct = subs["simulate"], subs["reconstruct"]
    assert simulate.get_default("voxel_size") == default(core_shell_rod, "voxel_size_angstrom")
    assert simulate.get_default("solid_angle") == default(simulate_edxs, "solid_angle_sr")
    assert simulate.get_default("beam_energy") == default(simulate_edxs, "beam_energy_ev")
    assert reconstruct.get_default("regulariser") == default(reconstruct_elemental, "regulariser")
    assert reconstruct.get_default("tol") == default(reconstruct_elemental, "tol")
    assert reconstruct.get_default("sum_to_one") == default(reconstruct_elemental, "sum_to_one")
    assert "at most 1000 multimodal" in reconstruct._option_string_actions["--iterations"].help
    assert "and 50 separate" in reconstruct._option_string_actions["--iterations"].help
    assert (default(reconstruct_elemental, "n_iter"), default(reconstruct_separate, "n_iter")) == (1000, 50)


def test_denoise_blend_option_reaches_the_api(series, tmp_path, capsys):
    from atomscount.elemental.denoise import DenoisedMaps, denoise_edxs

    out = tmp_path / "den"
    assert main(["elemental", "denoise", str(series), "--blend", "1", "--format", "svg", "--dpi", "50",
                 "--out", str(out)]) == 0  # fmt: skip
    assert "network weight 1.00, 1.00," in capsys.readouterr().out
    result = DenoisedMaps.from_hdf5(out / "denoised.h5")
    assert result.parameters["blend"]["network_weight"] == [1.0, 1.0] and result.parameters["blend"]["auto"] is False
    maps = {e: TiltSeries.from_hdf5(series / f"edxs_{e}.h5").images for e in ("Ag", "Au")}
    np.testing.assert_allclose(TiltSeries.from_hdf5(out / "edxs_Au.h5").images, denoise_edxs(maps, blend=1.0)["Au"])


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "half"])
def test_denoise_refuses_a_blend_outside_zero_to_one(series, tmp_path, bad, capsys):
    with pytest.raises(SystemExit):
        main(["elemental", "denoise", str(series), f"--blend={bad}", "--out", str(tmp_path / "den")])
    assert f"--blend must be 'auto' or a number in [0, 1], got {bad!r}" in capsys.readouterr().err
