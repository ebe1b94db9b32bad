"""Ground-truth phantoms: known interface width, bulk densities, determinism, and bad input."""

import numpy as np
import pytest

from atomscount.elemental.composition import fit_interface_width
from atomscount.elemental.phantoms import ATOMIC_DENSITY, alloy_particle, core_shell_rod, three_element_particle


def _fraction(d, element):
    total = sum(d.values())
    return np.where(total > 0, d[element] / np.where(total > 0, total, 1.0), 0.0), total


def test_core_shell_rod_has_the_erf_interface_it_was_given():
    d = core_shell_rod(shape=(40, 96, 40), voxel_size_angstrom=0.75, interface_width_angstrom=2.0)
    frac, total = _fraction(d, "Au")
    inside = total > 0.99 * total.max()
    fit = fit_interface_width(frac, 0.75, mask=inside)
    assert fit["width_angstrom"] == pytest.approx(2.0, rel=0.01)
    assert fit["radius_angstrom"] == pytest.approx(0.55 * 0.3 * 40 * 0.75, rel=0.01)
    assert fit["c_in"] == pytest.approx(1.0, abs=0.02) and fit["c_out"] == pytest.approx(0.0, abs=0.02)


def test_pure_regions_have_the_bulk_density_and_the_outside_is_empty():
    d = core_shell_rod(shape=(48, 32, 48), interface_width_angstrom=0.0)
    assert d["Au"].max() == pytest.approx(ATOMIC_DENSITY["Au"]) and d["Ag"].max() == pytest.approx(ATOMIC_DENSITY["Ag"])
    assert d["Au"][0, 0, 0] == 0.0 and d["Ag"][0, 0, 0] == 0.0


def test_alloy_is_seeded_and_sums_to_the_particle():
    a = alloy_particle(shape=(24, 24, 24), rng=1)
    b = alloy_particle(shape=(24, 24, 24), rng=1)
    c = alloy_particle(shape=(24, 24, 24), rng=2)
    np.testing.assert_array_equal(a["Pt"], b["Pt"])
    assert not np.array_equal(a["Pt"], c["Pt"])
    frac, total = _fraction(a, "Pt")
    inside = total > 0.99 * total.max()
    assert 0.05 <= frac[inside].min() and frac[inside].max() <= 0.95
    assert frac[inside].mean() == pytest.approx(0.5, abs=0.1)


def test_three_element_particle_has_its_core_shell_and_surface():
    d = three_element_particle(shape=(32, 32, 32), voxel_size_angstrom=0.75, interface_width_angstrom=1.0)
    c = (16, 16, 16)
    assert d["Pd"][c] > 0.9 * ATOMIC_DENSITY["Pd"] and d["Au"][c] == pytest.approx(0.0, abs=1e-6)
    r = 0.4 * 32 * 0.75
    z = (np.arange(32) - 15.5) * 0.75
    surface = np.argmin(np.abs(z - 0.9 * r))  # in the surface alloy on the z axis
    assert d["Au"][surface, 16, 16] > 0.1 * ATOMIC_DENSITY["Au"]
    assert d["Pd"][surface, 16, 16] < 1e-3


@pytest.mark.parametrize("call, word", [
    (lambda: core_shell_rod(shape=(4, 32, 32)), "shape"),
    (lambda: core_shell_rod(voxel_size_angstrom=0.0, shape=(16, 16, 16)), "voxel_size_angstrom"),
    (lambda: core_shell_rod(core="Au", shell="Au", shape=(16, 16, 16)), "core and shell"),
    (lambda: core_shell_rod(core="Xe", shape=(16, 16, 16)), "'Xe'"),
    (lambda: core_shell_rod(interface_width_angstrom=-1.0, shape=(16, 16, 16)), "interface_width_angstrom"),
    (lambda: alloy_particle(elements=("Pt",), shape=(16, 16, 16)), "elements"),
    (lambda: alloy_particle(fractions=(1.0, -1.0), shape=(16, 16, 16)), "fractions"),
    (lambda: three_element_particle(elements=("Pd", "Pt"), shape=(16, 16, 16)), "elements"),
])  # fmt: skip
def test_bad_input_is_refused_by_name(call, word):
    with pytest.raises(ValueError, match=word):
        call()
