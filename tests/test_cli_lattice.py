"""``atomscount strain`` and ``atomscount edit``."""

import subprocess
import sys

import numpy as np
import pytest

from atomscount.cli import main
from atomscount.columns.fit import ColumnFit

A = 4.0


def _fit(tmp_path, *, two_types=False):
    """A fit of a square lattice stretched by 2 % along x right of x = 20 Å (written as fit.h5), by hand."""
    ij = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2) * A + 2.0
    pos = ij + np.column_stack([0.02 * np.maximum(ij[:, 0] - 20.0, 0.0), np.zeros(len(ij))])
    types = np.zeros(len(pos), int)
    if two_types:
        pos = np.vstack([pos, pos + [A / 2 + 0.1, A / 2]])
        types = np.r_[types, np.ones(len(ij), int)]
    n = len(pos)
    ones = np.ones(n)
    fit = ColumnFit(positions=pos, positions_error=np.full((n, 2), 0.01), types=types,
                    type_names=("Sr", "Ti") if two_types else ("Sr",), heights=ones, heights_error=0.01 * ones,
                    widths=0.5 * ones, widths_error=0.01 * ones, scs=ones, scs_error=0.01 * ones, voronoi_scs=ones,
                    background=np.array([0.01, 0, 0]), background_error=np.zeros(3), converged=ones.astype(bool),
                    input_index=np.arange(n), reduced_chi2=1.0, n_iterations=3, image_shape=(168, 168),
                    pixel_size_angstrom=0.25)  # fmt: skip
    fit.to_hdf5(tmp_path / "fit.h5")
    return fit


def test_strain_writes_the_maps_of_the_api(tmp_path, capsys):
    from atomscount.lattice.strain import StrainMap, strain_map

    fit = _fit(tmp_path)
    out = tmp_path / "out"
    code = main(["strain", str(tmp_path / "fit.h5"), "--region", "0", "18", "0", "40", "--out", str(out)])
    assert code == 0
    got = StrainMap.from_hdf5(out / "strain.h5")
    want = strain_map(fit, reference_region=(0, 18, 0, 40))
    np.testing.assert_array_equal(got.eps_xx, want.eps_xx)
    far = fit.positions[:, 0] > 20 + 1.6 * A
    np.testing.assert_allclose(got.eps_xx[far], 0.02, atol=1e-9)
    for name in ("strain.csv", "strain_eps_xx.png", "strain_omega_xy.png", "displacements.png"):
        assert (out / name).is_file(), name
    assert "ε_xx" in capsys.readouterr().out


def test_strain_with_polarisation_and_options(tmp_path, capsys):
    from atomscount.lattice.polarisation import PolarisationMap

    _fit(tmp_path, two_types=True)
    out = tmp_path / "out"
    code = main(["strain", str(tmp_path / "fit.h5"), "--polarisation", "Sr", "Ti", "--angle", "90",
                 "--neighbour-radius", "1.1", "--sublattice", "Sr", "--sublattice", "Ti", "--no-figures",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    pol = PolarisationMap.from_hdf5(out / "polarisation.h5")
    left = pol.valid & (pol.positions[:, 0] < 18)
    np.testing.assert_allclose(pol.vectors[left], [[0.1, 0.0]] * int(left.sum()), atol=1e-9)
    assert not (out / "strain_eps_xx.png").exists()
    assert "polarisation:" in capsys.readouterr().out


def test_strain_reads_a_statstem_file_and_takes_statstem_s_reference(tmp_path, capsys):
    from atomscount.columns.model import ColumnModel
    from atomscount.image import HAADFImage
    from atomscount.lattice import StrainMap, reference_cells, strain_map, write_statstem

    fit = _fit(tmp_path, two_types=True)
    image = HAADFImage(ColumnModel((168, 168), 0.25, fit.positions, heights=fit.heights, widths=0.5).image(), 0.25)
    write_statstem(fit, tmp_path / "result.mat", image=image)
    out = tmp_path / "out"
    code = main(["strain", str(tmp_path / "result.mat"), "--reference-at", "18", "18", "--cells", "2",
                 "--angle", "90", "--neighbour-radius", "1.1", "--min-neighbours", "2", "--no-figures",
                 "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    got = StrainMap.from_hdf5(out / "strain.h5")
    region = reference_cells(fit, (18, 18), n_cells=2)
    assert got.in_reference.tolist() == region.tolist() and region.sum() == 13
    want = strain_map(fit, reference_region=region, angle_degrees=90, neighbour_radius=1.1, min_neighbours=2)
    np.testing.assert_allclose(got.eps_xx, want.eps_xx, atol=1e-12)
    assert got.n_neighbours.max() == 4 and got.valid.all()
    assert main(["strain", str(tmp_path / "result.mat"), "--reference-at", "18", "18", "--region", "0", "1", "0",
                 "1", "--out", str(tmp_path / "o2")]) == 2  # fmt: skip
    assert "give --region or --reference-at, not both" in capsys.readouterr().err


def test_strain_errors_name_the_option(tmp_path, capsys):
    _fit(tmp_path)
    code = main(["strain", str(tmp_path / "fit.h5"), "--region", "5", "1", "0", "1", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--region must be (x0, x1, y0, y1)" in err
    assert not (tmp_path / "o").exists()
    assert main(["strain", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "o")]) == 2
    assert main(["strain", str(tmp_path / "fit.h5"), "--sublattice", "Ti", "--out", str(tmp_path / "o")]) == 2
    assert "--sublattice must name one of ['Sr']" in capsys.readouterr().err


def test_edit_without_a_display_stops_with_a_clear_message(tmp_path):
    (tmp_path / "columns.csv").write_text("x_angstrom,y_angstrom,type\n1.0,1.0,Sr\n3.0,1.0,Ti\n")
    np.save(tmp_path / "image.npy", np.ones((20, 20)))
    code = ("import matplotlib\nmatplotlib.use('Agg')\nimport sys\nfrom atomscount.cli import main\n"
            f"sys.exit(main(['edit', {str(tmp_path / 'columns.csv')!r}, {str(tmp_path / 'image.npy')!r}, "
            "'--pixel-size', '0.2']))")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "the editor needs a display" in run.stderr and "MPLBACKEND" in run.stderr
    assert not (tmp_path / "columns_edited.csv").exists()


def test_edit_with_a_display_saves_what_the_editor_holds(tmp_path, monkeypatch, capsys):
    """The window's part replaced: show() returns at once, as when the user closes it without an edit."""
    import matplotlib.pyplot as plt

    import atomscount.cli.lattice as cli_lattice

    (tmp_path / "columns.csv").write_text("x_angstrom,y_angstrom,type\n1.0,1.0,Sr\n3.0,1.0,Ti\n")
    np.save(tmp_path / "image.npy", np.ones((20, 20)))
    monkeypatch.setattr(cli_lattice, "_interactive_backend", lambda: "QtAgg")
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    try:
        code = main(["edit", str(tmp_path / "columns.csv"), str(tmp_path / "image.npy"), "--pixel-size", "0.2"])
    finally:
        plt.close("all")
    assert code == 0
    text = (tmp_path / "columns_edited.csv").read_text().splitlines()
    assert text == ["x_angstrom,y_angstrom,type", "1.000000,1.000000,Sr", "3.000000,1.000000,Ti"]
    assert "2 columns (2 before)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["strain", "edit"])
def test_help_imports_no_numerical_code(command):
    code = (
        "import sys\nfrom atomscount.cli import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'matplotlib', 'atomscount.lattice') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"
