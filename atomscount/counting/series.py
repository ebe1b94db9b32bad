"""Counts over a time series: each column's counts coupled over the frames by a hidden Markov chain."""

from __future__ import annotations

import dataclasses

import numpy as np


def _couple_frames(flat, y, stay_probability):
    """``flat``, the counts of all frames from one mixture, with each column's counts its most probable path.

    ``flat`` counted the frames ``y`` (n_frames, n_columns) flattened; each
    column's counts over the frames become the most probable path of a hidden
    Markov chain (Viterbi) with the transitions of :func:`~atomscount.counting.count_time_series`.
    """
    g = flat.n_components
    post = flat.posterior.reshape(*y.shape, g)
    ok = flat.counts.reshape(y.shape) >= 0
    logp = np.log(np.maximum(post, 1e-300))
    logp[~ok] = 0.0  # an unmeasured frame says nothing
    # transitions between components, by the difference of their counts
    d = np.abs(np.subtract.outer(flat.count_values, flat.count_values))
    trans = np.where(d == 0, stay_probability, np.where(d == 1, (1 - stay_probability) / 2,
                                                           (1 - stay_probability) / 2000))  # fmt: skip
    trans /= trans.sum(axis=1, keepdims=True)
    logt = np.log(trans)
    n_frames, n_cols = y.shape
    path = np.zeros((n_frames, n_cols), dtype=np.int64)
    score = logp[0] - np.log(g)
    back = np.zeros((n_frames, n_cols, g), dtype=np.int64)
    for f in range(1, n_frames):
        cand = score[:, :, None] + logt[None]
        back[f] = cand.argmax(axis=1)
        score = cand.max(axis=1) + logp[f]
    path[-1] = score.argmax(axis=1)
    for f in range(n_frames - 1, 0, -1):
        path[f - 1] = back[f, np.arange(n_cols), path[f]]
    counts = np.where(ok, flat.count_values[path], -1)
    prob = np.where(ok, np.take_along_axis(post, path[..., None], axis=2)[..., 0], 0.0)
    independent = flat.counts.reshape(y.shape)
    changed = int(np.sum(counts != independent))
    notes = list(flat.notes) + [f"{changed} of {int(ok.sum())} frame counts changed by the temporal coupling"]
    meta = dict(flat.metadata, independent_counts=independent.tolist(), stay_probability=stay_probability)
    return dataclasses.replace(flat, counts=counts, probability=prob, posterior=post, method="time-series",
                               scs=y, notes=notes, metadata=meta)  # fmt: skip
