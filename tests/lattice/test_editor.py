"""ColumnEditor driven by synthetic mouse and key events on the Agg backend."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.backend_bases import KeyEvent, MouseEvent

from atomscount.cli.columns import read_positions_csv
from atomscount.columns.model import ColumnModel
from atomscount.image import HAADFImage
from atomscount.lattice.editor import ColumnEditor

PIXEL = 0.2


@pytest.fixture
def lattice():
    """A 4 x 4 square lattice of columns centred on pixels, 2 Å apart, and its image."""
    pos = np.array([[1.0 + 2.0 * i, 1.0 + 2.0 * j] for j in range(4) for i in range(4)])
    img = ColumnModel((40, 40), PIXEL, pos, heights=np.ones(len(pos)), widths=0.4, background=(0.01,)).image()
    return pos, HAADFImage(img, PIXEL)


def _click(editor, xy, button=1):
    x, y = editor.ax.transData.transform(xy)
    event = MouseEvent("button_press_event", editor.figure.canvas, x, y, button=button)
    editor.figure.canvas.callbacks.process("button_press_event", event)


def _key(editor, key, xy):
    x, y = editor.ax.transData.transform(xy)
    event = KeyEvent("key_press_event", editor.figure.canvas, key, x, y)
    editor.figure.canvas.callbacks.process("key_press_event", event)


def test_clicks_and_keys_add_remove_retype_and_undo(lattice, tmp_path):
    pos, image = lattice
    types = ["A", "B"] * 8
    editor = ColumnEditor(image, pos[1:], types[1:], type_names=("A", "B"))
    try:
        assert editor.n_columns == 15
        # a click 0.3 Å off the missing column adds it at the image's maximum there: the true position
        _click(editor, pos[0] + [0.3, -0.2])
        assert editor.n_columns == 16
        np.testing.assert_allclose(editor.positions[-1], pos[0], atol=1e-4)  # neighbours tilt the peak by 0.02 pm
        assert editor.types[-1] == "A"
        # a right click does nothing
        _click(editor, pos[5] + 0.1, button=3)
        assert editor.n_columns == 16
        # a click on a column removes it
        _click(editor, pos[5] + [0.2, 0.1])
        assert editor.n_columns == 15
        assert not np.any(np.all(np.isclose(editor.positions, pos[5]), axis=1))
        # 't' over a column cycles its type; away from every column it cycles the type of new columns
        k = int(np.flatnonzero(np.all(np.isclose(editor.positions, pos[6]), axis=1))[0])
        assert editor.types[k] == "A"
        _key(editor, "t", pos[6] + 0.1)
        assert editor.types[k] == "B"
        _key(editor, "t", pos[6] + [1.0, 1.0])
        assert editor.new_type == "B"
        # 'z' undoes the retype, then the removal: column 5 is back
        _key(editor, "z", pos[6])
        assert editor.types[k] == "A"
        _key(editor, "z", pos[6])
        assert editor.n_columns == 16
        assert np.any(np.all(np.isclose(editor.positions, pos[5]), axis=1))
        # the file is the one `atomscount fit --positions` reads
        editor.save(tmp_path / "columns.csv")
        got, got_types = read_positions_csv(tmp_path / "columns.csv", "--positions")
        np.testing.assert_allclose(got, editor.positions, atol=1e-6)
        assert got_types == list(editor.types)
        assert sorted(map(tuple, np.round(got, 3))) == sorted(map(tuple, np.round(pos, 3)))
    finally:
        plt.close(editor.figure)


def test_clicks_outside_the_axes_and_while_zooming_do_nothing(lattice):
    pos, image = lattice
    editor = ColumnEditor(image, pos, refine=False)
    try:
        canvas = editor.figure.canvas
        event = MouseEvent("button_press_event", canvas, 1, 1, button=1)  # the figure's corner
        canvas.callbacks.process("button_press_event", event)
        assert editor.n_columns == 16

        class Zooming:
            mode = "zoom rect"

        canvas.toolbar = Zooming()
        _click(editor, pos[0])
        assert editor.n_columns == 16
        canvas.toolbar = None
        _click(editor, [2.0, 2.0])  # between columns, unrefined: exactly at the click
        np.testing.assert_allclose(editor.positions[-1], [2.0, 2.0], atol=1e-9)
        assert editor.undo() and not editor.undo()
    finally:
        plt.close(editor.figure)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="pixel_size_angstrom"):
        ColumnEditor(np.ones((8, 8)), [[1.0, 1.0]])
    with pytest.raises(ValueError, match="types must have one entry per column"):
        ColumnEditor(np.ones((8, 8)), [[1.0, 1.0]], ["A", "B"], pixel_size_angstrom=0.1)
    with pytest.raises(ValueError, match="type_names"):
        ColumnEditor(np.ones((8, 8)), [[1.0, 1.0]], ["C"], pixel_size_angstrom=0.1, type_names=("A",))


def test_element_types_take_their_element_colour(lattice):
    from matplotlib.colors import to_rgba

    from atomscount.style import element_color

    pos, image = lattice
    editor = ColumnEditor(image, pos[:2], ["Sr", "Ti"])
    try:
        edges = editor._scatter.get_edgecolors()
        np.testing.assert_allclose(edges[0], to_rgba(element_color("Sr")))
        np.testing.assert_allclose(edges[1], to_rgba(element_color("Ti")))
    finally:
        plt.close(editor.figure)


def test_a_fit_brings_its_positions_and_types(lattice):
    from atomscount.columns.fit import ColumnFit

    pos, image = lattice
    n = len(pos)
    ones = np.ones(n)
    fit = ColumnFit(positions=pos, positions_error=np.full((n, 2), 0.01), types=np.arange(n) % 2,
                    type_names=("Sr", "Ti"), heights=ones, heights_error=ones, widths=ones, widths_error=ones,
                    scs=ones, scs_error=ones, voronoi_scs=ones, background=np.zeros(3), background_error=np.zeros(3),
                    converged=ones.astype(bool), input_index=np.arange(n), reduced_chi2=1.0, n_iterations=1,
                    image_shape=(40, 40), pixel_size_angstrom=PIXEL)  # fmt: skip
    editor = ColumnEditor(image, fit)
    try:
        np.testing.assert_array_equal(editor.positions, pos)
        assert editor.types.tolist() == ["Sr", "Ti"] * 8 and editor.type_names == ("Sr", "Ti")
    finally:
        plt.close(editor.figure)
