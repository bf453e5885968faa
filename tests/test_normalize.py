"""Pseudo-continuum normalization and masks (docs/spec.md sec. 3)."""
import numpy as np
import pytest

from ddpayne_core.instrument import get_instrument
from ddpayne_core.preprocess import (
    instrument_mask,
    normalize,
    pseudo_continuum,
    resample,
    smoothing_mask,
)


@pytest.fixture(scope="module")
def lamost():
    return get_instrument("lamost")


def _star(wave):
    """A smooth continuum times absorption lines."""
    cont = 1e3 * (wave / 5000.0) ** -2
    lines = 1 - 0.5 * np.exp(-0.5 * ((wave[:, None] - np.linspace(4000, 8800, 60)) / 2.0) ** 2).sum(1)
    return cont * lines


def test_normalization_does_not_depend_on_snr(lamost):
    """Averaged over noise realisations, normalized spectra at S/N 10 and 100 agree: no
    S/N-dependent bias (a median- or quantile-based continuum would fail this)."""
    wave = lamost.wave
    flux = _star(wave)
    rng = np.random.default_rng(1)
    means = []
    for snr in (10.0, 100.0):
        sigma = flux / snr
        noisy = flux + rng.normal(size=(300, wave.size)) * sigma
        norm, _ = normalize(wave, noisy, np.broadcast_to(1 / sigma ** 2, noisy.shape),
                            lamost.continuum_width)
        means.append(norm.mean(0))
    noiseless, _ = normalize(wave, flux, 1 / (flux / 10.0) ** 2, lamost.continuum_width)
    use = instrument_mask(wave)
    # Expected scatter of the S/N-10 mean: 0.1 / sqrt(300) ~ 0.006 per pixel.
    assert np.max(np.abs(means[0] - noiseless)[use]) < 0.03
    assert np.max(np.abs(means[1] - noiseless)[use]) < 0.005
    assert abs(np.mean((means[0] - noiseless)[use])) < 1e-3


@pytest.mark.parametrize("weights", ["mask", "ivar"])
def test_uniform_ivar_scaling_leaves_continuum_unchanged(lamost, weights):
    wave = lamost.wave
    flux = _star(wave)
    ivar = np.random.default_rng(2).uniform(0.5, 2.0, wave.size)
    c1 = pseudo_continuum(wave, flux, ivar, 50.0, weights)
    c2 = pseudo_continuum(wave, flux, 37.0 * ivar, 50.0, weights)
    np.testing.assert_allclose(c1, c2, rtol=1e-5)  # float32 smoothing products: ~1e-6


def test_photon_noise_leaves_the_continuum_where_an_ab_initio_spectrum_has_it(lamost):
    """An observed spectrum weighted by its photon-noise ivar (sigma ~ sqrt(flux): a line's core
    has a higher ivar than the continuum beside it) gets, with the default mask weights, the
    pseudo-continuum of the same spectrum normalized as ab initio spectra are (no noise, every
    pixel alike). With the papers' ivar weights the continuum sinks into the lines: by their
    weighted harmonic mean, below the arithmetic one wherever a line lies within the kernel."""
    wave, width = lamost.wave, lamost.continuum_width
    flux = _star(wave)
    photon, ab_initio = 1.0 / flux, np.ones(wave.size)
    use = instrument_mask(wave)
    reference = pseudo_continuum(wave, flux, ab_initio, width)
    np.testing.assert_allclose(pseudo_continuum(wave, flux, photon, width)[use], reference[use],
                               rtol=1e-12)
    sunk = pseudo_continuum(wave, flux, photon, width, weights="ivar") / reference
    assert np.all(sunk[use] < 1 + 1e-12)
    assert np.median(sunk[use]) < 0.99


def test_unknown_continuum_weights_are_refused(lamost):
    with pytest.raises(ValueError, match="'mask' or 'ivar'"):
        pseudo_continuum(lamost.wave, np.ones(lamost.wave.size), np.ones(lamost.wave.size), 50.0,
                         "median")


def test_flat_spectrum_normalizes_to_one_and_ivar_scales(lamost):
    wave = lamost.wave
    flux = np.full(wave.size, 250.0)
    ivar = np.full(wave.size, 4.0)
    norm, niv = normalize(wave, flux, ivar, 50.0)
    np.testing.assert_allclose(norm, 1.0, rtol=1e-5)  # float32 smoothing products
    np.testing.assert_allclose(niv, 4.0 * 250.0 ** 2, rtol=1e-5)


def test_masked_pixels_get_zero_ivar_not_nan(lamost):
    wave = lamost.wave
    flux = _star(wave)
    flux[100:200] = np.nan
    ivar = np.ones(wave.size)
    ivar[300:310] = 0
    norm, niv = normalize(wave, flux, ivar, 50.0)
    assert np.all(np.isfinite(norm)) and np.all(np.isfinite(niv))
    assert np.all(niv[100:200] == 0)


def test_balmer_cores_excluded_from_smoothing():
    wave = np.linspace(6400, 6700, 3000)
    keep = smoothing_mask(wave)
    assert not keep[np.argmin(np.abs(wave - 6562.8))]
    assert keep[0] and keep[-1]


def test_instrument_mask_matches_spec():
    wave = np.array([3850, 3950, 5000, 5800, 5895, 6000, 6300, 6900, 7200, 7600, 8200, 8500, 8900.0])
    expected = [False, True, True, False, True, False, False, False, False, False, False, True, False]
    assert instrument_mask(wave).tolist() == expected


def test_resample_propagates_masks():
    w_in = np.linspace(4000, 5000, 101)
    f = np.linspace(1, 2, 101)
    iv = np.ones(101)
    iv[50] = 0
    w_out = np.linspace(3990, 5010, 205)
    f_out, iv_out = resample(w_in, f, iv, w_out)
    assert iv_out[0] == 0 and iv_out[-1] == 0  # outside the input range
    near = np.abs(w_out - w_in[50]) < 10
    assert np.all(iv_out[near] == 0)
    inside = (w_out > 4100) & (w_out < 4400)
    np.testing.assert_allclose(f_out[inside], np.interp(w_out[inside], w_in, f))


def test_a_masked_pixel_barely_moves_the_continuum(lamost, monkeypatch):
    """A defect masked in one spectrum only should leave its continuum as if it were not there.
    Dropped from the average, a pixel raises or lowers the continuum around it by ~(its flux -
    the local mean)/100, some sigma at S/N 100; bridged by its neighbours it does not where the
    spectrum is smooth, and much less in lines. One defect (3 pixels) per spectrum, at 472
    positions."""
    import ddpayne_core.preprocess.continuum as N

    wave = lamost.wave
    flux = _star(wave)
    pos = np.arange(300, 3600, 7)
    masked = np.ones((pos.size, wave.size))
    for k, p in enumerate(pos):
        masked[k, p - 1:p + 2] = 0.0                     # a bad pixel and its RV-shift neighbours
    full = pseudo_continuum(wave, flux, np.ones(wave.size), lamost.continuum_width)

    def worst_change(cont):
        return np.array([np.max(np.abs(cont[k, p - 30:p + 31] / full[p - 30:p + 31] - 1))
                         for k, p in enumerate(pos)])

    many = np.repeat(flux[None], pos.size, 0)
    bridged = worst_change(pseudo_continuum(wave, many, masked, lamost.continuum_width))
    monkeypatch.setattr(N, "MAX_FILLED_GAP", 0)
    dropped = worst_change(pseudo_continuum(wave, many, masked, lamost.continuum_width))
    assert np.median(dropped) > 5e-4 and np.median(bridged) < 1e-5
    assert np.sqrt(np.mean(bridged ** 2)) < 0.6 * np.sqrt(np.mean(dropped ** 2))


def test_long_gaps_are_not_bridged():
    from ddpayne_core.preprocess.continuum import MAX_FILLED_GAP, _bridge_short_gaps

    n = 60
    f, w = np.linspace(1, 2, n)[None].repeat(2, 0), np.ones((2, n))
    w[0, 10:10 + MAX_FILLED_GAP] = 0.0                    # short: bridged
    w[1, 10:10 + MAX_FILLED_GAP + 1] = 0.0                # long: left empty
    keep = np.ones(n, bool)
    keep[40] = False                                       # a fixed exclusion (Balmer core) stays
    w[:, 40] = 0.0
    f2, w2 = _bridge_short_gaps(np.where(w > 0, f, 0.0), w, keep)
    np.testing.assert_allclose(f2[0, 10:10 + MAX_FILLED_GAP], f[0, 10:10 + MAX_FILLED_GAP])
    assert np.all(w2[0, 10:10 + MAX_FILLED_GAP] == 1.0)
    assert np.all(w2[1, 10:10 + MAX_FILLED_GAP + 1] == 0.0) and np.all(w2[:, 40] == 0.0)


def test_rest_frame_shift_propagates_the_variance_of_interpolated_noise():
    """Pure noise shifted by a fraction of a pixel: the predicted inverse variance describes the
    scatter of the shifted pixels (linearly interpolating the *variance* overstated it by up to
    2x halfway between pixels)."""
    from ddpayne_core.instrument import get_instrument
    from ddpayne_core.preprocess import shift_to_rest

    wave = get_instrument("lamost").wave
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.01, 0.03, (400, wave.size))
    noise = rng.normal(0, sigma)
    # 34.5 km/s is half a LAMOST pixel (1e-4 dex = 69 km/s): the worst case of the old formula.
    f, iv = shift_to_rest(wave, noise, 1 / sigma ** 2, np.full(400, 34.5))
    ok = iv > 0
    pull = f[ok] * np.sqrt(iv[ok])
    assert abs(np.std(pull) - 1) < 0.02
