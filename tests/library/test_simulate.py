import dataclasses

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath

from atomscount.library import MicroscopeSettings, column_cell, simulate_column_scs, zone_axis_crystal

A_AU = 4.08
COARSE = dict(sampling_angstrom=0.08, outer_angle_mrad=80.0, inner_angle_mrad=30.0, scan_step_angstrom=0.5,
              lateral_extent_angstrom=8.0, semiangle_mrad=20.0)  # fmt: skip


def polygon_area(p):
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


@pytest.mark.parametrize(
    "axis,period,n_columns",
    [("001", A_AU, 2 * 1), ("110", A_AU / np.sqrt(2), 4), ("111", A_AU * np.sqrt(3), 3 * 8 // 3)],
)
def test_zone_axis_cells_have_the_fcc_period_and_column_cells_tile_the_plane(axis, period, n_columns):
    crystal = zone_axis_crystal("Au", axis)
    lx, ly, lz = crystal.cell.lengths()
    assert lz == pytest.approx(period, rel=1e-3)
    assert np.allclose(crystal.cell.angles(), 90)
    centre, polygon, per_period = column_cell(crystal)
    assert per_period == 1
    assert PolygonPath(polygon).contains_point(centre)
    # every column of the period has one atom, so the cells share the projected area equally
    assert polygon_area(polygon) == pytest.approx(lx * ly / len(crystal), rel=1e-3)


@pytest.mark.parametrize("element,axis", [("Au", "001"), ("Au", "110"), ("Au", "111"), ("Fe", "111"), ("Mg", "0001")])
def test_exact_cell_integration_covers_the_cell_and_nothing_else(element, axis):
    from atomscount.library.simulate import _clipped_area, _scan_points

    crystal = zone_axis_crystal(element, axis)
    centre, polygon, _ = column_cell(crystal)
    points, areas = _scan_points(centre, polygon, 0.2)
    assert areas.sum() == pytest.approx(polygon_area(polygon), rel=1e-9)
    assert np.all(areas > 0) and np.all(areas <= 0.2**2 + 1e-12)
    # the old grid keeps only midpoints inside, each worth step**2, and misses part of the cell
    grid, grid_areas = _scan_points(centre, polygon, 0.2, exact=False)
    assert np.all(PolygonPath(polygon).contains_points(grid)) and np.all(grid_areas == pytest.approx(0.04))
    # clipping against a known case: the unit square cut by the half-plane x <= 0.25
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert _clipped_area(square, -1.0, 0.25, -1.0, 2.0) == pytest.approx(0.25)
    diamond = np.array([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert _clipped_area(diamond, 0.0, 1.0, 0.0, 1.0) == pytest.approx(0.5)
    assert _clipped_area(diamond, 2.0, 3.0, 0.0, 1.0) == 0.0


def test_hcp_basal_axis_has_one_atom_per_column_per_c_period():
    from ase.build import bulk

    mg = zone_axis_crystal("Mg", "0001")
    c = bulk("Mg", "hcp").cell.lengths()[2]
    lx, ly, lz = mg.cell.lengths()
    assert lz == pytest.approx(c, rel=1e-6) and len(mg) == 4
    centre, polygon, per_period = column_cell(mg)
    assert per_period == 1  # A and B layers project onto different columns
    assert polygon_area(polygon) == pytest.approx(lx * ly / len(mg), rel=1e-3)
    s = MicroscopeSettings(num_configs=1, rms_displacement_angstrom={"Mg": 0.0}, **COARSE)
    scs, _ = simulate_column_scs(mg, s, 2, progress=False)
    assert scs[0, 0] == pytest.approx(0.0, abs=1e-9) and np.all(np.diff(scs[0]) > 0)
    # a light element: one Mg atom scatters far less into the HAADF detector than one Au atom
    au, _ = simulate_column_scs(zone_axis_crystal("Au", "001"), dataclasses.replace(
        s, rms_displacement_angstrom={"Au": 0.0}), 1, progress=False)  # fmt: skip
    assert scs[0, 1] < 0.4 * au[0, 1]


def test_bcc_111_columns_are_read_after_every_atom():
    """bcc [111]: two equally spaced atoms per column per period, an exit plane after each."""
    fe = zone_axis_crystal("Fe", "111")
    assert column_cell(fe)[2] == 2
    s = MicroscopeSettings(num_configs=1, rms_displacement_angstrom={"Fe": 0.0}, **COARSE)
    per_atom, info = simulate_column_scs(fe, s, 2, progress=False, per_atom=True)
    per_period, _ = simulate_column_scs(fe, s, 2, progress=False)
    assert per_atom.shape == (1, 5) and info["planes_per_period"] == 2
    np.testing.assert_allclose(per_atom[0, [0, 2, 4]], per_period[0], rtol=1e-5, atol=1e-9)
    assert np.all(np.diff(per_atom[0]) > 0)
    from atomscount.library import build_scs_library

    lib = build_scs_library("Fe", "111", 3, s, progress=False)  # odd: the second period is read halfway
    np.testing.assert_allclose(lib.scs, per_atom[0, 1:4], rtol=1e-5)
    with pytest.raises(ValueError, match="one atom per column per period; this column holds 2"):
        simulate_column_scs(fe, s, 2, progress=False, sequences=[["Fe", "Fe"]])


def test_bcc_and_bad_inputs():
    fe = zone_axis_crystal("Fe", "001")
    assert len(fe) == 2 and fe.cell.lengths()[2] == pytest.approx(2.87, rel=0.01)
    with pytest.raises(ValueError, match="element must be a chemical symbol, got 'Xx'"):
        zone_axis_crystal("Xx", "001")
    with pytest.raises(ValueError, match="zone_axis must be one of"):
        zone_axis_crystal("Au", "123x")
    with pytest.raises(ValueError, match="reference structure"):
        zone_axis_crystal("Si", "001")




def test_exit_planes_equal_separate_thickness_runs():
    """Without phonons the run is deterministic: plane k of a thick crystal is a k-period crystal."""
    s = MicroscopeSettings(num_configs=1, rms_displacement_angstrom={"Au": 0.0}, **COARSE)
    crystal = zone_axis_crystal("Au", "001")
    thick, info = simulate_column_scs(crystal, s, 3, progress=False)
    thin, _ = simulate_column_scs(crystal, s, 2, progress=False)
    np.testing.assert_allclose(thick[0, :3], thin[0], rtol=1e-5, atol=1e-9)
    assert thick[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert np.all(np.diff(thick[0]) > 0)
    # whole pixels tile the square cell (a/2 = 2.04 Å): 5 x 5 pixels of 0.408 Å
    assert info["n_scan_points"] == 25
    assert info["scanned_area_angstrom2"] == pytest.approx((A_AU / 2) ** 2, rel=1e-9)
