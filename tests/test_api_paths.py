"""Old import paths keep working and name the same objects as the stage modules that now hold them."""

import importlib

import pytest

MOVED = {
    # old module: (new module, names)
    "atomscount.plot": [
        ("atomscount.columns.plot", ["plot_columns", "plot_model_residual", "plot_scs_map", "plot_scs_histogram",
                                     "save_fit_figures", "save_detection_figure", "residual_summary",
                                     "scs_bin_edges"]),
        ("atomscount.library.plot", ["plot_scs_library", "plot_mixed_predictions"]),
        ("atomscount.counting.plot", ["plot_count_histogram", "plot_icl", "plot_count_map",
                                      "plot_count_probability_map", "plot_model_3d", "save_count_figures"]),
    ],
    "atomscount.counting.counts": [
        ("atomscount.counting.result", ["ColumnCounts"]),
        ("atomscount.counting.library_match", ["count_by_library", "check_library_settings"]),
        ("atomscount.counting.hybrid", ["count_hybrid"]),
    ],
    "atomscount.cli": [("atomscount.cli.main", ["main", "run"])],
    "atomscount.coreshell": [("atomscount.coreshell.search", ["search_core_shell"])],
    "atomscount": [("atomscount.coreshell", ["search_core_shell"]), ("atomscount.counting", ["count_atoms"]),
                   ("atomscount.tomo", ["simulate_tilt_series", "reconstruct", "trace_atoms", "classify_atoms"])],
}  # fmt: skip


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_name_the_moved_objects(old):
    old_mod = importlib.import_module(old)
    for new, names in MOVED[old]:
        new_mod = importlib.import_module(new)
        for name in names:
            assert getattr(old_mod, name) is getattr(new_mod, name), (old, new, name)


@pytest.mark.parametrize(
    "stage", ["columns", "library", "counting", "coreshell", "tomo", "lattice", "elemental", "ltem"]
)
def test_every_name_in_a_stage_all_exists(stage):
    mod = importlib.import_module(f"atomscount.{stage}")
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


def test_the_api_page_documents_every_stage_name_and_nothing_missing():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "api.rst").read_text()
    listed = re.findall(r"^\s+(atomscount\.[\w.]+)\s*$", page, re.M)
    for dotted in listed:  # every documented name resolves
        mod, _, attr = dotted.rpartition(".")
        assert hasattr(importlib.import_module(mod), attr), dotted
    stages = ("columns", "library", "counting", "coreshell", "tomo", "lattice", "elemental", "ltem")
    for stage in stages:  # every exported name documented
        names = importlib.import_module(f"atomscount.{stage}").__all__
        undocumented = [n for n in names if not any(d.startswith(f"atomscount.{stage}.") and d.endswith(f".{n}")
                                                    for d in listed) and f"atomscount.{n}" not in listed]  # fmt: skip
        assert undocumented == [], stage
