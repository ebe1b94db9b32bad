"""Issue 11: the command line stops cleanly and never leaves a partial or stale output folder."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

import atomscount.columns.fit
from atomscount.cli import main
from atomscount.columns.model import ColumnModel, square_lattice


def _leftovers(parent: Path, name: str) -> list:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _write_image(path: Path, size: int, spacing: float = 2.0, rng=0):
    pos = square_lattice((size, size), 0.1, spacing)
    heights = np.random.default_rng(rng).uniform(0.2, 0.6, len(pos))
    img = ColumnModel((size, size), 0.1, pos, heights, 0.45, background=(0.02,)).image()
    tifffile.imwrite(path, img.astype(np.float32), description=json.dumps({"pixel_size_angstrom": 0.1,
                     "normalised": True}))  # fmt: skip
    return len(pos)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.tif"
    _write_image(path, 80)
    return path


def _complete(out: Path) -> bool:
    return (out / "atomscount-run.json").is_file() and (out / "fit.h5").is_file()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_fit_exits_with_one_line_and_no_output(tmp_path, sig, code):
    path = tmp_path / "big.tif"
    _write_image(path, 1000, spacing=1.2)  # 6,889 columns: the whole run takes 10-20 s
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "atomscount", "fit", str(path), "--out", str(out), "--threshold",
                             "0.1", "--min-distance", "0.9", "--no-figures"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    # wait until the fit is under way (the temporary folder exists), then signal
    deadline = time.monotonic() + 120
    while not _leftovers(tmp_path, "out") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "the fit finished before the signal: make the image larger"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == f"atomscount fit: {'interrupted' if code == 130 else 'terminated'}; no output written"
    assert not out.exists()
    assert _leftovers(tmp_path, "out") == []


def _interrupt_during(monkeypatch, what):
    """Make ColumnFit.to_csv (called after fit.h5 is written) run ``what`` first."""
    real = atomscount.columns.fit.ColumnFit.to_csv

    def to_csv(self, path):
        what()
        real(self, path)

    monkeypatch.setattr(atomscount.columns.fit.ColumnFit, "to_csv", to_csv)


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("what", "code"),
    [(_raise_keyboard_interrupt, 130),
     (lambda: os.kill(os.getpid(), signal.SIGTERM), 143)],
)  # fmt: skip
def test_signal_mid_write_leaves_the_earlier_run_untouched(tmp_path, image, monkeypatch, capsys, what, code):
    out = tmp_path / "out"
    assert main(["fit", str(image), "--out", str(out), "--no-figures"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    _interrupt_during(monkeypatch, what)
    assert main(["fit", str(image), "--out", str(out), "--no-figures"]) == code
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert _leftovers(tmp_path, "out") == []


def test_an_interrupt_swallowed_by_a_library_still_stops_the_run(tmp_path, image, monkeypatch, capsys):
    def swallowed():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:  # what an HDF5 callback or a destructor does with it
            pass

    _interrupt_during(monkeypatch, swallowed)
    out = tmp_path / "out"
    assert main(["fit", str(image), "--out", str(out), "--no-figures"]) == 130
    assert not out.exists()
    assert _leftovers(tmp_path, "out") == []


def test_a_rerun_replaces_the_whole_folder(tmp_path, image, capsys):
    out = tmp_path / "out"
    assert main(["fit", str(image), "--out", str(out)]) == 0
    assert (out / "columns.png").is_file()
    assert main(["fit", str(image), "--no-figures", "--out", str(out)]) == 0
    assert not list(out.glob("*.png"))  # no figures from the earlier run beside the new result
    assert _complete(out)
    # a run that fails (a flat image: no columns) loses nothing: the last result stays whole
    flat = tmp_path / "flat.npy"
    np.save(flat, np.full((64, 64), 0.02))
    with pytest.warns(UserWarning):
        assert main(["fit", str(flat), "--pixel-size", "0.1", "--out", str(out)]) == 2
    assert "no columns found" in capsys.readouterr().err
    assert _complete(out) and not list(out.glob("*.png"))


def test_out_is_checked_before_any_work(tmp_path, image, monkeypatch, capsys):
    def no_work(*a, **k):
        raise AssertionError("the fit ran before --out was checked")

    monkeypatch.setattr("atomscount.columns.find_columns", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["fit", str(image), "--out", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "--out folder" in err and "cannot be written" in err and ".tmp" not in err
    assert main(["fit", str(image), "--out", str(blocker)]) == 2
    assert "--out must be a folder" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["fit", str(image), "--out", str(foreign)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_count_with_an_unknown_crystal_writes_nothing(tmp_path, image, capsys):
    assert main(["fit", str(image), "--out", str(tmp_path / "fit"), "--no-figures"]) == 0
    out = tmp_path / "count"
    code = main(["count", str(tmp_path / "fit" / "fit.h5"), "--library", "Au:001", "--crystal", "Xx",
                 "--out", str(out)])  # fmt: skip
    assert code == 2
    assert "--crystal 'Xx'" in capsys.readouterr().err
    assert not out.exists()
    assert _leftovers(tmp_path, "count") == []
