"""Pseudo-continuum normalization (X19 sec. 2; Z24 eqs. 1-2; docs/spec.md sec. 3).

The pseudo-continuum is the weighted Gaussian smoothing of the spectrum itself,
    fbar(l_i) = sum_j f_j u_j w_ij / sum_j u_j w_ij,  w_ij = exp(-(l_j - l_i)^2 / (2 L^2)),
with Balmer cores and DIBs given zero weight. The pixel weights u_j are 1 for every usable pixel
(ivar > 0) by default (``constants.CONTINUUM_WEIGHTS = "mask"``), or ivar_j as in Z24 eqs. 1-2
(``weights="ivar"``). Either way it is linear in the data and uses no medians or quantiles, and
scaling all inverse variances leaves it unchanged. The same function normalizes observed and ab
initio spectra, and only the mask weights make it the *same* normalization for both: photon noise
(sigma ~ sqrt(flux)) gives a line's core a higher ivar than the continuum beside it, so an
ivar-weighted continuum sinks into strong lines by an amount that depends on the noise model,
which a noiseless ab initio spectrum cannot share. Measured on the synthetic survey: the truth's
logg gradient seen through the pipeline correlates 0.49 with the ab initio one in cool giants with
ivar weights, 0.81 with mask weights (studies/continuum_weighting/continuum_weighting.py).

A pixel masked in one spectrum only (a bad pixel, a cosmic ray, the pixels an RV shift makes
touch them) would drop out of that spectrum's average: if it lies in a line, the continuum
around it rises by ~depth/100 over the kernel's hundred pixels, many sigma at high S/N, and
unlike the emulator's training spectra. So gaps of up to MAX_FILLED_GAP pixels are bridged by
linear interpolation of the flux and weight of their neighbours before smoothing; longer gaps
(arm gaps, telluric bands) are left empty. Filled pixels stay masked for the fit.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from ..constants import BALMER_CORES_AA, CONTINUUM_WEIGHTS, DIB_CORES_AA

MAX_FILLED_GAP = 8  # pixels: isolated defects, never an arm gap or a telluric band


def smoothing_mask(wave: np.ndarray) -> np.ndarray:
    """True where a pixel may enter the continuum smoothing (not a Balmer core or DIB). (n_pix,)"""
    keep = np.ones(wave.shape, dtype=bool)
    for center, half in BALMER_CORES_AA + DIB_CORES_AA:
        keep &= np.abs(wave - center) > half
    return keep


@lru_cache(maxsize=8)
def _kernel(wave_bytes: bytes, n: int, width: float) -> sp.csr_matrix:
    wave = np.frombuffer(wave_bytes, dtype=np.float64, count=n)
    reach = 4.0 * width
    lo = np.searchsorted(wave, wave - reach)
    hi = np.searchsorted(wave, wave + reach)
    counts = hi - lo
    rows = np.repeat(np.arange(n), counts)
    cols = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if n else np.array([], int)
    # float32: half the memory traffic of the smoothing products, the survey fit's second cost
    # after the fit itself; sums of a few hundred positive terms keep ~1e-6 relative precision.
    vals = np.exp(-0.5 * ((wave[cols] - wave[rows]) / width) ** 2).astype(np.float32)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def smoothing_kernel(wave: np.ndarray, width: float) -> sp.csr_matrix:
    """Sparse (n_pix, n_pix) Gaussian weights w_ij for a wavelength grid [A], cut at 4 L."""
    wave = np.ascontiguousarray(wave, dtype=np.float64)
    return _kernel(wave.tobytes(), wave.size, float(width))


def _bridge_short_gaps(f: np.ndarray, w: np.ndarray, keep: np.ndarray):
    """Flux and weight (n_spec, n_pix) with runs of at most MAX_FILLED_GAP zero-weight pixels
    (outside the fixed ``keep`` mask's exclusions) linearly interpolated from the nearest
    weighted pixels on either side."""
    n_pix = f.shape[1]
    idx = np.broadcast_to(np.arange(n_pix), f.shape)
    valid = w > 0
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(valid, idx, n_pix)[:, ::-1], axis=1)[:, ::-1]
    fill = ~valid & keep[None, :] & (prev >= 0) & (nxt < n_pix) & (nxt - prev - 1 <= MAX_FILLED_GAP)
    if not fill.any():
        return f, w
    lo, hi = np.clip(prev, 0, n_pix - 1), np.clip(nxt, 0, n_pix - 1)
    a = (idx - prev) / np.maximum(nxt - prev, 1)
    fill_f = (1 - a) * np.take_along_axis(f, lo, 1) + a * np.take_along_axis(f, hi, 1)
    fill_w = (1 - a) * np.take_along_axis(w, lo, 1) + a * np.take_along_axis(w, hi, 1)
    return np.where(fill, fill_f, f), np.where(fill, fill_w, w)


def pseudo_continuum(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray,
                     width: float, weights: str = CONTINUUM_WEIGHTS) -> np.ndarray:
    """Pseudo-continuum of spectra on a common grid.

    wave: (n_pix,) [A]; flux, ivar: (n_spec, n_pix) or (n_pix,); width: kernel L [A]; weights:
    "mask" (every pixel with ivar > 0 alike) or "ivar" (see the module docstring).
    Returns the continuum with flux's shape; NaN where no weighted pixel lies within 4 L.
    """
    if weights not in ("mask", "ivar"):
        raise ValueError(f"continuum weights must be 'mask' or 'ivar', not {weights!r}")
    flux2 = np.atleast_2d(flux).astype(np.float64)
    keep = smoothing_mask(wave)
    iv = np.atleast_2d(ivar)
    usable = np.isfinite(flux2) & np.isfinite(iv) & (iv > 0)
    w = np.where(usable, iv if weights == "ivar" else 1.0, 0.0) * keep
    f, w = _bridge_short_gaps(np.where(w > 0, flux2, 0.0), w, keep)
    kernel = smoothing_kernel(wave, width)
    num = (kernel @ np.ascontiguousarray((f * w).T, dtype=np.float32)).T.astype(np.float64)
    den = (kernel @ np.ascontiguousarray(w.T, dtype=np.float32)).T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cont = np.where(den > 0, num / den, np.nan)
    return cont.reshape(np.shape(flux))


def normalize(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, width: float,
              weights: str = CONTINUUM_WEIGHTS):
    """Divide by the pseudo-continuum (``weights`` as in pseudo_continuum) and scale the inverse
    variance by its square.

    Returns (norm_flux, norm_ivar) with the input shapes; pixels without a continuum get
    flux 1 and ivar 0 (masked), never NaN.
    """
    cont = pseudo_continuum(wave, flux, ivar, width, weights)
    good = np.isfinite(cont) & (cont > 0) & np.isfinite(flux) & np.isfinite(ivar)
    norm = np.where(good, np.asarray(flux) / np.where(good, cont, 1.0), 1.0)
    norm_ivar = np.where(good, np.asarray(ivar) * np.where(good, cont, 0.0) ** 2, 0.0)
    return norm, norm_ivar
