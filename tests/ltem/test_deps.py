import importlib.util
import sys

import pytest

from atomscount.cli.main import main
from atomscount.ltem._deps import INSTALL, check_jax


def _without(monkeypatch, names):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in names else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_the_stage_without_jax_says_how_to_install_it(monkeypatch):
    check_jax()  # the test install has both
    _without(monkeypatch, {"jax"})
    with pytest.raises(ImportError, match=r"needs jax, .*pip install 'atomscount\[ltem\]'"):
        check_jax()
    _without(monkeypatch, {"jax", "optax"})
    with pytest.raises(ImportError, match="needs jax and optax"):
        check_jax()


def test_the_command_line_without_jax_stops_with_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    for name in [m for m in sys.modules if m == "atomscount.ltem" or m.startswith("atomscount.ltem.")]:
        if name != "atomscount.ltem._deps":
            monkeypatch.delitem(sys.modules, name)
    _without(monkeypatch, {"jax"})
    code = main(["ltem", "simulate", "--size", "32", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("atomscount ltem: error:") and INSTALL in err[-1]
    assert not (tmp_path / "s").exists()
