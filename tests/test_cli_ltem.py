"""``atomscount ltem simulate | tie | retrieve`` on a small Bloch skyrmion lattice."""

import numpy as np
import pytest

from atomscount.cli import main
from atomscount.cli.ltem import read_series
from atomscount.ltem import PhaseRetrieval

# a 64² Bloch skyrmion lattice of 4 nm pixels at ±20 µm and in focus, 100 electrons per pixel
SIMULATE = ["ltem", "simulate", "--sample", "bloch", "--size", "64", "--pixel-size", "4", "--defocus=-20,0,20",
            "--dose", "100", "--seed", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("ltem") / "sim"
    assert main([*SIMULATE, "--out", str(out)]) == 0
    return out


def test_simulate_writes_the_series_and_its_true_phase(series):
    from atomscount.ltem import simulate_series, skyrmion_lattice

    assert sorted(p.name for p in series.iterdir()) == ["atomscount-run.json", "series.h5", "truth.npz"]
    got = read_series(series / "series.h5")
    np.testing.assert_allclose(got.defoci_nm, [-2e4, 0.0, 2e4])
    assert got.pixel_nm == 4.0 and got.images.shape == (3, 64, 64)
    sample = skyrmion_lattice("bloch", shape=(64, 64), pixel_nm=4.0)
    api = simulate_series(sample, [-2e4, 0.0, 2e4], dose_e_per_pixel=100, rng=2)
    np.testing.assert_array_equal(got.images, api.images)  # the same call as the API, the same counts
    with np.load(series / "truth.npz") as z:
        np.testing.assert_allclose(z["phase"], sample.phase(beam_energy_ev=300e3))


def test_tie_and_retrieve_write_a_result_and_figures(series, tmp_path, capsys):
    truth = np.load(series / "truth.npz")["phase"]
    assert main(["ltem", "tie", str(series / "series.h5"), "--out", str(tmp_path / "tie")]) == 0
    args = ["ltem", "retrieve", str(series / "series.h5"), "--fit", "phase,amplitude",
            "--iterations", "30", "--format", "svg", "--dpi", "50", "--out", str(tmp_path / "ad")]  # fmt: skip
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


def test_tie_reads_and_registers_image_files(series, tmp_path):
    """Three .tif files, one shifted by (3, -2) pixels: registered back before TIE, which then comes much
    closer to TIE on the aligned series than without registration. A smooth texture common to all three (as
    a film's thickness gives) is what the registration aligns: the in-focus image of a pure phase object is
    flat."""
    import dataclasses

    import tifffile
    from scipy.ndimage import gaussian_filter

    from atomscount.ltem import tie

    aligned = read_series(series / "series.h5")
    texture = gaussian_filter(np.random.default_rng(3).normal(size=aligned.shape), 3.0, mode="wrap")
    aligned = dataclasses.replace(aligned, images=aligned.images * (1 + 0.2 * texture / texture.std())[None] ** 2)
    files = []
    for i, image in enumerate(aligned.images):
        moved = np.roll(image, (3, -2), axis=(0, 1)) if i == 2 else image
        files.append(tmp_path / f"image{i}.tif")
        tifffile.imwrite(files[-1], moved.astype(np.float32))
    want = tie(aligned).phase
    core = (slice(8, -8), slice(8, -8))  # the rolled-in edge differs
    errors = {}
    for flag in ([], ["--no-register"]):
        out = tmp_path / f"tie{len(flag)}"
        cmd = ["ltem", "tie", *map(str, files), "--defocus=-20,0,20", "--pixel-size", "4", *flag, "--out", str(out)]
        assert main(cmd) == 0
        got = PhaseRetrieval.from_hdf5(out / "phase.h5").phase
        errors[len(flag)] = np.sqrt(np.mean((got - want)[core] ** 2))
    assert errors[0] < 0.3 * errors[1]  # registered: close to the aligned series' TIE; not registered: far


def test_image_files_need_one_defocus_each(tmp_path, capsys):
    import tifffile

    files = [tmp_path / f"image{i}.tif" for i in range(2)]
    for f in files:
        tifffile.imwrite(f, np.ones((16, 16), np.float32))
    assert main(["ltem", "tie", *map(str, files), "--defocus", "20", "--pixel-size", "4", "--out",
                 str(tmp_path / "x")]) != 0  # fmt: skip
    assert "--defocus must give one defocus [µm] per image file: 2 files, got 1 values" in capsys.readouterr().err


def test_retrieve_with_a_known_ms_constrains_the_slow_modes(tmp_path):
    """A vortex in a disk (permalloy-like: Ms 8e5 A/m, 30 nm): --ms and --thickness replace the retrieved phase's
    slowest modes by those of a film with ``|m| = Ms``, which brings it closer to the true phase (the cone the
    images barely constrain)."""
    sim = tmp_path / "sim"
    assert main(["ltem", "simulate", "--sample", "vortex", "--size", "128", "--dose", "100", "--seed", "1",
                 "--out", str(sim)]) == 0  # fmt: skip
    truth = np.load(sim / "truth.npz")["phase"]
    common = ["ltem", "retrieve", str(sim / "series.h5"), "--fit", "phase,amplitude", "--iterations", "30",
              "--format", "svg", "--dpi", "50"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "free")]) == 0
    assert main([*common, "--ms", "8e5", "--thickness", "30", "--out", str(tmp_path / "ms")]) == 0
    assert main([*common, "--vacuum", "none", "--out", str(tmp_path / "none")]) == 0
    free = PhaseRetrieval.from_hdf5(tmp_path / "free" / "phase.h5")
    none = PhaseRetrieval.from_hdf5(tmp_path / "none" / "phase.h5")
    # --vacuum reaches the API: the default's vacuum step ran and was kept; "none" left the TV fit as it was
    assert free.parameters["vacuum"]["applied"] and none.parameters["vacuum"] == "not asked"
    ms = PhaseRetrieval.from_hdf5(tmp_path / "ms" / "phase.h5")
    assert ms.method.endswith("+ms") and ms.parameters["magnetisation"]["ms_a_per_m"] == 8e5

    def rmse(a):
        d = a - truth
        return np.sqrt(np.mean((d - d.mean()) ** 2))

    # the default retrieval already makes the vacuum round the disk flat, which mends most of those modes
    # (0.34 rad here), so the constraint's gain on this small field is slight
    assert rmse(ms.phase) < rmse(free.phase) < min(0.4, 0.9 * rmse(none.phase))  # 0.34 against 0.41 rad


def test_retrieve_ms_needs_the_thickness(series, tmp_path, capsys):
    assert main(["ltem", "retrieve", str(series / "series.h5"), "--ms", "8e5", "--out", str(tmp_path / "x")]) != 0
    assert "--ms and --thickness go together" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
