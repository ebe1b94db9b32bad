"""Stage: Lorentz TEM of magnetic films (forward model, TIE and differentiable phase retrieval).

Lengths are in nm, magnetisation in A/m, beam energy in eV and phases in radians.
JAX is imported by the modules of this stage only, never by ``import atomscount``.
"""

__all__: list[str] = []
