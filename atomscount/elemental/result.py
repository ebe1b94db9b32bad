"""The result type of the elemental stage: :class:`ElementalVolumes`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..io import _plain, atomic_path, read_hdf5, write_hdf5

__all__ = ["ElementalVolumes", "FLAG_PARTIAL_VOLUME", "FLAG_CLIPPED"]

_KIND = "ElementalVolumes"
#: Bit of :attr:`ElementalVolumes.flags`: a surface voxel only partly inside the particle.
FLAG_PARTIAL_VOLUME = 1
#: Bit of :attr:`ElementalVolumes.flags`: a value outside the pure-element levels, clipped to 0..1.
FLAG_CLIPPED = 2


@dataclasses.dataclass(frozen=True, repr=False)
class ElementalVolumes:
    """Concentration volumes of each element, with their uncertainties and the particle mask.

    Attributes
    ----------
    elements : tuple of str
    concentration : ndarray (n_el, nz, ny, nx)
        Atomic fraction (0 to 1) of each element in each voxel; absolute, not rescaled.
    sigma : ndarray (n_el, nz, ny, nx)
        1-σ uncertainty of ``concentration``.
    density : ndarray (nz, ny, nx) or None
        Total number density [atoms/Å³], where the method gives it.
    mask : ndarray (nz, ny, nx) of bool
        The particle.
    flags : ndarray (nz, ny, nx) of uint8
        Bit 1 (:data:`FLAG_PARTIAL_VOLUME`): a partial-volume surface voxel; bit 2
        (:data:`FLAG_CLIPPED`): a value outside the pure levels, clipped.
    voxel_size_angstrom : float
    method : str
        How it was made (``"haadf-composition"``, ``"multimodal-tnv"``, ``"sirt-separate"``, ...).
    haadf_weights : dict of str to float or None
        Per-atom HAADF cross-sections [Å²] used or fitted.
    gamma : float or None
        The HAADF power (:func:`~atomscount.elemental.forward.haadf_model`).
    regularisation : dict
        The regulariser's name and the weights chosen.
    objective : ndarray (n_iter,)
        The objective at each iteration (empty for a direct method).
    converged : bool
    provenance : dict

    Raises
    ------
    ValueError
        For arrays whose shapes do not match one another or the elements.
    """

    elements: tuple
    concentration: np.ndarray
    sigma: np.ndarray
    density: np.ndarray | None
    mask: np.ndarray
    flags: np.ndarray
    voxel_size_angstrom: float
    method: str
    haadf_weights: dict | None = None
    gamma: float | None = None
    regularisation: dict = dataclasses.field(default_factory=dict)
    objective: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    converged: bool = True
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        elements = tuple(str(e) for e in self.elements)
        if not elements or len(set(elements)) != len(elements):
            raise ValueError(f"elements must be distinct chemical symbols, got {list(elements)}")
        conc = np.asarray(self.concentration, dtype=np.float64)
        if conc.ndim != 4 or conc.shape[0] != len(elements):
            raise ValueError(f"concentration must be (n_el={len(elements)}, nz, ny, nx), got shape {conc.shape}")
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if sigma.shape != conc.shape:
            raise ValueError(f"sigma must have concentration's shape {conc.shape}, got {sigma.shape}")
        shape = conc.shape[1:]
        mask = np.asarray(self.mask)
        if mask.shape != shape:
            raise ValueError(f"mask must have the volume's shape {shape}, got {mask.shape}")
        flags = np.asarray(self.flags)
        if flags.shape != shape:
            raise ValueError(f"flags must have the volume's shape {shape}, got {flags.shape}")
        density = None
        if self.density is not None:
            density = np.asarray(self.density, dtype=np.float64)
            if density.shape != shape:
                raise ValueError(f"density must have the volume's shape {shape}, got {density.shape}")
        px = float(self.voxel_size_angstrom)
        if not (np.isfinite(px) and px > 0):
            raise ValueError(f"voxel_size_angstrom must be > 0, got {self.voxel_size_angstrom!r}")
        weights = None if self.haadf_weights is None else {str(k): float(v) for k, v in self.haadf_weights.items()}
        for name, value in (("elements", elements), ("concentration", conc), ("sigma", sigma), ("density", density),
                            ("mask", mask.astype(bool)), ("flags", flags.astype(np.uint8)),
                            ("voxel_size_angstrom", px), ("method", str(self.method)), ("haadf_weights", weights),
                            ("gamma", None if self.gamma is None else float(self.gamma)),
                            ("regularisation", dict(self.regularisation)),
                            ("objective", np.asarray(self.objective, dtype=np.float64).ravel()),
                            ("converged", bool(self.converged)), ("provenance", dict(self.provenance))):  # fmt: skip
            object.__setattr__(self, name, value)

    @property
    def shape(self) -> tuple:
        """The volume's shape (nz, ny, nx)."""
        return self.concentration.shape[1:]

    def __repr__(self) -> str:
        nz, ny, nx = self.shape
        n = int(self.mask.sum())
        return (f"ElementalVolumes({'/'.join(self.elements)}, {nz}x{ny}x{nx} voxels of "
                f"{self.voxel_size_angstrom:g} Å, {n} in the particle, method {self.method!r})")  # fmt: skip

    def summary(self) -> dict:
        """Plain-type summary: the particle's size, each element's mean concentration and uncertainty, flags and fit."""
        m = self.mask
        n = int(m.sum())
        per = {}
        for i, e in enumerate(self.elements):
            c, s = self.concentration[i][m], self.sigma[i][m]
            per[e] = {"mean_concentration": float(c.mean()) if n else None,
                      "median_sigma": float(np.median(s)) if n else None}  # fmt: skip
        if self.density is not None and n and self.density[m].sum() > 0:
            w = self.density[m]
            for i, e in enumerate(self.elements):
                per[e]["atomic_fraction"] = float((self.concentration[i][m] * w).sum() / w.sum())
        return {
            "elements": list(self.elements),
            "shape": [int(v) for v in self.shape],
            "voxel_size_angstrom": self.voxel_size_angstrom,
            "method": self.method,
            "n_particle_voxels": n,
            "particle_volume_nm3": n * self.voxel_size_angstrom**3 / 1e3,
            "per_element": per,
            "n_partial_volume": int((self.flags & FLAG_PARTIAL_VOLUME).astype(bool).sum()),
            "n_clipped": int((self.flags & FLAG_CLIPPED).astype(bool).sum()),
            "haadf_weights": self.haadf_weights,
            "gamma": self.gamma,
            "regularisation": _plain(self.regularisation),
            "n_iter": int(len(self.objective)),
            "final_objective": float(self.objective[-1]) if len(self.objective) else None,
            "converged": self.converged,
        }

    def report(self) -> str:
        """A short text report."""
        s = self.summary()
        nz, ny, nx = self.shape
        lines = [f"ElementalVolumes ({self.method}): {'/'.join(self.elements)} on {nz}x{ny}x{nx} voxels of "
                 f"{self.voxel_size_angstrom:g} Å; particle {s['n_particle_voxels']} voxels "
                 f"({s['particle_volume_nm3']:.3g} nm³)"]  # fmt: skip
        for e, d in s["per_element"].items():
            if d["mean_concentration"] is None:
                lines.append(f"  {e}: no particle voxels")
                continue
            extra = f", atomic fraction {d['atomic_fraction']:.3f}" if "atomic_fraction" in d else ""
            lines.append(f"  {e}: mean concentration {d['mean_concentration']:.3f} "
                         f"(median σ {d['median_sigma']:.3f}){extra}")  # fmt: skip
        lines.append(f"  flagged: {s['n_partial_volume']} partial-volume surface voxels, {s['n_clipped']} clipped "
                     "outside the pure levels")  # fmt: skip
        if self.haadf_weights:
            w = ", ".join(f"{k} {v:.4g} Å²" for k, v in self.haadf_weights.items())
            g = f", γ = {self.gamma:.3f}" if self.gamma is not None else ""
            lines.append(f"  HAADF weights: {w}{g}")
        if self.regularisation:
            lines.append(f"  regularisation: {self.regularisation}")
        if s["n_iter"]:
            state = "converged" if self.converged else "did NOT converge"
            lines.append(f"  {state} after {s['n_iter']} iterations, objective {s['final_objective']:.6g}")
        return "\n".join(lines)

    def to_hdf5(self, path) -> Path:
        """Write every field (atomically)."""
        arrays = {"elements": np.array(self.elements), "concentration": self.concentration, "sigma": self.sigma,
                  "density": self.density, "mask": self.mask, "flags": self.flags,
                  "objective": self.objective}  # fmt: skip
        attrs = {"voxel_size_angstrom": self.voxel_size_angstrom, "method": self.method,
                 "haadf_weights": self.haadf_weights, "gamma": self.gamma, "regularisation": self.regularisation,
                 "converged": self.converged, "provenance": self.provenance}  # fmt: skip
        if self.density is None:  # a field of the file all the same (write_hdf5 skips None arrays)
            attrs["density"] = None
        write_hdf5(path, _KIND, arrays, attrs)
        return Path(path)

    @classmethod
    def from_hdf5(cls, path) -> ElementalVolumes:
        """Read a file :meth:`to_hdf5` wrote."""
        arrays, attrs = read_hdf5(path, _KIND, result_type=cls)
        return cls(
            elements=tuple(str(e) for e in np.asarray(arrays["elements"]).tolist()),
            concentration=arrays["concentration"], sigma=arrays["sigma"],
            density=arrays["density"] if "density" in arrays else None, mask=arrays["mask"], flags=arrays["flags"],
            voxel_size_angstrom=attrs["voxel_size_angstrom"], method=attrs["method"],
            haadf_weights=attrs.get("haadf_weights"), gamma=attrs.get("gamma"),
            regularisation=attrs.get("regularisation", {}), objective=arrays["objective"],
            converged=attrs.get("converged", True), provenance=attrs.get("provenance", {}),
        )  # fmt: skip

    def to_mrc(self, out_dir) -> list[Path]:
        """Write each element's concentration as ``<element>.mrc`` (float32, voxel size in Å) in ``out_dir``."""
        import mrcfile

        out = _out_dir(out_dir)
        paths = []
        for i, e in enumerate(self.elements):
            path = out / f"{e}.mrc"
            with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
                mrc.set_data(self.concentration[i].astype(np.float32))
                mrc.voxel_size = self.voxel_size_angstrom
            paths.append(path)
        return paths

    def to_tif(self, out_dir) -> list[Path]:
        """Write each element's concentration as ``<element>.tif`` (a float32 ImageJ stack, z first) in ``out_dir``."""
        import tifffile

        out = _out_dir(out_dir)
        paths = []
        px = self.voxel_size_angstrom
        for i, e in enumerate(self.elements):
            path = out / f"{e}.tif"
            with atomic_path(path) as tmp:
                tifffile.imwrite(tmp, self.concentration[i].astype(np.float32), imagej=True,
                                 resolution=(1.0 / px, 1.0 / px),
                                 metadata={"spacing": px, "unit": "angstrom", "axes": "ZYX"})  # fmt: skip
            paths.append(path)
        return paths


def _out_dir(out_dir) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir {str(out)!r} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out
