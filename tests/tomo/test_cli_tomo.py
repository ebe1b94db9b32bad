"""`atomscount tomo` simulate -> reconstruct -> trace -> compare on a few atoms."""

import json

import matplotlib

matplotlib.use("Agg")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

from atomscount.cli import main  # noqa: E402
from atomscount.tomo import TiltSeries, Volume  # noqa: E402


def test_the_four_actions_chain_and_recover_the_atoms(tmp_path, capsys):
    rng = np.random.default_rng(4)
    pos = []
    while len(pos) < 12:  # atoms at least 2.6 Å apart
        p = rng.uniform(-5, 5, 3)
        if all(np.linalg.norm(p - q) > 2.6 for q in pos):
            pos.append(p)
    truth = Atoms(["Pt"] * 8 + ["Fe"] * 4, positions=np.array(pos))
    ase.io.write(tmp_path / "truth.xyz", truth)
    series, volume, traced, figs = (tmp_path / n for n in ("tilt.h5", "vol.h5", "atoms.xyz", "figs"))
    assert main(["tomo", "simulate", str(tmp_path / "truth.xyz"), "--angles=-70:70:29", "--pixel-size", "0.4",
                 "--out", str(series)]) == 0  # fmt: skip
    assert TiltSeries.from_hdf5(series).n_projections == 29
    assert main(["tomo", "reconstruct", str(series), "--iterations", "30", "--out", str(volume), "--figures",
                 str(figs)]) == 0  # fmt: skip
    assert Volume.from_hdf5(volume).r1.shape == (30,)
    assert main(["tomo", "trace", str(volume), "--names", "non-atom,Fe,Pt", "--out", str(traced), "--figures",
                 str(figs)]) == 0  # fmt: skip
    assert {p.name for p in figs.iterdir()} == {"orthoslices.png", "slices_z.png", "r1.png", "intensity_histogram.png",
                                                 "model_3d.png", "pair_distribution.png",
                                                 "bond_order.png"}  # fmt: skip
    capsys.readouterr()
    assert main(["tomo", "compare", str(traced), str(tmp_path / "truth.xyz")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["recall"] == 1.0 and scores["classification_accuracy"] == 1.0, scores


def test_bad_angles_and_files_exit_2_with_the_argument_named(tmp_path, capsys):
    out = tmp_path / "t.h5"
    assert main(["tomo", "simulate", str(tmp_path / "missing.xyz"), "--angles", "0:10:3", "--pixel-size", "0.4",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "missing.xyz" in capsys.readouterr().err
    ase.io.write(tmp_path / "m.xyz", Atoms(["Pt"], positions=[[0, 0, 0]]))
    assert main(["tomo", "simulate", str(tmp_path / "m.xyz"), "--angles", "0:10", "--pixel-size", "0.4",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "--angles must be START:STOP:COUNT" in capsys.readouterr().err
    assert main(["tomo", "simulate", str(tmp_path / "m.xyz"), "--angles", "0:10:3", "--pixel-size", "0",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "--pixel-size must be > 0, got 0.0" in capsys.readouterr().err  # the option, not the Python name
    assert not out.exists()


def test_trace_with_the_series_refines_against_the_projections(tmp_path, capsys):
    from ase.cluster import Octahedron

    cluster = Octahedron("Pt", 5, cutoff=1, latticeconstant=3.85)  # 79 atoms of an fcc cluster
    rng = np.random.default_rng(5)
    symbols = np.array(cluster.get_chemical_symbols(), dtype=object)
    symbols[rng.permutation(len(cluster))[: len(cluster) // 3]] = "Fe"
    cluster.set_chemical_symbols(list(symbols))
    cluster.positions -= cluster.positions.mean(axis=0)
    ase.io.write(tmp_path / "truth.xyz", cluster)
    series, volume, traced = (tmp_path / n for n in ("tilt.h5", "vol.h5", "atoms.xyz"))
    assert main(["tomo", "simulate", str(tmp_path / "truth.xyz"), "--angles=-65:65:27", "--pixel-size", "0.35",
                 "--dose", "1e5", "--seed", "2", "--out", str(series)]) == 0  # fmt: skip
    assert main(["tomo", "reconstruct", str(series), "--iterations", "30", "--out", str(volume)]) == 0
    assert main(["tomo", "trace", str(volume), "--series", str(series), "--names", "non-atom,Fe,Pt",
                 "--out", str(traced)]) == 0  # fmt: skip
    assert "refined: width" in capsys.readouterr().out
    written = ase.io.read(traced)
    assert "strength" in written.arrays and np.all(written.arrays["strength"] > 0)
    capsys.readouterr()
    assert main(["tomo", "compare", str(traced), str(tmp_path / "truth.xyz")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["recall"] == 1.0 and scores["precision"] == 1.0, scores
    assert scores["classification_accuracy"] == 1.0 and scores["rmsd_pm"] < 10.0, scores


def test_the_shipped_multislice_series_runs_from_the_command_line(tmp_path, capsys):
    from importlib import resources

    shipped = str(resources.files("atomscount") / "data" / "fept_tilt_series.npz")
    volume, traced = tmp_path / "vol.h5", tmp_path / "atoms.xyz"
    noise = ["--dose", "1e5", "--seed", "3", "--every", "3"]
    assert main(["tomo", "reconstruct", shipped, *noise, "--iterations", "15", "--out", str(volume)]) == 0
    vol = Volume.from_hdf5(volume)
    assert vol.data.shape == (86, 86, 86) and vol.pixel_size_angstrom == 0.3725
    assert main(["tomo", "trace", str(volume), "--series", shipped, *noise, "--names", "non-atom,Fe,Pt",
                 "--out", str(traced)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["tomo", "compare", str(traced), shipped]) == 0  # the archive holds the true 374 atoms
    scores = json.loads(capsys.readouterr().out)
    assert scores["n_true"] == 374
    assert scores["recall"] > 0.9 and scores["precision"] > 0.99, scores  # 12 tilts, 15 iterations: 0.93
    assert scores["classification_accuracy"] == 1.0, scores


def test_the_npz_reader_adds_seeded_noise_and_takes_every_nth_tilt():
    from importlib import resources

    from atomscount.tomo import read_tilt_series

    shipped = resources.files("atomscount") / "data" / "fept_tilt_series.npz"
    clean = read_tilt_series(shipped)
    with np.load(shipped) as z:
        assert np.array_equal(clean.images, z["images"].astype(np.float64))
        assert np.allclose(clean.angles[:, 1], z["tilts_deg"])
    a = read_tilt_series(shipped, dose_e_per_angstrom2=1e4, every=3, rng=1)
    b = read_tilt_series(shipped, dose_e_per_angstrom2=1e4, every=3, rng=1)
    assert a.n_projections == 12 and np.array_equal(a.images, b.images)
    counts = a.images * 1e4 * 0.3725**2
    assert np.allclose(counts, np.round(counts)) and not np.array_equal(a.images, clean.images[::3])
    # Poisson: the counts' mean follows the noise-free images
    assert abs(counts.sum() / (clean.images[::3].sum() * 1e4 * 0.3725**2) - 1) < 0.01
