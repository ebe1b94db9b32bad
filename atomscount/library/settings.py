"""Microscope and simulation settings shared by every library builder."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import numpy as np

from .._checks import check_integer, check_positive, check_real

__all__ = ["MicroscopeSettings", "electron_wavelength_angstrom"]

#: abTEM zeroes spatial frequencies beyond 2/3 of the Nyquist limit (antialiasing).
ANTIALIAS_FRACTION = 2.0 / 3.0


def electron_wavelength_angstrom(energy_ev: float) -> float:
    """Relativistic electron wavelength [Å] at ``energy_ev`` [eV].

    Examples
    --------
    >>> round(electron_wavelength_angstrom(300e3), 5)
    0.01969
    """
    m0c2 = 510998.95  # eV
    hc = 12398.419843320026  # eV Å
    e = check_positive(energy_ev, "energy_ev")
    return float(hc / np.sqrt(e * (2 * m0c2 + e)))


@dataclasses.dataclass(frozen=True)
class MicroscopeSettings:
    """Everything that determines a simulated HAADF signal. Cheap to make; validated on creation.

    Parameters
    ----------
    energy_ev : float
        Beam energy [eV].
    semiangle_mrad : float
        Probe convergence semi-angle [mrad].
    defocus_angstrom, cs_angstrom : float
        Defocus (positive = underfocus, abTEM's convention) and spherical aberration [Å].
    aberrations : dict
        Further aberration coefficients in abTEM's names (``C12``, ``phi12``...) [Å, rad].
    inner_angle_mrad, outer_angle_mrad : float
        HAADF detector collection angles [mrad].
    source_size_angstrom : float
        Gaussian source size (standard deviation) [Å], applied to images by convolution.
    num_configs : int
        Frozen-phonon configurations.
    rms_displacement_angstrom : dict
        Per element root-mean-square displacement along one axis [Å] (Debye-Waller).
    sampling_angstrom : float
        Real-space sampling of the wave function [Å].
    slice_thickness_angstrom : float or None
        Multislice slice thickness [Å]; ``None`` uses one atomic layer per slice.
    scan_step_angstrom : float
        Probe step of the scan over a column's cell [Å].
    lateral_extent_angstrom : float
        Smallest lateral size of the periodic supercell [Å], so the probe does not wrap around.
    seed : int
        Expanded into one explicit seed per frozen-phonon configuration.
    cell_integration : {"exact", "grid"}
        How the scan covers the column's cell. ``"exact"``: the step is shrunk so
        that whole pixels tile the cell's bounding box, and each pixel counts with
        the area it shares with the cell (polygon clipping), so the SCS integrates
        over exactly the cell. ``"grid"``: the ``scan_step_angstrom`` midpoints
        inside the cell, each counting ``step**2``; depending on how the cell's
        width falls on the step it misses or adds a strip along the cell edge
        (up to about 3 % at 40 atoms along fcc [001]). Files that predate this
        setting were built this way and read as ``"grid"``.
    abtem_version : str
        Filled in automatically.

    Raises
    ------
    ValueError
        For a non-positive quantity, a defocus, Cs or aberration that is not
        finite, a negative seed, ``inner >= outer``, or an outer angle beyond
        what the sampling simulates (the message gives the sampling needed).
    TypeError
        If a quantity is not a real number, or the seed not an integer.
    """

    energy_ev: float = 300e3
    semiangle_mrad: float = 21.4
    defocus_angstrom: float = 0.0
    cs_angstrom: float = 0.0
    aberrations: dict = dataclasses.field(default_factory=dict)
    inner_angle_mrad: float = 55.0
    outer_angle_mrad: float = 200.0
    source_size_angstrom: float = 0.0
    num_configs: int = 8
    rms_displacement_angstrom: dict = dataclasses.field(default_factory=dict)
    sampling_angstrom: float = 0.03
    slice_thickness_angstrom: float | None = None
    scan_step_angstrom: float = 0.2
    lateral_extent_angstrom: float = 12.0
    seed: int = 0
    cell_integration: str = "exact"
    abtem_version: str = ""

    def __post_init__(self):
        positive = ("energy_ev", "semiangle_mrad", "outer_angle_mrad", "sampling_angstrom", "scan_step_angstrom",
                    "lateral_extent_angstrom")  # fmt: skip
        for name in positive:
            check_positive(getattr(self, name), name)
        check_positive(self.inner_angle_mrad, "inner_angle_mrad", allow_zero=True)
        check_positive(self.source_size_angstrom, "source_size_angstrom", allow_zero=True)
        if self.slice_thickness_angstrom is not None:
            check_positive(self.slice_thickness_angstrom, "slice_thickness_angstrom")
        if int(self.num_configs) != self.num_configs or self.num_configs < 1:
            raise ValueError(f"num_configs must be an integer >= 1, got {self.num_configs!r}")
        check_real(self.defocus_angstrom, "defocus_angstrom")
        check_real(self.cs_angstrom, "cs_angstrom")
        for key, value in dict(self.aberrations).items():
            check_real(value, f"aberrations[{key!r}]")
        check_integer(self.seed, "seed", low=0)
        if self.cell_integration not in ("exact", "grid"):
            raise ValueError(f"cell_integration must be 'exact' or 'grid', got {self.cell_integration!r}")
        if self.inner_angle_mrad >= self.outer_angle_mrad:
            raise ValueError(
                f"inner_angle_mrad must be < outer_angle_mrad ({self.outer_angle_mrad}), got {self.inner_angle_mrad}"
            )
        for el, v in dict(self.rms_displacement_angstrom).items():
            check_positive(v, f"rms_displacement_angstrom[{el!r}]", allow_zero=True)
        max_angle = self.max_simulated_angle_mrad
        if self.outer_angle_mrad > max_angle:
            raise ValueError(
                f"outer_angle_mrad ({self.outer_angle_mrad} mrad) exceeds the largest angle simulated at "
                f"sampling_angstrom={self.sampling_angstrom} ({max_angle:.1f} mrad); use "
                f"sampling_angstrom <= {self.required_sampling_angstrom(self.outer_angle_mrad):.4f}"
            )
        if not self.abtem_version:
            import abtem

            object.__setattr__(self, "abtem_version", abtem.__version__)
        # private copies, so that changing the caller's dicts cannot change these settings
        object.__setattr__(self, "aberrations", dict(self.aberrations))
        object.__setattr__(self, "rms_displacement_angstrom", dict(self.rms_displacement_angstrom))
        object.__setattr__(self, "num_configs", int(self.num_configs))

    @property
    def wavelength_angstrom(self) -> float:
        return float(electron_wavelength_angstrom(self.energy_ev))

    @property
    def max_simulated_angle_mrad(self) -> float:
        """Largest scattering angle inside abTEM's antialiasing aperture [mrad]."""
        return 1e3 * ANTIALIAS_FRACTION * self.wavelength_angstrom / (2 * self.sampling_angstrom)

    def required_sampling_angstrom(self, angle_mrad: float) -> float:
        """The coarsest sampling [Å] that still simulates ``angle_mrad``."""
        return ANTIALIAS_FRACTION * self.wavelength_angstrom / (2 * angle_mrad * 1e-3)

    def config_seeds(self) -> list[int]:
        """One explicit seed per frozen-phonon configuration, so any one can be rerun alone."""
        ss = np.random.SeedSequence(self.seed)
        return [int(s.generate_state(1)[0]) for s in ss.spawn(self.num_configs)]

    def rms_for(self, element: str) -> float:
        """RMS displacement of ``element`` [Å]; a typical room-temperature 0.08 Å when not given."""
        return float(self.rms_displacement_angstrom.get(element, 0.08))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self) | {
            "aberrations": dict(self.aberrations),
            "rms_displacement_angstrom": dict(self.rms_displacement_angstrom),
        }
        return d

    @staticmethod
    def stored(d: dict) -> dict:
        """A settings dict read from a file, completed for settings added since it was written.

        Files written before ``cell_integration`` existed were integrated on the grid.
        """
        return {"cell_integration": "grid", **dict(d)}

    @classmethod
    def from_dict(cls, d: dict) -> MicroscopeSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown MicroscopeSettings keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_toml(cls, path) -> MicroscopeSettings:
        """Read the ``[microscope]`` table of a TOML file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path does not exist or is not a file: {str(path)!r}")
        try:
            cfg = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{str(path)!r} is not valid TOML: {exc}") from exc
        return cls.from_dict(cfg.get("microscope", {}))
