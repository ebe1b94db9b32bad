"""A retrieval that finds nothing above the noise says so: a flat film at low dose gives a zero phase, with a
warning naming the dose, and its induction figure draws no arrows (no scale to divide by) but a label."""

import warnings

import matplotlib
import numpy as np
import pytest

from atomscount.ltem import retrieve_phase
from atomscount.ltem.plot import plot_induction
from atomscount.ltem.result import LTEMSeries

matplotlib.use("Agg")


def _flat_counts(dose, seed, n=64):
    counts = np.random.default_rng(seed).poisson(dose, size=(1, n, n)).astype(float)
    return LTEMSeries(counts, [2e4], pixel_nm=2.0)


def test_zero_phase_warns_and_plots_without_arrows():
    series = _flat_counts(10, 3)
    match = r"\(dose 9\.98 e/px, 1 image\(s\)\), so the retrieved phase is zero everywhere"
    with pytest.warns(UserWarning, match=match):
        result = retrieve_phase(series, n_iter=20, uncertainty=False, progress=False)
    assert np.ptp(result.phase) < 1e-9  # the truth: a flat film has no phase structure
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero from arrows of zero length
        fig = plot_induction(result)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("zero phase" in t for t in texts)
    assert not fig.axes[0].collections or all(len(c.get_offsets()) == 0 for c in fig.axes[0].collections)
    matplotlib.pyplot.close(fig)
