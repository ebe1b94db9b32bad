"""find_sublattices on perovskite images made with the package's Gaussian column model."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomscount import HAADFImage, fit_columns
from atomscount.columns.model import ColumnModel, add_poisson_noise
from atomscount.lattice import Sublattices, find_sublattices

A = 3.905  # SrTiO3 [Å]


def _perovskite_image(*, seed, shape=(170, 170), pixel=0.2, heights=(0.30, 0.15), widths=(0.45, 0.40)):
    """A noisy image of A columns on the cell's corners and B columns at (½, ½) (all inside), and the true columns."""
    g = np.stack(np.meshgrid(np.arange(8), np.arange(8), indexing="ij"), -1).reshape(-1, 2).astype(float)
    pos = np.vstack([g * A + 2.0, (g + 0.5) * A + 2.0])
    kind = np.r_[np.zeros(len(g), int), np.ones(len(g), int)]
    model = ColumnModel(shape, pixel, pos, np.take(heights, kind), np.take(widths, kind), background=(0.02,))
    data = add_poisson_noise(model.image(), dose_e_per_angstrom2=2e4, pixel_size_angstrom=pixel, rng=seed)
    return HAADFImage(data, pixel, normalised=True), pos, kind


def _labels_right(sub, pos, kind):
    """Share of columns whose sublattice is their true kind (site 0 is the brighter A site)."""
    d, i = cKDTree(pos).query(sub.positions)
    assert d.max() < 0.3
    return float(np.mean(sub.labels == kind[i]))


def test_positions_and_scs_sort_a_and_b_columns_with_no_image():
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(np.arange(8.0), np.arange(8.0)), -1).reshape(-1, 2)
    pos = np.vstack([g * A, (g + 0.5) * A]) + 3.0 + rng.normal(0, 0.03, (128, 2))
    scs = np.r_[np.full(64, 9.0), np.full(64, 5.0)] * (1 + 0.06 * rng.normal(size=128))
    sub = find_sublattices(pos, intensities=scs)
    assert sub.names == ("(0, 0)", "(0.5, 0.5)")
    assert sub.labels.tolist() == [0] * 64 + [1] * 64
    assert sub.fit is None and not sub.added.any()


def test_every_column_of_an_image_is_on_its_sublattice_and_missed_columns_are_found():
    image, pos, kind = _perovskite_image(seed=1)
    rng = np.random.default_rng(1)
    inner = np.flatnonzero(image.contains(pos, margin_angstrom=-3.0))
    missed = rng.choice(inner, 5, replace=False)
    start = np.delete(pos, missed, axis=0) + rng.normal(0, 0.05, (len(pos) - 5, 2))
    sub = find_sublattices(start, image=image)
    assert _labels_right(sub, pos, kind) == 1.0
    assert sub.added.sum() == 5
    found = sub.positions[sub.added]
    assert cKDTree(found).query(pos[missed])[0].max() < 0.1  # each missed column recovered in its place
    # one width per sublattice, each near its truth
    widths = sub.fit.summary()["widths_by_type"]
    assert widths["(0, 0)"] == pytest.approx(0.45, abs=0.03)
    assert widths["(0.5, 0.5)"] == pytest.approx(0.40, abs=0.03)
    assert sub.fit.type_names == ("(0, 0)", "(0.5, 0.5)")


def test_the_result_round_trips_through_hdf5_with_its_basis_and_fit(tmp_path):
    image, pos, _ = _perovskite_image(seed=5)
    sub = find_sublattices(pos[3:], image=image)
    sub.to_hdf5(tmp_path / "s.h5")
    back = Sublattices.from_hdf5(tmp_path / "s.h5")
    for name in ("positions", "labels", "sites", "added"):
        assert np.array_equal(getattr(back, name), getattr(sub, name)), name
    assert back.names == sub.names and back.n_tested == sub.n_tested and back.added.any()
    assert back.basis.summary() == sub.basis.summary()
    assert np.array_equal(back.fit.scs, sub.fit.scs) and back.fit.type_names == sub.fit.type_names
    assert back.fit.summary() == sub.fit.summary()


def test_a_spurious_column_is_labelled_off_lattice_and_empty_places_are_not_filled():
    image, pos, kind = _perovskite_image(seed=2)
    rng = np.random.default_rng(2)
    spurious = np.array([[2.0 + 4.2 * A + 0.9, 2.0 + 4.0 * A + 0.2]])  # between sites, on empty background
    start = np.vstack([pos + rng.normal(0, 0.05, pos.shape), spurious])
    # a vacancy: a column missing from the image too, so a fit there finds no significant SCS
    gone = np.flatnonzero(image.contains(pos, margin_angstrom=-4.0))[7]
    heights, widths = (0.3, 0.45) if kind[gone] == 0 else (0.15, 0.40)
    data = image.data - ColumnModel(image.shape, image.pixel_size_angstrom, pos[gone : gone + 1], [heights],
                                    [widths]).image()  # fmt: skip
    start = np.delete(start, gone, axis=0)
    sub = find_sublattices(start, image=HAADFImage(data, image.pixel_size_angstrom, normalised=True),
                           find_missing=True)  # fmt: skip
    assert sub.n_tested >= 1
    assert not sub.added.any()  # the vacancy stays empty
    assert int(np.sum(sub.labels == -1)) == 1


def test_a_sublattice_detection_missed_entirely_is_found_at_the_site_given():
    # only the bright A columns detected: the faint B columns at the cell's centre are tested and found
    image, pos, kind = _perovskite_image(seed=7)
    a_only = pos[kind == 0] + np.random.default_rng(7).normal(0, 0.05, (int(np.sum(kind == 0)), 2))
    sub = find_sublattices(a_only, image=image, extra_sites=[(0.5, 0.5)])
    assert sub.names == ("(0, 0)", "(0.5, 0.5)")
    b_inner = pos[(kind == 1) & image.contains(pos, margin_angstrom=-2.0)]
    found = sub.positions[sub.labels == 1]
    assert cKDTree(found).query(b_inner)[0].max() < 0.1  # every B column away from the edges
    assert sub.added.sum() == len(found) and _labels_right(sub, pos, kind) == 1.0
    # a site with nothing there (the cell's edge centre, empty in this image) is tested and dropped
    sub = find_sublattices(pos, image=image, extra_sites=[(0.5, 0.0)])
    assert sub.names == ("(0, 0)", "(0.5, 0.5)") and not sub.added.any()
    with pytest.raises(ValueError, match="extra_sites are tested against the image"):
        find_sublattices(pos, extra_sites=[(0.5, 0.0)])


def test_n_sublattices_splits_a_site_by_scs():
    rng = np.random.default_rng(3)
    g = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    pos = g * 3.0 + rng.normal(0, 0.02, (100, 2))
    heavy = rng.permutation(100) < 30  # no order: only SCS tell them apart
    scs = np.where(heavy, 12.0, 5.0) * (1 + 0.05 * rng.normal(size=100))
    sub = find_sublattices(pos, intensities=scs, n_sublattices=2)
    assert len(sub.names) == 2
    assert np.array_equal(sub.labels == 1, heavy)
    with pytest.raises(ValueError, match="n_sublattices=2"):
        find_sublattices(pos, n_sublattices=2)


def test_the_result_checks_its_arrays():
    sub = find_sublattices(np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0)), -1).reshape(-1, 2) * 3.0)
    assert isinstance(sub, Sublattices) and sub.summary()["columns_per_sublattice"] == {"(0, 0)": 36}
    with pytest.raises(ValueError, match="labels must have length 36"):
        Sublattices(positions=sub.positions, labels=[0], names=sub.names, sites=sub.sites, basis=sub.basis,
                    added=sub.added)  # fmt: skip


def test_the_detect_command_writes_each_columns_sublattice_as_its_type(tmp_path, capsys):
    import csv

    from atomscount.cli import main

    image, pos, kind = _perovskite_image(seed=4)
    np.save(tmp_path / "img.npy", image.data)
    out = tmp_path / "det"
    assert main(["detect", str(tmp_path / "img.npy"), "--pixel-size", str(image.pixel_size_angstrom),
                 "--normalised", "--sublattices", "--out", str(out)]) == 0  # fmt: skip
    with open(out / "columns.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    found = np.array([[float(r["x_angstrom"]), float(r["y_angstrom"])] for r in rows])
    d, i = cKDTree(pos).query(found)
    assert d.max() < 0.3 and len(rows) == len(pos)
    names = np.array(["(0, 0)", "(0.5, 0.5)"])
    assert [r["type"] for r in rows] == names[kind[i]].tolist()
    assert "Sublattices(" in capsys.readouterr().out
    saved = Sublattices.from_hdf5(out / "sublattices.h5")
    assert saved.fit.type_names == tuple(names) and saved.n_columns == len(rows)


def test_a_fit_brings_its_positions_and_scs():
    image, pos, kind = _perovskite_image(seed=8)
    fit = fit_columns(image, pos)
    sub = find_sublattices(fit)
    assert sub.basis.supercell == 2 and _labels_right(sub, pos, kind) == 1.0 and sub.fit is None
