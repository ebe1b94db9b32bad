"""The centre of the Yang et al. (2017) FePt model, for the tomography tests.

``tests/data/fept_centre_11A.npz`` holds the atoms of the full 23,196-atom model
(the project's FePt benchmark data) within 11 Å of the model's centre (the mean of all
23,196 positions), relative to that centre, with their elements (0 = Fe, 1 = Pt):
Yang, Y. et al., Nature 542, 75 (2017).
It ships with the tests so that they run on a fresh clone.
"""

from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "fept_centre_11A.npz"


def fept_centre(radius):
    """Positions [Å] about the model's centre and elements of its atoms within ``radius`` (at most 11 Å) of it."""
    if radius > 11.0:
        raise ValueError(f"the shipped FePt centre covers 11 Å, got radius {radius}")
    with np.load(DATA) as data:
        model, elements = data["positions"], data["elements"]
    keep = np.linalg.norm(model, axis=1) <= radius
    return model[keep], np.where(elements[keep] == 0, "Fe", "Pt")
