"""The Lorentz TEM forward model against analytic cases."""

import numpy as np
import pytest

from atomscount.ltem import (
    electrostatic_phase,
    fresnel_image,
    interaction_constant,
    magnetic_phase,
    simulate_series,
    skyrmion_lattice,
    transfer_function,
    wavelength_nm,
)

N = 64


def test_wavelength_and_interaction_constant_at_300_and_200_kv():
    # tabulated: λ(300 kV) = 1.9687 pm, λ(200 kV) = 2.5079 pm; σ(300 kV) = 6.526e-3 rad/(V nm)
    assert wavelength_nm(300e3) == pytest.approx(1.96875e-3, rel=1e-4)
    assert wavelength_nm(200e3) == pytest.approx(2.50793e-3, rel=1e-4)
    assert interaction_constant(300e3) == pytest.approx(6.5262e-3, rel=1e-3)
    assert interaction_constant(200e3) == pytest.approx(7.2884e-3, rel=1e-3)
    # a 50 nm film of 20 V: σ V t
    assert electrostatic_phase(np.full((4, 4), 50.0), mean_inner_potential_v=20, beam_energy_ev=300e3)[0, 0] == (
        pytest.approx(50 * 20 * interaction_constant(300e3))
    )


def test_a_uniform_phase_ramp_shifts_the_image_by_lambda_defocus_g():
    px = 1.0
    y, x = np.mgrid[0:N, 0:N] * px
    amplitude = 1 - 0.5 * np.exp(-((x - 20) ** 2 + (y - 30) ** 2) / (2 * 3.0**2))
    g = 4 / (N * px)  # cycles per nm: a ramp of 4 turns over the field
    shift_px = 8
    df = shift_px * px / (wavelength_nm(300e3) * g)
    ramp = 2 * np.pi * g * x
    still = np.asarray(fresnel_image(np.zeros((N, N)), amplitude, pixel_nm=px, defocus_nm=df, beam_energy_ev=300e3))
    moved = np.asarray(fresnel_image(ramp, amplitude, pixel_nm=px, defocus_nm=df, beam_energy_ev=300e3))
    np.testing.assert_allclose(moved, np.roll(still, shift_px, axis=1), atol=2e-5)
    assert not np.allclose(moved, still, atol=1e-2)


@pytest.mark.parametrize("defocus_nm", [-3e5, 1e5, 4e5])
def test_weak_phase_contrast_follows_minus_2_im_h_equal_2_sin_chi_times_envelope(defocus_nm):
    px, eps = 2.0, 1e-3
    x = np.arange(N) * px
    k0 = 5 / (N * px)
    phase = eps * np.cos(2 * np.pi * k0 * x)[None, :] * np.ones((N, 1))
    opts = {"defocus_nm": defocus_nm, "cs_nm": 1e6, "beam_energy_ev": 200e3, "divergence_rad": 2e-6,
            "defocus_spread_nm": 500.0}  # fmt: skip
    image = np.asarray(fresnel_image(phase, pixel_nm=px, **opts), dtype=np.float64)
    contrast = np.fft.fft2(image - 1)[0, 5].real / (N * N / 2)  # the cosine's coefficient
    h = transfer_function((N, N), px, **opts)[0, 5]
    lam = wavelength_nm(200e3)
    chi = np.pi * lam * defocus_nm * k0**2 + 0.5 * np.pi * 1e6 * lam**3 * k0**4
    assert -2 * h.imag == pytest.approx(2 * np.sin(chi) * abs(h), rel=1e-9)
    assert contrast == pytest.approx(-2 * eps * h.imag, rel=2e-2, abs=2e-6)
    assert abs(h) < 1  # the envelopes damp it


def test_induction_of_the_magnetic_phase_gives_back_mu0_ms_t_m_for_a_bloch_lattice():
    from atomscount.ltem import induction_map

    s = skyrmion_lattice("bloch", shape=(N, N), pixel_nm=2.0, thickness_nm=50, ms_a_per_m=4e5)
    bx, by = induction_map(s.magnetic_phase(), s.pixel_nm)
    scale = 4e-7 * np.pi * 4e5 * 50  # μ0 Ms t [T nm]
    error = np.hypot(bx - scale * s.mx, by - scale * s.my) / scale
    assert np.median(error) < 0.015 and np.percentile(error, 90) < 0.05  # central differences of a sampled texture


def test_magnetic_phase_inside_a_domain_rises_linearly_with_slope_e_mu0_ms_t_over_hbar():
    from atomscount.ltem import domain_wall

    s = domain_wall(shape=(N, N), pixel_nm=1.0, wall_width_nm=3.0, thickness_nm=20, ms_a_per_m=8e5)
    slope = np.diff(s.magnetic_phase()[0])[N // 4 + 10 : 3 * N // 4 - 10]  # inside the +y domain
    expected = 4e-7 * np.pi * 8e5 * 20 / 658.2119569  # (e/ħ) μ0 Ms t per nm, ħ/e = 658.2 T nm²
    np.testing.assert_allclose(slope, expected, rtol=5e-3)


def test_fresnel_image_is_differentiable_in_defocus_and_phase():
    import jax
    import jax.numpy as jnp

    s = skyrmion_lattice("bloch", shape=(N, N), pixel_nm=2.0)
    phase = jnp.asarray(s.phase(), dtype=jnp.float32)
    target = fresnel_image(phase, pixel_nm=2.0, defocus_nm=2e4, beam_energy_ev=300e3)

    def loss(df):
        return jnp.sum((fresnel_image(phase, pixel_nm=2.0, defocus_nm=df, beam_energy_ev=300e3) - target) ** 2)

    g = float(jax.grad(loss)(2.2e4))
    fd = (float(loss(2.2e4 + 50.0)) - float(loss(2.2e4 - 50.0))) / 100.0
    assert g > 0 and g == pytest.approx(fd, rel=0.05)
    gp = jax.grad(lambda p: jnp.sum(fresnel_image(p, pixel_nm=2.0, defocus_nm=2e4, beam_energy_ev=300e3) ** 2))(phase)
    assert gp.shape == (N, N) and bool(jnp.all(jnp.isfinite(gp)))


def test_simulate_series_is_seeded_and_has_the_dose_per_pixel():
    s = skyrmion_lattice("bloch", shape=(N, N))
    a = simulate_series(s, [-1e4, 0, 1e4], dose_e_per_pixel=100, rng=3)
    b = simulate_series(s, [-1e4, 0, 1e4], dose_e_per_pixel=100, rng=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (3, N, N)
    assert a.images.mean() == pytest.approx(100, rel=0.01)
    np.testing.assert_array_equal(a.images, np.round(a.images))
    clean = simulate_series(s, [1e4])
    assert clean.images.mean() == pytest.approx(1.0, rel=1e-4)


def test_bad_forward_inputs_name_the_argument():
    with pytest.raises(ValueError, match="beam_energy_ev"):
        wavelength_nm(-1)
    with pytest.raises(ValueError, match="mx and my"):
        magnetic_phase(np.zeros((4, 4)), np.zeros((4, 5)), pixel_nm=1, thickness_nm=1, ms_a_per_m=1)
    with pytest.raises(ValueError, match="thickness_nm"):
        magnetic_phase(np.zeros((4, 4)), np.zeros((4, 4)), pixel_nm=1, thickness_nm=np.ones((3, 3)), ms_a_per_m=1)
    with pytest.raises(ValueError, match="amplitude"):
        fresnel_image(np.zeros((4, 4)), np.ones((4, 5)), pixel_nm=1, defocus_nm=0, beam_energy_ev=3e5)
    with pytest.raises(ValueError, match="cs_nm"):
        transfer_function((4, 4), 1.0, defocus_nm=0, cs_nm=-1, beam_energy_ev=3e5)
    with pytest.raises(ValueError, match="dose_e_per_pixel"):
        simulate_series(skyrmion_lattice(shape=(16, 16)), [0], dose_e_per_pixel=0)


def test_overfocus_brightens_a_phase_maximum_and_underfocus_darkens_it():
    y, x = np.mgrid[0:N, 0:N] * 2.0
    bump = 0.3 * np.exp(-((x - 64) ** 2 + (y - 64) ** 2) / (2 * 8.0**2))
    over, under = np.asarray(fresnel_image(bump, pixel_nm=2.0, defocus_nm=np.array([5e3, -5e3]), beam_energy_ev=3e5))
    assert over[32, 32] > 1.01 and under[32, 32] < 0.99


def test_the_numpy_model_of_simulate_series_matches_the_jax_model():
    from atomscount.ltem.forward import _fresnel_numpy

    rng = np.random.default_rng(4)
    phase = rng.normal(size=(32, 32))
    amplitude = 1 + 0.1 * rng.normal(size=(32, 32))
    kw = {"pixel_nm": 2.0, "beam_energy_ev": 200e3, "cs_nm": 1e6, "divergence_rad": 1e-6, "defocus_spread_nm": 20.0}
    defoci = np.array([-5e3, 0.0, 8e3])
    want = np.asarray(fresnel_image(phase, amplitude, defocus_nm=defoci, **kw), dtype=np.float64)
    got = _fresnel_numpy(phase, amplitude, defoci_nm=defoci, **kw)
    np.testing.assert_allclose(got, want, atol=1e-4)
