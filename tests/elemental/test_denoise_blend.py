"""The network's guards for maps unlike its training: the mirrored frame margin and the blend with the Gaussian
filter chosen by thinning cross-validation."""

import numpy as np
import pytest

from atomscount.elemental import _net
from atomscount.elemental.denoise import denoise_edxs
from atomscount.elemental.shapes import HELD_OUT_SEED, training_maps


def _slab(rows=32, cols=96, peak=30.0, n=4, seed=0):
    """A sample that fills the frame's height (a crop, or a sinogram of a pillar): every row the same smooth
    profile, up to ``peak`` expected counts, cut by the top and bottom edges. (truth, Poisson counts)."""
    x = np.arange(cols)
    profile = peak * np.clip(1.0 - ((x - cols / 2) / (0.42 * cols)) ** 2, 0.0, None) ** 0.3
    truth = np.broadcast_to(profile, (n, rows, cols)).copy()
    return truth, np.random.default_rng(seed).poisson(truth).astype(np.float64)


def _mse(a, b):
    return float(np.mean((a - b) ** 2))


def test_the_mirrored_margin_mends_the_network_where_the_frame_cuts_the_sample():
    truth, noisy = _slab()
    bare = _net.predict(noisy, margin=0)[0]
    mirrored = _net.predict(noisy, margin=_net.FRAME_MARGIN)[0]
    edge = (slice(None), [0, -1])
    mid = (slice(None), slice(8, 24))
    # without the margin the network takes the cut for a particle's edge: errors of ~100 counts² there
    assert _mse(bare[edge], truth[edge]) > 20 * _mse(mirrored[edge], truth[edge])
    assert _mse(mirrored[edge], truth[edge]) < 4 * _mse(mirrored[mid], truth[mid])
    with pytest.raises(ValueError, match="margin must be a whole number"):
        _net.predict(noisy, margin=-1)


def test_blend_zero_is_the_gaussian_filter_and_one_the_network_alone():
    truth, noisy = _slab(n=2)
    gauss = denoise_edxs(noisy, method="gaussian")
    zero = denoise_edxs(noisy, blend=0.0)
    np.testing.assert_allclose(zero.maps, gauss.maps, atol=1e-12)
    np.testing.assert_allclose(zero.sigma, gauss.sigma, atol=1e-12)
    one = denoise_edxs(noisy, blend=1.0)
    np.testing.assert_allclose(one.maps, np.maximum(_net.predict(noisy, margin=_net.FRAME_MARGIN)[0], 0.0))
    assert one.parameters["blend"] == {"network_weight": 1.0, "auto": False, "cv_maps_per_group": 0, "weight_se": 0.0}
    for bad, err in (("best", ValueError), (1.5, ValueError), (-0.1, ValueError), (None, TypeError)):
        with pytest.raises(err, match="blend"):
            denoise_edxs(noisy, blend=bad)


@pytest.mark.parametrize("case", ["slab", "particles"])
def test_the_automatic_blend_is_as_good_as_the_better_of_network_and_gaussian(case):
    if case == "slab":  # unlike the training: the sample fills the frame, at 30 counts
        truth, noisy = _slab()
    else:  # like it: held-out particles at 3 counts per pixel
        data = training_maps(HELD_OUT_SEED + 5, 6, size=48, dose_range=(3.0, 3.0), absent_fraction=0.0)
        truth, noisy = data["clean"], data["noisy"]
    auto = denoise_edxs(noisy)
    net, gauss = denoise_edxs(noisy, blend=1.0).maps, denoise_edxs(noisy, method="gaussian").maps
    w = auto.parameters["blend"]["network_weight"]
    assert auto.parameters["blend"]["auto"] and 0.0 < w <= 1.0
    # the weight comes from the maps alone (no truth), and lands within 2 % of the better method or below it
    assert _mse(auto.maps, truth) < 1.02 * min(_mse(net, truth), _mse(gauss, truth))
    assert _mse(auto.maps, truth) < 0.9 * _mse(gauss, truth)
    # one input always gives one result (the thinning is seeded by the counts)
    np.testing.assert_array_equal(denoise_edxs(noisy).maps, auto.maps)


def test_each_element_gets_its_own_blend_weight_independent_of_the_others():
    truth, noisy = _slab(n=2)
    faint = np.random.default_rng(4).poisson(truth / 30.0).astype(np.float64)
    both = denoise_edxs({"Al": noisy, "Yb": faint}, joint=False)
    assert len(both.parameters["blend"]["network_weight"]) == 2
    np.testing.assert_allclose(both["Al"], denoise_edxs(noisy).maps)
    np.testing.assert_allclose(both["Yb"], denoise_edxs(faint).maps)
    joint = denoise_edxs({"Al": noisy, "Yb": faint})
    assert joint.parameters["network"] == "joint" and len(joint.parameters["blend"]["network_weight"]) == 2


def _disk(size=48, centre=(24.0, 24.0), radius=12.0, peak=10.0):
    """The projection of a sphere: expected counts, up to ``peak``."""
    y, x = np.mgrid[:size, :size]
    return peak * np.sqrt(np.clip(1 - ((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / radius**2, 0, None))


@pytest.mark.parametrize("peak", [1.0, 3.0, 30.0])
def test_only_the_edges_the_sample_crosses_are_mirrored(peak):
    rng = np.random.default_rng(int(peak))
    cut = rng.poisson(_disk(centre=(24.0, 4.0), peak=peak))  # cut by the left edge
    alone = rng.poisson(_disk(peak=peak))  # inside the frame
    near = rng.poisson(_disk(centre=(24.0, 15.0), peak=peak))  # 3 px short of the left edge
    edges = _net.frame_edges(np.stack([cut, alone, near]).astype(float))
    assert edges.tolist() == [[False, False, True, False], [False] * 4, [False] * 4]
    # a crop inside the sample (no background) is crossed on every edge; an empty map on none
    flat = rng.poisson(np.full((1, 32, 32), peak)).astype(float)
    assert _net.frame_edges(flat).tolist() == [[True] * 4]
    assert _net.frame_edges(np.zeros((1, 16, 16))).tolist() == [[False] * 4]


def test_the_margin_mirrors_crossed_edges_and_fills_the_others_with_the_background():
    maps = np.random.default_rng(3).poisson(2.0, size=(1, 20, 24)).astype(np.float32)
    out = _net.pad_frame(maps, 8, 16, [True, False, False, True], [1.5])
    assert out.shape == (1, 48, 48)
    np.testing.assert_array_equal(out[0, 8:28, 8:32], maps[0])
    np.testing.assert_array_equal(out[0, :8, 8:32], maps[0, 8:0:-1])  # top: mirrored
    np.testing.assert_array_equal(out[0, 8:28, 32:], np.pad(maps[0], ((0, 0), (0, 16)), mode="reflect")[:, 24:])
    assert np.all(out[0, 28:] == 1.5) and np.all(out[0, :, :8] == 1.5)  # bottom and left: the background
    np.testing.assert_allclose(_net.background_level(np.pad(maps, ((0, 0), (0, 0), (0, 30)))), [0.0])


def test_the_frame_decision_turns_with_the_map_and_is_the_projections_for_the_joint_network():
    rng = np.random.default_rng(5)
    slab = rng.poisson(_disk(centre=(24.0, 4.0), peak=30.0)[None] * np.ones((8, 1, 1)))
    for k in range(8):  # each flip and quarter turn of test-time augmentation moves the decision with the map
        turned = _net._turn(slab.astype(float), k)
        np.testing.assert_array_equal(_net.frame_edges(turned), _net._turn_edges(_net.frame_edges(slab), k))
    # a faint element beside a bright one that crosses the left edge: the joint network mirrors both maps' left
    # edges (one decision for the projection, on the total), the single-map network the bright map's only
    faint = rng.poisson(_disk(radius=6.0, peak=2.0)[None]).astype(float)
    maps = {"Au": slab[:1].astype(float), "Ag": faint}
    left = {"top": 0, "bottom": 0, "left": 2, "right": 0}
    assert denoise_edxs(maps, blend=1.0).parameters["frame"] == {"margin_px": 8, "maps": 2, "mirrored": left}
    assert denoise_edxs(maps, blend=1.0, joint=False).parameters["frame"]["mirrored"]["left"] == 1
    with pytest.raises(ValueError, match="mirror must be booleans"):
        _net.predict(faint, margin=8, mirror=[1, 0])
