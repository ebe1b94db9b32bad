"""Simulated magnetic samples: unit magnetisation, the right texture and units."""

import numpy as np
import pytest

from atomscount.ltem import domain_wall, induction_map, interaction_constant, skyrmion_lattice, vortex_disk


def _unit(s):
    return np.hypot(np.hypot(s.mx, s.my), s.mz)


def test_bloch_and_neel_lattices_turn_about_or_point_away_from_each_core():
    bloch = skyrmion_lattice("bloch", shape=(64, 64), tilt_deg=0)
    neel = skyrmion_lattice("neel", shape=(64, 64), tilt_deg=0)
    for s in (bloch, neel):
        np.testing.assert_allclose(_unit(s), 1.0, atol=1e-9)
        assert s.mz.min() < -0.99 and s.mz.max() > 0.9  # cores against +z
    # Bloch: m⊥ ⟂ the radius, so no divergence; Néel: m⊥ along it, so no curl and no phase untilted
    assert np.ptp(bloch.magnetic_phase()) > 0.3
    assert np.ptp(neel.magnetic_phase()) < 0.05 * np.ptp(bloch.magnetic_phase())  # sampling leaves a trace
    tilted = skyrmion_lattice("neel", shape=(64, 64))  # 20° by default
    assert np.ptp(tilted.magnetic_phase()) > 0.05
    np.testing.assert_allclose(tilted.thickness_nm, 50 / np.cos(np.deg2rad(20)))


def test_vortex_disk_circulates_with_its_chirality_and_has_an_electrostatic_edge():
    s = vortex_disk(shape=(64, 64), pixel_nm=2.0, radius_nm=50.0, thickness_nm=30.0, chirality=1)
    assert s.thickness_nm[32, 32] == pytest.approx(30.0) and s.thickness_nm[0, 0] == 0.0
    assert s.mx[0, 0] == 0 and s.my[0, 0] == 0
    assert s.mz[32, 32] == pytest.approx(1.0)
    # at +x of the centre the moment points along +y (chirality +1), at +y along -x
    assert s.my[32, 50] > 0.99 and s.mx[50, 32] < -0.99
    flipped = vortex_disk(shape=(64, 64), pixel_nm=2.0, radius_nm=50.0, chirality=-1)
    same = vortex_disk(shape=(64, 64), pixel_nm=2.0, radius_nm=50.0, chirality=1)
    np.testing.assert_allclose(flipped.magnetic_phase(), -same.magnetic_phase(), atol=1e-12)
    # the rim's electrostatic phase step is σ V0 t
    step = s.phase() - s.magnetic_phase()
    assert step[32, 32] - step[0, 0] == pytest.approx(interaction_constant(300e3) * 26.0 * 30.0, rel=1e-6)


def test_domain_walls_separate_opposite_domains_and_give_their_induction():
    s = domain_wall(shape=(32, 64), pixel_nm=2.0, wall_width_nm=6.0, thickness_nm=40.0, ms_a_per_m=8e5)
    np.testing.assert_allclose(_unit(s), 1.0, atol=1e-9)
    assert s.my[0, 32] > 0.99 and s.my[0, 0] < -0.99 and s.my[0, -1] < -0.99
    assert np.abs(s.mz[0, 16]) > 0.9  # the Bloch wall's moment turns out of plane
    bx, by = induction_map(s.magnetic_phase(), s.pixel_nm)
    assert by[5, 32] == pytest.approx(4e-7 * np.pi * 8e5 * 40.0, rel=0.01)  # μ0 Ms t [T nm]
    neel = domain_wall(shape=(32, 64), kind="neel")
    assert np.abs(neel.mx[0, 16]) > 0.9


def test_bad_sample_arguments_name_the_argument():
    with pytest.raises(ValueError, match="kind"):
        skyrmion_lattice("helical")
    with pytest.raises(ValueError, match="radius_nm"):
        vortex_disk(shape=(32, 32), pixel_nm=1.0, radius_nm=100.0)
    with pytest.raises(ValueError, match="chirality"):
        vortex_disk(chirality=2)
    with pytest.raises(ValueError, match="shape"):
        domain_wall(shape=(4, 4))
    with pytest.raises(ValueError, match="tilt_deg"):
        skyrmion_lattice("neel", tilt_deg=80)
    with pytest.raises(ValueError, match="pixel_nm"):
        skyrmion_lattice(pixel_nm=0)
