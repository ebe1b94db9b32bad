"""search_core_shell without counts: the faceted shape stage on lensing-model SCS of known particles.

The particles are fcc Au@Ag polyhedra built from facet distances (the truth), their
SCS the shipped lensing models' with noise at about the Cramér-Rao bound at 1e5 e/Å².
The search is given neither the atoms per column nor the composition; the SCS are the
lensing model's own, so the scale prior is 1 (``scale_prior=(1.0, 0.02)``).
"""

import warnings

import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomscount.coreshell.forward import CORE, SHELL, ForwardModel, LensingTables
from atomscount.coreshell.search import SearchWarning, search_core_shell
from atomscount.coreshell.shapes import FACET_FAMILIES, FacetedShape
from atomscount.coreshell.sites import fcc_sites, group_columns, tilt_rotation, zone_axis_rotation
from atomscount.library import load_default_lensing

A = 4.08
SHIFT = np.array([3.0, -2.0])


def _polyhedron(d100, d111, core_centre, core_radius):
    """A truncated octahedron of fcc sites (view 0's frame: [001] beam, x along [1-10]) and its core."""
    pos = fcc_sites(A, 14.0)
    cubic = pos @ zone_axis_rotation("001")  # the sites in cubic coordinates
    n100, n111 = FACET_FAMILIES["100"][0], FACET_FAMILIES["111"][0]
    keep = np.all(cubic @ n100.T <= d100 + 1e-6, axis=1) & np.all(cubic @ n111.T <= d111 + 1e-6, axis=1)
    pos = pos[keep]
    core = np.linalg.norm(pos - core_centre, axis=1) <= core_radius
    return pos, np.where(core, CORE, SHELL)


def _views(pos, codes, lensing, seed):
    rng = np.random.default_rng(seed)
    views = []
    for v, axis in enumerate(["001", "110"]):
        t = LensingTables(lensing[axis], core="Au", shell="Ag")
        cols = group_columns(pos, None if v == 0 else tilt_rotation("001", axis))
        scs = ForwardModel(codes, [cols], [t], [np.zeros(cols.n_columns)], [np.ones(cols.n_columns)]).predicted[0]
        err = 0.02 * scs + 2e-4
        views.append((cols.xy + SHIFT, scs + rng.normal(0, err), err, axis))
    return views


def _score(model, pos, codes):
    """Fraction of the true sites found with the right element (missing and extra sites count as wrong)."""
    found = model.atoms.positions
    truth = pos - [0.0, 0.0, pos[:, 2].mean()]
    truth = truth + (np.median(found, axis=0) - np.median(truth, axis=0))
    for _ in range(3):
        d, idx = cKDTree(truth).query(found)
        truth = truth + np.median(found - truth[idx], axis=0)
    d, idx = cKDTree(truth).query(found)
    right = (d < 1.0) & (model.is_core == (codes[idx] == CORE))
    return np.sum(right) / max(len(pos), len(found))


@pytest.fixture(scope="module")
def lensing():
    return {a: load_default_lensing("Au", "Ag", a) for a in ("001", "110")}


def test_faceted_shape_recovers_a_truncated_octahedron_and_its_core_without_counts(lensing):
    pos, codes = _polyhedron(8.16, 7.1, np.array([0.0, 0.0, 0.0]), 4.5)
    views = _views(pos, codes, lensing, 3)
    model = search_core_shell(views, lensing, "Au", rng=0, scale_prior=(1.0, 0.02),
                              beam_directions=[(0.0, 1.0, 0.0)])  # fmt: skip
    assert model.converged, model.info["convergence"]
    assert abs(len(model.atoms) - len(pos)) <= 0.03 * len(pos)
    assert _score(model, pos, codes) >= 0.95
    shape = model.info["outer_shape"]
    assert shape["shape"] == "faceted" and abs(shape["scs_scale"] - 1.0) < 0.03
    # five chains voted on every site; the vote is a state none of them need have been in
    assert model.info["n_chains"] == 5 and len(model.info["chains"]) == 5


def test_without_counts_the_old_column_start_is_still_available(lensing):
    pos, codes = _polyhedron(8.16, 7.1, np.array([0.0, 0.0, 0.0]), 4.5)
    views = _views(pos, codes, lensing, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SearchWarning)
        model = search_core_shell(views, lensing, "Au", rng=0, outer="columns", scs_scale=1.0, n_anneal=20000,
                                  n_sample=5000, beam_directions=[(0.0, 1.0, 0.0)])  # fmt: skip
    assert model.info["outer_shape"] is None and model.info["fit_shape"]


def test_scs_on_another_scale_than_the_prior_is_not_converged(lensing):
    pos, codes = _polyhedron(8.16, 7.1, np.array([0.0, 0.0, 0.0]), 4.5)
    views = [(p, 1.25 * s, 1.25 * e, a) for p, s, e, a in _views(pos, codes, lensing, 3)]
    with pytest.warns(SearchWarning, match="did not converge"):
        model = search_core_shell(views, lensing, "Au", rng=0, scale_prior=(1.0, 0.02),
                                  beam_directions=[(0.0, 1.0, 0.0)])  # fmt: skip
    assert not model.converged and model.info["convergence"] != "converged"


def test_faceted_shape_parameters_are_checked():
    pos = fcc_sites(A, 8.0)
    shape = FacetedShape(pos, zone_axis_rotation("001"), A)
    assert shape.n_facets == 50
    # the largest polyhedron holds every candidate site, and one layer in on every facet holds fewer
    top = shape.max_layers()
    assert shape.inside(shape.distances(top)).all()
    assert shape.inside(shape.distances(top - 1)).sum() < len(pos)
    with pytest.raises(ValueError, match="n_chains"):
        search_core_shell([(pos[:, :2], np.ones(len(pos)), np.ones(len(pos)), "001")],
                          load_default_lensing("Au", "Ag", "001"), "Au", n_chains=0)  # fmt: skip
    with pytest.raises(ValueError, match="scale_prior"):
        search_core_shell([(pos[:, :2], np.ones(len(pos)), np.ones(len(pos)), "001")], {}, "Au",
                          scale_prior=(1.0, -1.0))  # fmt: skip
