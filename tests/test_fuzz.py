"""Issues 11 and 26: random small inputs through detection, fitting, counting and the HDF5
round-trips, and through the 3D stages' entry points (simulate_tilt_series, reconstruct,
trace_atoms, search_core_shell).

Three properties hold for every example:

1. only the package's documented exceptions escape: ``ValueError`` (and its
   subclass ``FileFormatError``) for bad values, ``TypeError`` for bad types;
2. a column flagged converged has a finite, positive SCS below a sane ceiling,
   with a finite error no larger than the SCS; counts and probabilities are valid;
3. no allocation exceeds the stated limit: everything runs under an address-space
   limit (``resource.setrlimit``) a few GiB above the process's current size, so
   a kernel that asked for more would raise ``MemoryError``, which fails the test.

The examples are derandomised (a fixed seed), so CI sees the same ones every run.
"""

import contextlib
import resource
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomscount import ColumnFit, HAADFImage, find_columns, fit_columns
from atomscount.columns.model import ColumnModel, square_lattice
from atomscount.counting import ColumnCounts, count_atoms

DOCUMENTED = (ValueError, TypeError)
HEADROOM = 3 * 2**30  # bytes of address space allowed above the process's size at the start


def fuzz(max_examples: int):
    return settings(max_examples=max_examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def bounded_memory():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_size() + HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warnings are documented output, not failures
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    """Compile the kernels (and start numba's threads) before memory is bounded."""
    m = ColumnModel((24, 24), 0.2, [[2.4, 2.4]], heights=[0.5], widths=0.4, background=(0.02,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for noise in ("gaussian", "poisson"):
            for width in ("shared", "free"):
                fit_columns(HAADFImage(m.image(), 0.2), [[2.4, 2.4]], noise=noise, width=width, background="plane",
                            progress=False)  # fmt: skip
        count_atoms(np.repeat([1.0, 2.0, 3.0], 10) + np.linspace(0, 0.1, 30), rng=0)


@st.composite
def images(draw, lattice=None, min_size=1):
    ny = draw(st.integers(min_size, 48))
    nx = draw(st.integers(min_size, 48))
    pixel = draw(st.sampled_from([0.05, 0.1, 0.2, 0.5, 1.0]))
    extent = np.array([nx, ny]) * pixel
    if lattice if lattice is not None else draw(st.booleans()):  # a lattice, as detection expects
        spacing = draw(st.floats(0.5, 4.0)) if lattice is None else pixel * draw(st.floats(3.0, 12.0))
        pos = square_lattice((ny, nx), pixel, spacing, margin_angstrom=draw(st.floats(0.0, 1.0)))
        k = len(pos)
    else:
        k = draw(st.integers(0, 6))
        pos = np.array([[draw(st.floats(-0.2, 1.2)) * extent[0], draw(st.floats(-0.2, 1.2)) * extent[1]]
                        for _ in range(k)]).reshape(-1, 2)  # fmt: skip
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    heights = rng.uniform(draw(st.floats(-0.5, 1.0)), 2.0, k)
    widths = rng.uniform(draw(st.floats(0.05, 1.0)), 1.2, k)
    bg = draw(st.floats(-0.1, 0.5))
    data = ColumnModel((ny, nx), pixel, pos, heights=heights, widths=widths if k else 0.4, background=(bg,),
                       free_width=True).image()  # fmt: skip
    kind = draw(st.sampled_from(["clean", "gaussian", "poisson", "counts", "spiky", "nan"]))
    if kind == "gaussian":
        data = data + rng.normal(0, draw(st.floats(1e-4, 0.5)), data.shape)
    elif kind == "poisson":
        data = rng.poisson(np.clip(data, 0, None) * 1e3) / 1e3
    elif kind == "counts":
        data = data * 1e4 + 2e4
    elif kind == "spiky":
        data = data + (rng.random(data.shape) < 0.05) * draw(st.floats(-1e3, 1e3))
    elif kind == "nan":
        data = np.where(rng.random(data.shape) < 0.1, np.nan, data)
    return HAADFImage(data, pixel), pos


@st.composite
def start_positions(draw, image, truth):
    pos = truth + np.array([draw(st.floats(-0.5, 0.5)) for _ in range(truth.size)]).reshape(truth.shape)
    extra = draw(st.integers(0, 4))
    extent = np.array(image.shape[::-1]) * image.pixel_size_angstrom
    new = np.array([[draw(st.floats(-0.3, 1.3)) * extent[0], draw(st.floats(-0.3, 1.3)) * extent[1]]
                    for _ in range(extra)]).reshape(-1, 2)  # fmt: skip
    pos = np.vstack([pos, new])
    if len(pos) and draw(st.booleans()):
        pos = np.vstack([pos, pos[:1] + draw(st.floats(0.0, 0.05))])  # a duplicate
    return pos


def _check_fit(fit: ColumnFit, image: HAADFImage):
    ok = fit.converged
    assert np.all(np.isfinite(fit.scs[ok]))
    assert np.all(fit.scs[ok] > 0)
    assert np.all(np.isfinite(fit.scs_error[ok]))
    assert np.all(fit.scs_error[ok] <= fit.scs[ok])
    data = image.data[np.isfinite(image.data)]
    extent = max(image.shape) * image.pixel_size_angstrom
    ceiling = 2 * np.pi * 10 * max(float(np.ptp(data)), 1e-300) * extent**2
    assert np.all(fit.scs[ok] < ceiling)
    assert np.all(fit.widths[ok] > 0)


@fuzz(100)
@given(data=st.data())
def test_fit_columns_on_random_small_images(data, tmp_path_factory):
    image, truth = data.draw(images())
    positions = data.draw(start_positions(image, truth))
    options = data.draw(st.fixed_dictionaries({
        "width": st.sampled_from(["shared", "free"]),
        "background": st.sampled_from(["constant", "plane"]),
        "noise": st.sampled_from(["gaussian", "poisson"]),
        "max_iter": st.integers(1, 30),
        "mask_invalid": st.booleans(),
    }))  # fmt: skip
    with bounded_memory():
        try:
            fit = fit_columns(image, positions, progress=False, **options)
        except DOCUMENTED:
            return
        _check_fit(fit, image)
        path = tmp_path_factory.mktemp("fuzz") / "fit.h5"
        fit.to_hdf5(path)
        back = ColumnFit.from_hdf5(path)
    np.testing.assert_array_equal(back.scs, fit.scs)
    np.testing.assert_array_equal(back.converged, fit.converged)
    np.testing.assert_array_equal(back.positions, fit.positions)


@fuzz(40)
@given(data=st.data())
def test_find_columns_on_random_small_images(data):
    image, _ = data.draw(images(lattice=data.draw(st.booleans()), min_size=data.draw(st.sampled_from([1, 24]))))
    threshold = data.draw(st.one_of(st.none(), st.floats(0.0, 0.99)))
    with bounded_memory():
        try:
            pos = find_columns(image, threshold=threshold)
        except DOCUMENTED:
            return
    assert pos.ndim == 2 and pos.shape[1] == 2
    assert np.all(np.isfinite(pos))
    extent = np.array(image.shape[::-1]) * image.pixel_size_angstrom
    assert np.all((pos > -extent) & (pos < 2 * extent))


scs_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1.0, 50.0),
    st.sampled_from([0.0, 1e-300, 1e300, -1e300]),
)


@st.composite
def scs_sets(draw):
    """Realistic sets (clusters near integer multiples of a step) or arbitrary floats, half each."""
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        n = draw(st.integers(1, 80))
        return rng.integers(1, 10, n) * draw(st.floats(0.01, 1e4)) * (1 + rng.normal(0, 0.05, n))
    return np.array(draw(st.lists(scs_values, min_size=0, max_size=40)))


@fuzz(120)
@given(data=st.data())
def test_count_atoms_on_random_scs_sets(data, tmp_path_factory):
    scs = data.draw(scs_sets())
    method = data.draw(st.sampled_from(["icl", "library", "hybrid"]))
    library = None
    if method != "icl" or data.draw(st.booleans()):
        step = data.draw(st.floats(0.01, 10.0))
        library = step * np.arange(1, data.draw(st.integers(1, 40)) + 1) ** data.draw(st.floats(0.8, 1.0))
    kw = data.draw(st.fixed_dictionaries({}, optional={
        "max_components": st.integers(-2, 12),
        "first_count": st.integers(-3, 5),
        "dose": st.floats(allow_nan=True, allow_infinity=True),
        "n_components": st.integers(-1, 6),
    }))  # fmt: skip
    with bounded_memory():
        try:
            counts = count_atoms(scs, method=method, library=library, rng=0, **kw)
        except DOCUMENTED:
            return
        path = tmp_path_factory.mktemp("fuzz") / "counts.h5"
        counts.to_hdf5(path)
        back = ColumnCounts.from_hdf5(path)
    c = counts.counts
    assert c.shape == scs.shape
    assert np.all((c == -1) | (c >= 1))
    assert np.all(c[~np.isfinite(scs)] == -1)
    p = counts.probability
    assert np.all(np.isfinite(p[c >= 1])) and np.all((p[c >= 1] >= 0) & (p[c >= 1] <= 1 + 1e-12))
    np.testing.assert_array_equal(back.counts, c)


# ------------------------------------------------------------ the 3D stages (issue 26)

finite_or_not = st.one_of(st.floats(-12.0, 12.0), st.sampled_from([np.nan, np.inf, 1e6]))


@st.composite
def atom_sets(draw):
    """A few atoms near the origin (sometimes far off, sometimes NaN), and their elements."""
    n = draw(st.integers(0, 8))
    pos = np.array([[draw(st.floats(-6.0, 6.0)) for _ in range(3)] for _ in range(n)]).reshape(-1, 3)
    if n and draw(st.booleans()):
        pos[draw(st.integers(0, n - 1)), draw(st.integers(0, 2))] = draw(finite_or_not)
    return pos, [draw(st.sampled_from(["Fe", "Pt", "Au"])) for _ in range(n)]


def _angles(draw):
    k = draw(st.integers(0, 5))
    if draw(st.booleans()):
        return np.array([draw(st.floats(-89.0, 89.0)) for _ in range(k)])
    return np.array([[draw(st.floats(-180.0, 180.0)) for _ in range(3)] for _ in range(k)]).reshape(-1, 3)


@fuzz(30)
@given(data=st.data())
def test_simulate_tilt_series_on_random_small_models(data):
    from atomscount.tomo import simulate_tilt_series

    pos, symbols = data.draw(atom_sets())
    angles = _angles(data.draw)
    kw = data.draw(st.fixed_dictionaries({
        "pixel_size_angstrom": st.sampled_from([0.3, 0.5, 1.0, 0.0, -1.0]),
        "b_factor": st.floats(-0.5, 2.0),
        "probe_blur_angstrom": st.floats(0.0, 1.0),
    }, optional={
        "shape": st.tuples(st.integers(0, 24), st.integers(1, 24)),
        "dose_e_per_angstrom2": st.one_of(st.floats(-1.0, 1e5), st.just(np.nan)),
        "background": st.floats(0.0, 0.1),
    }))  # fmt: skip
    with bounded_memory():
        try:
            series = simulate_tilt_series(pos, angles, symbols=symbols, rng=0, **kw)
        except DOCUMENTED:
            return
    assert series.images.shape[0] == len(angles)
    assert np.all(np.isfinite(series.images)) and np.all(series.images >= 0)


@st.composite
def small_series(draw):
    from atomscount.tomo import simulate_tilt_series

    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    pos = rng.uniform(-3.0, 3.0, (n, 3))
    angles = np.linspace(-60.0, 60.0, draw(st.integers(1, 7)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate_tilt_series(pos, angles, pixel_size_angstrom=0.5, symbols=["Pt"] * n, shape=(20, 20),
                                    dose_e_per_angstrom2=draw(st.sampled_from([None, 1e3, 1e5])), rng=0)  # fmt: skip


@fuzz(15)
@given(data=st.data())
def test_reconstruct_on_random_small_series(data):
    from atomscount.tomo import reconstruct

    series = data.draw(small_series())
    kw = data.draw(st.fixed_dictionaries({
        "n_iter": st.integers(-1, 6),
    }, optional={
        "thickness": st.one_of(st.none(), st.integers(-1, 24)),
        "positivity": st.booleans(),
        "relaxation": st.floats(-0.5, 2.5),
    }))  # fmt: skip
    with bounded_memory():
        try:
            volume = reconstruct(series, progress=False, **kw)
        except DOCUMENTED:
            return
    assert volume.data.ndim == 3 and np.all(np.isfinite(volume.data))
    assert len(volume.r1) == kw["n_iter"] and np.all(np.isfinite(volume.r1))


@st.composite
def small_volumes(draw):
    from atomscount.tomo.reconstruct import Volume

    shape = tuple(draw(st.integers(2, 14)) for _ in range(draw(st.sampled_from([2, 3, 3, 3, 3]))))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    grid = np.indices(shape, dtype=np.float64)
    data = np.zeros(shape)
    for _ in range(draw(st.integers(0, 5))):
        centre = rng.uniform(0, np.array(shape) - 1)[(slice(None),) + (None,) * len(shape)]
        data += rng.uniform(0.2, 1.0) * np.exp(-((grid - centre) ** 2).sum(axis=0) / 2.0)
    data += rng.normal(0.0, draw(st.sampled_from([0.0, 0.01, 0.3])), shape)
    if data.size and draw(st.booleans()):
        data.flat[draw(st.integers(0, data.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -1e6, 1e6]))
    return Volume(data, draw(st.sampled_from([0.4, 0.5, 1.0])), np.zeros(0))


@fuzz(25)
@given(data=st.data())
def test_trace_atoms_on_random_small_volumes(data):
    from atomscount.tomo import trace_atoms

    volume = data.draw(small_volumes())
    kw = data.draw(st.fixed_dictionaries({}, optional={
        "min_distance_angstrom": st.one_of(st.floats(-1.0, 6.0), st.just(np.nan)),
        "threshold": st.floats(-1.0, 2.0),
        "lattice": st.sampled_from(["auto", "none", "crystal"]),
    }))  # fmt: skip
    with bounded_memory():
        try:
            traced = trace_atoms(volume, **kw)
        except DOCUMENTED:
            return
    half = 0.5 * np.array(volume.data.shape[::-1]) * volume.pixel_size_angstrom
    assert np.all(np.isfinite(traced.positions)) and np.all(np.abs(traced.positions) <= half + 1e-9)


@fuzz(4)
@given(data=st.data())
def test_search_core_shell_on_random_small_views(data):
    from atomscount.coreshell.search import search_core_shell
    from atomscount.library import load_default_lensing

    n = data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    xy = np.array([(x, y) for x in range(n) for y in range(n)]) * 2.04
    scs = rng.uniform(data.draw(st.sampled_from([-1.0, 0.5])), 6.0, len(xy))
    counts = rng.integers(data.draw(st.sampled_from([0, 1])), 6, len(xy))
    error = np.full(len(xy), data.draw(st.sampled_from([0.1, 0.0])))
    lensing = load_default_lensing("Au", "Ag", "001")
    with bounded_memory():
        try:
            model = search_core_shell([(xy, scs, error, "001")], lensing, "Au", counts=[counts], rng=0,
                                      n_anneal=300, n_sample=100, n_chains=1)  # fmt: skip
        except DOCUMENTED:
            return
    assert np.all(np.isfinite(model.chi2))
