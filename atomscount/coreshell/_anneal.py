# ruff: noqa: NPY002  (numba supports only the legacy np.random functions; seeded per call)
"""The site-level stage of the core-shell search as one numba loop: annealing, then sampling.

The state is a code per site (EMPTY, SHELL, CORE; see :mod:`.forward`). Its energy is

    E = χ² + p_core · (bonds between a core site and a non-core site or the outside)
           + p_surf · (bonds between an occupied site and an empty site or the outside)
           + p_expose · (bonds between a core site and an empty site or the outside)

over the twelve fcc bonds of every site; a site with fewer than twelve listed
neighbours lies on the edge of the candidate set, and its missing bonds go to the
outside (empty). A proposal changes a small set of sites S (at most four):

- ``swap``: a core site touching a non-core site becomes shell, and a shell site
  touching the core becomes core (the composition is kept);
- ``flip``: one boundary site changes between core and shell (only when the
  composition is free);
- ``grow`` / ``shrink``: an empty site touching the particle becomes shell, or a
  shell site touching the outside becomes empty (only when the shape is free).

With a mirror, every site of S drags its mirror image along, so a symmetric state
stays symmetric. The change of χ² recomputes only the columns S projects onto in
each view (:func:`_column_scs`); the change of the bond terms counts only the bonds
touching S (:func:`_local_bonds`, a bond inside S counted once). Acceptance is
Metropolis on exp(-ΔE / 2T) (χ²/2 is the negative log likelihood), T falling
geometrically from ``t0`` to 1 over the annealing and held at 1 for the sampling.

Each kernel has a plain-Python reference used by the tests (:func:`energy_reference`).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._kernels import _increment

EMPTY, SHELL, CORE = 0, 1, 2
MOVE_SWAP, MOVE_FLIP, MOVE_GROW, MOVE_SHRINK = 0, 1, 2, 3


def pack(columns, tables, measured, sigma):
    """The views as flat arrays: global columns (all views'), their sites and the lensing tables."""
    n_views = len(columns)
    m = len(columns[0].column_of_site)
    col_of_site = np.empty((n_views, m), dtype=np.int64)
    starts, orders, view_of_col = [np.zeros(1, dtype=np.int64)], [], []
    offset = 0
    for v, c in enumerate(columns):
        col_of_site[v] = c.column_of_site + offset
        starts.append(c.start[1:] + v * m)
        orders.append(c.order)
        view_of_col.append(np.full(c.n_columns, v, dtype=np.int64))
        offset += c.n_columns
    n_max = max(t.inc.shape[1] for t in tables)
    n_el = tables[0].inc.shape[0]
    inc = np.zeros((n_views, n_el, n_max))
    for v, t in enumerate(tables):
        inc[v, :, : t.inc.shape[1]] = t.inc
    return {
        "col_of_site": col_of_site,
        "gstart": np.concatenate(starts).astype(np.int64),
        "gorder": np.concatenate(orders).astype(np.int64),
        "view_of_col": np.concatenate(view_of_col),
        "eoc": np.stack([t.element_of_code for t in tables]).astype(np.int64),
        "inc": inc,
        "nlen": np.array([t.inc.shape[1] for t in tables], dtype=np.int64),
        "curves": np.stack([t.curves[:, :3] for t in tables]).astype(np.float64),
        "lam": np.stack([t.lam for t in tables]).astype(np.float64),
        "measured": np.concatenate(measured).astype(np.float64),
        "weight": np.concatenate([1.0 / np.asarray(s, dtype=np.float64) ** 2 for s in sigma]),
    }


@nb.njit(cache=True)
def _column_scs(g, v, gstart, gorder, codes, eoc, inc, nlen, curves, lam):
    """Lensing-model SCS of global column g of view v (the per-atom increment is the forward kernel's)."""
    inc_v = inc[v, :, : nlen[v]]
    curves_v = curves[v]
    e = lam.shape[1]
    depth_above = np.zeros(e)
    total = 0.0
    for p in range(gstart[g], gstart[g + 1]):
        k = eoc[v, codes[gorder[p]]]
        if k < 0:
            continue
        total += _increment(inc_v, curves_v, k, 1.0 + depth_above[k])
        for b in range(e):
            depth_above[b] += lam[v, k, b]
    return total


@nb.njit(cache=True)
def _bond_cost(a, b, p_core, p_surf, p_expose):
    c = 0.0
    if (a == CORE) != (b == CORE):
        c += p_core
    if (a == EMPTY) != (b == EMPTY):
        c += p_surf
    if (a == CORE and b == EMPTY) or (a == EMPTY and b == CORE):
        c += p_expose
    return c


@nb.njit(cache=True)
def _local_bonds(sel, n_sel, codes, nbr_start, nbr, p_core, p_surf, p_expose):
    """Bond energy of every bond touching the sites sel[:n_sel] (a bond between two of them once)."""
    total = 0.0
    for i in range(n_sel):
        s = sel[i]
        cs = codes[s]
        deg = nbr_start[s + 1] - nbr_start[s]
        total += (12 - deg) * _bond_cost(cs, EMPTY, p_core, p_surf, p_expose)
        for q in range(nbr_start[s], nbr_start[s + 1]):
            n_ = nbr[q]
            inside = False
            for k in range(n_sel):
                if sel[k] == n_:
                    inside = True
            total += _bond_cost(cs, codes[n_], p_core, p_surf, p_expose) * (0.5 if inside else 1.0)
    return total


@nb.njit(cache=True)
def _boundaries(codes, nbr_start, nbr, lists, sizes):
    """Fill lists[k, :sizes[k]] with the candidates of each move: core touching non-core, shell touching
    core, empty touching occupied, shell touching empty/outside."""
    for k in range(4):
        sizes[k] = 0
    m = codes.shape[0]
    for s in range(m):
        c = codes[s]
        deg = nbr_start[s + 1] - nbr_start[s]
        t_core = t_noncore = t_empty = t_occ = False
        for q in range(nbr_start[s], nbr_start[s + 1]):
            cn = codes[nbr[q]]
            if cn == CORE:
                t_core = True
            else:
                t_noncore = True
            if cn == EMPTY:
                t_empty = True
            else:
                t_occ = True
        if deg < 12:
            t_noncore = True
            t_empty = True
        if c == CORE and t_noncore:
            lists[0, sizes[0]] = s
            sizes[0] += 1
        elif c == SHELL:
            if t_core:
                lists[1, sizes[1]] = s
                sizes[1] += 1
            if t_empty:
                lists[3, sizes[3]] = s
                sizes[3] += 1
        elif c == EMPTY and t_occ:
            lists[2, sizes[2]] = s
            sizes[2] += 1


@nb.njit(cache=True)
def _accumulate(codes, n_core_col, n_occ_col, prob_core, prob_occ, sum_core, sq_core, sum_occ, sq_occ):
    for s in range(codes.shape[0]):
        if codes[s] == CORE:
            prob_core[s] += 1.0
        if codes[s] != EMPTY:
            prob_occ[s] += 1.0
    for g in range(n_core_col.shape[0]):
        sum_core[g] += n_core_col[g]
        sq_core[g] += n_core_col[g] ** 2
        sum_occ[g] += n_occ_col[g]
        sq_occ[g] += n_occ_col[g] ** 2


@nb.njit(cache=True)
def anneal(codes, fixed, mirror, nbr_start, nbr, col_of_site, gstart, gorder, view_of_col, eoc, inc, nlen, curves,
           lam, measured, weight, p_core, p_surf, p_expose, core_ref, occ_ref, move_weights, n_anneal, n_sample, t0,
           thin, seed):  # fmt: skip
    """Anneal ``codes`` in place, then sample at temperature 1.

    ``fixed[s]`` marks sites no move may change; ``mirror[s]`` is the site's mirror
    image or -1 (no symmetry, or none). ``move_weights`` (4,) are the relative
    frequencies of swap, flip, grow and shrink (zero switches a move off).
    ``core_ref[n]`` and ``occ_ref[n]`` are the exposed bonds of the most compact
    core and particle of n atoms: they are subtracted from the bond terms, so that
    the bond prior judges a shape against the best of its size and does not push
    the core or the particle to shrink (see :func:`compact_reference`).

    Returns the best codes, their χ², the final and best energies, per-site core and
    occupancy frequencies over the samples, per-column mean and variance of the core
    count and of the atom count, the acceptance of the sampling, the best χ² seen in
    the sampling, and the best energy when the annealing ended.
    """
    np.random.seed(seed)
    m = codes.shape[0]
    n_views = col_of_site.shape[0]
    n_cols = measured.shape[0]
    pred = np.empty(n_cols)
    for g in range(n_cols):
        pred[g] = _column_scs(g, view_of_col[g], gstart, gorder, codes, eoc, inc, nlen, curves, lam)
    chi2 = 0.0
    for g in range(n_cols):
        chi2 += (measured[g] - pred[g]) ** 2 * weight[g]
    bonds = 0.0
    # total bond energy: every bond once (half of the sum over sites of each site's bonds, plus the outside ones)
    for s in range(m):
        cs = codes[s]
        bonds += (12 - (nbr_start[s + 1] - nbr_start[s])) * _bond_cost(cs, EMPTY, p_core, p_surf, p_expose)
        for q in range(nbr_start[s], nbr_start[s + 1]):
            bonds += 0.5 * _bond_cost(cs, codes[nbr[q]], p_core, p_surf, p_expose)
    n_core = 0
    n_occ = 0
    for s in range(m):
        n_core += codes[s] == CORE
        n_occ += codes[s] != EMPTY
    energy = chi2 + bonds - p_core * core_ref[n_core] - p_surf * occ_ref[n_occ]
    best_energy = energy
    best_chi2 = chi2
    best_codes = codes.copy()
    n_core_col = np.zeros(n_cols)
    n_occ_col = np.zeros(n_cols)
    for s in range(m):
        for v in range(n_views):
            g = col_of_site[v, s]
            if codes[s] == CORE:
                n_core_col[g] += 1.0
            if codes[s] != EMPTY:
                n_occ_col[g] += 1.0
    lists = np.empty((4, m), dtype=np.int64)
    sizes = np.zeros(4, dtype=np.int64)
    cum = np.cumsum(move_weights) / np.sum(move_weights)
    sel = np.empty(4, dtype=np.int64)
    new = np.empty(4, dtype=np.int64)
    old = np.empty(4, dtype=np.int64)
    touched = np.empty(4 * n_views, dtype=np.int64)
    old_pred = np.empty(4 * n_views)
    prob_core = np.zeros(m)
    prob_occ = np.zeros(m)
    sum_core = np.zeros(n_cols)
    sq_core = np.zeros(n_cols)
    sum_occ = np.zeros(n_cols)
    sq_occ = np.zeros(n_cols)
    n_samples = 0
    accepted_sample = 0
    best_chi2_sampling = np.inf
    n_total = n_anneal + n_sample
    log_ratio = math.log(1.0 / t0) if t0 > 1.0 else 0.0
    refresh = max(1, min(50, m // 20))
    best_energy_anneal = energy
    for step in range(n_total):
        if step == n_anneal:
            best_energy_anneal = best_energy
        if step % refresh == 0:
            _boundaries(codes, nbr_start, nbr, lists, sizes)
        if step < n_anneal:
            temperature = t0 * math.exp(log_ratio * step / max(n_anneal, 1))
        else:
            temperature = 1.0
        # choose a move and its sites
        u = np.random.random()
        kind = 0
        while kind < 3 and u > cum[kind]:
            kind += 1
        n_sel = 0
        ok = True
        if kind == MOVE_SWAP:
            if sizes[0] == 0 or sizes[1] == 0:
                ok = False
            else:
                i = lists[0, np.random.randint(sizes[0])]
                j = lists[1, np.random.randint(sizes[1])]
                if codes[i] != CORE or codes[j] != SHELL:
                    ok = False
                sel[0], new[0], sel[1], new[1] = i, SHELL, j, CORE
                n_sel = 2
        elif kind == MOVE_FLIP:
            tot = sizes[0] + sizes[1]
            if tot == 0:
                ok = False
            else:
                r = np.random.randint(tot)
                i = lists[0, r] if r < sizes[0] else lists[1, r - sizes[0]]
                sel[0] = i
                new[0] = SHELL if codes[i] == CORE else CORE
                n_sel = 1
        else:  # MOVE_GROW fills an empty surface site (list 2), MOVE_SHRINK empties a shell one (list 3)
            grow = kind == MOVE_GROW
            if sizes[kind] == 0:
                ok = False
            else:
                i = lists[kind, np.random.randint(sizes[kind])]
                if codes[i] != (EMPTY if grow else SHELL):
                    ok = False
                sel[0], new[0] = i, (SHELL if grow else EMPTY)
                n_sel = 1
        if ok:
            # the mirror images follow; a move whose sites collide, or that touches a fixed site, is dropped
            base = n_sel
            n_mirrored = 0
            for k in range(base):
                mk = mirror[sel[k]]
                if mk >= 0 and mk != sel[k]:
                    if codes[mk] != codes[sel[k]]:
                        ok = False
                    sel[n_sel] = mk
                    new[n_sel] = new[k]
                    n_sel += 1
                    n_mirrored += 1
            # a swap must move as many sites into the core as out of it
            if kind == MOVE_SWAP and n_mirrored == 1:
                ok = False
            for k in range(n_sel):
                if fixed[sel[k]]:
                    ok = False
                for q in range(k):
                    if sel[q] == sel[k]:
                        ok = False
        if ok:
            # energy change
            b_before = _local_bonds(sel, n_sel, codes, nbr_start, nbr, p_core, p_surf, p_expose)
            n_t = 0
            for k in range(n_sel):
                for v in range(n_views):
                    g = col_of_site[v, sel[k]]
                    seen = False
                    for q in range(n_t):
                        if touched[q] == g:
                            seen = True
                    if not seen:
                        touched[n_t] = g
                        n_t += 1
            c_before = 0.0
            for q in range(n_t):
                g = touched[q]
                old_pred[q] = pred[g]
                c_before += (measured[g] - pred[g]) ** 2 * weight[g]
            for k in range(n_sel):
                old[k] = codes[sel[k]]
                codes[sel[k]] = new[k]
            c_after = 0.0
            for q in range(n_t):
                g = touched[q]
                pred[g] = _column_scs(g, view_of_col[g], gstart, gorder, codes, eoc, inc, nlen, curves, lam)
                c_after += (measured[g] - pred[g]) ** 2 * weight[g]
            b_after = _local_bonds(sel, n_sel, codes, nbr_start, nbr, p_core, p_surf, p_expose)
            d_core = 0
            d_occ = 0
            for k in range(n_sel):
                d_core += (new[k] == CORE) - (old[k] == CORE)
                d_occ += (new[k] != EMPTY) - (old[k] != EMPTY)
            d_ref = p_core * (core_ref[n_core + d_core] - core_ref[n_core]) + p_surf * (
                occ_ref[n_occ + d_occ] - occ_ref[n_occ]
            )
            d_e = (c_after - c_before) + (b_after - b_before) - d_ref
            if d_e <= 0.0 or np.random.random() < math.exp(-d_e / (2.0 * temperature)):
                energy += d_e
                chi2 += c_after - c_before
                n_core += d_core
                n_occ += d_occ
                for k in range(n_sel):
                    for v in range(n_views):
                        g = col_of_site[v, sel[k]]
                        n_core_col[g] += (new[k] == CORE) - (old[k] == CORE)
                        n_occ_col[g] += (new[k] != EMPTY) - (old[k] != EMPTY)
                if step >= n_anneal:
                    accepted_sample += 1
                    if chi2 < best_chi2_sampling:
                        best_chi2_sampling = chi2
                if energy < best_energy - 1e-9:
                    best_energy = energy
                    best_chi2 = chi2
                    best_codes[:] = codes
            else:
                for k in range(n_sel):
                    codes[sel[k]] = old[k]
                for q in range(n_t):
                    pred[touched[q]] = old_pred[q]
        if step >= n_anneal and (step - n_anneal) % thin == 0:
            n_samples += 1
            _accumulate(codes, n_core_col, n_occ_col, prob_core, prob_occ, sum_core, sq_core, sum_occ, sq_occ)
    if n_sample == 0:
        best_energy_anneal = best_energy
    ns = max(n_samples, 1)
    mean_core = sum_core / ns
    var_core = np.maximum(sq_core / ns - mean_core**2, 0.0)
    mean_occ = sum_occ / ns
    var_occ = np.maximum(sq_occ / ns - mean_occ**2, 0.0)
    return (best_codes, best_chi2, energy, best_energy, prob_core / ns, prob_occ / ns, mean_core, var_core, mean_occ,
            var_occ, accepted_sample / max(n_sample, 1), best_chi2_sampling, best_energy_anneal)  # fmt: skip


def compact_reference(positions, centre, nbr_start, nbr) -> np.ndarray:
    """Exposed bonds of the n sites nearest ``centre``, for n = 0 .. m: the most compact body of n atoms.

    Each added site exposes its twelve bonds less two per neighbour already in.
    """
    order = np.argsort(np.linalg.norm(np.asarray(positions) - np.asarray(centre), axis=1), kind="stable")
    inside = np.zeros(len(order), dtype=bool)
    ref = np.zeros(len(order) + 1)
    for n, s in enumerate(order):
        shared = int(np.sum(inside[nbr[nbr_start[s] : nbr_start[s + 1]]]))
        ref[n + 1] = ref[n] + 12 - 2 * shared
        inside[s] = True
    return ref


def energy_reference(codes, nbr_pairs, degree, predicted, measured, weight, p_core, p_surf, p_expose=0.0) -> float:
    """Plain-Python energy of a state (χ² of given predictions plus the bond terms), for the tests."""

    def cost(a, b):
        return (
            p_core * ((a == CORE) != (b == CORE))
            + p_surf * ((a == EMPTY) != (b == EMPTY))
            + p_expose * ({a, b} == {CORE, EMPTY})
        )

    total = float(np.sum((np.asarray(measured) - np.asarray(predicted)) ** 2 * np.asarray(weight)))
    for i, j in nbr_pairs:
        total += cost(codes[i], codes[j])
    for s, d in enumerate(degree):
        total += (12 - d) * cost(codes[s], EMPTY)
    return total
