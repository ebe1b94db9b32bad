import pytest

from atomscount.library import MicroscopeSettings, electron_wavelength_angstrom


def test_wavelength_at_300kv():
    assert electron_wavelength_angstrom(300e3) == pytest.approx(0.019687, rel=1e-4)


def test_outer_angle_beyond_simulated_angle_names_the_sampling_needed():
    with pytest.raises(ValueError, match=r"use sampling_angstrom <= 0\.0328"):
        MicroscopeSettings(sampling_angstrom=0.05, outer_angle_mrad=200.0)
    ok = MicroscopeSettings(sampling_angstrom=0.0328, outer_angle_mrad=200.0)
    assert ok.max_simulated_angle_mrad >= 200.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"inner_angle_mrad": 210.0, "outer_angle_mrad": 200.0}, "inner_angle_mrad must be < outer_angle_mrad"),
        ({"num_configs": 0}, "num_configs must be an integer >= 1, got 0"),
        ({"energy_ev": -1.0}, "energy_ev must be > 0, got -1.0"),
        ({"rms_displacement_angstrom": {"Au": -0.1}}, r"rms_displacement_angstrom\['Au'\] must be >= 0"),
        ({"cell_integration": "midpoint"}, "cell_integration must be 'exact' or 'grid', got 'midpoint'"),
        ({"defocus_angstrom": float("nan")}, "defocus_angstrom must be finite, got nan"),
        ({"aberrations": {"C12": float("inf")}}, r"aberrations\['C12'\] must be finite, got inf"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MicroscopeSettings(**kwargs)


def test_settings_of_the_wrong_type_are_named():
    with pytest.raises(TypeError, match=r"seed must be an integer >= 0, got 1\.5 \(float\)"):
        MicroscopeSettings(seed=1.5)
    with pytest.raises(TypeError, match="cs_angstrom must be a real number, got '1 mm'"):
        MicroscopeSettings(cs_angstrom="1 mm")


def test_seeds_are_explicit_distinct_and_reproducible():
    a = MicroscopeSettings(seed=5, num_configs=6).config_seeds()
    assert a == MicroscopeSettings(seed=5, num_configs=6).config_seeds()
    assert len(set(a)) == 6
    assert a[:3] == MicroscopeSettings(seed=5, num_configs=3).config_seeds()


def test_settings_round_trip_through_dict_and_toml(tmp_path):
    s = MicroscopeSettings(num_configs=3, rms_displacement_angstrom={"Au": 0.09}, aberrations={"C12": 5.0})
    assert MicroscopeSettings.from_dict(s.to_dict()) == s
    (tmp_path / "s.toml").write_text(
        "[microscope]\nnum_configs = 3\n[microscope.rms_displacement_angstrom]\nAu = 0.09\n"
    )
    t = MicroscopeSettings.from_toml(tmp_path / "s.toml")
    assert t.num_configs == 3 and t.rms_for("Au") == 0.09
    with pytest.raises(ValueError, match="unknown MicroscopeSettings keys"):
        MicroscopeSettings.from_dict({"voltage": 300})
    (tmp_path / "bad.toml").write_text("[microscope\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        MicroscopeSettings.from_toml(tmp_path / "bad.toml")
