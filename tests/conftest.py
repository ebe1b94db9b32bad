import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from atomscount.columns.model import ColumnModel  # noqa: E402


@pytest.fixture
def small_model():
    """Five overlapping columns of two types on a plane background, 56x60 pixels."""
    pos = np.array([[1.6, 1.7], [2.9, 1.9], [2.2, 3.1], [4.1, 3.0], [3.5, 4.4]])
    return ColumnModel(
        (56, 60), 0.1, pos, heights=[0.30, 0.55, 0.42, 0.25, 0.6], widths=[0.45, 0.45, 0.5, 0.45, 0.5],
        background=(0.02, 0.001, -0.002), types=[0, 0, 1, 0, 1],
    )
