import dataclasses
import re

import h5py
import numpy as np
import pytest

from atomscount.io import FileFormatError
from atomscount.library import MicroscopeSettings, ScsLibrary, build_scs_library, thickness_curve

COARSE = dict(sampling_angstrom=0.08, outer_angle_mrad=80.0, inner_angle_mrad=30.0, scan_step_angstrom=0.5,
              lateral_extent_angstrom=8.0, semiangle_mrad=20.0)  # fmt: skip


@pytest.fixture(scope="module")
def small_library():
    s = MicroscopeSettings(num_configs=2, seed=3, rms_displacement_angstrom={"Au": 0.09}, **COARSE)
    return build_scs_library("Au", "001", 4, s, progress=False)


def test_library_grows_with_thickness_and_reports_phonon_spread(small_library):
    lib = small_library
    assert lib.n_atoms.tolist() == [1, 2, 3, 4]
    assert np.all(np.diff(lib.scs) > 0) and lib.scs[0] > 0
    assert lib.scs_per_config.shape == (2, 4)
    np.testing.assert_allclose(lib.scs, lib.scs_per_config.mean(axis=0))
    assert np.all(lib.scs_sem > 0) and np.all(lib.scs_sem < 0.2 * lib.scs)
    assert len(set(lib.seeds.tolist())) == 2
    assert lib.provenance["n_scan_points"] == 25 and lib.provenance["abtem_version"]
    assert lib.provenance["scanned_area_angstrom2"] == pytest.approx(4.08**2 / 4, rel=1e-9)
    # too short a table for the 4-parameter curve: extrapolation continues its last step
    np.testing.assert_allclose(thickness_curve(lib.n_atoms[-2:], **lib.curve), lib.scs[-2:], rtol=1e-9)
    assert np.all(np.diff(thickness_curve(np.arange(4, 20), **lib.curve)) > 0)


def test_thickness_curve_continues_a_long_table():
    from atomscount.library.scs import _fit_curve

    n = np.arange(1, 41)
    scs = 0.0125 * n + 0.2 * (1 - np.exp(-n / 9.0)) - 0.01 * np.exp(-n / 1.5)  # convex onset, then channelling
    curve = _fit_curve(n, scs, np.zeros_like(scs))
    np.testing.assert_allclose(thickness_curve(n[20:], **curve), scs[20:], rtol=2e-3)
    truth_50 = 0.0125 * 50 + 0.2 * (1 - np.exp(-50 / 9.0))
    assert thickness_curve(50, **curve) == pytest.approx(truth_50, rel=0.01)


def test_configurations_are_reproducible_from_their_seeds(small_library):
    s = MicroscopeSettings.from_dict(small_library.settings)
    again = build_scs_library("Au", "001", 4, s, progress=False)
    np.testing.assert_allclose(again.scs_per_config, small_library.scs_per_config, rtol=1e-6)


def test_a_cached_build_resumes_without_simulating_again(small_library, tmp_path, monkeypatch):
    import atomscount.library.simulate as sim

    s = MicroscopeSettings.from_dict(small_library.settings)
    first = build_scs_library("Au", "001", 4, s, progress=False, cache_dir=tmp_path / "work")
    files = sorted((tmp_path / "work").glob("config_*.npy"))
    assert len(files) == 2 and not list((tmp_path / "work").glob("*.part"))
    np.testing.assert_allclose(first.scs_per_config, small_library.scs_per_config, rtol=1e-6)

    def must_not_run(*args):
        raise AssertionError("a cached configuration was simulated again")

    monkeypatch.setattr(sim, "_one_config", must_not_run)
    again = build_scs_library("Au", "001", 4, s, progress=False, cache_dir=tmp_path / "work")
    np.testing.assert_array_equal(again.scs_per_config, first.scs_per_config)
    # more configurations reuse the cached ones (nested seeds) and simulate only the new
    monkeypatch.undo()
    more = MicroscopeSettings.from_dict({**small_library.settings, "num_configs": 3})
    bigger = build_scs_library("Au", "001", 4, more, progress=False, cache_dir=tmp_path / "work")
    np.testing.assert_array_equal(bigger.scs_per_config[:2], first.scs_per_config)
    assert len(list((tmp_path / "work").glob("config_*.npy"))) == 3
    monkeypatch.setattr(sim, "_one_config", must_not_run)
    # other settings are other tasks: nothing is read from the wrong file
    other = MicroscopeSettings.from_dict({**small_library.settings, "seed": 4})
    with pytest.raises(AssertionError, match="simulated again"):
        build_scs_library("Au", "001", 4, other, progress=False, cache_dir=tmp_path / "work")


def test_local_worker_processes_give_the_same_configurations(small_library):
    s = MicroscopeSettings.from_dict(small_library.settings)
    parallel = build_scs_library("Au", "001", 4, s, progress=False, workers=2)
    np.testing.assert_allclose(parallel.scs_per_config, small_library.scs_per_config, rtol=1e-6)
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        build_scs_library("Au", "001", 4, s, progress=False, workers=0)


def test_range_checks_and_extrapolation(small_library):
    lib = small_library
    np.testing.assert_allclose(lib.scs_at([1, 4]), lib.scs[[0, 3]])
    assert lib.scs_at([1.5])[0] == pytest.approx(0.5 * (lib.scs[0] + lib.scs[1]))
    with pytest.raises(ValueError, match=r"n must lie within the library range 1..4 for Au \[001\], got \[6.0\]"):
        lib.scs_at([6])
    with pytest.warns(UserWarning, match="extrapolated"):
        v = lib.scs_at([6], extrapolate=True)
    assert v[0] > lib.scs[-1]
    assert lib.is_extrapolated([2, 6]).tolist() == [False, True]


def test_round_trip_and_version_check(small_library, tmp_path):
    path = tmp_path / "lib.h5"
    small_library.to_hdf5(path)
    back = ScsLibrary.from_hdf5(path)
    for name in ScsLibrary._ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(small_library, name))
    assert back.settings == small_library.settings and back.curve == small_library.curve
    assert back.microscope() == MicroscopeSettings.from_dict(small_library.settings)
    with h5py.File(path, "a") as f:
        f.attrs["atomscount_format"] = 0
    with pytest.raises(FileFormatError, match="format version 0"):
        ScsLibrary.from_hdf5(path)


def test_bad_build_arguments():
    s = MicroscopeSettings(num_configs=1, **COARSE)
    with pytest.raises(ValueError, match="max_atoms must be an integer >= 1, got 0"):
        build_scs_library("Au", "001", 0, s)
    with pytest.raises(ValueError, match="element must be a chemical symbol"):
        build_scs_library("Qq", "001", 2, s)
    with pytest.raises(TypeError, match="settings must be a MicroscopeSettings"):
        build_scs_library("Au", "001", 2, {"energy_ev": 3e5})


def test_cli_builds_and_shows_a_library(tmp_path, capsys):
    from atomscount.cli import main

    toml = tmp_path / "s.toml"
    toml.write_text(
        "[microscope]\nnum_configs = 1\nsampling_angstrom = 0.08\nouter_angle_mrad = 80.0\ninner_angle_mrad = 30.0\n"
        "scan_step_angstrom = 0.5\nlateral_extent_angstrom = 8.0\n"
        '[library]\nelement = "Au"\nzone_axis = "001"\nmax_atoms = 2\n'
    )
    out = tmp_path / "au.h5"
    assert main(["library", "build", str(toml), "--out", str(out), "--cache", str(tmp_path / "work")]) == 0
    assert len(list((tmp_path / "work").glob("config_*.npy"))) == 1
    assert main(["library", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ScsLibrary(Au [001], N=1..2" in text and "SCS (Å²)" in text
    assert (tmp_path / "au.png").stat().st_size > 1000
    assert main(["library", "show", str(tmp_path / "nope.h5")]) == 2


def test_cli_lists_and_shows_the_shipped_libraries(tmp_path, capsys, monkeypatch):
    from atomscount.cli import main
    from atomscount.library import load_default

    assert main(["library", "list"]) == 0
    text = capsys.readouterr().out
    au = load_default("Au", "001")
    row = next(line for line in text.splitlines() if line.startswith("Au:001"))
    assert f"{au.scs_at(10):.4f}" in row and "1..40" in row
    assert row.split()[-1] == au.microscope().cell_integration  # how each library integrated its cell
    assert "Ag:110" in text and "AuAg [001]" in text
    monkeypatch.chdir(tmp_path)
    assert main(["library", "show", "Ag:110"]) == 0
    assert "ScsLibrary(Ag [110]" in capsys.readouterr().out
    assert (tmp_path / "Ag_110.png").stat().st_size > 1000
    assert main(["library", "show", "Xx:001"]) == 2


def test_load_default_names_what_is_available():
    from atomscount.library import available_defaults, load_default

    with pytest.raises(ValueError, match="no shipped library for element='Zz'"):
        load_default("Zz", "001")
    shipped = available_defaults()
    assert set(shipped) >= {(el, ax) for el in ("Au", "Ag", "Pt", "Pd", "Cu", "Fe") for ax in ("001", "110")}
    single = {}
    for el, ax in shipped:
        lib = load_default(el, ax)
        assert lib.element == el and lib.zone_axis == ax
        assert lib.max_atoms >= 40 and lib.scs_per_config.shape[0] == 8
        assert np.all(np.diff(lib.scs) > 0)
        single[el, ax] = lib.scs[0]
    for el in ("Au", "Ag", "Pt", "Pd", "Cu", "Fe"):
        # one atom scatters the same whichever way the crystal is viewed
        assert single[el, "110"] == pytest.approx(single[el, "001"], rel=0.05)
    # and heavier atoms scatter more (HAADF: roughly Z^1.7)
    by_z = sorted(("Fe", "Cu", "Pd", "Ag", "Pt", "Au"), key=lambda e: single[e, "001"])
    assert by_z[:2] == ["Fe", "Cu"] and set(by_z[2:4]) == {"Pd", "Ag"} and set(by_z[4:]) == {"Pt", "Au"}


def test_every_exit_plane_is_one_period_even_when_the_slice_count_rounds_badly():
    # Pt [001]: 40 periods / half-period slices came to 80.00000000000001 slices in
    # abTEM, which added a sliver slice and a 41st exit plane
    from atomscount.library import MicroscopeSettings, build_scs_library

    s = MicroscopeSettings(num_configs=1, sampling_angstrom=0.1, outer_angle_mrad=60.0, inner_angle_mrad=30.0,
                           scan_step_angstrom=1.0, lateral_extent_angstrom=6.0)  # fmt: skip
    lib = build_scs_library("Pt", "001", 40, s, progress=False)
    assert lib.scs.shape == (40,) and np.all(np.diff(lib.scs[:10]) > 0) and np.all(np.isfinite(lib.scs))


def test_load_default_names_a_zone_axis_or_element_of_the_wrong_kind():
    from atomscount.library import load_default, load_default_lensing, load_default_linear

    said = r"zone_axis must be one of \['0001', '001', '100', '110', '111'\] or a tuple of three integers .* "
    said += r"got 1 \(int\)"
    with pytest.raises(TypeError, match=said):
        load_default("Au", 1)  # said "'int' object is not iterable" before
    with pytest.raises(TypeError, match=said):
        load_default_lensing("Au", "Ag", 1)
    with pytest.raises(TypeError, match=said):
        load_default_linear("Au", "Ag", 1)
    for bad in ((1.5, 0, 0), (0, 0, 0), (True, 0, 0), (0, 1)):
        with pytest.raises(ValueError, match=rf"zone_axis must be three integers \(h, k, l\), not all zero, got "
                                             rf"{re.escape(repr(bad))}"):  # fmt: skip
            load_default("Au", bad)
    with pytest.raises(TypeError, match=r"element must be a chemical symbol such as 'Au', got 79 \(int\)"):
        load_default(79, "001")
    with pytest.raises(TypeError, match=r"element_b must be a chemical symbol such as 'Au', got None \(NoneType\)"):
        load_default_linear("Au", None, "001")
    assert load_default("Au", (0, 0, 1)).zone_axis == "001"


@pytest.mark.parametrize(("field", "edit", "said"), [
    ("scs", lambda a: a.__setitem__(5, np.nan), r"scs must be finite, got 1 NaN/inf \(first scs\[5\] = nan\)"),
    ("scs", lambda a: a.__setitem__(12, a[10]),
     r"scs must increase strictly, got scs\[12\] = 0\.2\d+ after scs\[11\] = 0\.2\d+"),
    ("scs_sem", lambda a: a.__setitem__(3, -1.0), r"scs_sem must be finite and >= 0, got scs_sem\[3\] = -1\.0 \(1 such "
                                                   r"value\)"),
    ("scs_per_config", lambda a: a.__setitem__((2, 7), np.inf),
     r"scs_per_config must be finite, got scs_per_config\[2, 7\] = inf \(1 such value\)"),
    ("n_atoms", lambda a: a.__setitem__(0, 0), r"n_atoms must hold whole counts from 1 up, got n_atoms\[0\] = 0"),
])  # fmt: skip
def test_a_library_file_with_invalid_values_is_refused_naming_file_and_field(tmp_path, field, edit, said):
    from atomscount.library import load_default

    au = load_default("Au", "001")
    values = np.array(getattr(au, field))
    edit(values)
    path = tmp_path / "edited.h5"
    dataclasses.replace(au, **{field: values}).to_hdf5(path)
    with pytest.raises(FileFormatError, match=rf"library file '{re.escape(str(path))}' holds invalid values: {said}"):
        ScsLibrary.from_hdf5(path)  # loaded before, and scs_at gave NaN
    bad_curve = dataclasses.replace(au, curve={**au.curve, "n_sat": float("nan")})
    bad_curve.to_hdf5(path)
    with pytest.raises(FileFormatError, match=r"holds invalid values: curve\['n_sat'\] must be finite"):
        ScsLibrary.from_hdf5(path)
