"""The EDXS and HAADF forward models: cross-sections, conservation of atoms, noise, and bad input."""

import numpy as np
import pytest

from atomscount.elemental.forward import (
    default_haadf_weights,
    haadf_model,
    simulate_edxs,
    simulate_haadf,
    xray_line,
)

ANGLES = np.arange(-60.0, 61.0, 20.0)


def _blob(n=16, voxel=1.0):
    """Two small boxes well inside the field of view at every tilt: Au and Ag densities [atoms/Å³]."""
    au, ag = np.zeros((n, n, n)), np.zeros((n, n, n))
    au[6:9, 5:11, 6:9] = 0.059
    ag[5:11, 5:11, 5:11] = 0.05
    ag[6:9, 5:11, 6:9] = 0.0
    return {"Au": au, "Ag": ag}


def test_xray_lines_are_the_usual_ones_with_xraylib_energies():
    assert (xray_line("Au").line, xray_line("Ag").line, xray_line("Si").line) == ("Au_La", "Ag_La", "Si_Ka")
    assert xray_line("Au").energy_kev == pytest.approx(9.713, abs=0.01)
    assert xray_line("Si").energy_kev == pytest.approx(1.740, abs=0.01)
    assert xray_line("Ag", line="Ka").energy_kev == pytest.approx(22.16, abs=0.02)


def test_k_cross_section_is_bethe_times_fluorescence_yield_and_rates():
    import xraylib as xl

    # relativistic modified Bethe by hand for the Si K shell at 200 keV (n = 2, b = 0.35, c = 1)
    e0, mc2, ec = 200.0, 510.99895, xl.EdgeEnergy(14, xl.K_SHELL)
    beta2 = 1 - 1 / (1 + e0 / mc2) ** 2
    t = 0.5 * mc2 * beta2
    sigma_k = 6.51e-20 * 2 * 0.35 / (ec * t) * (np.log(t / ec) - np.log(1 - beta2) - beta2) * 1e24
    expected = sigma_k * xl.FluorYield(14, xl.K_SHELL) * (xl.RadRate(14, xl.KL3_LINE) + xl.RadRate(14, xl.KL2_LINE))
    assert xray_line("Si").cross_section_barn == pytest.approx(expected, rel=1e-9)
    assert xray_line("Si").cross_section_angstrom2 == pytest.approx(expected * 1e-8)


def test_cross_section_falls_with_beam_energy_below_the_relativistic_rise():
    assert xray_line("Cu", beam_energy_ev=100e3).cross_section_barn > xray_line("Cu").cross_section_barn


def test_haadf_model_is_the_weighted_sum_of_powers():
    p = np.array([[4.0, 0.0], [1.0, 9.0]])
    np.testing.assert_allclose(haadf_model(p, [0.02, 0.01], 1.0), [0.09, 0.09])
    np.testing.assert_allclose(haadf_model(p, [0.02, 0.01], 0.5), [0.02 * 2 + 0.01 * 1, 0.01 * 3])
    np.testing.assert_allclose(haadf_model(-p, [0.02, 0.01], 1.0), [0.0, 0.0])  # negative counts as 0


def test_edxs_expected_counts_conserve_atoms():
    d = _blob()
    series = simulate_edxs(d, 1.0, ANGLES, dose_e_per_angstrom2=1e6, noise=False)
    for e, s in series.items():
        line = xray_line(e)
        per_atom = 1e6 * line.cross_section_angstrom2 * 0.7 / (4 * np.pi)  # counts per atom in the beam
        atoms = d[e].sum()  # voxel side 1 Å
        np.testing.assert_allclose(s.images.sum(axis=(1, 2)), atoms * per_atom, rtol=1e-9)
        assert s.provenance["line"] == line.line and s.provenance["counts"]


def test_edxs_noise_is_poisson_integers_around_the_expectation_and_seeded():
    d = _blob()
    mean = simulate_edxs(d, 1.0, ANGLES, dose_e_per_angstrom2=1e9, noise=False)["Au"].images
    a = simulate_edxs(d, 1.0, ANGLES, dose_e_per_angstrom2=1e9, rng=3)["Au"].images
    b = simulate_edxs(d, 1.0, ANGLES, dose_e_per_angstrom2=1e9, rng=3)["Au"].images
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.round(a))
    assert a.sum() == pytest.approx(mean.sum(), rel=5 * mean.sum() ** -0.5)


def test_haadf_series_sums_to_the_atoms_times_their_weights():
    d = _blob()
    w = default_haadf_weights(["Au", "Ag"])
    assert w["Au"] == pytest.approx(0.0188) and w["Ag"] == pytest.approx(0.0188 * (47 / 79) ** 1.7)
    s = simulate_haadf(d, 1.0, ANGLES)
    np.testing.assert_allclose(s.images.sum(axis=(1, 2)), w["Au"] * d["Au"].sum() + w["Ag"] * d["Ag"].sum(),
                               rtol=1e-9)  # fmt: skip
    noisy = simulate_haadf(d, 1.0, ANGLES, dose_e_per_angstrom2=1e5, rng=1)
    np.testing.assert_array_equal(noisy.images, simulate_haadf(d, 1.0, ANGLES, dose_e_per_angstrom2=1e5, rng=1).images)
    assert np.abs(noisy.images - s.images).max() > 0


@pytest.mark.parametrize("call, exc, word", [
    (lambda: xray_line("H"), ValueError, "'H' has no K, L or M line in range"),
    (lambda: xray_line("Xx"), ValueError, "element"),
    (lambda: xray_line(79), TypeError, "element"),
    (lambda: xray_line("Au", line="Kb"), ValueError, "line"),
    (lambda: xray_line("Au", beam_energy_ev=0), ValueError, "beam_energy_ev"),
    (lambda: simulate_edxs({"H": np.ones((8, 8, 8))}, 1.0, ANGLES, dose_e_per_angstrom2=1.0), ValueError, "'H'"),
    (lambda: simulate_edxs(np.ones((8, 8, 8)), 1.0, ANGLES, dose_e_per_angstrom2=1.0), TypeError, "densities"),
    (lambda: simulate_edxs({"Au": np.ones((8, 8))}, 1.0, ANGLES, dose_e_per_angstrom2=1.0), ValueError,
     r"densities\['Au'\]"),
    (lambda: simulate_edxs({"Au": -np.ones((8, 8, 8))}, 1.0, ANGLES, dose_e_per_angstrom2=1.0), ValueError,
     r"densities\['Au'\]"),
    (lambda: simulate_edxs({"Au": np.ones((8, 8, 8)), "Ag": np.ones((8, 8, 9))}, 1.0, ANGLES,
                           dose_e_per_angstrom2=1.0), ValueError, "share one shape"),
    (lambda: simulate_edxs({"Au": np.ones((8, 8, 8))}, 1.0, ANGLES, dose_e_per_angstrom2=0.0), ValueError,
     "dose_e_per_angstrom2"),
    (lambda: simulate_edxs({"Au": np.ones((8, 8, 8))}, 1.0, ANGLES, dose_e_per_angstrom2=1.0, solid_angle_sr=20),
     ValueError, "solid_angle_sr"),
    (lambda: simulate_haadf({"Au": np.ones((8, 8, 8))}, 0.0, ANGLES), ValueError, "voxel_size_angstrom"),
    (lambda: simulate_haadf({"Au": np.ones((8, 8, 8))}, 1.0, ANGLES, weights={"Ag": 1.0}), ValueError, "weights"),
    (lambda: haadf_model(np.ones((2, 3)), [1.0], 1.0), ValueError, "weights"),
    (lambda: haadf_model(np.ones((2, 3)), [1.0, 1.0], 0.0), ValueError, "gamma"),
])  # fmt: skip
def test_bad_input_is_refused_by_name(call, exc, word):
    with pytest.raises(exc, match=word):
        call()
