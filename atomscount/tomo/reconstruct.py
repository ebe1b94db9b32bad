"""Iterative reconstruction of a tilt series: SIRT with positivity and a support.

Two paths share the projector conventions of :mod:`._kernels`:

- **single-axis** series (every projection a tilt about the image's y axis): each
  image row is a 2D problem of its own, so slices are reconstructed independently,
  in blocks, on a ``dask`` scheduler: a ``dask.distributed.Client`` when one is
  passed, local threads otherwise (the kernels release the GIL). Only the blocks in
  flight are held beside the volume, and the result equals the serial one.
- **general** Euler angles: the 3D projector and back-projector pair.

SIRT: ``x <- x + C A^T R (b - A x)``, with R and C the inverse row and column sums of
the projector, then clipped at zero with ``positivity``. The R1 factor of the
reprojections, ``sum |b - A x| / sum |b|`` per projection and averaged over them, is
recorded at every iteration (before its update).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from .._checks import check_integer, check_memory, check_real
from ..io import read_hdf5, write_hdf5
from . import _kernels
from .geometry import TiltSeries

__all__ = ["Volume", "reconstruct"]

_KIND = "Volume"


@dataclasses.dataclass(frozen=True, repr=False)
class Volume:
    """A reconstructed volume.

    Attributes
    ----------
    data : ndarray (nz, ny, nx)
        Voxels of side ``pixel_size_angstrom``, centred on the origin (:mod:`._kernels`);
        in the units of the projections per Å (a projection is the voxel sum times the side).
    pixel_size_angstrom : float
    r1 : ndarray (n_iter,)
        The R1 factor of the reprojections at each iteration.
    provenance : dict
    """

    data: np.ndarray
    pixel_size_angstrom: float
    r1: np.ndarray
    provenance: dict = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        nz, ny, nx = self.data.shape
        r1 = f", R1 {self.r1[-1]:.3f}" if len(self.r1) else ""
        return f"Volume({nz}x{ny}x{nx} voxels of {self.pixel_size_angstrom:g} Å{r1})"

    def to_hdf5(self, path) -> Path:
        write_hdf5(path, _KIND, {"data": self.data, "r1": self.r1},
                   {"pixel_size_angstrom": self.pixel_size_angstrom, "provenance": self.provenance})  # fmt: skip
        return Path(path)

    @classmethod
    def from_hdf5(cls, path) -> Volume:
        arrays, attrs = read_hdf5(path, _KIND)
        return cls(arrays["data"], float(attrs["pixel_size_angstrom"]), arrays["r1"], attrs.get("provenance", {}))


def reconstruct(series: TiltSeries, *, n_iter: int = 50, thickness: int | None = None, positivity: bool = True,
                support=None, method: str = "auto", relaxation: float = 1.9, client=None,
                block_slices: int | None = None, progress: bool = True) -> Volume:  # fmt: skip
    """SIRT reconstruction of ``series``.

    Parameters
    ----------
    series : TiltSeries
    n_iter : int
        Iterations.
    thickness : int, optional
        Voxels along the beam (z) at zero tilt; default the image width.
    positivity : bool
        Clip negative voxels after every update.
    support : ndarray (nz, ny, nx) of bool, optional
        Voxels that may be non-zero (for the single-axis path it must not vary along y:
        its first y-slice is used for every slice).
    method : {"auto", "single-axis", "general"}
        "auto" takes the single-axis path when the series is one.
    relaxation : float
        Step of each update, in (0, 2); 1.9 reaches in 25 iterations what 1 reaches in about 60.
    client : dask.distributed.Client, optional
        Run the single-axis blocks on this cluster (default: local threads).
    block_slices : int, optional
        Slices per block (default: enough blocks for the workers, at most 32 slices each).
    progress : bool
        A progress bar over blocks (single-axis) or iterations (general).

    Raises
    ------
    ValueError
        For a general series asked for the single-axis path, or a volume too large for memory.
    """
    if not isinstance(series, TiltSeries):
        raise TypeError(f"series must be a TiltSeries, got {type(series).__name__}")
    n_iter = check_integer(n_iter, "n_iter", low=1)
    relaxation = check_real(relaxation, "relaxation", low=0.0, high=2.0, open_low=True, open_high=True)
    if method not in ("auto", "single-axis", "general"):
        raise ValueError(f"method must be 'auto', 'single-axis' or 'general', got {method!r}")
    nv, nu = series.shape
    nz = nu if thickness is None else check_integer(thickness, "thickness", low=1)
    shape = (nz, nv, nu)
    check_memory(8.0 * (2 * nz * nv * nu + 2 * series.images.size), f"a {nz}x{nv}x{nu} reconstruction")
    if support is not None:
        support = np.asarray(support, dtype=bool)
        if support.shape != shape:
            raise ValueError(f"support must have the volume's shape {shape}, got {support.shape}")
    single = series.single_axis if method == "auto" else method == "single-axis"
    if single and not series.single_axis:
        raise ValueError("method='single-axis' needs a single-axis series (every angle (0, θ, 0))")
    t0 = time.perf_counter()
    if single:
        data, r1 = _single_axis(series, shape, n_iter, positivity, support, relaxation, client, block_slices,
                                progress)  # fmt: skip
    else:
        data, r1 = _general(series, shape, n_iter, positivity, support, relaxation, progress)
    prov = {"method": "sirt-single-axis" if single else "sirt-general", "n_iter": n_iter, "positivity": positivity,
            "relaxation": relaxation,
            "support": support is not None, "seconds": time.perf_counter() - t0,
            "series_source": series.provenance.get("source")}  # fmt: skip
    return Volume(data, series.pixel_size_angstrom, r1, prov)


def _single_axis(series, shape, n_iter, positivity, support, relaxation, client, block_slices, progress):
    import dask
    from tqdm.auto import tqdm

    nz, nv, nu = shape
    theta = np.deg2rad(series.angles[:, 1])
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    sup2d = np.ones((nz, nu)) if support is None else support[:, 0, :].astype(np.float64)
    pixel = series.pixel_size_angstrom
    sinos = np.ascontiguousarray(np.transpose(series.images, (1, 0, 2)))  # (rows, k, nu)
    n_workers = len(client.ncores()) if client is not None else max(1, dask.system.CPU_COUNT)
    size = block_slices or max(1, min(32, int(np.ceil(nv / (4 * n_workers)))))
    blocks = [(s, min(nv, s + size)) for s in range(0, nv, size)]

    def run(block):
        out = np.zeros((block.shape[0], nz, nu))
        num = np.zeros((block.shape[0], n_iter, block.shape[1]))
        den = np.zeros((block.shape[0], block.shape[1]))
        _kernels.sirt_slices(block, cos_t, sin_t, pixel, n_iter, positivity, sup2d, out, num, den, relaxation)
        return out, num.sum(axis=0), den.sum(axis=0)

    data = np.zeros(shape)
    num_total = np.zeros((n_iter, len(theta)))
    den_total = np.zeros(len(theta))
    bar = tqdm(total=len(blocks), desc="SIRT slices", unit="block", disable=not progress)
    if client is not None:
        from dask.distributed import as_completed

        futures = {client.submit(run, sinos[a:b], pure=False): (a, b) for a, b in blocks}
        for fut in as_completed(futures):
            a, b = futures[fut]
            out, num, den = fut.result()
            data[:, a:b, :] = np.transpose(out, (1, 0, 2))
            num_total += num
            den_total += den
            bar.update()
    else:
        # a bounded number of blocks in flight at a time: the memory is the volume plus a few blocks
        for start in range(0, len(blocks), 2 * n_workers):
            batch = blocks[start : start + 2 * n_workers]
            results = dask.compute(*[dask.delayed(run)(sinos[a:b]) for a, b in batch], scheduler="threads")
            for (a, b), (out, num, den) in zip(batch, results, strict=True):
                data[:, a:b, :] = np.transpose(out, (1, 0, 2))
                num_total += num
                den_total += den
                bar.update()
    bar.close()
    with np.errstate(invalid="ignore", divide="ignore"):
        r1 = np.nanmean(np.where(den_total > 0, num_total / den_total, np.nan), axis=1)
    return data, r1


def _general(series, shape, n_iter, positivity, support, relaxation, progress):
    from tqdm.auto import tqdm

    rot = series.rotations
    pixel = series.pixel_size_angstrom
    b = series.images
    sup = np.ones(shape) if support is None else support.astype(np.float64)
    row = np.empty_like(b)
    _kernels.project(sup, rot, pixel, row)
    row = np.where(row > 1e-12, 1.0 / np.where(row > 1e-12, row, 1.0), 0.0)
    col = np.empty(shape)
    _kernels.backproject(np.ones_like(b), rot, pixel, col)
    col = np.where(col > 1e-12, sup / np.where(col > 1e-12, col, 1.0), 0.0)
    x = np.zeros(shape)
    fwd = np.empty_like(b)
    upd = np.empty(shape)
    den = np.abs(b).sum(axis=(1, 2))
    r1 = np.zeros(n_iter)
    for it in tqdm(range(n_iter), desc="SIRT", unit="iter", disable=not progress):
        _kernels.project(x, rot, pixel, fwd)
        diff = b - fwd
        with np.errstate(invalid="ignore", divide="ignore"):
            r1[it] = np.nanmean(np.where(den > 0, np.abs(diff).sum(axis=(1, 2)) / den, np.nan))
        _kernels.backproject(diff * row, rot, pixel, upd)
        x += relaxation * col * upd
        if positivity:
            np.maximum(x, 0.0, out=x)
    return x, r1
