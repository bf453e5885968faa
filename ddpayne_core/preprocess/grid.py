"""Spectra onto an instrument's grid: resampling with the variance interpolation gives, the
rest-frame shift, the instrument mask and the pseudo-continuum normalization (docs/spec.md
sec. 3). Masked pixels have zero inverse variance and flux 1, never NaN.
"""
from __future__ import annotations

import numpy as np

from ..constants import (
    BLUE_LIMIT_AA,
    C_KMS,
    CONTINUUM_WEIGHTS,
    DESI_TELLURIC_BANDS_AA,
    DICHROIC_AA,
    NA_D_WINDOW_AA,
    RED_LIMIT_AA,
    TELLURIC_BANDS_AA,
)
from ..instrument import Instrument
from ..io.desi import DesiCoadd
from ..io.spectra import RawSpectrum
from .continuum import normalize


def instrument_mask(wave: np.ndarray, instrument: str = "lamost") -> np.ndarray:
    """True where a pixel may be used in fits. (n_pix,) bool.

    LAMOST: outside telluric bands, within 3900-8880 A, out of the dichroic overlap except the
    Na D window (docs/spec.md sec. 3). DESI: the whole coadd grid but the strong telluric bands
    (constants.DESI_TELLURIC_BANDS_AA; the cameras overlap without a gap, Z24 sec. 2)."""
    if instrument == "desi":
        use = np.ones(np.shape(wave), bool)
        for lo, hi in DESI_TELLURIC_BANDS_AA:
            use &= (wave < lo) | (wave > hi)
        return use
    use = (wave >= BLUE_LIMIT_AA) & (wave <= RED_LIMIT_AA)
    for lo, hi in TELLURIC_BANDS_AA:
        use &= (wave < lo) | (wave > hi)
    dichroic = (wave >= DICHROIC_AA[0]) & (wave <= DICHROIC_AA[1])
    na_d = (wave >= NA_D_WINDOW_AA[0]) & (wave <= NA_D_WINDOW_AA[1])
    return use & (~dichroic | na_d)


def _interpolate(flux: np.ndarray, ivar: np.ndarray, pos: np.ndarray):
    """Linear interpolation of spectra at fractional pixel positions, with the variance that
    interpolation gives: F = (1-f) F0 + f F1 has Var F = (1-f)^2 Var F0 + f^2 Var F1 (not the
    linearly interpolated variance, which overstates it by up to 2x halfway between pixels and
    made every chi^2 of real LAMOST spectra ~0.7x too small: repeat visits agree with their
    IVAR in the observed frame, not after the rest-frame shift). Neighbouring output pixels
    share input pixels, so their noise is correlated; the fit treats pixels as independent and
    ``flags.calibrate_errors`` scales its errors to the repeat-visit scatter.

    flux, ivar: (n_spec, n_in); pos: (n_spec, n_out) positions in input pixels, negative =
    outside. Returns (flux, ivar) (n_spec, n_out); a pixel touching a masked input pixel or
    outside the input gets ivar 0 and flux 1."""
    inside = pos >= 0
    i0 = np.clip(np.floor(pos).astype(int), 0, flux.shape[1] - 2)
    frac = np.clip(pos - i0, 0.0, 1.0)
    f0, f1 = np.take_along_axis(flux, i0, 1), np.take_along_axis(flux, i0 + 1, 1)
    g0, g1 = np.take_along_axis(ivar, i0, 1), np.take_along_axis(ivar, i0 + 1, 1)
    # An input pixel with zero weight in the sum (frac exactly 0 or 1) does not spoil the output.
    usable = inside & ((g0 > 0) | (frac == 1.0)) & ((g1 > 0) | (frac == 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (1 - frac) ** 2 / np.where(g0 > 0, g0, np.inf) + frac ** 2 / np.where(g1 > 0, g1, np.inf)
        out_ivar = np.where(usable & (var > 0), 1.0 / var, 0.0)
    out_flux = np.where(usable, (1 - frac) * np.where(g0 > 0, f0, 0.0) + frac * np.where(g1 > 0, f1, 0.0), 1.0)
    return out_flux, out_ivar


def _keys_weights(t: np.ndarray) -> np.ndarray:
    """Keys (1981, IEEE TASSP 29, 1153) cubic-convolution weights (a = -0.5) of the four input
    pixels i0-1 .. i0+2 for fractional positions ``t`` in [0, 1]: (..., 4), summing to one."""
    t2, t3 = t * t, t * t * t
    return np.stack([(-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2,
                     (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2], axis=-1)


def _interpolate_cubic(flux: np.ndarray, ivar: np.ndarray, pos: np.ndarray):
    """As ``_interpolate`` with Keys cubic convolution (four pixels, error O(h^3)): for spectra
    whose lines are barely sampled, as DESI's (LSF FWHM ~2 pixels), where linear interpolation
    smooths line cores by a few per cent (studies/desi_resampling). Variance propagated exactly,
    Var F = sum w_k^2 Var F_k; where an outer pixel of the four is masked, the linear result."""
    lin_flux, lin_ivar = _interpolate(flux, ivar, pos)
    n_in = flux.shape[1]
    i0 = np.clip(np.floor(pos).astype(int), 1, n_in - 3)
    t = np.clip(pos - i0, 0.0, 1.0)
    w = _keys_weights(t)
    idx = i0[..., None] + np.arange(-1, 3)
    f = np.take_along_axis(flux, idx.reshape(len(flux), -1), 1).reshape(idx.shape)
    g = np.take_along_axis(ivar, idx.reshape(len(flux), -1), 1).reshape(idx.shape)
    ok = (pos >= 1) & (pos <= n_in - 2) & np.all((g > 0) | (w == 0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.sum(w ** 2 / np.where(g > 0, g, np.inf), axis=-1)
        cubic_ivar = np.where(var > 0, 1.0 / var, 0.0)
    cubic_flux = np.sum(w * np.where(g > 0, f, 0.0), axis=-1)
    return np.where(ok, cubic_flux, lin_flux), np.where(ok, cubic_ivar, lin_ivar)


INTERPOLATORS = {"linear": _interpolate, "cubic": _interpolate_cubic}


def resample(wave_in: np.ndarray, flux: np.ndarray, ivar: np.ndarray, wave_out: np.ndarray):
    """One spectrum onto ``wave_out`` by linear interpolation (``_interpolate``); outside the
    input range, or touching a masked input pixel, ivar is 0. Returns (flux, ivar)."""
    pos = np.interp(wave_out, wave_in, np.arange(wave_in.size), left=-1.0, right=-1.0)
    f, iv = _interpolate(np.asarray(flux, np.float64)[None], np.asarray(ivar, np.float64)[None],
                         pos[None])
    return f[0], iv[0]


def shift_to_rest(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, rv: np.ndarray,
                  resampling: str = "linear"):
    """Shift spectra on a common grid to the rest frame: F_rest(l) = F_obs(l (1 + rv/c)).

    wave: (n_pix,); flux, ivar: (n_spec, n_pix); rv: (n_spec,) km/s (NaN -> 0); resampling:
    "linear" (``_interpolate``) or "cubic" (``_interpolate_cubic``), the instrument's choice
    (``Instrument.resampling``). Batched over spectra; a pixel touching a masked one, or shifted
    off the grid, gets ivar 0. Returns (flux, ivar).
    """
    rv = np.nan_to_num(np.asarray(rv, dtype=np.float64), nan=0.0)
    target = wave[None, :] * (1.0 + rv[:, None] / C_KMS)
    pos = np.interp(target.ravel(), wave, np.arange(wave.size), left=-1.0, right=-1.0)
    return INTERPOLATORS[resampling](flux, ivar, pos.reshape(target.shape))


def preprocess_batch(flux: np.ndarray, ivar: np.ndarray, rv: np.ndarray, instrument: Instrument,
                     continuum_weights: str = CONTINUUM_WEIGHTS):
    """Observed-frame spectra on the instrument grid -> rest frame, normalized, masked.

    flux, ivar: (n_spec, n_pix); rv: (n_spec,) km/s; continuum_weights: see
    ``normalize.pseudo_continuum`` (an emulator must be fitted with the weights it was trained
    with, ``EmulatorModel.check_preprocessing``). Returns normalized (flux, ivar); masked pixels
    have ivar 0 and flux 1, never NaN.
    """
    flux = np.where(np.isfinite(flux), flux, 0.0)
    ivar = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
    rest_f, rest_iv = shift_to_rest(instrument.wave, flux, ivar, rv, instrument.resampling)
    norm, norm_ivar = normalize(instrument.wave, rest_f, rest_iv, instrument.continuum_width,
                                continuum_weights)
    return norm, np.where(instrument_mask(instrument.wave, instrument.name)[None, :], norm_ivar, 0.0)


def to_grid(raw: RawSpectrum, instrument: Instrument):
    """Resample a raw spectrum onto the instrument grid in its observed frame: (flux, ivar)."""
    return resample(raw.wave, raw.flux, raw.ivar, instrument.wave)


def preprocess(raw: RawSpectrum, instrument: Instrument):
    """One raw spectrum -> rest-frame normalized (flux (n_pix,), ivar (n_pix,)) on the grid."""
    flux, ivar = to_grid(raw, instrument)
    rv = raw.meta.get("rv", 0.0)
    norm, norm_ivar = preprocess_batch(flux[None], ivar[None], np.array([rv], float), instrument)
    return norm[0], norm_ivar[0]


def merge_cameras(coadd: DesiCoadd, instrument: Instrument):
    """A DESI coadd's cameras on ``instrument``'s grid in the observed frame, inverse-variance
    weighted where cameras overlap (linear interpolation with its variance, ``_interpolate``;
    exact copies where the camera's pixels fall on the grid, as desispec's 0.8 A grids do on
    DESI's). Returns (flux (n, n_pix), ivar (n, n_pix)); pixels no camera covers get ivar 0."""
    n = len(coadd.fibermap)
    num = np.zeros((n, instrument.wave.size))
    den = np.zeros((n, instrument.wave.size))
    for cam in coadd.cameras.values():
        pos = np.interp(instrument.wave, cam.wave, np.arange(cam.wave.size), left=-1.0, right=-1.0)
        f, iv = _interpolate(cam.flux, cam.ivar, np.broadcast_to(pos, (n, pos.size)))
        num += f * iv
        den += iv
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return flux, den
