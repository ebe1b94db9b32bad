"""Issue 26: search_core_shell's lensing argument is checked before any work."""

import numpy as np
import pytest

from atomscount.coreshell.search import search_core_shell


@pytest.mark.parametrize(("lensing", "match"), [(None, "NoneType"), ({"001": "Au:Ag:001"}, "str for \\[001\\]")])
def test_a_lensing_that_is_not_a_model_is_refused_by_name(lensing, match):
    xy = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    view = (xy, np.ones(3), np.full(3, 0.1), "001")
    with pytest.raises(TypeError, match=f"lensing must be a LensingModel or a dict of .* LensingModel, got {match}"):
        search_core_shell([view], lensing, "Au")


def test_a_random_view_too_thick_for_any_particle_is_refused_at_once():
    # random SCS on a 5 x 5 view without counts once ran for minutes: columns of hundreds of atoms asked
    # for a cube of lattice sites as wide as the columns were long (hundreds of millions of sites)
    import time

    from atomscount.library import load_default_lensing

    rng = np.random.default_rng(0)
    xy = np.array([(x, y) for x in range(5) for y in range(5)]) * 2.04
    scs = rng.uniform(0.5, 6.0, len(xy))
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"scs\[\d+\] = [\d.]+ Å² is more than a column of 400 Ag atoms"):
        search_core_shell([(xy, scs, np.full(len(xy), 0.1), "001")], load_default_lensing("Au", "Ag", "001"), "Au")
    assert time.perf_counter() - t < 5.0
