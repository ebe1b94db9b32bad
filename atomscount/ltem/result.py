"""Result types of the Lorentz TEM stage: a through-focus series and a retrieved phase."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .._checks import check_positive
from ..io import read_hdf5, write_hdf5

__all__ = ["LTEMSeries", "PhaseRetrieval"]

_KIND = "PhaseRetrieval"


def _positive(value, name: str) -> float:
    return check_positive(value, name)


def _non_negative(value, name: str) -> float:
    return check_positive(value, name, allow_zero=True)


def _stack_images(images) -> np.ndarray:
    """Images as a float64 (k, ny, nx) stack; a clear error for ragged, non-2D or non-finite images."""
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = images[None]
    if isinstance(images, np.ndarray):
        arrays = list(images) if images.ndim == 3 else None
        if arrays is None:
            raise ValueError(
                f"images must be one 2D image or a (k, ny, nx) stack, got an array of shape {images.shape}"
            )
    else:
        arrays = [np.asarray(im) for im in images]
    if not arrays:
        raise ValueError("images must hold at least one image, got none")
    for i, im in enumerate(arrays):
        if np.ndim(im) != 2:
            raise ValueError(f"images[{i}] must be a 2D image, got shape {np.shape(im)}")
        if np.shape(im) != np.shape(arrays[0]):
            raise ValueError(f"images must all have one shape: images[{i}] has shape {np.shape(im)}, "
                             f"images[0] has {np.shape(arrays[0])}")  # fmt: skip
    stack = np.asarray(np.stack(arrays), dtype=np.float64)
    if min(stack.shape[1:]) < 4:
        raise ValueError(f"images must be at least 4x4 pixels, got {stack.shape[1:]}")
    bad = ~np.isfinite(stack)
    if bad.any():
        i = int(np.argwhere(bad.any(axis=(1, 2)))[0, 0])
        raise ValueError(f"images[{i}] has {int(bad[i].sum())} NaN or infinite pixels; "
                         "mask or interpolate them before the retrieval")  # fmt: skip
    return stack


@dataclasses.dataclass(frozen=True, repr=False)
class LTEMSeries:
    """A Lorentz TEM (Fresnel) through-focus series.

    Attributes
    ----------
    images : ndarray, shape (k, ny, nx)
        Intensities (counts, or normalised to a mean of 1); a single 2D image is taken as k = 1.
    defoci_nm : ndarray, shape (k,)
        Defocus of each image [nm] (1 µm = 1000 nm); positive is overfocus.
    pixel_nm : float
        Pixel size [nm].
    beam_energy_ev : float
        Beam energy [eV] (300 kV = 300e3).
    cs_nm : float
        Spherical aberration [nm] (1 mm = 1e6 nm).
    divergence_rad : float
        Beam divergence semi-angle [rad].
    defocus_spread_nm : float
        Defocus spread (standard deviation) [nm].
    provenance : dict
        How the series was made (JSON-able).
    """

    images: np.ndarray
    defoci_nm: np.ndarray
    pixel_nm: float
    beam_energy_ev: float = 300e3
    cs_nm: float = 0.0
    divergence_rad: float = 0.0
    defocus_spread_nm: float = 0.0
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        images = _stack_images(self.images)
        defoci = np.atleast_1d(np.asarray(self.defoci_nm, dtype=np.float64))
        if defoci.ndim != 1 or defoci.size != images.shape[0]:
            raise ValueError(f"defoci_nm must have one value per image ({images.shape[0]}), "
                             f"got {defoci.size} values: {defoci.tolist()}")  # fmt: skip
        if not np.all(np.isfinite(defoci)):
            raise ValueError(f"defoci_nm must be finite, got {defoci.tolist()}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "defoci_nm", defoci)
        object.__setattr__(self, "pixel_nm", _positive(self.pixel_nm, "pixel_nm"))
        object.__setattr__(self, "beam_energy_ev", _positive(self.beam_energy_ev, "beam_energy_ev"))
        object.__setattr__(self, "cs_nm", _non_negative(self.cs_nm, "cs_nm"))
        object.__setattr__(self, "divergence_rad", _non_negative(self.divergence_rad, "divergence_rad"))
        object.__setattr__(self, "defocus_spread_nm", _non_negative(self.defocus_spread_nm, "defocus_spread_nm"))
        object.__setattr__(self, "provenance", dict(self.provenance or {}))

    @classmethod
    def from_files(cls, paths, defoci_nm, *, pixel_nm: float | None = None, beam_energy_ev: float = 300e3,
                   cs_nm: float = 0.0, divergence_rad: float = 0.0, defocus_spread_nm: float = 0.0,
                   frame: int | str | None = None) -> LTEMSeries:  # fmt: skip
        """Read a through-focus series, one image per file, with the package's readers.

        Parameters
        ----------
        paths : sequence of str or Path
            ``.dm3``, ``.dm4``, ``.tif``, ``.npy``, ... (:func:`atomscount.io.read_image`), one per defocus.
        defoci_nm : sequence of float
            Defocus of each file's image [nm] (1 µm = 1000 nm).
        pixel_nm : float, optional
            Pixel size [nm]; overrides the files' calibration (needed where they have none).
        beam_energy_ev, cs_nm, divergence_rad, defocus_spread_nm : float
            Microscope: beam energy [eV], spherical aberration [nm], divergence semi-angle [rad], defocus spread [nm].
        frame : int or "mean", optional
            Which frame of a stack file to read (see :func:`atomscount.io.read_image`).

        Returns
        -------
        LTEMSeries
            ``provenance["files"]`` lists the files. The images are not registered
            to each other: align them before a retrieval.

        Raises
        ------
        ValueError
            If the files' pixel sizes differ by more than 1 %, their images differ in
            shape (naming the file), or the defocus list does not match the files.
        """
        from ..io import read_image

        paths = [str(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
        defoci = np.atleast_1d(np.asarray(defoci_nm, dtype=np.float64))
        if defoci.size != len(paths):
            raise ValueError(f"defoci_nm must have one value per file ({len(paths)}), got {defoci.size}: "
                             f"{defoci.tolist()}")  # fmt: skip
        override = None if pixel_nm is None else 10.0 * _positive(pixel_nm, "pixel_nm")
        images = [read_image(p, pixel_size_angstrom=override, frame=frame) for p in paths]
        for p, im in zip(paths, images, strict=True):
            if im.data.shape != images[0].data.shape:
                raise ValueError(f"paths: {p} holds a {im.data.shape} image, {paths[0]} a {images[0].data.shape} one; "
                                 "crop them to one shape first")  # fmt: skip
        sizes = np.array([im.pixel_size_angstrom for im in images]) / 10.0
        if np.ptp(sizes) > 0.01 * sizes.min():
            raise ValueError(f"paths: the files' pixel sizes differ ({sizes.tolist()} nm); pass pixel_nm= "
                             "or resample them to one")  # fmt: skip
        return cls(np.stack([im.data for im in images]), defoci, pixel_nm=float(sizes[0]),
                   beam_energy_ev=beam_energy_ev, cs_nm=cs_nm, divergence_rad=divergence_rad,
                   defocus_spread_nm=defocus_spread_nm, provenance={"files": paths})  # fmt: skip

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of each image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def in_focus_index(self, *, tolerance_nm: float = 1e-6) -> int | None:
        """Index of the image at zero defocus (within ``tolerance_nm`` [nm]), or None."""
        hit = np.flatnonzero(np.abs(self.defoci_nm) <= tolerance_nm)
        return int(hit[0]) if hit.size else None

    def __repr__(self) -> str:
        k, ny, nx = self.images.shape
        return (f"LTEMSeries({k} images of {ny}x{nx} px at {self.pixel_nm:g} nm, defoci "
                f"{[round(d, 3) for d in self.defoci_nm.tolist()]} nm, {self.beam_energy_ev / 1e3:g} kV)")  # fmt: skip


@dataclasses.dataclass(frozen=True, repr=False)
class PhaseRetrieval:
    """A retrieved electron phase with its amplitude, induction and the fit that gave it.

    Attributes
    ----------
    phase : ndarray, shape (ny, nx)
        Phase [rad].
    amplitude : ndarray, shape (ny, nx)
        Amplitude (relative; 1 for a transparent film).
    pixel_nm : float
        Pixel size [nm].
    induction : ndarray, shape (2, ny, nx), optional
        Projected in-plane induction (bx, by) = B⊥·t [T·nm]; computed from the phase when not given.
    parameters : dict
        Microscope parameters used or fitted (``defocus_nm``, ``cs_nm``, ... in nm and rad).
    loss_history : ndarray
        Loss per iteration (empty for a direct method such as TIE).
    method : str
        ``"tie"``, ``"sitie"``, ``"ad"``, ...
    uncertainty : ndarray, shape (ny, nx), optional
        Standard uncertainty of the phase [rad], or None.
    provenance : dict
        How it was made (JSON-able).
    """

    phase: np.ndarray
    amplitude: np.ndarray
    pixel_nm: float
    induction: np.ndarray | None = None
    parameters: dict = dataclasses.field(default_factory=dict)
    loss_history: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    method: str = "tie"
    uncertainty: np.ndarray | None = None
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        phase = np.asarray(self.phase, dtype=np.float64)
        if phase.ndim != 2:
            raise ValueError(f"phase must be a 2D map, got shape {phase.shape}")
        if not np.all(np.isfinite(phase)):
            raise ValueError(f"phase has {int((~np.isfinite(phase)).sum())} NaN or infinite pixels")
        amplitude = np.asarray(self.amplitude, dtype=np.float64)
        if amplitude.shape != phase.shape:
            raise ValueError(f"amplitude must have the phase's shape {phase.shape}, got {amplitude.shape}")
        pixel = _positive(self.pixel_nm, "pixel_nm")
        if self.induction is None:
            from .induction import induction_map

            induction = np.stack(induction_map(phase, pixel_nm=pixel))
        else:
            induction = np.asarray(self.induction, dtype=np.float64)
            if induction.shape != (2, *phase.shape):
                raise ValueError(f"induction must be (2, ny, nx) = {(2, *phase.shape)}, got {induction.shape}")
        uncertainty = None
        if self.uncertainty is not None:
            uncertainty = np.asarray(self.uncertainty, dtype=np.float64)
            if uncertainty.shape != phase.shape:
                raise ValueError(f"uncertainty must have the phase's shape {phase.shape}, got {uncertainty.shape}")
        for name, value in (("phase", phase), ("amplitude", amplitude), ("pixel_nm", pixel),
                            ("induction", induction), ("uncertainty", uncertainty),
                            ("parameters", {str(k): v for k, v in dict(self.parameters or {}).items()}),
                            ("loss_history", np.asarray(self.loss_history, dtype=np.float64).ravel()),
                            ("method", str(self.method)), ("provenance", dict(self.provenance or {}))):  # fmt: skip
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the maps."""
        return tuple(self.phase.shape)

    def summary(self) -> dict:
        """Plain-type summary: size, phase range [rad], induction magnitude [T·nm], fit and parameters."""
        b = np.hypot(self.induction[0], self.induction[1])
        return {"method": self.method, "shape": list(self.shape), "pixel_nm": self.pixel_nm,
                "phase_min_rad": float(self.phase.min()), "phase_max_rad": float(self.phase.max()),
                "induction_median_t_nm": float(np.median(b)), "induction_max_t_nm": float(b.max()),
                "median_uncertainty_rad": None if self.uncertainty is None else float(np.median(self.uncertainty)),
                "n_iter": int(self.loss_history.size),
                "final_loss": float(self.loss_history[-1]) if self.loss_history.size else None,
                "parameters": dict(self.parameters)}  # fmt: skip

    def report(self) -> str:
        """A short text report."""
        s = self.summary()
        ny, nx = self.shape
        lines = [f"PhaseRetrieval ({self.method}): {ny}x{nx} px of {self.pixel_nm:g} nm; phase "
                 f"{s['phase_min_rad']:.3g} to {s['phase_max_rad']:.3g} rad",
                 f"  |B⊥·t|: median {s['induction_median_t_nm']:.3g} T·nm, "
                 f"max {s['induction_max_t_nm']:.3g} T·nm"]  # fmt: skip
        if s["median_uncertainty_rad"] is not None:
            lines.append(f"  phase uncertainty: median {s['median_uncertainty_rad']:.3g} rad")
        if s["n_iter"]:
            lines.append(f"  {s['n_iter']} iterations, final loss {s['final_loss']:.6g}")
        if self.parameters:
            lines.append("  parameters: " + ", ".join(f"{k} = {v:.6g}" if isinstance(v, float) else f"{k} = {v}"
                                                      for k, v in self.parameters.items()))  # fmt: skip
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PhaseRetrieval(method={self.method!r}, shape={self.shape}, pixel_nm={self.pixel_nm:g})"

    def to_hdf5(self, path) -> Path:
        """Write every field (atomically)."""
        arrays = {"phase": self.phase, "amplitude": self.amplitude, "induction": self.induction,
                  "loss_history": self.loss_history, "uncertainty": self.uncertainty}  # fmt: skip
        attrs = {"pixel_nm": self.pixel_nm, "parameters": self.parameters, "method": self.method,
                 "provenance": self.provenance}  # fmt: skip
        if self.uncertainty is None:
            attrs["uncertainty"] = None
        write_hdf5(path, _KIND, arrays, attrs)
        return Path(path)

    @classmethod
    def from_hdf5(cls, path) -> PhaseRetrieval:
        """Read a file :meth:`to_hdf5` wrote."""
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        return cls(phase=arrays["phase"], amplitude=arrays["amplitude"], pixel_nm=attrs["pixel_nm"],
                   induction=arrays["induction"], parameters=attrs["parameters"],
                   loss_history=arrays["loss_history"], method=attrs["method"],
                   uncertainty=arrays["uncertainty"] if "uncertainty" in arrays else None,
                   provenance=attrs["provenance"])  # fmt: skip
