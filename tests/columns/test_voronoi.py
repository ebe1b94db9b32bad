import numpy as np

from atomscount.columns.model import ColumnModel, square_lattice
from atomscount.columns.voronoi import voronoi_scs


def test_voronoi_integrates_equal_columns_exactly_on_a_lattice():
    # cell boundaries fall between pixel centres, so no pixel is shared by two cells
    pos = square_lattice((100, 100), 0.1, 2.0, margin_angstrom=1.05)
    m = ColumnModel((100, 100), 0.1, pos, np.full(len(pos), 0.5), 0.45, background=(0.03,))
    v = voronoi_scs(m.image(), 0.1, pos, background=0.03)
    interior = np.all((pos > 2.5) & (pos < 7.4), axis=1)
    np.testing.assert_allclose(v[interior], m.scs[interior], rtol=2e-3)


def test_voronoi_clips_cells_and_ignores_masked_pixels():
    m = ColumnModel((80, 80), 0.1, [[4.0, 4.0]], [1.0], 0.4, background=(0.0,))
    img = m.image()
    full = voronoi_scs(img, 0.1, m.positions, max_radius_angstrom=3.0)[0]
    assert abs(full - m.scs[0]) < 1e-3
    small = voronoi_scs(img, 0.1, m.positions, max_radius_angstrom=0.4)[0]
    assert small < 0.5 * full
    mask = np.zeros(img.shape, bool)
    mask[:40] = True
    img[mask] = np.nan
    half = voronoi_scs(img, 0.1, m.positions, max_radius_angstrom=3.0, mask=mask)[0]
    assert abs(half - 0.5 * m.scs[0]) < 0.05 * m.scs[0]
