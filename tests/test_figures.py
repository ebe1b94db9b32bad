"""Every figure function of the package, drawn on small synthetic inputs and checked from the figure
objects: no text off the canvas, no legend over the data, a scale bar and a labelled colour bar on every
image, one colour per element in every stage, and the formats and resolutions files are written in."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ase import Atoms  # noqa: E402
from matplotlib.colors import same_color, to_hex  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib_scalebar.scalebar import ScaleBar  # noqa: E402

from atomscount import HAADFImage, fit_columns  # noqa: E402
from atomscount._figures import legends_over_data, text_off_canvas, texts_overlapping, write_figures  # noqa: E402
from atomscount.columns import plot as cplot  # noqa: E402
from atomscount.columns.fit import ColumnFit, save_fit  # noqa: E402
from atomscount.columns.model import ColumnModel, add_poisson_noise  # noqa: E402
from atomscount.coreshell import plot as csplot  # noqa: E402
from atomscount.coreshell.forward import CORE  # noqa: E402
from atomscount.coreshell.model import CoreShellModel  # noqa: E402
from atomscount.coreshell.search import core_codes  # noqa: E402
from atomscount.coreshell.sites import fcc_sites, group_columns  # noqa: E402
from atomscount.counting import count_atoms  # noqa: E402
from atomscount.counting import plot as kplot  # noqa: E402
from atomscount.elemental import plot as eplot  # noqa: E402
from atomscount.elemental.result import ElementalVolumes  # noqa: E402
from atomscount.lattice import plot as latplot  # noqa: E402
from atomscount.lattice.polarisation import polarisation_map  # noqa: E402
from atomscount.lattice.strain import strain_map  # noqa: E402
from atomscount.library import MixedColumns, load_default, load_default_lensing  # noqa: E402
from atomscount.library import plot as lplot  # noqa: E402
from atomscount.ltem import plot as ltplot  # noqa: E402
from atomscount.style import ELEMENT_COLORS, class_color, element_color, figure_style  # noqa: E402
from atomscount.tomo import plot as tplot  # noqa: E402
from atomscount.tomo.reconstruct import Volume  # noqa: E402
from atomscount.tomo.trace import TracedAtoms  # noqa: E402

PIXEL = 0.2


def _lattice(n_rows=3, n_cols=4, seed=0):
    rng = np.random.default_rng(seed)
    pos = np.array([(1.0 + 2.0 * i, 1.0 + 2.0 * j) for j in range(n_rows) for i in range(n_cols)])
    atoms = rng.integers(1, 4, len(pos))
    shape = (round(n_rows * 2.0 / PIXEL), round(n_cols * 2.0 / PIXEL))
    truth = ColumnModel(shape, PIXEL, pos, heights=0.05 * atoms, widths=np.full(len(pos), 0.45), background=(0.01,))
    data = add_poisson_noise(truth.image(), dose_e_per_angstrom2=1e5, pixel_size_angstrom=PIXEL, rng=seed)
    img = HAADFImage(data, PIXEL, {"normalised": True})
    return img, fit_columns(img, pos)


@pytest.fixture(scope="module")
def columns():
    img, fit = _lattice()
    counts = count_atoms(fit.scs, max_components=3, rng=0)
    return img, fit, counts


def _traced(names=("non-atom", "Fe", "Pt"), n=60, seed=1):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-5.0, 5.0, (n, 3))
    labels = rng.integers(0, len(names), n)
    box = 10.0 ** (labels + rng.normal(0, 0.05, n))
    return TracedAtoms(pos, box, box, np.ones(n), np.ones((n, 27)), 0.5, labels=labels, class_names=names)


def _volume(seed=2):
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[-10:10, -10:10, -10:10] * 0.5
    data = np.zeros(z.shape)
    for c in rng.uniform(-3.5, 3.5, (25, 3)):
        data += np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / 0.5)
    return Volume(data, 0.5, np.linspace(0.4, 0.1, 5))


def _elemental(n=20, seed=5):
    """An Au@Ag sphere of concentrations with a diffuse interface, its uncertainty and an objective."""
    from scipy.special import erfc

    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n] - (n - 1) / 2.0
    r = np.sqrt(x**2 + y**2 + z**2)
    mask = r <= 0.4 * n
    au = 0.5 * erfc((r - 0.2 * n) / 1.5) * mask
    conc = np.clip(np.stack([au, mask - au]) + rng.normal(0, 0.03, (2, n, n, n)) * mask, 0.0, 1.0)
    return ElementalVolumes(("Au", "Ag"), conc, np.full(conc.shape, 0.05) * mask, None, mask,
                            np.zeros(mask.shape, np.uint8), 0.75, "multimodal-tnv",
                            objective=np.geomspace(100.0, 1.0, 40), converged=True)  # fmt: skip


def _denoised():
    """Noisy Au and Ag maps of a core-shell disc (expected counts as truth), denoised by the Gaussian filter."""
    from atomscount.elemental.denoise import denoise_edxs

    y, x = np.mgrid[:32, :32] - 15.5
    r = np.hypot(x, y)
    truth = {"Au": 3.0 * (r < 6), "Ag": 3.0 * ((r >= 6) & (r < 11))}
    noisy = {e: np.random.default_rng(7).poisson(t) for e, t in truth.items()}
    return noisy, denoise_edxs(noisy, method="gaussian"), truth


def _coreshell():
    pos = fcc_sites(4.08, 7.0)
    pos = pos[np.linalg.norm(pos, axis=1) <= 6.5]
    core = core_codes(pos, [0.0, 0.0, 0.0], [3.5, 3.5, 3.5]) == CORE
    prob = np.where(core, 0.97, 0.02)
    prob[:5] = 0.5
    cols = group_columns(pos)
    return CoreShellModel(Atoms(["Au" if c else "Ag" for c in core], positions=pos), prob,
                          {"shape": "sphere", "centre": [0, 0, 0], "radii": [3.5] * 3, "centroid": [0.0, 0.0, 0.0]},
                          [1.0], [cols.n_columns], [np.zeros(cols.n_columns)], [np.zeros(cols.n_columns)], "Au", "Ag",
                          ("001",))  # fmt: skip


def _mixed():
    lens = load_default_lensing("Au", "Ag", "001")
    rng = np.random.default_rng(3)
    seqs = rng.choice(["Au", "Ag"], (12, 6))
    scs = np.array([[lens.predict([tuple(s[: k + 1])])[0] for k in range(6)] for s in seqs])
    scs *= 1 + rng.normal(0, 0.02, scs.shape)
    return lens, MixedColumns(seqs, scs, np.zeros_like(scs), {}, np.zeros(1, dtype=np.uint64))


def _perovskite():
    """Sr and Ti columns of a perovskite with a strain gradient and Ti shifted either side of the middle."""
    ij = np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(-1, 2) * 4.0 + 2.0
    a_pos = ij + np.column_stack([0.0004 * (ij[:, 0] - 12) ** 2, np.zeros(len(ij))])
    b_pos = ij + 2.0 + np.where(ij[:, :1] > 12, [0.1, 0.0], [-0.1, 0.0])
    pos = np.vstack([a_pos, b_pos])
    types = ["Sr"] * len(ij) + ["Ti"] * len(ij)
    img = ColumnModel((100, 100), 0.25, pos, heights=np.r_[np.ones(len(ij)), 0.6 * np.ones(len(ij))], widths=0.5,
                      background=(0.01,)).image()  # fmt: skip
    strain = strain_map(pos, types=types, positions_error=np.full(pos.shape, 0.01))
    return strain, polarisation_map(pos, "Sr", "Ti", types=types), HAADFImage(img, 0.25)


def _ltem():
    """A Gaussian phase bump on 32² pixels of 2 nm, its three Fresnel images, and a result with a loss."""
    from atomscount.ltem import LTEMSeries, PhaseRetrieval, fresnel_image

    y, x = np.mgrid[-16:16, -16:16] * 2.0
    phase = 0.5 * np.exp(-(x**2 + y**2) / 200.0)
    images = np.asarray(fresnel_image(phase, pixel_nm=2.0, defocus_nm=np.array([-1e4, 0.0, 1e4]), beam_energy_ev=3e5))
    series = LTEMSeries(np.random.default_rng(6).poisson(100 * images), [-1e4, 0.0, 1e4], pixel_nm=2.0)
    result = PhaseRetrieval(phase, np.ones_like(phase), 2.0, method="ad", loss_history=np.geomspace(3, 1, 20),
                            uncertainty=np.full(phase.shape, 0.05))  # fmt: skip
    return series, result


def _makers(columns):
    """Name -> function drawing one figure: every figure function of the package."""
    img, fit, counts = columns
    traced, volume, shell, elemental = _traced(), _volume(), _coreshell(), _elemental()
    lens, mixed = _mixed()
    strain, polar, perovskite = _perovskite()
    ltem_series, ltem_result = _ltem()
    noisy, denoised, clean = _denoised()
    meas = np.linspace(1.0, 3.0, 12)
    model3d = Atoms(["Fe", "Pt"] * 10, positions=np.random.default_rng(4).uniform(0, 8, (20, 3)))
    return {
        "columns": lambda: cplot.plot_columns(img, fit),
        "model_residual": lambda: cplot.plot_model_residual(img, fit, dose_e_per_angstrom2=1e5),
        "scs_map": lambda: cplot.plot_scs_map(fit, image=img),
        "scs_map_model": lambda: cplot.plot_scs_map(fit),
        "scs_histogram": lambda: cplot.plot_scs_histogram(fit),
        "detection": lambda: cplot.plot_detection(img, fit.positions),
        "count_histogram": lambda: kplot.plot_count_histogram(counts, scs_unit=fit.scs_unit),
        "icl": lambda: kplot.plot_icl(counts),
        "count_map": lambda: kplot.plot_count_map(fit, counts, image=img),
        "count_map_positions": lambda: kplot.plot_count_map(fit.positions, counts),
        "count_probability": lambda: kplot.plot_count_probability_map(fit, counts, image=img),
        "model_3d": lambda: kplot.plot_model_3d(model3d),
        "scs_library": lambda: lplot.plot_scs_library(load_default("Au", "001")),
        "mixed_predictions": lambda: lplot.plot_mixed_predictions({"lensing": lens}, mixed),
        "scs_agreement": lambda: csplot.plot_scs_agreement(meas, np.full(12, 0.05), meas * 1.02, title="[001]"),
        "slice_elements": lambda: csplot.plot_slice(shell),
        "slice_probability": lambda: csplot.plot_slice(shell, color_by="probability"),
        "slice_gallery": lambda: csplot.plot_slice_gallery(shell),
        "core_counts": lambda: csplot.plot_core_count_map(shell, 0),
        "orthoslices": lambda: tplot.plot_orthoslices(volume, traced),
        "volume_gallery": lambda: tplot.plot_volume_gallery(volume, traced),
        "intensity_histogram": lambda: tplot.plot_intensity_histogram(traced),
        "r1": lambda: tplot.plot_r1(volume),
        "pair_distribution": lambda: tplot.plot_pair_distribution(traced),
        "bond_order": lambda: tplot.plot_bond_order(traced),
        "strain_map": lambda: latplot.plot_strain_map(strain, image=perovskite),
        "strain_maps": lambda: latplot.plot_strain_maps(strain, image=perovskite),
        "displacement_map": lambda: latplot.plot_displacement_map(strain, image=perovskite),
        "polarisation_map": lambda: latplot.plot_polarisation_map(polar, image=perovskite),
        "elemental_orthoslices": lambda: eplot.plot_orthoslices(elemental),
        "rgb_composite": lambda: eplot.plot_rgb_composite(elemental),
        "line_profile": lambda: eplot.plot_line_profile(elemental, truth={"Au": elemental.concentration[0]}),
        "composition_histogram": lambda: eplot.plot_composition_histogram(elemental),
        "convergence": lambda: eplot.plot_convergence(elemental),
        "denoised": lambda: eplot.plot_denoised(noisy, denoised, truth=clean, pixel_size_angstrom=2.0),
        "ltem_images_model": lambda: ltplot.plot_images_model(ltem_series, ltem_result),
        "ltem_phase": lambda: ltplot.plot_phase(ltem_result),
        "ltem_induction": lambda: ltplot.plot_induction(ltem_result),
        "ltem_loss": lambda: ltplot.plot_loss(ltem_result),
    }


@pytest.fixture(scope="module")
def figures(columns):
    with plt.rc_context({"figure.max_open_warning": 0}):  # all 39 at once, to check them side by side
        figs = {name: make() for name, make in _makers(columns).items()}
    yield figs
    for fig in figs.values():
        plt.close(fig)


def test_every_figure_function_is_drawn(figures):
    stages = (cplot, kplot, lplot, csplot, tplot, latplot, eplot, ltplot)
    public = {n for mod in stages for n in mod.__all__ if n.startswith("plot_")}
    drawn = {"plot_columns", "plot_model_residual", "plot_scs_map", "plot_scs_histogram", "plot_detection",
             "plot_count_histogram", "plot_icl", "plot_count_map", "plot_count_probability_map", "plot_model_3d",
             "plot_scs_library", "plot_mixed_predictions", "plot_scs_agreement", "plot_slice", "plot_slice_gallery",
             "plot_core_count_map", "plot_orthoslices", "plot_volume_gallery", "plot_intensity_histogram", "plot_r1",
             "plot_pair_distribution", "plot_bond_order", "plot_strain_map", "plot_strain_maps",
             "plot_displacement_map", "plot_polarisation_map", "plot_rgb_composite", "plot_line_profile",
             "plot_composition_histogram", "plot_convergence", "plot_denoised", "plot_images_model", "plot_phase",
             "plot_induction", "plot_loss"}  # fmt: skip
    assert public == drawn  # a new figure function is added to _makers too
    assert len(figures) == 39


def test_no_text_leaves_the_canvas(figures):
    off = {name: text_off_canvas(fig) for name, fig in figures.items()}
    assert {k: v for k, v in off.items() if v} == {}


def test_no_texts_overlap(figures):
    over = {name: texts_overlapping(fig) for name, fig in figures.items()}
    assert {k: v for k, v in over.items() if v} == {}


@pytest.mark.parametrize("n_rows, n_cols", [(1, 8), (8, 1)])
def test_maps_of_long_narrow_images_keep_their_text_on_the_canvas(n_rows, n_cols):
    img, fit = _lattice(n_rows, n_cols)
    counts = count_atoms(fit.scs, max_components=2, rng=0)
    makers = _makers((img, fit, counts))
    for name in ("columns", "model_residual", "scs_map", "scs_map_model", "detection", "count_map",
                 "count_probability"):  # fmt: skip
        fig = makers[name]()
        assert (text_off_canvas(fig), texts_overlapping(fig), legends_over_data(fig)) == (0, 0, 0), name
        plt.close(fig)


def test_text_off_canvas_counts_a_clipped_title():
    fig, ax = plt.subplots(figsize=(2, 2), layout="constrained")
    ax.set_title("a title much too long for a canvas two inches wide")
    ax.set_xlabel("x (Å)")
    assert text_off_canvas(fig) == 1
    plt.close(fig)


def test_no_legend_covers_the_data(figures):
    over = {name: legends_over_data(fig) for name, fig in figures.items()}
    assert {k: v for k, v in over.items() if v} == {}


def test_legends_over_data_finds_a_legend_on_points():
    fig, ax = plt.subplots(figsize=(3, 3))
    x = np.linspace(0, 1, 50)
    ax.plot(x, x, "o", label="points")
    ax.plot(x, 1 - x, "o", label="more points")
    ax.legend(loc="center")  # where the two lines cross
    assert legends_over_data(fig) == 1
    plt.close(fig)


def _colorbars(fig):
    return [a.colorbar for ax in fig.axes for a in ax.images + ax.collections if getattr(a, "colorbar", None)]


def _image_axes(fig):
    return [ax for ax in fig.axes if any(isinstance(a, AxesImage) for a in ax.get_children())]


def test_every_image_has_a_scale_bar_and_a_labelled_colour_bar(figures):
    n = 0
    for name, fig in figures.items():
        for ax in _image_axes(fig):
            n += 1
            assert any(isinstance(a, ScaleBar) for a in ax.artists), name
            # a colour bar of this axes' image or scatter, or one that shares its colour scale
            norms = [a.norm for a in ax.images + ax.collections if hasattr(a, "norm")]
            # a horizontal colour bar (beneath its panels) carries its label on its x axis
            labels = [cb.ax.get_ylabel() or cb.ax.get_xlabel() for cb in _colorbars(fig)
                      if any(cb.mappable.norm is n for n in norms)]  # fmt: skip
            assert any("(" in lab and lab.endswith(")") for lab in labels), (name, labels)
    assert n >= 20  # orthoslices 3, gallery 9, model/residual 3, maps ...


def test_counts_have_a_discrete_colour_bar(figures, columns):
    from matplotlib.colors import BoundaryNorm

    for name in ("count_map", "count_map_positions", "core_counts"):
        sc = figures[name].axes[0].collections[0]
        assert isinstance(sc.norm, BoundaryNorm), name
        ticks = sc.colorbar.get_ticks()
        np.testing.assert_array_equal(ticks, np.round(ticks))
        assert sc.cmap.N == sc.norm.Ncmap  # one colour per count
    _, _, counts = columns
    c = np.asarray(counts.counts).ravel()
    assert figures["count_map"].axes[0].collections[0].norm.Ncmap == c.max() - c.min() + 1


def test_counts_on_columns_are_legible(figures):
    texts = [t for t in figures["count_map"].axes[0].texts if t.get_text().strip()]
    assert texts and min(t.get_fontsize() for t in texts) >= 7


def _colours_of(fig, label_start):
    """Colours of the artists whose label starts with ``label_start``: a line's colour, a scatter's or a bar's
    face colour (its edge colour where it has no face)."""
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out = []
    for ax in fig.axes:
        for art in ax.get_children():
            label = art.get_label()
            if not (isinstance(label, str) and label.startswith(label_start)):
                continue
            if isinstance(art, Line2D):
                out.append(to_hex(art.get_color()))
            elif isinstance(art, Collection | Patch):
                fc = np.atleast_2d(art.get_facecolor())
                colour = fc[0] if len(fc) and fc[0][3] > 0 else np.atleast_2d(art.get_edgecolor())[0]
                out.append(to_hex(colour))
    for legend in fig.legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            if text.get_text().startswith(label_start) and isinstance(handle, Line2D):
                out.append(to_hex(handle.get_markerfacecolor() if handle.get_markerfacecolor() != "none"
                                  else handle.get_markeredgecolor()))  # fmt: skip
    return out


def test_an_element_has_one_colour_in_every_stage(figures):
    fe, pt = element_color("Fe"), element_color("Pt")
    assert fe != pt and class_color("non-atom") not in (fe, pt)
    for name in ("model_3d", "intensity_histogram", "bond_order"):
        assert set(_colours_of(figures[name], "Fe")) == {fe}, name
        assert set(_colours_of(figures[name], "Pt")) == {pt}, name
    assert set(_colours_of(figures["pair_distribution"], "Fe–Fe")) == {fe}
    ortho = [c for ax in figures["orthoslices"].axes for c in ax.collections if c.get_label() in ("Fe", "Pt")]
    assert ortho and all(same_color(c.get_edgecolor()[0], element_color(c.get_label())) for c in ortho)
    for name in ("slice_elements", "slice_gallery", "line_profile", "composition_histogram"):
        assert set(_colours_of(figures[name], "Au")) == {element_color("Au")}, name
        assert set(_colours_of(figures[name], "Ag")) == {element_color("Ag")}, name


def test_element_colours_are_distinct_and_unknown_symbols_refused():
    assert len(set(ELEMENT_COLORS.values())) == len(ELEMENT_COLORS)
    assert element_color("Zr").startswith("#") and len(element_color("Zr")) == 7
    with pytest.raises(ValueError, match="symbol"):
        element_color("non-atom")


def test_the_style_is_applied_inside_figure_functions_only(figures):
    before = dict(plt.rcParams)
    fig = figures["scs_histogram"]
    assert fig.get_size_inches()[0] == pytest.approx(3.5)
    assert fig.axes[0].xaxis.label.get_fontsize() == 8
    assert min(t.get_fontsize() for f in figures.values() for t in f.findobj(matplotlib.text.Text)
               if t.get_text().strip()) >= 7  # fmt: skip
    assert max(f.get_size_inches()[0] for f in figures.values()) <= 7.0 + 1e-9
    assert dict(plt.rcParams) == before
    with figure_style():
        assert plt.rcParams["savefig.dpi"] == 300
    assert plt.rcParams["savefig.dpi"] != 300


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_write_figures_writes_each_format(tmp_path, fmt, magic):
    def make():
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1])
        return fig

    n_open = len(plt.get_fignums())
    paths = write_figures({"a": make}, tmp_path, fmt=fmt, dpi=50)
    assert paths["a"] == tmp_path / f"a.{fmt}" and paths["a"].read_bytes()[:5].startswith(magic)
    assert len(plt.get_fignums()) == n_open


def test_write_figures_resolution(tmp_path):
    from PIL import Image

    def make():
        return plt.figure(figsize=(1.0, 0.5))

    with Image.open(write_figures({"d": make}, tmp_path)["d"]) as im:
        assert im.size == (300, 150)  # the style's 300 dpi
    with Image.open(write_figures({"d": make}, tmp_path, dpi=100)["d"]) as im:
        assert im.size == (100, 50)


@pytest.mark.parametrize("kw, match", [({"fmt": "jpg"}, "fmt"), ({"fmt": None}, "fmt"), ({"dpi": 0}, "dpi"),
                                       ({"dpi": float("nan")}, "dpi"), ({"dpi": "high"}, "dpi"),
                                       ({"dpi": 1e5}, "dpi")])  # fmt: skip
def test_write_figures_refuses_bad_options(tmp_path, kw, match):
    n_open = len(plt.get_fignums())
    with pytest.raises(ValueError, match=match):
        write_figures({"a": plt.figure}, tmp_path, **kw)
    assert not list(tmp_path.iterdir()) and len(plt.get_fignums()) == n_open


def _save(stage, columns, out):
    img, fit, counts = columns
    if stage == "columns":
        return cplot.save_fit_figures(img, fit, out, fmt="svg", dpi=50), ".svg"
    if stage == "detection":
        path = cplot.save_detection_figure(img, fit.positions, out / "detection.png", fmt="pdf", dpi=50)
        return {"detection": path}, ".pdf"
    if stage == "counting":
        return kplot.save_count_figures(fit, counts, out, fmt="pdf", dpi=50), ".pdf"
    if stage == "tomo":
        return tplot.save_tomo_figures(out, volume=_volume(), fmt="svg", dpi=50), ".svg"
    if stage == "elemental":
        return eplot.save_elemental_figures(_elemental(), out, fmt="pdf", dpi=50), ".pdf"
    return csplot.save_coreshell_figures(_coreshell(), out, fmt="pdf", dpi=50), ".pdf"


@pytest.mark.parametrize("stage", ["columns", "detection", "counting", "tomo", "coreshell", "elemental"])
def test_save_functions_pass_the_format_through(columns, tmp_path, stage):
    n_open = len(plt.get_fignums())
    paths, suffix = _save(stage, columns, tmp_path)
    assert paths and {p.suffix for p in paths.values()} == {suffix}
    assert sorted(tmp_path.iterdir()) == sorted(paths.values())
    assert len(plt.get_fignums()) == n_open
    if stage in ("tomo", "coreshell"):
        assert "slices_z" in paths  # a gallery of slices through the 3D model


def test_maps_from_fit_h5_alone_are_drawn_over_the_data(columns, tmp_path):
    img, fit, counts = columns
    save_fit(fit, tmp_path, image=img)
    back = ColumnFit.from_hdf5(tmp_path / "fit.h5")
    fig = kplot.plot_count_map(back, counts)
    ax = fig.axes[0]
    assert ax.get_title().endswith("over the image")
    np.testing.assert_allclose(ax.images[0].get_array(), img.data, atol=1e-12)
    plt.close(fig)
    save_fit(fit, tmp_path)  # without the image: the model, as the title says
    fig = kplot.plot_count_map(ColumnFit.from_hdf5(tmp_path / "fit.h5"), counts)
    assert fig.axes[0].get_title().endswith("over the fitted model")
    plt.close(fig)
    with pytest.raises(ValueError, match="image must have the fit's shape"):
        save_fit(fit, tmp_path, image=img.data[:-1])
    single = img.data.astype(np.float32)  # a float32 image keeps a float32 residual: half the file
    save_fit(fit, tmp_path, image=single)
    back = ColumnFit.from_hdf5(tmp_path / "fit.h5")
    assert back.residual.dtype == np.float32
    np.testing.assert_allclose(back.model().image() + back.residual, single, rtol=0, atol=1e-6)
