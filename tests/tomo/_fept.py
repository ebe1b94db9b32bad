"""The Yang et al. (2017) FePt model of ../shared/data/fept, for the tomography tests."""

from pathlib import Path

import numpy as np

FEPT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fept"


def fept_centre(radius):
    """Positions [Å] about the model's centre and elements of its atoms within ``radius`` of the centre."""
    model = np.load(FEPT / "model.npy").T
    symbols = np.where(np.load(FEPT / "atoms.npy")[0] == 0, "Fe", "Pt")
    centre = model.mean(axis=0)
    keep = np.linalg.norm(model - centre, axis=1) <= radius
    return model[keep] - centre, symbols[keep]
