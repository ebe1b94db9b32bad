"""Random nanoparticles and their noisy EDXS maps: the training data of the EDXS denoiser.

:func:`random_particle` draws one particle on a voxel grid: a shape (cube or cuboid,
sphere or ellipsoid, rod, pentagonal bipyramid, octahedron, triangular or hexagonal
platelet) with a random size, aspect ratio, rotation and offset, and a composition of 1-3
elements (solid, random alloy, core-shell, core-shell-shell, Janus, alloy gradient) with
sharp or error-function interfaces. Densities are the bulk densities of
:data:`atomscount.elemental.phantoms.ATOMIC_DENSITY` mixed as in the phantoms (Vegard-like),
and the outer surface is a one-voxel partial-volume ramp.

:func:`training_maps` projects such particles at a random tilt with
:func:`atomscount.elemental.forward.simulate_edxs` (noise-free), scales each element's map
to a dose drawn log-uniformly in ``dose_range`` (the dose measure of
:func:`atomscount.elemental._net.map_dose`: counts per pixel over the particle's thick
part) and draws Poisson counts. Some maps hold an element that is absent (all-zero truth),
so that a network learns to keep an absent element absent.

Everything is reproducible from a seed. The shipped denoiser trained on seeds below
:data:`HELD_OUT_SEED`; tests and benchmarks use seeds at or above it.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_integer, check_positive, check_rng
from .phantoms import ATOMIC_DENSITY, _mix

__all__ = ["HELD_OUT_SEED", "SHAPES", "COMPOSITIONS", "random_particle", "training_maps"]

#: Seeds at or above this were never used in training (tests and benchmarks use them).
HELD_OUT_SEED = 10**6
#: The shapes :func:`random_particle` draws from.
SHAPES = ("cube", "sphere", "rod", "bipyramid", "octahedron", "platelet")
#: The compositions :func:`random_particle` draws from.
COMPOSITIONS = ("solid", "alloy", "core-shell", "core-shell-shell", "janus", "gradient")
_SHAPE_P = (0.2, 0.2, 0.2, 0.15, 0.1, 0.15)
_COMP_P = (0.2, 0.1, 0.3, 0.1, 0.15, 0.15)
_ELEMENTS = tuple(ATOMIC_DENSITY)


def _rotation(rng) -> np.ndarray:
    """A uniformly random rotation matrix (from a random unit quaternion)."""
    q = rng.standard_normal(4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])  # fmt: skip


def _polygon_faces(n, rng):
    """Unit normals (cos, sin) of a regular n-gon's edges, randomly turned."""
    t = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n) / n
    return np.cos(t), np.sin(t)


def _shape_sdf(kind, size, rng):
    """A signed distance (negative inside, [Å]) of a shape of overall radius ``size`` [Å], as a function of
    rotated coordinates (u, v, w), and the shape's parameters."""
    if kind == "cube":
        h = size / np.sqrt(3) * rng.uniform(0.8, 1.2, 3)
        if rng.random() < 0.3:  # a cuboid
            h[rng.integers(3)] *= rng.uniform(1.3, 1.8)
        rr = rng.uniform(0.0, 0.25) * h.min()  # rounded edges

        def sdf(u, v, w):
            q = [np.abs(c) - (hh - rr) for c, hh in zip((u, v, w), h, strict=True)]
            outside = np.sqrt(sum(np.maximum(c, 0.0) ** 2 for c in q))
            return outside + np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0) - rr

        return sdf, {"half_sides": h.tolist(), "edge_radius": float(rr)}
    if kind == "sphere":
        r = size * rng.uniform(0.85, 1.0, 3) if rng.random() < 0.5 else np.full(3, size * rng.uniform(0.85, 1.0))

        def sdf(u, v, w):
            return (np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2) - 1.0) * r.min()

        return sdf, {"radii": r.tolist()}
    if kind == "rod":
        aspect = rng.uniform(1.5, 4.5)
        radius = size / aspect * 1.1
        half = max(size - radius, 0.0)
        capped = rng.random() < 0.6

        def sdf(u, v, w):
            rho = np.sqrt(u * u + v * v)
            if capped:
                return np.sqrt(rho**2 + np.maximum(np.abs(w) - half, 0.0) ** 2) - radius
            return np.maximum(rho - radius, np.abs(w) - size)

        return sdf, {"radius": float(radius), "half_length": float(half if capped else size), "caps": capped}
    if kind in ("bipyramid", "octahedron"):
        n = 5 if kind == "bipyramid" else 4
        r_in = size * (rng.uniform(0.35, 0.6) if kind == "bipyramid" else rng.uniform(0.6, 0.75))
        h = size if kind == "bipyramid" else r_in * np.sqrt(2) * rng.uniform(0.9, 1.1)
        cs, sn = _polygon_faces(n, rng)
        norm = np.sqrt(1 / r_in**2 + 1 / h**2)

        def sdf(u, v, w):
            a = np.abs(w) / h - 1.0
            return np.max([(c * u + s * v) / r_in + a for c, s in zip(cs, sn, strict=True)], axis=0) / norm

        return sdf, {"n_faces": 2 * n, "inradius": float(r_in), "half_height": float(h)}
    # platelet: a triangular or hexagonal prism, thin along w
    n = 3 if rng.random() < 0.5 else 6
    r_in = size * (0.5 if n == 3 else 0.85) * rng.uniform(0.85, 1.0)
    t = size * rng.uniform(0.12, 0.3)
    cs, sn = _polygon_faces(n, rng)

    def sdf(u, v, w):
        edge = np.max([c * u + s * v for c, s in zip(cs, sn, strict=True)], axis=0) - r_in
        return np.maximum(edge, np.abs(w) - t)

    return sdf, {"n_edges": n, "inradius": float(r_in), "half_thickness": float(t)}


def _step(d, width, voxel):
    """1 inside (d < 0), 0 outside: an erf of length ``width`` [Å], or a one-voxel ramp when width is 0."""
    from scipy.special import erf

    if width > 0:
        return 0.5 * (1.0 - erf(d / width))
    return np.clip(0.5 - d / voxel, 0.0, 1.0)


def random_particle(rng=None, *, shape=(64, 64, 64), voxel_size_angstrom: float = 5.0, kind: str | None = None,
                    composition: str | None = None, elements=None) -> tuple[dict[str, np.ndarray], dict]:  # fmt: skip
    """One random nanoparticle: per-element number densities on a voxel grid.

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
    shape : (nz, ny, nx)
        Voxels (at least 8 each).
    voxel_size_angstrom : float
        Voxel side [Å] (5 Å: a 64-voxel box is 32 nm wide).
    kind : str, optional
        One of :data:`SHAPES` (random when omitted).
    composition : str, optional
        One of :data:`COMPOSITIONS` (random when omitted).
    elements : sequence of str, optional
        The elements (from :data:`~atomscount.elemental.phantoms.ATOMIC_DENSITY`; random
        when omitted); their number must suit the composition (1 for "solid", 2 for
        "alloy", "core-shell", "janus" and "gradient", 3 for "core-shell-shell").

    Returns
    -------
    densities : dict of str to ndarray (nz, ny, nx)
        Number densities [atoms/Å³].
    info : dict
        ``kind``, ``composition``, ``elements``, ``size_angstrom`` (the overall radius),
        ``interface_width_angstrom`` (0: sharp), ``rotation`` (3x3), ``centre_angstrom``
        and the shape's parameters.

    Examples
    --------
    >>> dens, info = random_particle(1, shape=(32, 32, 32), kind="sphere", composition="core-shell",
    ...                              elements=("Au", "Ag"))
    >>> sorted(dens), info["kind"]
    (['Ag', 'Au'], 'sphere')
    """
    gen = check_rng(rng)
    voxel = check_positive(voxel_size_angstrom, "voxel_size_angstrom")
    dims = tuple(check_integer(n, "shape", low=8) for n in np.atleast_1d(shape))
    if len(dims) != 3:
        raise ValueError(f"shape must be (nz, ny, nx), got {shape!r}")
    kind = SHAPES[gen.choice(len(SHAPES), p=_SHAPE_P)] if kind is None else kind
    composition = COMPOSITIONS[gen.choice(len(COMPOSITIONS), p=_COMP_P)] if composition is None else composition
    if kind not in SHAPES:
        raise ValueError(f"kind must be one of {list(SHAPES)}, got {kind!r}")
    if composition not in COMPOSITIONS:
        raise ValueError(f"composition must be one of {list(COMPOSITIONS)}, got {composition!r}")
    n_el = {"solid": 1, "core-shell-shell": 3}.get(composition, 2)
    if elements is None:
        elements = tuple(_ELEMENTS[i] for i in gen.choice(len(_ELEMENTS), n_el, replace=False))
    elements = tuple(str(e) for e in elements)
    if len(elements) != n_el or len(set(elements)) != n_el or any(e not in ATOMIC_DENSITY for e in elements):
        raise ValueError(f"elements must be {n_el} distinct elements of {list(_ELEMENTS)} for a {composition!r} "
                         f"particle, got {list(elements)}")  # fmt: skip

    half_box = 0.5 * min(dims) * voxel
    size = half_box * gen.uniform(0.3, 0.85)
    centre = gen.uniform(-1, 1, 3) * max(half_box - size, 0.0) * 0.8
    rot = _rotation(gen)
    sdf, params = _shape_sdf(kind, size, gen)
    axes = [(np.arange(n) - (n - 1) / 2.0) * voxel for n in dims]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    p = (z - centre[0], y - centre[1], x - centre[2])
    u, v, w = (rot[i, 0] * p[0] + rot[i, 1] * p[1] + rot[i, 2] * p[2] for i in range(3))
    outer = sdf(u, v, w)
    occupancy = np.clip(0.5 - outer / voxel, 0.0, 1.0)
    width = 0.0 if gen.random() < 0.5 else voxel * gen.uniform(0.5, 3.0)
    info = {"kind": kind, "composition": composition, "elements": list(elements), "size_angstrom": float(size),
            "interface_width_angstrom": float(width), "rotation": rot.tolist(), "centre_angstrom": centre.tolist(),
            **params}  # fmt: skip

    if composition == "solid":
        fr = {elements[0]: np.ones_like(occupancy)}
    elif composition == "alloy":
        f = gen.uniform(0.15, 0.85)
        fr = {elements[0]: np.full_like(occupancy, f), elements[1]: np.full_like(occupancy, 1.0 - f)}
        info["fraction"] = float(f)
    elif composition in ("core-shell", "core-shell-shell"):
        s = gen.uniform(0.4, 0.75)
        shift = gen.uniform(-1, 1, 3) * size * (1.0 - s) * 0.3  # an off-centre core
        core = _step(s * sdf((u - shift[0]) / s, (v - shift[1]) / s, (w - shift[2]) / s), width, voxel)
        info["core_scale"] = float(s)
        if composition == "core-shell":
            fr = {elements[0]: core, elements[1]: 1.0 - core}
        else:
            s2 = s + gen.uniform(0.3, 0.7) * (1.0 - s)
            middle = _step(s2 * sdf(u / s2, v / s2, w / s2), width, voxel)
            middle = np.maximum(middle, core)
            fr = {elements[0]: core, elements[1]: middle - core, elements[2]: 1.0 - middle}
            info["middle_scale"] = float(s2)
    elif composition == "janus":
        n = _rotation(gen)[0]
        off = gen.uniform(-0.4, 0.4) * size
        side = _step(n[0] * u + n[1] * v + n[2] * w - off, width, voxel)
        fr = {elements[0]: side, elements[1]: 1.0 - side}
    else:  # gradient: the first element's fraction varies linearly along a random direction
        n = _rotation(gen)[0]
        lo, hi = np.sort(gen.uniform(0.0, 1.0, 2))
        t = np.clip((n[0] * u + n[1] * v + n[2] * w) / (2 * size) + 0.5, 0.0, 1.0)
        first = lo + (hi - lo) * t
        fr = {elements[0]: first, elements[1]: 1.0 - first}
    fr = {e: np.broadcast_to(f, occupancy.shape) for e, f in fr.items()}
    return _mix(fr, occupancy), info


def training_maps(seed: int, n: int, *, size: int = 64, dose_range=(0.5, 100.0), absent_fraction: float = 0.05,
                  voxel_size_angstrom: float = 5.0) -> dict:  # fmt: skip
    """Noisy and noise-free EDXS maps of random particles, reproducible from ``seed``.

    Each particle (:func:`random_particle`) is projected at one random tilt (-70° to 70°)
    by :func:`~atomscount.elemental.forward.simulate_edxs` (noise-free); each element's map
    is scaled so that its dose measure (:func:`atomscount.elemental._net.map_dose` of the
    truth) is a dose drawn log-uniformly in ``dose_range``, and its counts are Poisson
    draws. With probability ``absent_fraction`` a particle also gets a map of an element it
    does not hold (all-zero truth and counts).

    Parameters
    ----------
    seed : int
        Seeds below :data:`HELD_OUT_SEED` are the training set's.
    n : int
        Number of maps (particles are drawn until there are ``n``).
    size : int
        Maps are ``size`` x ``size`` pixels (the volumes ``size**3`` voxels).
    dose_range : (float, float)
        Counts per pixel [counts], the range of the log-uniform dose.
    absent_fraction : float
        Share of particles that also get an absent element's map, in [0, 1].
    voxel_size_angstrom : float
        Voxel side and pixel size [Å].

    Returns
    -------
    dict
        ``noisy`` (n, size, size) counts, ``clean`` (n, size, size) expected counts,
        ``dose`` (n,) the drawn dose of each map [counts per pixel] (0 for an absent
        element), ``info`` a list of n dicts (the particle's info, ``element``,
        ``tilt_degrees``, ``dose``).

    Examples
    --------
    >>> data = training_maps(10**6, 2, size=32)
    >>> data["noisy"].shape, bool((data["noisy"] >= 0).all())
    ((2, 32, 32), True)
    """
    from ._net import map_dose
    from .forward import simulate_edxs

    seed = check_integer(seed, "seed", low=0)
    n = check_integer(n, "n", low=1)
    size = check_integer(size, "size", low=8)
    lo, hi = (check_positive(d, "dose_range") for d in dose_range)
    if hi < lo:
        raise ValueError(f"dose_range must be (low, high) with low <= high, got {dose_range!r}")
    if not 0.0 <= float(absent_fraction) <= 1.0:
        raise ValueError(f"absent_fraction must be in [0, 1], got {absent_fraction!r}")
    rng = np.random.default_rng(seed)
    noisy, clean, dose, info = [], [], [], []
    while len(clean) < n:
        dens, pinfo = random_particle(rng, shape=(size,) * 3, voxel_size_angstrom=voxel_size_angstrom)
        tilt = float(rng.uniform(-70.0, 70.0))
        series = simulate_edxs(dens, voxel_size_angstrom, [tilt], dose_e_per_angstrom2=1e4, noise=False)
        maps = {e: s.images[0] for e, s in series.items()}
        if rng.random() < absent_fraction:
            absent = [e for e in _ELEMENTS if e not in maps]
            maps[absent[rng.integers(len(absent))]] = np.zeros((size, size))
        for e, m in maps.items():
            if len(clean) == n:
                break
            measure = map_dose(m)
            d = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if measure > 0 else 0.0
            c = m * (d / measure) if measure > 0 else np.zeros_like(m)
            clean.append(c)
            noisy.append(rng.poisson(c).astype(np.float64))
            dose.append(d)
            info.append({**pinfo, "element": e, "tilt_degrees": tilt, "dose": d})
    return {"noisy": np.stack(noisy), "clean": np.stack(clean), "dose": np.array(dose), "info": info}
