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
