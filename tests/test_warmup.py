"""First run: the kernels compile behind a notice and a progress bar, not in a silent minute."""

import numpy as np

import atomscount._warmup as warmup
from atomscount.cli import main


def test_kernels_are_found_in_the_cache_after_compiling():
    warmup.compile_kernels(progress=False)
    assert warmup.kernels_compiled() is True
    names = {fn.__name__ for fn in warmup._dispatchers()}
    assert {"render_columns", "normal_equations", "run_em"} <= names


def test_the_cli_announces_the_first_run_compile(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(warmup, "kernels_compiled", lambda: False)
    monkeypatch.setattr(warmup, "compile_kernels", lambda progress=True: calls.append(progress))
    np.save(tmp_path / "img.npy", np.full((32, 32), 0.02))
    import pytest

    with pytest.warns(UserWarning):
        main(["fit", str(tmp_path / "img.npy"), "--pixel-size", "0.1", "--out", str(tmp_path / "out")])
    assert "first run on this machine: compiling the numerical kernels" in capsys.readouterr().err
    assert calls == [True]
