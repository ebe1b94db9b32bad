"""Refinement of a traced atomic model against the measured projections.

Every candidate of a :class:`~.trace.TracedAtoms` becomes a 3D Gaussian, projected
exactly as :func:`~.simulate.simulate_tilt_series` does (pixel integrals of error
functions), and the model is fitted to the tilt series itself rather than to the
reconstruction, which the missing wedge and the finite number of SIRT iterations
blur and streak:

1. **width**: one width shared by all atoms, by golden-section search on the χ² of
   the strength fit (probe, thermal smearing and residual misalignment together);
2. **strengths**: the integral of every candidate and a background per projection,
   by linear least squares (CGLS on the normal equations). A neighbour's tail no
   longer adds to an atom's intensity, as it does in a box integral of the volume;
3. **positions**: a damped Gauss-Newton step per atom, from its own 4 x 4 normal
   equations (integral, x, y, z) with the others held, kept where the total χ² falls;
4. **missing atoms**: the significance of one more atom at every voxel, from the
   residual projections (measured minus model) by a matched filter: each residual
   projection filtered by an atom's footprint and back-projected is J^T r, the
   gradient of χ² in the integral of an atom there, and over its standard error
   (the residual's local variance) it is the atom's significance. A maximum above
   ``residual_sigma`` farther than ``exclude_angstrom`` from every significant atom
   becomes a candidate, in place of insignificant candidates near it. Weak atoms
   beside bright ones, which are not maxima of the volume, are found here; the
   filter uses every projection's full resolution, which a few SIRT iterations of
   the residual blurred (a light atom 2.3 Å from a heavy one was lost in them).

Steps 2-4 repeat ``n_rounds`` times. Where the residual shows model error beyond its
noise (projections that are not sums of Gaussians: dynamical scattering), candidates
whose integrals that error explains are taken out (``model_error``), unless they sit at
a site the surer atoms bond to (the misfit fills the sites beside the surface and
between atoms); then 2 runs once more. Each candidate's
integral and its standard error go in ``TracedAtoms.strength`` and
``strength_error``; :func:`~.classify.classify_atoms` clusters them. Candidates
that are noise get integrals near zero, which the non-atom class takes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy.spatial import cKDTree

from .._checks import check_integer, check_positive
from . import _kernels
from .geometry import TiltSeries
from .reconstruct import Volume
from .structure import detect_lattice, lattice_order
from .trace import TracedAtoms, lattice_choice, sample_volume, trace_atoms

__all__ = ["fit_class_strengths", "project_model", "refine_angles", "refine_atoms"]

#: Gaussians are cut at this many widths.
N_SIGMA = 4.0
#: The misfit ratio below which the projections count as sums of Gaussians (noise only): no candidate is held
#: to the model's error (on kinematic data it is 0.99 to 1.0, where the local test costs marginal light atoms).
MIN_MISFIT = 1.05
#: Neighbours within ``pair_distance_angstrom`` that put a candidate inside the solid (12 in fcc and hcp).
ENCLOSED = 10
#: Neighbours at bond length that make a surface site (half the shell of a close-packed solid).
SURFACE = 6
#: The closest a neighbour of a surface site may be, in bond lengths.
BOND_FRACTION = 0.85
#: A candidate with fewer than ``min_neighbours`` neighbours stays when its integral exceeds this many times
#: the significance asked of the others (noise maxima in the vacuum reach 1.3-1.8 times it).
LONE_FACTOR = 2.0


class _Problem:
    """The projections (in integral units, Å² per pixel) and the geometry, with the model's operators."""

    def __init__(self, series: TiltSeries | None):
        if series is None:
            return
        self.pixel = series.pixel_size_angstrom
        self.data = series.images * self.pixel**2
        self.rot = np.ascontiguousarray(series.rotations)
        self.shape = self.data.shape

    def every(self, step):
        """The same problem on every ``step``-th projection."""
        sub = _Problem(None)
        sub.pixel = self.pixel
        for name in ("data", "rot"):
            setattr(sub, name, np.ascontiguousarray(getattr(self, name)[::step]))
        sub.shape = sub.data.shape
        return sub

    def forward(self, pos, amp, sigma, bg):
        out = np.empty(self.shape)
        _kernels.project_atoms(pos, amp, sigma, self.rot, self.pixel, N_SIGMA, out)
        out += bg[:, None, None]
        return out

    def adjoint(self, pos, sigma, res):
        out = np.empty((self.shape[0], len(pos)))
        _kernels.adjoint_atoms(pos, sigma, self.rot, self.pixel, N_SIGMA, res, out)
        return out.sum(axis=0), res.sum(axis=(1, 2))

    def chi2(self, model):
        r = self.data - model
        return float(np.sum(r * r))

    def blocks(self, pos, amp, sigma, model):
        """J^T r and J^T J per atom, r the residual of ``model``."""
        jtr = np.empty((len(pos), 4))
        jtj = np.empty((len(pos), 4, 4))
        _kernels.atom_normal_blocks(pos, amp, sigma, self.rot, self.pixel, N_SIGMA, self.data - model, jtr, jtj)
        return jtr, jtj

    def strengths(self, pos, sigma, amp=None, bg=None, n_iter=20):
        """CGLS for the integrals and backgrounds, from (amp, bg) when given; returns them and χ²."""
        amp = np.zeros(len(pos)) if amp is None else amp.copy()
        bg = np.zeros(self.shape[0]) if bg is None else bg.copy()
        r = self.data - self.forward(pos, amp, sigma, bg)
        s_a, s_b = self.adjoint(pos, sigma, r)
        p_a, p_b = s_a.copy(), s_b.copy()
        gamma = s_a @ s_a + s_b @ s_b
        for _ in range(n_iter):
            q = self.forward(pos, p_a, sigma, p_b)
            qq = float(np.sum(q * q))
            if qq <= 0.0 or gamma <= 0.0:
                break
            alpha = gamma / qq
            amp += alpha * p_a
            bg += alpha * p_b
            r -= alpha * q
            s_a, s_b = self.adjoint(pos, sigma, r)
            gamma_new = s_a @ s_a + s_b @ s_b
            beta = gamma_new / gamma
            p_a, p_b = s_a + beta * p_a, s_b + beta * p_b
            gamma = gamma_new
        return amp, bg, float(np.sum(r * r))

    def r1(self, model):
        den = np.abs(self.data).sum(axis=(1, 2))
        num = np.abs(self.data - model).sum(axis=(1, 2))
        return float(np.mean(num[den > 0] / den[den > 0]))


def project_model(positions, strengths, series: TiltSeries, *, width_angstrom: float, background=None) -> np.ndarray:
    """Projections (k, rows, cols) of Gaussian atoms at ``series``' angles, in the units of its images.

    ``strengths`` are the atoms' integrals [Å²] and ``background`` one value per projection.
    """
    prob = _Problem(series)
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    sigma = np.full(len(pos), check_positive(width_angstrom, "width_angstrom"))
    bg = np.zeros(prob.shape[0]) if background is None else np.asarray(background, dtype=np.float64)
    return prob.forward(pos, np.asarray(strengths, dtype=np.float64), sigma, bg) / prob.pixel**2


def _fit_width(prob, pos, lo, hi, n_eval=8, n_iter=8, max_projections=20):
    """Golden-section search of the shared width in [lo, hi] [Å] on the χ² of the strength fit
    (on at most ``max_projections`` evenly spaced projections)."""
    g = (math.sqrt(5.0) - 1.0) / 2.0
    prob = prob.every(max(1, int(np.ceil(prob.shape[0] / max_projections))))

    def chi2(s):
        return prob.strengths(pos, np.full(len(pos), s), n_iter=n_iter)[2]

    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = chi2(c), chi2(d)
    for _ in range(n_eval - 2):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = chi2(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = chi2(d)
    return 0.5 * (a + b)


def _errors(prob, pos, amp, sigma, model):
    """Standard errors of the integrals (each alone, from its normal equation, with the residual's variance)."""
    _, jtj = prob.blocks(pos, amp, sigma, model)
    scale = prob.chi2(model) / prob.data.size
    return np.sqrt(scale / np.maximum(jtj[:, 0, 0], 1e-300))


def _position_step(prob, pos, amp, sigma, bg, significant, max_step):
    """One Gauss-Newton step of the positions of the significant atoms, kept if the total χ² falls."""
    model = prob.forward(pos, amp, sigma, bg)
    chi0 = prob.chi2(model)
    idx = np.flatnonzero(significant)
    if len(idx) == 0:
        return pos, amp, chi0, 0.0
    jtr, jtj = prob.blocks(pos, amp, sigma, model)
    h = jtj[idx] + 1e-3 * np.einsum("nii->ni", jtj[idx])[:, :, None] * np.eye(4)[None]
    delta = np.linalg.solve(h, jtr[idx][..., None])[..., 0]
    step = delta[:, 1:]
    norm = np.linalg.norm(step, axis=1)
    step *= np.minimum(1.0, max_step / np.maximum(norm, 1e-12))[:, None]
    for f in (1.0, 0.5, 0.25):
        new_pos, new_amp = pos.copy(), amp.copy()
        new_pos[idx] += f * step
        new_amp[idx] += f * delta[:, 0]
        chi = prob.chi2(prob.forward(new_pos, new_amp, sigma, bg))
        if chi < chi0:
            return new_pos, new_amp, chi, float(f * np.sqrt(np.mean(np.sum(step**2, axis=1))))
    return pos, amp, chi0, 0.0


def _lattice_sites(atoms, pair_distance, dmin, min_votes=2):
    """Sites a crystal implies next to ``atoms``: for each pair closer than ``pair_distance``, each atom's
    mirror of the other (fcc, bcc, hcp and L1_0 lattices are centrosymmetric), where at least
    ``min_votes`` pairs agree within 0.8 Å, farther than ``dmin`` from every atom, merged within ``dmin``."""
    if len(atoms) < 3:
        return np.zeros((0, 3))
    tree = cKDTree(atoms)
    i, j = tree.query_pairs(pair_distance, output_type="ndarray").T
    sites = np.concatenate([2.0 * atoms[i] - atoms[j], 2.0 * atoms[j] - atoms[i]])
    if len(sites) == 0:
        return sites
    sites = sites[tree.query(sites)[0] >= dmin]
    if len(sites) == 0:
        return sites
    st = cKDTree(sites)
    votes = np.array([len(v) for v in st.query_ball_point(sites, 0.8)])
    sites, votes = sites[votes >= min_votes], votes[votes >= min_votes]
    order = np.argsort(-votes, kind="stable")
    keep = order[_min_distance_order(sites[order], dmin)]
    return sites[keep]


def _min_distance_order(positions, dmin):
    """Indices of ``positions`` kept when each, in order, removes the later ones within ``dmin``."""
    tree = cKDTree(positions)
    alive = np.ones(len(positions), dtype=bool)
    for a in range(len(positions)):
        if alive[a]:
            for b in tree.query_ball_point(positions[a], dmin):
                if b > a:
                    alive[b] = False
    return np.flatnonzero(alive)


def _missing(prob, shape, pixel, pos, amp, sigma, bg, significant, dmin, exclude, n_sigma):
    """Maxima (``dmin`` apart) of the significance of one more atom (:func:`_score_volume`, on a volume of
    ``shape`` and voxel side ``pixel`` [Å]) above ``n_sigma`` standard errors, farther than ``exclude``
    from every significant atom."""
    width = float(sigma[0])
    z = _score_volume(prob, prob.data - prob.forward(pos, amp, sigma, bg), shape, width, 3.0 * width)
    score = Volume(z, pixel, np.zeros(0), {"source": "atomscount.tomo.refine score"})
    try:
        peaks = trace_atoms(score, min_distance_angstrom=dmin, threshold=n_sigma, lattice="none")
    except ValueError:
        return np.zeros((0, 3))
    if not significant.any():
        return peaks.positions
    d, _ = cKDTree(pos[significant]).query(peaks.positions)
    return peaks.positions[d >= exclude]


def _score_volume(prob, res, shape, width, radius):
    """The significance of one more atom at every voxel of a volume of ``shape``: the matched filter of
    the residual ``res`` (in integral units). For an atom of unit integral at x, J^T res is the sum over
    projections of ``res`` weighted by the atom's footprint, which is the back-projection of each residual
    projection filtered by the footprint (a Gaussian of ``width`` [Å]); J^T J is the same everywhere in the
    field. The integral that fits best is J^T res / J^T J, and its standard error sqrt(var / J^T J) with
    var the residual's variance near x (a Gaussian window of ``radius`` [Å]: Poisson noise grows with
    the signal). The result is their ratio, in standard errors."""
    from scipy import ndimage

    px = width / prob.pixel
    delta = np.zeros((int(8 * px) + 3,) * 2)
    delta[len(delta) // 2, len(delta) // 2] = 1.0
    jtj = prob.shape[0] * float(np.sum(ndimage.gaussian_filter(delta, px, mode="constant") ** 2))

    def back(images, s):
        out = np.empty(shape)
        blurred = np.stack([ndimage.gaussian_filter(im, s, mode="constant") for im in images])
        _kernels.backproject(blurred, prob.rot, prob.pixel, out)
        return out / prob.pixel

    jtr = back(res, px)
    wide = radius / prob.pixel
    var = back(res * res, wide) / np.maximum(back(np.ones(prob.shape), wide), 1e-12)
    return jtr / np.sqrt(jtj * np.maximum(var, 1e-300))


def _misfit_ratio(prob, res, pos, width):
    """Variance of the residual ``res`` over the variance of its noise, on the pixels the atoms at ``pos``
    cover (at least 1). The noise is measured by the 2 x 2 checkerboard difference of the residual, a
    filter that passes white noise whole (Poisson noise is white) and takes out nearly all of the smooth
    misfit of atoms a pixel or more wide."""
    if len(pos) == 0:
        return 1.0
    cover = prob.forward(pos, np.ones(len(pos)), np.full(len(pos), width), np.zeros(prob.shape[0]))
    cover = (cover > 0.05 * prob.pixel**2 / (2.0 * np.pi * width**2))[:, :-1, :-1]
    if not cover.any():
        return 1.0
    noise = float(np.mean(_fine(res)[:, :-1, :-1][cover] ** 2))
    return max(1.0, float(np.mean(res[:, :-1, :-1][cover] ** 2)) / noise) if noise > 0 else 1.0


def _fine(res):
    """The 2 x 2 checkerboard difference of each projection (white noise passes whole), edge-padded."""
    fine = 0.5 * (res[:, :-1, :-1] - res[:, 1:, :-1] - res[:, :-1, 1:] + res[:, 1:, 1:])
    return np.pad(fine, ((0, 0), (0, 1), (0, 1)), mode="edge")


def _local_significance(prob, pos, amp, sigma, bg, radius):
    """Each integral over its standard error with the residual's variance near the atom (a Gaussian
    window of width ``radius`` [Å] over every projection): the local noise (Poisson noise grows with
    the signal) and the model's local misfit."""
    model = prob.forward(pos, amp, sigma, bg)
    res = prob.data - model
    wide = np.full(len(pos), radius)
    near = np.empty((prob.shape[0], len(pos)))
    weight = np.empty((prob.shape[0], len(pos)))
    _kernels.adjoint_atoms(pos, wide, prob.rot, prob.pixel, N_SIGMA, np.ascontiguousarray(res * res), near)
    _kernels.adjoint_atoms(pos, wide, prob.rot, prob.pixel, N_SIGMA, np.ones(prob.shape), weight)
    var = near.sum(axis=0) / np.maximum(weight.sum(axis=0), 1e-300)
    _, jtj = prob.blocks(pos, amp, sigma, model)
    return amp * np.sqrt(jtj[:, 0, 0] / np.maximum(var, 1e-300)), res


def _bonded_site(pos, support, shell):
    """Whether each candidate sits where the atoms ``support`` (a mask of ``pos``) imply an atom: ``ENCLOSED`` or
    more of them within ``shell`` [Å] (inside the solid), or ``SURFACE`` or more with none closer than
    ``BOND_FRACTION`` of their bond length (the first peak of their g(r)): a surface site."""
    if support.sum() < 8:
        return np.zeros(len(pos), dtype=bool)
    from .structure import nearest_neighbour_distance

    try:
        bond = nearest_neighbour_distance(pos[support])["peak"]
    except ValueError:  # no two of them within 5 Å: no solid
        return np.zeros(len(pos), dtype=bool)
    tree = cKDTree(pos[support])
    count = tree.query_ball_point(pos, shell, return_length=True) - support
    d, _ = tree.query(pos, 2)
    nearest = np.where(support, d[:, 1], d[:, 0])
    return (count >= ENCLOSED) | ((count >= SURFACE) & (nearest >= BOND_FRACTION * bond))


def _first_shell(positions, at_least):
    """The first minimum of the radial distribution of ``positions`` [Å], at least ``at_least``."""
    from .structure import nearest_neighbour_distance

    if len(positions) < 8 or len(cKDTree(positions).query_pairs(5.0, output_type="ndarray")) == 0:
        return at_least
    return max(at_least, nearest_neighbour_distance(positions)["minimum"])


def refine_atoms(traced: TracedAtoms, series: TiltSeries, volume: Volume, *, n_rounds: int | None = None,
                 add_missing: bool = True, refine_positions: bool = True, width_angstrom: float | None = None,
                 lattice: bool | str = "auto", min_distance_angstrom: float | None = None,
                 exclude_angstrom: float = 1.8,
                 pair_distance_angstrom: float = 3.2, n_iter: int = 15, residual_sigma: float = 4.0,
                 significance: float = 5.0, max_step_angstrom: float = 0.3, min_neighbours: int = 2,
                 model_error: bool = True, progress: bool = True) -> TracedAtoms:  # fmt: skip
    """Fit the traced candidates to the projections: width, integrals, positions, and missing atoms.

    Parameters
    ----------
    traced : TracedAtoms
        Candidates from :func:`~.trace.trace_atoms` on ``volume`` (unclassified: every candidate is fitted).
    series : TiltSeries
        The projections ``volume`` was reconstructed from (aligned; in a linear unit).
    volume : Volume
        For the box integrals and profiles at the refined positions, and the residual's grid.
    n_rounds : int, optional
        Rounds of strengths, positions and missing atoms (default 2 for a crystal; 4
        without a lattice, where the residual alone proposes the missing atoms and
        finds the light atom of a close pair only once its neighbour has moved).
    add_missing : bool
        Look for missing atoms in the residual.
    lattice : {"auto", "crystal", "none"} or bool
        For a crystal (or True), add the lattice sites next to significant atoms that a
        centrosymmetric crystal implies (each atom's mirror of a neighbour within
        ``pair_distance_angstrom``, where two pairs agree) as candidates: the fit keeps
        those that hold an atom and gives the others integrals near zero. For "none"
        (or False: an amorphous particle) only the residual proposes atoms. "auto"
        follows the lattice given to :func:`~.trace.trace_atoms` and otherwise asks
        :func:`~.structure.detect_lattice` of the first fit's significant atoms (the
        light element included, which the tracing's bright maxima may leave out).
    refine_positions : bool
    width_angstrom : float, optional
        The atoms' Gaussian width [Å] (default: fitted).
    min_distance_angstrom : float, optional
        Smallest distance between two new candidates [Å] (default: the tracing's,
        ``traced.tracing["min_distance_angstrom"]``, else 2.0).
    exclude_angstrom : float
        A new candidate must be this far from every significant atom, and two
        candidates closer than this cannot both stay [Å].
    pair_distance_angstrom : float
        Neighbours within this distance imply lattice sites [Å] (nearest neighbours only).
    n_iter : int
        CGLS iterations of each strength fit.
    residual_sigma : float
        A maximum of the significance of one more atom (its fitted integral over its
        standard error at every voxel, by the matched filter of the residual projections
        described in :mod:`.refine`) is a candidate above this value. The
        candidates still have to hold their integral in the fit. On a 3,000-atom amorphous
        Si/Ge/Sn particle at 1e4 e/Å² this found 98 % of the atoms, against 96 % from the
        maxima of the reconstructed residual (10 SIRT iterations) it replaced.
    significance : float
        An atom is significant when its integral exceeds this many standard errors:
        only those move, and only those keep new candidates away.
    max_step_angstrom : float
        Largest position step of one round [Å].
    min_neighbours : int
        A candidate with fewer significant atoms than this within ``pair_distance_angstrom``
        (without a lattice: within the first minimum of the significant atoms' g(r), if
        farther, the first neighbour shell of an amorphous solid)
        is dropped at the end: no atom of a solid floats alone (the weak candidates
        in the vacuum that the missing wedge leaves poorly determined), unless its
        integral exceeds ``LONE_FACTOR`` (2) x ``significance`` x F standard errors
        (a lone atom the data show plainly; the noise maxima of the vacuum reach 1.3-1.8
        times ``significance`` on the benchmarks).
    model_error : bool
        Hold the candidates to the fit's own error at the end. F, the misfit ratio, is
        the residual's variance over its noise's on the pixels the atoms cover (the
        noise measured by the residual's 2 x 2 checkerboard difference, which white
        noise passes whole and smooth misfit does not). Where F >= 1.05 (projections
        that are not sums of Gaussians: dynamical scattering gives 1.13 and 2.2 on the
        shipped multislice series at 1e4 and 1e5 e/Å², kinematic data 1.0), a candidate
        stays in the model only when its integral exceeds ``significance`` x F standard
        errors, the error taken from the residual's variance near it (local noise and
        local misfit, which beside the surface is correlated over an atom's footprint
        and fits as well as a light atom would). A significant candidate at a site that
        the candidates passing this test bond to keeps the plain test: ``ENCLOSED`` (10)
        or more of them within ``pair_distance_angstrom``, or ``SURFACE`` (6) or more
        with none closer than ``BOND_FRACTION`` (0.85) of their bond length (a surface
        site; the misfit's candidates sit beside the surface, with fewer sure
        neighbours, or between sites, too close to one). On the shipped multislice
        series this keeps the surface Fe atoms (6 and 8 neighbours) that the misfit test
        alone dropped: recall 0.995 to 1.0 at both doses. A rejected candidate stays in the
        result with integral 0 (the model holds no atom there), so that
        :func:`~.classify.classify_atoms` counts it with the non-atoms.
    progress : bool

    Returns
    -------
    TracedAtoms
        Unclassified, with ``strength``, ``strength_error`` and ``refinement`` (width,
        R1 of the model's projections, atoms added per round, the misfit ratio and the
        number of rejected candidates) set; box integrals and
        profiles measured in ``volume`` at the refined positions.
    """
    from tqdm.auto import tqdm

    if not isinstance(traced, TracedAtoms):
        raise TypeError(f"traced must be TracedAtoms, got {type(traced).__name__}")
    if not isinstance(series, TiltSeries):
        raise TypeError(f"series must be a TiltSeries, got {type(series).__name__}")
    if not isinstance(volume, Volume):
        raise TypeError(f"volume must be a Volume, got {type(volume).__name__}")
    if abs(volume.pixel_size_angstrom - series.pixel_size_angstrom) > 1e-9 * series.pixel_size_angstrom:
        raise ValueError(f"volume has pixel_size_angstrom = {volume.pixel_size_angstrom:g} but series has "
                         f"{series.pixel_size_angstrom:g}")  # fmt: skip
    if len(traced) == 0:
        raise ValueError("traced holds no candidate atoms to refine")
    if n_rounds is not None:
        n_rounds = check_integer(n_rounds, "n_rounds", low=0)
    residual_sigma = check_positive(residual_sigma, "residual_sigma")
    n_iter = check_integer(n_iter, "n_iter", low=1)
    if min_distance_angstrom is None:
        min_distance_angstrom = traced.tracing.get("min_distance_angstrom", 2.0)
    dmin = check_positive(min_distance_angstrom, "min_distance_angstrom")
    use_lattice, found_order = lattice_choice(lattice, traced), None  # None: detected below
    exclude = check_positive(exclude_angstrom, "exclude_angstrom")
    pair_distance = check_positive(pair_distance_angstrom, "pair_distance_angstrom")
    significance = check_positive(significance, "significance")
    max_step = check_positive(max_step_angstrom, "max_step_angstrom")
    min_neighbours = check_integer(min_neighbours, "min_neighbours", low=0)
    prob = _Problem(series)
    pos = np.ascontiguousarray(traced.positions, dtype=np.float64)
    pixel = prob.pixel
    bar = tqdm(total=2 + 3 * (4 if n_rounds is None else n_rounds), desc="refining atoms", unit="step",
               disable=not progress)  # fmt: skip
    if width_angstrom is None:
        width = _fit_width(prob, pos, 0.5 * pixel, 3.0 * pixel)
    else:
        width = check_positive(width_angstrom, "width_angstrom")
    bar.update()
    sigma = np.full(len(pos), width)
    amp, bg, chi2 = prob.strengths(pos, sigma, n_iter=n_iter)
    history = [{"chi2": chi2, "n_candidates": len(pos)}]
    bar.update()
    if use_lattice is None:  # asked of the first fit's significant atoms
        sig0 = amp > significance * _errors(prob, pos, amp, sigma, prob.forward(pos, amp, sigma, bg))
        use_lattice = detect_lattice(pos[sig0]) == "crystal"
        found_order = lattice_order(pos[sig0]) if sig0.sum() >= 8 else 0.0
    n_rounds = (2 if use_lattice else 4) if n_rounds is None else n_rounds
    bar.total = 2 + 3 * n_rounds
    for _ in range(n_rounds):
        err = _errors(prob, pos, amp, sigma, prob.forward(pos, amp, sigma, bg))
        significant = amp > significance * err
        step = 0.0
        if refine_positions:
            pos, amp, chi2, step = _position_step(prob, pos, amp, sigma, bg, significant, max_step)
        bar.update()
        added = {"residual": np.zeros((0, 3)), "lattice": np.zeros((0, 3))}
        if add_missing:
            found = _missing(prob, volume.data.shape, volume.pixel_size_angstrom, pos, amp, sigma, bg, significant,
                             dmin, exclude, residual_sigma)  # fmt: skip
            if min_neighbours > 0 and len(found) and significant.any():
                # a proposal the end would drop as alone is not fitted (noise maxima in the vacuum)
                shell = pair_distance if use_lattice else _first_shell(pos[significant], pair_distance)
                counts = cKDTree(pos[significant]).query_ball_point(found, shell, return_length=True)
                found = found[counts >= min_neighbours]
            added["residual"] = found
        if use_lattice:
            sites = _lattice_sites(pos[significant], pair_distance, exclude)
            if len(sites) and len(added["residual"]):
                sites = sites[cKDTree(added["residual"]).query(sites)[0] >= exclude]
            added["lattice"] = sites
        new = np.concatenate(list(added.values()))
        if len(new):
            # insignificant candidates next to a new one give way to it
            keep = significant | (cKDTree(new).query(pos)[0] >= exclude)
            pos = np.ascontiguousarray(np.concatenate([pos[keep], new]))
            amp = np.concatenate([amp[keep], np.zeros(len(new))])
            sigma = np.full(len(pos), width)
        bar.update()
        amp, bg, chi2 = prob.strengths(pos, sigma, amp, bg, n_iter=n_iter)
        history.append({"chi2": chi2, "n_candidates": len(pos), "n_added_residual": len(added["residual"]),
                        "n_added_lattice": len(added["lattice"]), "rms_step_angstrom": step,
                        "n_significant": int(significant.sum())})  # fmt: skip
        bar.update()
    rejected, misfit = np.zeros((0, 3)), 1.0
    if model_error:
        # a candidate whose integral the model's own error explains holds no atom
        model = prob.forward(pos, amp, sigma, bg)
        solid = amp > significance * _errors(prob, pos, amp, sigma, model)
        misfit = _misfit_ratio(prob, prob.data - model, pos[solid], width)
        held = np.ones(len(pos), dtype=bool)
        if misfit >= MIN_MISFIT:
            z, _ = _local_significance(prob, pos, amp, sigma, bg, 3.0 * width)
            # a site that the atoms passing the test bond to (a surface site or deeper) is where an atom is expected;
            # the misfit lies beside the surface and between sites: at such a site the plain test holds
            sure = z >= significance * misfit
            held = sure | (solid & _bonded_site(pos, sure, pair_distance))
        if not held.all():
            rejected = pos[~held]
            pos, sigma = np.ascontiguousarray(pos[held]), sigma[held]
            amp, bg, chi2 = prob.strengths(pos, sigma, amp[held], bg, n_iter=n_iter)
    # two candidates closer than ``exclude`` cannot both be atoms: the weaker goes; so does a lone one
    order = np.argsort(-amp, kind="stable")
    keep = np.sort(order[_min_distance_order(pos[order], exclude)])
    n_merged = len(pos) - len(keep)
    err = _errors(prob, pos, amp, sigma, prob.forward(pos, amp, sigma, bg))
    significant = np.zeros(len(pos), dtype=bool)
    significant[keep] = amp[keep] > significance * err[keep]
    if min_neighbours > 0 and significant.any():
        shell = pair_distance if use_lattice else _first_shell(pos[significant], pair_distance)
        counts = cKDTree(pos[significant]).query_ball_point(pos[keep], shell, return_length=True)
        # one with fewer neighbours stays if it explains the data by far (a lone atom the surface holds)
        strong = amp[keep] >= LONE_FACTOR * significance * misfit * err[keep]
        keep = keep[(counts - significant[keep] >= min_neighbours) | strong]
    if len(keep) < len(pos):
        pos, sigma = np.ascontiguousarray(pos[keep]), sigma[keep]
        amp, bg, chi2 = prob.strengths(pos, sigma, amp[keep], bg, n_iter=n_iter)
    n_alone = int(len(order) - n_merged - len(keep))
    if len(rejected):
        # rejected candidates where a candidate could be (apart from the others, beside the solid) stay at 0
        rejected = rejected[cKDTree(pos).query(rejected)[0] >= exclude] if len(pos) else rejected
        if min_neighbours > 0 and len(rejected) and len(pos):
            err = _errors(prob, pos, amp, sigma, prob.forward(pos, amp, sigma, bg))
            solid = pos[amp > significance * err]
            if len(solid):
                rejected = rejected[cKDTree(solid).query_ball_point(rejected, pair_distance, return_length=True)
                                    >= min_neighbours]  # fmt: skip
            else:
                rejected = rejected[:0]
    history.append({"chi2": chi2, "n_candidates": len(pos), "n_merged": int(n_merged), "n_alone": n_alone,
                    "n_rejected": len(rejected)})  # fmt: skip
    bar.close()
    model = prob.forward(pos, amp, sigma, bg)
    if len(rejected):
        pos = np.ascontiguousarray(np.concatenate([pos, rejected]))
        amp = np.concatenate([amp, np.zeros(len(rejected))])
        sigma = np.full(len(pos), width)
    err = _errors(prob, pos, amp, sigma, model)
    peak, profiles, box = sample_volume(volume, pos)
    if not np.all(np.isfinite(amp)):
        warnings.warn("some fitted integrals are not finite: the projections may not match the volume",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
    info = {"width_angstrom": width, "r1": prob.r1(model), "rounds": history, "background": bg.tolist(),
            "lattice": "crystal" if use_lattice else "none", "lattice_order": found_order, "misfit_ratio": misfit,
            "n_rejected": len(rejected)}  # fmt: skip
    return dataclasses.replace(traced, positions=pos, intensity_box=box, intensity_fit=np.full(len(pos), np.nan),
                               peak=peak, profiles=profiles, labels=None, strength=amp, strength_error=err,
                               refinement=info)  # fmt: skip


def refine_angles(series: TiltSeries, refined: TracedAtoms, *, max_angle_deg: float = 3.0,
                  max_shift_angstrom: float = 2.0, significance: float = 5.0,
                  progress: bool = True) -> tuple[TiltSeries, dict]:  # fmt: skip
    """Projection matching: each projection's angles and in-plane shift, fitted to the refined atoms.

    Every projection is compared with the projection of the significant atoms of
    ``refined`` (their fitted integrals and width, from :func:`refine_atoms`), and its
    tilt (all three Euler angles for a general series) and its shift are fitted by
    Powell's method, the background in closed form. Reconstructing the returned
    series and tracing again closes the loop: misalignment left by
    :func:`~.align.align_projections` and errors of the stage's angles are taken out.

    Parameters
    ----------
    series : TiltSeries
    refined : TracedAtoms
        From :func:`refine_atoms` on a reconstruction of ``series``.
    max_angle_deg : float
        Largest change of an angle [degrees].
    max_shift_angstrom : float
        Largest shift [Å].
    significance : float
        Atoms whose integral exceeds this many standard errors make the reference.
    progress : bool

    Returns
    -------
    (TiltSeries, dict)
        The series with the fitted angles and the images shifted into register (Fourier
        shifts); and the angle changes [degrees] (k, 3), the shifts [Å] (k, 2: x, y) and
        each projection's χ² before and after.
    """
    from scipy import optimize
    from tqdm.auto import tqdm

    from .align import shift_images
    from .geometry import rotation_matrices

    if not isinstance(series, TiltSeries):
        raise TypeError(f"series must be a TiltSeries, got {type(series).__name__}")
    if not isinstance(refined, TracedAtoms) or refined.strength is None:
        raise ValueError("refined must be TracedAtoms with fitted integrals: run refine_atoms first")
    max_angle = check_positive(max_angle_deg, "max_angle_deg")
    max_shift = check_positive(max_shift_angstrom, "max_shift_angstrom")
    keep = refined.strength > check_positive(significance, "significance") * refined.strength_error
    if not keep.any():
        raise ValueError("refined has no significant atom to match the projections against")
    pos = np.ascontiguousarray(refined.positions[keep])
    amp = np.ascontiguousarray(refined.strength[keep])
    sigma = np.full(len(pos), float(refined.refinement["width_angstrom"]))
    pixel = series.pixel_size_angstrom
    single = series.single_axis
    free = [1] if single else [0, 1, 2]  # Euler components fitted
    angles = series.angles.copy()
    shifts = np.zeros((len(angles), 2))
    chi_before, chi_after = np.zeros(len(angles)), np.zeros(len(angles))
    out = np.empty((1, *series.shape))

    for k in tqdm(range(len(angles)), desc="matching projections", unit="projection", disable=not progress):
        data = series.images[k] * pixel**2

        def chi2(p, k=k, data=data):
            ang = series.angles[k].copy()
            ang[free] += p[: len(free)]
            rot = rotation_matrices(ang[None])
            s = np.array([p[-2], p[-1], 0.0])
            _kernels.project_atoms(pos + rot[0].T @ s, amp, sigma, rot, pixel, N_SIGMA, out)
            r = data - out[0]
            r -= r.mean()
            return float(np.sum(r * r))

        x0 = np.zeros(len(free) + 2)
        bounds = [(-max_angle, max_angle)] * len(free) + [(-max_shift, max_shift)] * 2
        chi_before[k] = chi2(x0)
        best = optimize.minimize(chi2, x0, method="Powell", bounds=bounds, options={"xtol": 1e-3, "ftol": 1e-9})
        if best.fun < chi_before[k]:
            angles[k, free] += best.x[: len(free)]
            shifts[k] = best.x[-2:]
        chi_after[k] = min(best.fun, chi_before[k])
    images = shift_images(series.images, -shifts / pixel)
    info = {"angle_changes_deg": (angles - series.angles).tolist(), "shifts_angstrom": shifts.tolist(),
            "chi2_before": chi_before.tolist(), "chi2_after": chi_after.tolist()}  # fmt: skip
    prov = dict(series.provenance, angles_refined=True, refined_shifts_angstrom=shifts.tolist())
    return TiltSeries(images, angles, pixel, prov), info


def fit_class_strengths(classified: TracedAtoms, series: TiltSeries, *, width_angstrom: float | None = None,
                        drop=("non-atom",)) -> dict:  # fmt: skip
    """One integral per class, fitted to the projections with the classified atoms where they are.

    The model of the finished reconstruction: every atom of a class (those named in
    ``drop`` left out) gets its class's integral, one background per projection
    takes the rest, by linear least squares. Returns the integrals per class [Å²], the
    backgrounds, and the R1 factor of the model's projections against the measured
    ones (Σ|p - p̂| / Σ|p|, averaged over projections).
    """
    if not isinstance(classified, TracedAtoms) or classified.labels is None:
        raise ValueError("classified must be TracedAtoms with labels: run classify_atoms first")
    if not isinstance(series, TiltSeries):
        raise TypeError(f"series must be a TiltSeries, got {type(series).__name__}")
    if width_angstrom is None:
        if "width_angstrom" not in classified.refinement:
            raise ValueError("width_angstrom is needed for atoms that refine_atoms has not fitted")
        width_angstrom = classified.refinement["width_angstrom"]
    width = check_positive(width_angstrom, "width_angstrom")
    prob = _Problem(series)
    names = [n for n in classified.class_names if n not in drop]
    if not names:
        raise ValueError(f"every class of {classified.class_names} is dropped")
    k = prob.shape[0]
    columns = []
    for name in names:
        pos = np.ascontiguousarray(classified.positions[classified.elements() == name])
        columns.append(prob.forward(pos, np.ones(len(pos)), np.full(len(pos), width), np.zeros(k)).reshape(k, -1))
    # least squares for the class integrals and the backgrounds: the background of projection j is the
    # mean residual of j, so the class integrals solve the normal equations of the centred columns
    centred = [c - c.mean(axis=1, keepdims=True) for c in columns]
    data = prob.data.reshape(k, -1)
    data_c = data - data.mean(axis=1, keepdims=True)
    gram = np.array([[np.sum(a * b) for b in centred] for a in centred])
    rhs = np.array([np.sum(a * data_c) for a in centred])
    strengths = np.linalg.solve(gram, rhs)
    model = sum(s * c for s, c in zip(strengths, columns, strict=True))
    bg = (data - model).mean(axis=1)
    model = (model + bg[:, None]).reshape(prob.shape)
    return {"strengths": dict(zip(names, strengths.tolist(), strict=True)), "background": bg.tolist(),
            "r1": prob.r1(model), "width_angstrom": width}  # fmt: skip
