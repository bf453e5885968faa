"""Batched LM fitting: recovery on noiseless and noisy spectra, errors, failure flags."""
import numpy as np
import pytest

from ddpayne_core.fit.lm import CONVERGED, FAILED, FitConfig, fit_spectra
from ddpayne_core.labels import Scaler
from ddpayne_core.model import Emulator, EmulatorModel

N_PIX = 400


@pytest.fixture(scope="module")
def model():
    """A random emulator: a smooth, nonlinear, label-sensitive stand-in for a trained one."""
    net = Emulator(4, N_PIX, 10, seed=11)
    import torch
    with torch.no_grad():
        net.w.mul_(30.0)  # make every pixel respond to labels at the ~0.1 level
    scaler = Scaler(np.array([4000.0, 1.0, -2.5, -0.4]), np.array([7000.0, 5.0, 0.5, 0.4]))
    return EmulatorModel(net, ("teff", "logg", "feh", "mg_fe"), scaler,
                         np.linspace(4000, 8000, N_PIX), np.ones(N_PIX, bool))


def _truth(n, seed):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(4500, 6500, n), rng.uniform(1.5, 4.5, n),
                            rng.uniform(-2.0, 0.3, n), rng.uniform(-0.3, 0.3, n)])


def test_noiseless_recovery(model):
    truth = _truth(20, 1)
    flux = model.predict(truth)
    res = fit_spectra(model, flux, np.full_like(flux, 1e4), FitConfig(n_starts=5))
    assert np.all(res.status == CONVERGED)
    scale = model.scaler.span
    assert np.max(np.abs(res.labels - truth) / scale) < 1e-3


def test_noisy_recovery_matches_formal_errors(model):
    truth = _truth(200, 2)
    rng = np.random.default_rng(3)
    sigma = 0.02  # S/N 50
    flux = model.predict(truth) + rng.normal(0, sigma, (200, N_PIX))
    res = fit_spectra(model, flux, np.full_like(flux, 1 / sigma ** 2))
    pulls = (res.labels - truth) / res.errors
    # Formal errors are honest: pulls have unit scatter (within sampling error) and no bias.
    assert np.all(np.abs(np.std(pulls, axis=0) - 1) < 0.2)
    assert np.all(np.abs(np.mean(pulls, axis=0)) < 0.25)
    assert np.all(np.abs(np.median(res.redchi2) - 1) < 0.05)
    np.testing.assert_allclose(np.diagonal(res.corr, axis1=1, axis2=2), 1.0, atol=1e-6)


def test_bad_spectra_are_flagged_not_fatal(model):
    truth = _truth(4, 4)
    flux = model.predict(truth)
    ivar = np.full_like(flux, 1e4)
    flux[1] = np.nan               # all NaN
    ivar[2] = 0.0                  # all masked
    flux[3, :10] = np.inf          # a few bad pixels: still fittable
    res = fit_spectra(model, flux, ivar)
    assert res.status.tolist()[:3] == [CONVERGED, FAILED, FAILED]
    assert np.all(np.isnan(res.labels[1:3]))
    assert res.status[3] == CONVERGED


def test_wrong_grid_is_a_clear_error(model):
    with pytest.raises(ValueError, match="pixels"):
        fit_spectra(model, np.ones((2, N_PIX + 1)), np.ones((2, N_PIX + 1)))


def test_cramer_rao_bound_equals_formal_error_at_truth_and_scales_with_noise(model):
    from ddpayne_core.fit import cramer_rao_bound

    truth = _truth(30, 9)
    flux = model.predict(truth)
    iv = np.full_like(flux, 2500.0)
    crb = cramer_rao_bound(model, truth, iv)
    # noiseless: the fit lands on the truth; the bound is for a known LSF
    res = fit_spectra(model, flux, iv, FitConfig(fit_lsf=False))
    np.testing.assert_allclose(res.errors, crb, rtol=1e-3)
    # A fitted LSF costs precision: marginalized errors are never below the bound.
    assert np.all(fit_spectra(model, flux, iv).errors >= crb * (1 - 1e-3))
    np.testing.assert_allclose(cramer_rao_bound(model, truth, iv * 4), crb / 2, rtol=1e-6)


def _gaussian_line(x, sigma2):
    """Normalized spectrum with one absorption line of equivalent width 2 pixels and variance
    sigma2 [pixel^2] centred on pixel x = 0."""
    return 1 - 2 * np.exp(-0.5 * x ** 2 / sigma2) / np.sqrt(2 * np.pi * sigma2)


@pytest.mark.parametrize("dvar", [0.5, -0.5])
def test_broaden_is_gaussian_convolution(dvar):
    """A Gaussian line of variance s^2 convolved with a Gaussian of variance v is a Gaussian
    line of variance s^2 + v with the same equivalent width; v < 0 sharpens it."""
    from ddpayne_core.fit import broaden

    x = np.arange(-40.0, 41.0)
    wave = 5000 * np.exp(1e-4 * np.arange(x.size))          # log-uniform, like survey grids
    s2 = 2.5                                                  # LSF sigma ~1.6 px
    got = broaden(_gaussian_line(x, s2)[None], wave, np.array([dvar]))[0]
    want = _gaussian_line(x, s2 + dvar)
    depth = 1 - want.min()
    assert np.max(np.abs(got - want)) < 0.02 * depth          # second order in v
    assert np.max(np.abs(got - want)) < 0.2 * np.max(np.abs(want - _gaussian_line(x, s2)))
    np.testing.assert_allclose((1 - got).sum(), 2.0, rtol=1e-6)   # flux is conserved


def test_broaden_leaves_spectrum_ends_and_arm_gaps_alone():
    from ddpayne_core.fit import lsf_stencil

    wave = np.concatenate([np.linspace(4000, 4100, 50), np.linspace(6000, 6100, 50)])
    _, pos, valid = lsf_stencil(wave, np.arange(wave.size))
    assert not valid[[0, 1, 48, 49, 50, 51, 98, 99]].any()
    assert valid[2:48].all() and valid[52:98].all()
    np.testing.assert_array_equal(pos[10], [8, 9, 10, 11, 12])
    # An emulator's output outside its training mask is meaningless: never a neighbour.
    usable = np.ones(wave.size, bool)
    usable[20] = False
    _, _, valid = lsf_stencil(wave, np.arange(wave.size), usable)
    assert not valid[18:23].any() and valid[[17, 23]].all()


def test_fit_recovers_lsf_offset_and_unbiased_labels(model):
    """Spectra whose LSF differs from the emulator's: the LSF offset is recovered and the labels
    stay on the truth; ignoring it biases them."""
    from ddpayne_core.fit import broaden, fitted_spectra

    truth = _truth(30, 12)
    dvar = np.random.default_rng(5).uniform(-0.4, 0.6, 30)
    flux = broaden(model.predict(truth), model.wave, dvar)
    iv = np.full_like(flux, 1e4)
    res = fit_spectra(model, flux, iv, FitConfig(n_starts=5))
    assert np.all(res.status == CONVERGED)
    np.testing.assert_allclose(res.lsf_dvar, dvar, atol=2e-3)
    assert np.all(res.lsf_dvar_err > 0)
    err = np.abs(res.labels - truth) / model.scaler.span
    assert np.max(err) < 2e-3
    np.testing.assert_allclose(fitted_spectra(model, res.labels, res.lsf_dvar), flux, atol=2e-3)
    ignored = fit_spectra(model, flux, iv, FitConfig(n_starts=5, fit_lsf=False))
    assert np.isnan(ignored.lsf_dvar).all()
    assert np.median(np.abs(ignored.labels - truth) / model.scaler.span) > 5 * np.median(err)


def test_a_known_lsf_is_a_prior_on_the_lsf_offset(model):
    """Where the spectra's RESOLUTION matrices give their LSF, the fit's offset follows that
    prior within its width and the labels' formal errors shrink (they are marginalized over a
    known LSF, not a free one; little for this test emulator, whose LSF and label signatures
    hardly overlap); spectra without one (NaN) are fitted as before."""
    from ddpayne_core.fit import broaden

    truth = _truth(40, 21)
    rng = np.random.default_rng(8)
    dvar = rng.uniform(-0.3, 0.5, 40)
    clean = broaden(model.predict(truth), model.wave, dvar)
    iv = np.full_like(clean, 400.0)
    flux = clean + rng.normal(size=clean.shape) / 20.0
    sigma = 2e-4                                 # well below what the data alone give (~1e-3)
    cfg = FitConfig(n_starts=5, lsf_prior_sigma=sigma)
    free = fit_spectra(model, flux, iv, cfg)
    known = fit_spectra(model, flux, iv, cfg, lsf_dvar_prior=dvar)
    assert np.all(known.status == CONVERGED)
    assert np.all(np.abs(known.lsf_dvar - dvar) < 3 * sigma)
    assert np.all(known.lsf_dvar_err <= sigma * (1 + 1e-6))
    assert np.median(np.abs(free.lsf_dvar - dvar)) > 3 * np.median(np.abs(known.lsf_dvar - dvar))
    assert np.all(np.median(known.errors / free.errors, axis=0) < 1.0)
    # chi2 stays the spectra's misfit alone, the prior's term left out (the flags read it).
    from ddpayne_core.fit import fitted_spectra
    misfit = ((fitted_spectra(model, known.labels, known.lsf_dvar) - flux) ** 2 * iv).sum(1)
    np.testing.assert_allclose(known.chi2, misfit, rtol=1e-3)
    # A prior the data contradict still holds the offset within a few of its widths of its centre.
    wrong = fit_spectra(model, flux, iv, cfg, lsf_dvar_prior=dvar + 0.3)
    assert np.all(np.abs(wrong.lsf_dvar - (dvar + 0.3)) < 0.01)
    partly = np.where(np.arange(40) < 20, dvar, np.nan)
    mixed = fit_spectra(model, flux, iv, cfg, lsf_dvar_prior=partly)
    np.testing.assert_allclose(mixed.lsf_dvar[20:], free.lsf_dvar[20:], atol=1e-6)
    np.testing.assert_allclose(mixed.lsf_dvar[:20], known.lsf_dvar[:20], atol=1e-6)
    with pytest.raises(ValueError, match="lsf_dvar_prior"):
        fit_spectra(model, flux, iv, cfg, lsf_dvar_prior=dvar[:10])


def test_a_models_pixel_scatter_weighs_down_pixels_it_cannot_describe(model):
    """Spectra whose first 100 pixels carry a model error the noise does not say (the
    emulator's failure on real spectra, e.g. in Balmer wings): a fit that knows the model's
    scatter there (``EmulatorModel.pixel_scatter``) recovers the labels better, and
    ``FitConfig(pixel_scatter=False)`` ignores it."""
    from dataclasses import replace as dc_replace
    truth = _truth(200, 12)
    rng = np.random.default_rng(13)
    sigma, scatter = 0.01, np.r_[np.full(100, 0.05), np.zeros(N_PIX - 100)]
    flux = model.predict(truth) + rng.normal(0, sigma, (200, N_PIX)) + rng.normal(0, 1, (200, N_PIX)) * scatter
    ivar = np.full_like(flux, 1 / sigma ** 2)
    plain = fit_spectra(model, flux, ivar)
    aware = dc_replace(model, pixel_scatter=scatter)
    weighted = fit_spectra(aware, flux, ivar)
    err_plain = np.std((plain.labels - truth) / model.scaler.span, axis=0)
    err_weighted = np.std((weighted.labels - truth) / model.scaler.span, axis=0)
    assert np.all(err_weighted < 0.8 * err_plain)
    # The formal errors now include the model's scatter: pulls have unit scatter again.
    pulls = (weighted.labels - truth) / weighted.errors
    assert np.all(np.abs(np.std(pulls, axis=0) - 1) < 0.2)
    np.testing.assert_allclose(np.median(weighted.redchi2), 1.0, atol=0.05)
    off = fit_spectra(aware, flux, ivar, FitConfig(pixel_scatter=False))
    np.testing.assert_array_equal(off.labels, plain.labels)


def test_labels_pinned_at_a_fit_bound_are_flagged(model):
    """A star hotter than anything the model covers is fitted at the Teff bound, and says so;
    stars inside the range are not flagged."""
    from ddpayne_core.fit import fit_result_table

    inside = _truth(6, 5)
    # Far outside: the emulator extrapolated to 2.5 x its Teff range, which no fit may reach.
    outside = inside[:2].copy()
    outside[:, 0] = 4000 + 2.5 * 3000
    flux = model.predict(np.vstack([inside, outside]))
    res = fit_spectra(model, flux, np.full_like(flux, 1e4), FitConfig(fit_lsf=False))
    table = fit_result_table(model, res)
    assert not table["at_bound"].iloc[:6].any()
    assert table["teff_at_bound"].iloc[6:].all() and table["at_bound"].iloc[6:].all()
    hi = model.scaler.unscale(np.full(4, 0.5 + FitConfig().margin))[0]
    np.testing.assert_allclose(table["teff"].iloc[6:], hi, rtol=1e-3)
