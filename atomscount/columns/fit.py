"""Joint least-squares fit of Gaussian columns: :func:`fit_columns`, :class:`ColumnFit`, :func:`crlb`."""

from __future__ import annotations

import csv
import dataclasses
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from .._checks import check_2d_image, check_column_spacing, check_positions, check_positive
from ..image import HAADFImage
from ..io import atomic_path, read_hdf5, write_hdf5
from . import _noise, _solver
from ._geometry import _bounds, _edge_margin, _first_of_duplicates, _max_width, _nearest_neighbour, _neighbour_distances
from ._inputs import check_crowding, check_fit_arguments, type_index
from .model import ColumnModel
from .voronoi import voronoi_scs

__all__ = ["ColumnFit", "ColumnCRLB", "fit_columns", "crlb"]

_KIND = "ColumnFit"
#: The fit's Jacobian is cut where a Gaussian falls below 1e-3 of its height (the model
#: itself at 1e-7): the normal equations cost about 5x less on a dense lattice, and the
#: dropped terms change the standard errors by well under 1 %.
JACOBIAN_SIGMAS = float(np.sqrt(2.0 * np.log(1e3)))
#: A converged column's SCS stands at least this many standard errors above zero.
MIN_SCS_SIGNIFICANCE = 3.0
#: The flag of a column whose SCS is not significant.
WEAK = f"SCS under {MIN_SCS_SIGNIFICANCE:g} errors"


@dataclasses.dataclass(frozen=True, repr=False)
class ColumnFit:
    """Result of :func:`fit_columns`. All lengths in Å, SCS in Å² (normalised images).

    Attributes
    ----------
    positions, positions_error : ndarray (n, 2)
        Fitted (x, y) and their standard errors [Å]: the scatter the image's noise
        gives (over repeated exposures), from the noise measured in the image
        (``metadata["noise_variance_model"]``), not the model's misfit, which moves
        a column the same way in every exposure (``metadata["misfit_rms"]``).
    types : ndarray (n,) of int
        Index into ``type_names``.
    type_names : tuple of str
    heights, heights_error : ndarray (n,)
        Peak heights eta (image units). This and the other errors below are scaled
        by the reduced chi-square: they count the misfit as noise.
    widths, widths_error : ndarray (n,)
        Gaussian widths rho [Å] (shared within a type unless ``width_mode == "free"``).
    scs, scs_error : ndarray (n,)
        ``2 pi eta rho^2`` and its standard error [Å²].
    voronoi_scs : ndarray (n,)
        Background-subtracted intensity integrated over each Voronoi cell [Å²].
    background, background_error : ndarray (3,)
        ``(c0, cx, cy)``: level and slopes per Å about the image centre.
    converged : ndarray (n,) of bool
        Per-column flag, False for a failure: height or width <= 0, a singular
        block (non-finite errors), an SCS under :data:`MIN_SCS_SIGNIFICANCE`
        standard errors (not significant), a width under half a pixel or above
        the distance to the nearest column (not a column's shape), a fit stopped
        away from a stationary point (every step blocked), a move beyond
        ``max_shift_angstrom``, or a centre that left the image.
        ``metadata["flagged"]`` counts each reason and
        ``metadata["flagged_columns"]`` lists the columns;
        ``metadata["lm_converged"]`` says whether the whole fit met its stopping
        criterion before ``max_iter``.
    input_index : ndarray (n,) of int
        Index of each column in the positions passed in. Columns outside the image
        are dropped, and a column closer than a pixel to an earlier one is merged
        into it (both with a warning).
    reduced_chi2 : float
    n_iterations : int
    image_shape : (int, int)
    pixel_size_angstrom : float
    width_mode, background_model, noise : str
    residual : ndarray or None
        ``data - model`` when requested.
    metadata : dict
        Also the noise and misfit behind the errors: ``noise_variance_model``
        ``[a, b]`` (the noise variance ``a + b I`` at a local intensity ``I``, image
        units), ``noise_rms``, ``misfit_rms`` (image units) and ``chi2_over_noise``
        (the reduced chi-square over the noise's own: 1 for an exact model).
    normalised : bool or None
        Whether the image was normalised to the incident beam (SCS in Å²) or not
        (raw detector units: SCS in counts·Å²), as its metadata states; None when
        it does not (an array wrapped without metadata, files that predate the flag).
    """

    positions: np.ndarray
    positions_error: np.ndarray
    types: np.ndarray
    type_names: tuple
    heights: np.ndarray
    heights_error: np.ndarray
    widths: np.ndarray
    widths_error: np.ndarray
    scs: np.ndarray
    scs_error: np.ndarray
    voronoi_scs: np.ndarray
    background: np.ndarray
    background_error: np.ndarray
    converged: np.ndarray
    input_index: np.ndarray
    reduced_chi2: float
    n_iterations: int
    image_shape: tuple
    pixel_size_angstrom: float
    width_mode: str = "shared"
    background_model: str = "constant"
    noise: str = "gaussian"
    residual: np.ndarray | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    normalised: bool | None = None

    _ARRAYS = (
        "positions", "positions_error", "types", "heights", "heights_error", "widths", "widths_error",
        "scs", "scs_error", "voronoi_scs", "background", "background_error", "converged", "input_index", "residual",
    )  # fmt: skip

    def __post_init__(self):
        n = len(self.heights)
        for name in ("positions", "positions_error"):
            if np.shape(getattr(self, name)) != (n, 2):
                raise ValueError(f"{name} must have shape ({n}, 2), got {np.shape(getattr(self, name))}")
        for name in self._ARRAYS[2:14]:
            if name in ("background", "background_error"):
                continue
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"{name} must have length {n}, got {np.shape(getattr(self, name))}")
        for name in self._ARRAYS:
            v = getattr(self, name)
            if v is not None:
                v = np.array(v)
                v.flags.writeable = False
                object.__setattr__(self, name, v)
        object.__setattr__(self, "type_names", tuple(str(t) for t in self.type_names))
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))

    @property
    def scs_unit(self) -> str:
        """``"Å²"`` (normalised image), ``"counts·Å²"`` (raw detector units) or ``"image units·Å²"`` (not stated)."""
        return {True: "Å²", False: "counts·Å²"}.get(self.normalised, "image units·Å²")

    @property
    def n_columns(self) -> int:
        return len(self.heights)

    def model(self) -> ColumnModel:
        """The fitted model as a :class:`ColumnModel` (render it with ``.image()``)."""
        bg = tuple(self.background) if self.background_model == "plane" else (self.background[0],)
        return ColumnModel(
            self.image_shape, self.pixel_size_angstrom, self.positions, self.heights, self.widths,
            background=bg, types=self.types, free_width=self.width_mode == "free",
        )  # fmt: skip

    def residual_image(self, image) -> np.ndarray:
        """``image - model`` for the image that was fitted."""
        data = image.data if isinstance(image, HAADFImage) else np.asarray(image)
        return data - self.model().image()

    def summary(self) -> dict:
        """Plain-type summary of the fit."""
        ok = self.converged
        out = {
            "n_columns": self.n_columns,
            "n_converged": int(ok.sum()),
            "reduced_chi2": float(self.reduced_chi2),
            "n_iterations": int(self.n_iterations),
            "width_mode": self.width_mode,
            "background_model": self.background_model,
            "noise": self.noise,
            "background": [float(v) for v in self.background],
            "pixel_size_angstrom": float(self.pixel_size_angstrom),
            "image_shape": list(self.image_shape),
        }
        if self.n_columns:
            out.update(
                scs_mean=float(np.mean(self.scs)),
                scs_min=float(np.min(self.scs)),
                scs_max=float(np.max(self.scs)),
                median_scs_rel_error=float(np.median(self.scs_error / np.abs(self.scs))),
                median_position_error_angstrom=float(np.median(self.positions_error)),
                widths_by_type={
                    name: float(np.median(self.widths[self.types == k])) if np.any(self.types == k) else None
                    for k, name in enumerate(self.type_names)
                },
            )
        return out

    def __repr__(self) -> str:
        return (
            f"ColumnFit(n_columns={self.n_columns}, converged={int(self.converged.sum())}, "
            f"width_mode={self.width_mode!r}, reduced_chi2={self.reduced_chi2:.4g})"
        )

    def report(self) -> str:
        """A short text report in words a microscopist reads (no reduced χ²: see ``summary()`` for it)."""
        ok = self.converged
        flagged = {k: v for k, v in self.metadata.get("flagged", {}).items() if v}
        lines = [f"ColumnFit: {self.n_columns} columns, {int(ok.sum())} converged"
                 + (f" ({', '.join(f'{v} {k}' for k, v in flagged.items())})" if flagged else "")
                 + f"; {self.n_iterations} iterations"]  # fmt: skip
        lines.append(
            f"  model: {self.width_mode} width, {self.background_model} background, {self.noise} noise, "
            f"pixel {self.pixel_size_angstrom:.4g} Å, image {self.image_shape[1]} x {self.image_shape[0]}"
        )
        if ok.any():
            scs = self.scs[ok]
            rel = np.median(self.scs_error[ok] / np.abs(scs))
            lines.append(f"  SCS: median {np.median(scs):.4g} {self.scs_unit}, range {scs.min():.4g} to "
                         f"{scs.max():.4g}, median error {100 * rel:.2g} %")  # fmt: skip
            lines.append(f"  positions: median error {1000 * np.median(self.positions_error[ok]):.3g} pm")
            widths = ", ".join(f"{name} {np.median(self.widths[self.types == k]):.3f} Å"
                               for k, name in enumerate(self.type_names) if np.any(self.types == k))  # fmt: skip
            lines.append(f"  widths: {widths}")
        rms = self.metadata.get("residual_rms")
        peak = self.metadata.get("mean_peak_height")
        if rms is not None and np.isfinite(rms):
            line = f"  residual RMS {rms:.3g} (image units)"
            if peak is not None and np.isfinite(peak) and peak > 0:
                line += f" = {100 * rms / peak:.2g} % of the mean peak height"
            if "noise_rms" in self.metadata:  # the position errors hold the noise only
                line += f": noise {self.metadata['noise_rms']:.3g}, misfit {self.metadata['misfit_rms']:.3g}"
            lines.append(line)
        dose = self.metadata.get("dose_estimate_e_per_angstrom2")
        if dose is not None and np.isfinite(dose) and self.normalised:
            lines.append(f"  the residual is Poisson noise at {dose:.3g} e/Å² (compare with the dose you used: "
                         "lower means structure the model misses)")  # fmt: skip
        return "\n".join(lines)

    # ------------------------------------------------------------------ files
    def to_hdf5(self, path) -> None:
        """Write every field to ``path`` (atomically)."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        attrs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self._ARRAYS}
        attrs["type_names"] = list(self.type_names)
        attrs["image_shape"] = list(self.image_shape)
        write_hdf5(path, _KIND, arrays, attrs)

    @classmethod
    def from_hdf5(cls, path) -> ColumnFit:
        """Read a file written by :meth:`to_hdf5`."""
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        kw = dict(attrs)
        kw["type_names"] = tuple(kw["type_names"])
        kw["image_shape"] = tuple(kw["image_shape"])
        for name in cls._ARRAYS:
            kw[name] = arrays.get(name)
        kw["converged"] = np.asarray(kw["converged"], dtype=bool)
        return cls(**kw)

    def to_csv(self, path) -> None:
        """Write one row per column (atomically)."""
        header = [
            "index", "input_index", "type", "x_angstrom", "y_angstrom", "x_error", "y_error", "height",
            "height_error", "width_angstrom", "width_error", "scs_angstrom2", "scs_error", "voronoi_scs_angstrom2",
            "converged",
        ]  # fmt: skip
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for i in range(self.n_columns):
                w.writerow([
                    i, int(self.input_index[i]), self.type_names[self.types[i]],
                    *(f"{v:.8g}" for v in (
                        self.positions[i, 0], self.positions[i, 1], self.positions_error[i, 0],
                        self.positions_error[i, 1], self.heights[i], self.heights_error[i], self.widths[i],
                        self.widths_error[i], self.scs[i], self.scs_error[i], self.voronoi_scs[i],
                    )),
                    int(self.converged[i]),
                ])  # fmt: skip


# ---------------------------------------------------------------------------- fitting


def _initial_state(prob, pos, width_init, nn):
    data = prob.data
    valid = prob.weights > 0
    bg0 = float(np.percentile(data[valid], 2.0))
    rc = pos[:, ::-1] / prob.pixel
    peak = ndimage.map_coordinates(np.where(valid, data, bg0), rc.T, order=1, mode="nearest")
    eta = np.maximum(peak - bg0, 1e-3 * max(float(data[valid].max()) - bg0, 1e-12))
    if width_init is None:
        width_init = _moment_width(data - bg0, valid, pos, prob.pixel, nn)
    rho = np.full(len(pos) if prob.free_width else prob.n_types, float(width_init))
    bg = np.array([bg0, 0.0, 0.0])
    return _solver.State(pos[:, 0].copy(), pos[:, 1].copy(), eta, rho, bg)


def _moment_width(sub, valid, pos, pixel, nn):
    """Median second-moment width of the brightest columns in a disc of radius nn/2."""
    ny, nx = sub.shape
    r = max(min(0.5 * nn, 0.25 * min(ny, nx) * pixel), 2.0 * pixel)
    rp = int(np.ceil(r / pixel))
    est = []
    bright = np.argsort(-ndimage.map_coordinates(sub, (pos[:, ::-1] / pixel).T, order=1))[:200]
    for i in bright:
        c, rr = int(round(pos[i, 0] / pixel)), int(round(pos[i, 1] / pixel))
        if rr - rp < 0 or c - rp < 0 or rr + rp >= ny or c + rp >= nx:
            continue
        patch = sub[rr - rp : rr + rp + 1, c - rp : c + rp + 1]
        ok = valid[rr - rp : rr + rp + 1, c - rp : c + rp + 1]
        yy, xx = np.mgrid[-rp : rp + 1, -rp : rp + 1] * pixel
        d2 = (xx + c * pixel - pos[i, 0]) ** 2 + (yy + rr * pixel - pos[i, 1]) ** 2
        m = (d2 <= r * r) & ok
        w = np.clip(patch[m], 0, None)
        if w.sum() > 0:
            est.append(np.sqrt(0.5 * (w * d2[m]).sum() / w.sum()))
    if not est:
        return 0.25 * nn if np.isfinite(nn) else 5 * pixel
    return float(np.clip(np.median(est), pixel, 0.5 * nn if np.isfinite(nn) else np.inf))


def fit_columns(
    image: HAADFImage,
    positions,
    *,
    types=None,
    width: str = "shared",
    background: str = "constant",
    noise: str = "gaussian",
    width_init_angstrom: float | None = None,
    mask_invalid: bool = False,
    max_iter: int = 100,
    tol: float = 0.1,
    max_shift_angstrom: float | None = None,
    keep_residual: bool = False,
    voronoi: bool = True,
    progress: bool | None = None,
) -> ColumnFit:
    """Fit a model of Gaussian columns on a background jointly to the whole image.

    Parameters
    ----------
    image : HAADFImage
        Best normalised to the incident beam (see :func:`~atomscount.normalise`).
    positions : array_like (n, 2)
        Starting column positions (x, y) [Å], e.g. from :func:`find_columns`.
        Columns outside the image are dropped with a warning.
    types : array_like (n,), optional
        Column type labels (elements, sublattices). Widths are shared per type.
    width : {"shared", "free"}
        One width per column type (default), or one per column.
    background : {"constant", "plane"}
    noise : {"gaussian", "poisson"}
        ``"gaussian"``: unweighted least squares (as StatSTEM). ``"poisson"``:
        iteratively reweighted least squares with weights ``1 / model``, which
        converges to the Poisson maximum-likelihood estimate and reaches the
        Cramér–Rao bound on counting-noise-limited images.
    width_init_angstrom : float, optional
        Starting width [Å]; by default estimated from second moments.
    mask_invalid : bool
        Ignore NaN/inf pixels instead of raising.
    max_iter : int
        Most Levenberg–Marquardt iterations (per pass; the Poisson estimator
        makes a rough least-squares pass first).
    tol : float
        The fit stops when every parameter's last step is below ``tol`` times its
        standard error, or when ``-2 log L`` falls by less than ``0.01 tol^2`` per
        parameter (in units of the noise) in two steps running. Real columns are
        not exact Gaussians, and a criterion far below the noise is then never
        met; at the default 0.1 the SCS are within about 0.1 % of a fit run to
        machine precision.
    max_shift_angstrom : float, optional
        A column moving further than this from its start is flagged as not
        converged; default half the median nearest-neighbour distance.
    keep_residual : bool
        Store ``data - model`` in the result.
    voronoi : bool
        Also compute Voronoi-integrated SCS.
    progress : bool, optional
        Show a progress bar; default for images over one megapixel.

    Returns
    -------
    ColumnFit

    Raises
    ------
    TypeError
        For an option of the wrong type (``mask_invalid="no"``, ``types`` holding None).
    ValueError
        For NaN pixels (unless ``mask_invalid``), a bad option value, more start
        positions in the image than pixels, or positions of which most lie closer
        than 0.5 Å to another (a grid of guesses: no two columns are resolved
        that close).

    Notes
    -----
    The normal equations of all parameters are assembled in one pass over the
    image by a numba kernel and solved with a block-sparse Levenberg–Marquardt
    step; overlapping neighbours are part of the same model, so the result equals
    the dense joint least-squares fit. Gaussians are evaluated out to
    ``sqrt(2 ln 1e7)`` widths. Standard errors come from the inverse of ``J^T W J``.
    For the positions it is scaled by the noise measured in the image: a fourth
    difference of the residual across both axes holds the noise at its variance
    and cuts the smooth misfit of real (non-Gaussian) columns by about
    ``1 / (6 s^4)`` for a misfit ``s`` pixels wide; its mean square, binned by
    intensity, gives a noise variance ``a + b I``, which is averaged over each
    column with the weights of its position information. On abTEM images of
    Au and Pt [001] (0.2 and 0.25 Å pixels) under counting noise of 1e4 to 1e7
    e/Å² the errors are 0.99-1.10 times the scatter over noise realisations, where
    the reduced chi-square overstated them up to 12 times at high dose; on Cu
    [110] at 0.3 Å pixels (columns 1.3 pixels wide, whose misfit the fourth
    difference cuts less) 0.89-1.56 (``benchmarks/bench_fit.py``). Noise
    correlated between pixels (scan noise, resampled images) is measured too low.
    The other errors are scaled by the reduced chi-square (noise and misfit).

    References
    ----------
    .. [1] De Backer, A. et al., Ultramicroscopy 171, 104 (2016). :doi:`10.1016/j.ultramic.2016.08.018`

    Examples
    --------
    >>> from atomscount.columns.model import ColumnModel
    >>> truth = ColumnModel((48, 48), 0.1, [[1.5, 1.5], [3.1, 1.6], [2.4, 3.2]],
    ...                     heights=[0.3, 0.5, 0.4], widths=0.45, background=(0.02,))
    >>> fit = fit_columns(HAADFImage(truth.image(), 0.1), truth.positions + 0.05, voronoi=False)
    >>> np.allclose(fit.scs, truth.scs, rtol=1e-6), bool(fit.converged.all())
    (True, True)
    """
    max_iter = check_fit_arguments(image, width=width, background=background, noise=noise, max_iter=max_iter, tol=tol,
                                   width_init_angstrom=width_init_angstrom, max_shift_angstrom=max_shift_angstrom,
                                   flags={"mask_invalid": mask_invalid, "keep_residual": keep_residual,
                                          "voronoi": voronoi})  # fmt: skip
    data = check_2d_image(image.data, "image.data", allow_nonfinite=mask_invalid)
    pixel = image.pixel_size_angstrom
    finite = np.isfinite(data)
    weights = finite.astype(np.float64)
    data = np.where(finite, data, 0.0)
    if not finite.any():
        raise ValueError("image.data has no finite pixels")
    pos_in = check_positions(positions)
    n_in = len(pos_in)
    tidx, tnames = type_index(types, n_in)
    # a column centred just outside the image still shows its flank: fit it with the pixels that exist
    check_crowding(image, pos_in, int(finite.sum()))
    margin = _edge_margin(pos_in, pixel)
    inside = image.contains(pos_in, margin_angstrom=margin)
    if not inside.all():
        warnings.warn(f"dropped {int((~inside).sum())} columns centred more than {margin:.3g} Å outside the image",
                      stacklevel=2)  # fmt: skip
    keep = np.flatnonzero(inside)
    keep = keep[_first_of_duplicates(pos_in[keep], pixel)]
    check_column_spacing(pos_in[keep])
    n_dup = int(inside.sum() - keep.size)
    if n_dup:
        warnings.warn(f"merged {n_dup} duplicate columns (closer than a pixel, {pixel:.3g} Å, to an earlier one): "
                      "each is kept once, at its first position", stacklevel=2)  # fmt: skip
    pos = pos_in[keep]
    tidx, tnames = _drop_unused_types(tidx[keep], tnames)
    input_index = keep
    n = len(pos)
    n_bg = 1 if background == "constant" else 3
    meta = {"n_input_columns": n_in, "n_dropped_outside": int((~inside).sum()), "n_merged_duplicates": n_dup,
            "edge_margin_angstrom": margin}  # fmt: skip
    if isinstance(image, HAADFImage) and isinstance(image.metadata.get("microscope"), dict):
        meta["microscope"] = dict(image.metadata["microscope"])  # lets counting check the library's settings
    if n == 0:
        warnings.warn("no columns to fit: returning an empty ColumnFit", stacklevel=2)
        return _empty_fit(data, finite, pixel, tnames, width, background, noise, meta, _normalised_flag(image))
    n_par = n * (4 if width == "free" else 3) + n_bg + (0 if width == "free" else len(tnames))
    if n_par >= int(finite.sum()):
        raise ValueError(f"positions: {n} columns make {n_par} parameters, but the image has only "
                         f"{int(finite.sum())} valid pixels; fit fewer columns or a larger image")  # fmt: skip

    nn = _nearest_neighbour(pos)
    if max_shift_angstrom is None:
        max_shift_angstrom = 0.5 * nn if np.isfinite(nn) else 10 * pixel
    max_width = _max_width(data.shape, pixel, nn)
    if width_init_angstrom is not None and not 0.25 * pixel <= width_init_angstrom <= max_width:
        raise ValueError(f"width_init_angstrom must lie between a quarter pixel ({0.25 * pixel:.3g} Å) and "
                         f"{max_width:.3g} Å (the smaller of half the image and twice the column spacing), "
                         f"got {width_init_angstrom}")  # fmt: skip
    # The solver works on the image times a power of two (exact in floating point) that
    # brings its brightest pixels near 1: its tolerances are then right for raw counts of
    # 10^7 and for 10^-6 of the beam alike. Heights, background and errors are scaled back.
    unit = _solver.unit_scale(data[finite])
    prob = _solver.Problem(
        np.ascontiguousarray(data * unit), weights, pixel, tidx, len(tnames), width == "free", n_bg,
        jacobian_sigmas=JACOBIAN_SIGMAS, bounds=_bounds(data.shape, pixel, margin + pixel), max_width=max_width,
    )  # fmt: skip
    st = _initial_state(prob, pos, width_init_angstrom, nn)
    if progress is None:
        progress = data.size > 1_000_000
    # no total: the fit usually stops long before max_iter, and an estimate from it would mislead
    two = ", pass 1 of 2: least squares" if noise == "poisson" else ""  # the chi2 shown changes scale after it
    bar = tqdm(desc=f"fitting {n:,} columns{two}", unit=" iterations", disable=not progress, leave=False)
    with bar:
        if noise == "poisson":
            # a rough least-squares pass first (steps down to a third of the errors): a
            # robust start for the likelihood, which then refines to full precision
            rough = max(tol, 0.3)
            st, _, _, it0, _, _ = _solver.levenberg_marquardt(prob, st, max_iter=max_iter, rtol=rough,
                                                              stall=0.01 * rough**2, progress=bar)  # fmt: skip
            prob.poisson = True
            bar.set_description_str(f"fitting {n:,} columns, pass 2 of 2: Poisson likelihood (chi2 now Pearson's)")
            prob.mask = weights
            prob.floor = 1e-3 * max(float(np.percentile(prob.data[finite], 99.9)), 1e-12)
        else:
            it0 = 0
        st, neq, col_conv, it, ok, stuck = _solver.levenberg_marquardt(prob, st, max_iter=max_iter, rtol=tol,
                                                                       stall=0.01 * tol**2, progress=bar)  # fmt: skip
    total_it = it0 + it
    dof = max(int(finite.sum()) - (n * prob.b + prob.n_global), 1)
    red = neq.chi2 / dof
    local, cross, glob = _solver.covariance(neq)
    # positions: the noise measured from the image, not the total misfit (see ColumnFit.positions_error)
    model = _solver.render_state(prob, st)
    pos_var, noise_info = _noise.fit_noise(prob, st, model, np.einsum("nii->ni", local)[:, :2],
                                           n * prob.b + prob.n_global)  # fmt: skip
    local, cross, glob = local * red, cross * red, glob * red
    # back to the image's units: Pearson chi2 scales as the intensity, Gaussian as its square
    red = red / (unit if noise == "poisson" else unit * unit)
    st, local, cross, glob = _solver.unscale(prob, st, local, cross, glob, unit)
    prob.data = np.ascontiguousarray(data)
    if prob.poisson:
        prob.floor /= unit
    meta.update(_noise_metadata(noise_info, unit))
    if noise == "poisson":
        # Pearson chi2 / dof in image units is 1 / (dose * pixel area) for counting noise
        meta["dose_estimate_e_per_angstrom2"] = float(1.0 / (red * pixel**2)) if red > 0 else float("inf")
    return _build_fit(
        image, prob, st, model / unit, local, cross, glob, np.sqrt(pos_var), col_conv, ok, stuck, red, total_it, tidx,
        tnames, input_index, pos, max_shift_angstrom, margin, width, background, noise, keep_residual, voronoi, meta,
    )  # fmt: skip


def failed_columns(fit: ColumnFit, *, ignore=()) -> np.ndarray:
    """Per-column failure flag of ``fit``, leaving out the reasons in ``ignore``
    (keys of ``metadata["flagged"]``, e.g. :data:`WEAK` for a test of its own)."""
    by_reason = fit.metadata.get("flagged_columns")
    if by_reason is None:
        return ~np.asarray(fit.converged)
    bad = np.zeros(fit.n_columns, dtype=bool)
    for reason, idx in by_reason.items():
        if reason not in ignore:
            bad[np.asarray(idx, dtype=np.int64)] = True
    return bad


def _normalised_flag(image: HAADFImage) -> bool | None:
    """True or False where the image's metadata states it (readers, :func:`normalise`), else None."""
    flag = image.metadata.get("normalised") if isinstance(image.metadata, dict) else None
    return None if flag is None else bool(flag)


def _drop_unused_types(tidx, tnames):
    """Renumber the types so that every one has a column (a type without columns has no width to fit)."""
    used = np.unique(tidx)
    if used.size == len(tnames) or used.size == 0:
        return tidx, tnames
    gone = [tnames[t] for t in sorted(set(range(len(tnames))) - set(used.tolist()))]
    warnings.warn(f"types {gone} have no columns left in the image and are dropped", stacklevel=3)
    return np.searchsorted(used, tidx).astype(np.int64), tuple(tnames[t] for t in used)


def _noise_metadata(info, unit):
    """The noise and misfit :func:`~._noise.fit_noise` found, in the image's units."""
    return {
        "noise_variance_model": [info["a"] / unit**2, info["b"] / unit],
        "noise_rms": float(np.sqrt(info["noise_ms"])) / unit,
        "misfit_rms": float(np.sqrt(info["misfit_ms"])) / unit,
        "chi2_over_noise": info["chi2_over_noise"],
    }


def _errors(prob, st, local, cross, glob):
    """Standard errors of positions, heights, widths and SCS from the covariance blocks."""
    var = np.einsum("nii->ni", local).copy()
    var[var < 0] = np.nan
    sx, sy, seta = np.sqrt(var[:, 0]), np.sqrt(var[:, 1]), np.sqrt(var[:, 2])
    rho = st.rho_per_column(prob)
    d_eta = 2 * np.pi * rho**2
    d_rho = 4 * np.pi * st.eta * rho
    if prob.free_width:
        vr = var[:, 3]
        cov = local[:, 2, 3]
    else:
        gi = prob.n_bg + prob.types
        vr = np.diag(glob)[gi]
        cov = cross[np.arange(len(rho)), 2, gi]
    vscs = d_eta**2 * var[:, 2] + d_rho**2 * vr + 2 * d_eta * d_rho * cov
    vscs[vscs < 0] = np.nan
    return sx, sy, seta, np.sqrt(np.maximum(vr, 0)), np.sqrt(vscs)


def _build_fit(image, prob, st, model, local, cross, glob, pos_err, col_conv, ok, stuck, red, total_it, tidx, tnames,
               input_index, start, max_shift, margin, width, background, noise, keep_residual, voronoi,
               meta):  # fmt: skip
    sx, sy, seta, srho, sscs = _errors(prob, st, local, cross, glob)
    rho = st.rho_per_column(prob)
    bg_err = np.zeros(3)
    bg_err[: prob.n_bg] = np.sqrt(np.maximum(np.diag(glob)[: prob.n_bg], 0))
    pos = np.column_stack([st.x, st.y])
    shift = np.hypot(*(pos - start).T)
    # Only real failures are flagged. A column whose last step was still above the
    # stopping tolerance when max_iter ran out is not one: its SCS change is far below
    # its error (the fit-level flag and a warning say so).
    scs = 2 * np.pi * st.eta * rho**2
    failures = {
        "height <= 0": ~(st.eta > 0),
        "width <= 0": ~(rho > 0),
        "singular (non-finite errors)": ~(np.isfinite(sscs) & np.isfinite(sx) & np.isfinite(sy)),
        WEAK: ~(scs > MIN_SCS_SIGNIFICANCE * sscs),
        "width under half a pixel": rho < 0.5 * prob.pixel,
        "width above the nearest-neighbour distance": rho > _neighbour_distances(pos),
        "stuck (no downhill step)": ~col_conv if stuck else np.zeros(len(pos), dtype=bool),
        f"moved more than {max_shift:.3g} Å": shift > max_shift,
        "left the image": ~image.contains(pos, margin_angstrom=margin),
    }
    col_ok = np.ones(len(pos), dtype=bool)
    for bad in failures.values():
        col_ok &= ~bad
    if not col_ok.all():
        why = ", ".join(f"{int(bad.sum())} {name}" for name, bad in failures.items() if bad.any())
        warnings.warn(f"{int((~col_ok).sum())} of {len(col_ok)} columns did not converge ({why})", stacklevel=3)
    meta = dict(meta, flagged={name: int(bad.sum()) for name, bad in failures.items()},
                flagged_columns={name: np.flatnonzero(bad).tolist() for name, bad in failures.items() if bad.any()},
                n_columns_still_moving=int((~col_conv).sum()))  # fmt: skip
    if not ok:
        warnings.warn(f"the fit stopped at max_iter after {total_it} iterations with {int((~col_conv).sum())} "
                      "columns still taking steps above tol times their standard errors; raise max_iter to refine",
                      stacklevel=3)  # fmt: skip
    vor = np.full(len(pos), np.nan)
    if voronoi:
        mask = prob.weights == 0
        vor = voronoi_scs(prob.data, prob.pixel, pos, background=st.bg, mask=mask if mask.any() else None)
    valid = (prob.mask if prob.mask is not None else prob.weights) > 0
    diff = prob.data - model
    residual = np.where(valid, diff, np.nan) if keep_residual else None
    ok_eta = st.eta[col_ok]
    meta = dict(meta, residual_rms=float(np.sqrt(np.mean(diff[valid] ** 2))) if valid.any() else float("nan"),
                mean_peak_height=float(np.mean(ok_eta)) if ok_eta.size else float("nan"))  # fmt: skip
    meta = dict(meta, lm_converged=bool(ok))
    bg = st.bg.copy()
    return ColumnFit(
        positions=pos, positions_error=np.where(np.isfinite(sx + sy)[:, None], pos_err, np.nan), types=tidx,
        type_names=tnames,
        heights=st.eta, heights_error=seta, widths=rho, widths_error=srho,
        scs=scs, scs_error=sscs, voronoi_scs=vor,
        background=bg, background_error=bg_err, converged=col_ok, input_index=input_index,
        reduced_chi2=float(red), n_iterations=int(total_it), image_shape=prob.data.shape,
        pixel_size_angstrom=prob.pixel, width_mode=width, background_model=background, noise=noise,
        residual=residual, metadata=meta, normalised=_normalised_flag(image),
    )  # fmt: skip


def _empty_fit(data, finite, pixel, tnames, width, background, noise, meta, normalised):
    e1 = np.zeros(0)
    e2 = np.zeros((0, 2))
    bg = np.array([float(np.mean(data[finite])), 0.0, 0.0])
    return ColumnFit(
        positions=e2, positions_error=e2, types=np.zeros(0, dtype=np.int64), type_names=tnames,
        heights=e1, heights_error=e1, widths=e1, widths_error=e1, scs=e1, scs_error=e1, voronoi_scs=e1,
        background=bg, background_error=np.zeros(3), converged=np.zeros(0, dtype=bool),
        input_index=np.zeros(0, dtype=np.int64), reduced_chi2=float("nan"), n_iterations=0,
        image_shape=data.shape, pixel_size_angstrom=pixel, width_mode=width, background_model=background,
        noise=noise, metadata=meta, normalised=normalised,
    )  # fmt: skip


# ---------------------------------------------------------------------------- CRLB


@dataclasses.dataclass(frozen=True, repr=False)
class ColumnCRLB:
    """Cramér–Rao lower bounds (standard deviations) for every column.

    Attributes
    ----------
    scs : ndarray (n,)  [Å²]
    x, y : ndarray (n,)  [Å]
    heights : ndarray (n,)
    widths : ndarray (n,)  [Å]
    dose_e_per_angstrom2 : float
    """

    scs: np.ndarray
    x: np.ndarray
    y: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    dose_e_per_angstrom2: float

    @property
    def position(self) -> np.ndarray:
        """Bound on the radial position error ``sqrt(var x + var y)`` [Å]."""
        return np.hypot(self.x, self.y)

    def summary(self) -> dict:
        return {
            "n_columns": int(self.scs.size),
            "dose_e_per_angstrom2": float(self.dose_e_per_angstrom2),
            "median_scs": float(np.median(self.scs)) if self.scs.size else None,
            "median_x": float(np.median(self.x)) if self.x.size else None,
        }

    def __repr__(self) -> str:
        return f"ColumnCRLB(n_columns={self.scs.size}, dose={self.dose_e_per_angstrom2:g} e/Å²)"


def crlb(model, *, dose_e_per_angstrom2: float) -> ColumnCRLB:
    """Cramér–Rao lower bound on each column's SCS and position under Poisson noise.

    The Fisher information of the joint model (all columns, widths and the
    background) is ``F = sum_pixels k / I * dI/dtheta dI/dtheta^T`` with
    ``k = dose * pixel_area``, for a normalised image ``I``; the bounds are the square
    roots of the diagonal of ``F^-1`` (SCS by the delta method).

    Parameters
    ----------
    model : ColumnModel or ColumnFit
        Parameters at which to evaluate the bound (the truth, or a fit).
    dose_e_per_angstrom2 : float
        Incident dose [e/Å²].

    Returns
    -------
    ColumnCRLB

    References
    ----------
    .. [1] Van Aert, S. et al. "Statistical parameter estimation theory - a tool for
       quantitative electron microscopy", Handbook of Nanoscopy (2012);
       De Backer, A. et al., Ultramicroscopy 151, 46 (2015). :doi:`10.1016/j.ultramic.2014.10.015`

    Examples
    --------
    >>> m = ColumnModel((48, 48), 0.1, [[2.4, 2.4]], heights=[0.3], widths=0.45, background=(0.01,))
    >>> b = crlb(m, dose_e_per_angstrom2=1e5)
    >>> bool(0 < b.scs[0] < 0.01 * m.scs[0])
    True
    """
    if isinstance(model, ColumnFit):
        model = model.model()
    if not isinstance(model, ColumnModel):
        raise TypeError(f"model must be a ColumnModel or ColumnFit, got {type(model).__name__}")
    dose = check_positive(dose_e_per_angstrom2, "dose_e_per_angstrom2")
    n = model.n_columns
    if n == 0:
        e = np.zeros(0)
        return ColumnCRLB(e, e, e, e, e, dose)
    img = model.image()
    if np.any(img <= 0):
        raise ValueError("model image must be > 0 everywhere for Poisson noise; add a background")
    k = dose * model.pixel_size_angstrom**2
    _, tidx = np.unique(model.types, return_inverse=True)
    n_types = int(tidx.max()) + 1
    prob = _solver.Problem(img, k / img, model.pixel_size_angstrom, tidx.astype(np.int64), n_types,
                           model.free_width, len(model.background))  # fmt: skip
    bg = np.zeros(3)
    bg[: len(model.background)] = model.background
    if model.free_width:
        rho = model.widths.copy()
    else:
        rho = np.array([model.widths[tidx == t][0] for t in range(n_types)])
    st = _solver.State(model.positions[:, 0].copy(), model.positions[:, 1].copy(), model.heights.copy(), rho, bg)
    neq = _solver.assemble(prob, st)
    local, cross, glob = _solver.covariance(neq)
    sx, sy, seta, srho, sscs = _errors(prob, st, local, cross, glob)
    return ColumnCRLB(sscs, sx, sy, seta, srho, dose)


def save_fit(fit: ColumnFit, out_dir, *, image: HAADFImage | None = None) -> dict:
    """Write ``fit.h5`` and ``columns.csv`` into ``out_dir``; return their paths.

    Given the fitted ``image``, ``fit.h5`` keeps the residual ``image - model``
    (where the fit kept none), so that the image itself is model + residual and
    figures drawn from ``fit.h5`` alone are drawn over the data.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"hdf5": out / "fit.h5", "csv": out / "columns.csv"}
    if image is not None and fit.residual is None:
        raw = np.asarray(image.data if isinstance(image, HAADFImage) else image)
        if raw.shape != tuple(fit.image_shape):
            raise ValueError(f"image must have the fit's shape {tuple(fit.image_shape)}, got {raw.shape}")
        # in the image's own precision: a detector's 16-bit or float32 image needs no float64 residual
        dtype = np.float64 if raw.dtype.itemsize > 4 else np.float32
        fit = dataclasses.replace(fit, residual=(raw.astype(float) - fit.model().image()).astype(dtype))
    fit.to_hdf5(paths["hdf5"])
    fit.to_csv(paths["csv"])
    return paths
