"""Unresolved binaries: the spectroscopic parallax from the fitted labels against Gaia's
(X19 sec. 5.5): snr_dparallax and qflag_singlestar."""
from __future__ import annotations

import numpy as np

from .. import constants as C


def absolute_magnitude_model(teff, logg, feh, abs_mag, fit_mask):
    """A data-driven absolute-magnitude model: third-order polynomial of (Teff, logg, [Fe/H])
    fitted (with 4-sigma clipping) to stars whose parallaxes are precise. Returns (prediction for
    every star, robust scatter [mag])."""
    x = np.column_stack([np.asarray(teff) / 1000.0, logg, feh])
    cols = [np.ones(len(x))]
    for i in range(4):
        for j in range(4 - i):
            for k in range(4 - i - j):
                if 0 < i + j + k:
                    cols.append(x[:, 0] ** i * x[:, 1] ** j * x[:, 2] ** k)
    design = np.column_stack(cols)
    use = fit_mask & np.all(np.isfinite(design), axis=1) & np.isfinite(abs_mag)
    for _ in range(5):
        coef, *_ = np.linalg.lstsq(design[use], abs_mag[use], rcond=None)
        resid = abs_mag - design @ coef
        sig = 1.4826 * np.median(np.abs(resid[use]))
        use = use & (np.abs(resid) < 4 * sig)
    return design @ coef, sig


def spectroscopic_parallax(teff, logg, feh, app_mag, extinction, parallax, parallax_error,
                           min_parallax_snr: float = 10.0):
    """Parallax from the labels (X19 sec. 5.4.3): the absolute magnitude of a model calibrated on
    stars with parallax/error > min_parallax_snr, with the apparent magnitude and extinction.
    Inputs (n,) [K, dex, dex, mag, mag, mas, mas]; returns (w_sp, s_sp) (n,) [mas], s_sp from the
    model's robust scatter in magnitudes."""
    teff, logg, feh, app_mag, extinction, parallax, parallax_error = (
        np.asarray(a, dtype=np.float64) for a in (teff, logg, feh, app_mag, extinction, parallax,
                                                  parallax_error))
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_obs = app_mag - extinction + 5 * np.log10(parallax / 100.0)
        precise = parallax / parallax_error > min_parallax_snr
    model, scatter = absolute_magnitude_model(teff, logg, feh, abs_obs, precise)
    w_sp = 10 ** ((model - app_mag + extinction + 10.0) / 5.0)
    return w_sp, w_sp * np.log(10) / 5.0 * scatter


def binary_flag(teff, logg, feh, app_mag, extinction, parallax, parallax_error,
                min_parallax_snr: float = 10.0):
    """Spectroscopic versus astrometric parallax (X19 sec. 5.4.3): snr_dparallax =
    (w_sp - w_Gaia) / sqrt(s_sp^2 + s_Gaia^2) with ``spectroscopic_parallax``.
    qflag_singlestar: 1 = consistent with a single star, 0 = not single (snr_dparallax > 3),
    -1 = not given (Teff < 5500 K and logg < 3.6, or Teff > 7000 K). Returns both (n,).
    """
    teff, logg = np.asarray(teff, dtype=np.float64), np.asarray(logg, dtype=np.float64)
    w_sp, s_sp = spectroscopic_parallax(teff, logg, feh, app_mag, extinction, parallax,
                                        parallax_error, min_parallax_snr)
    parallax, parallax_error = np.asarray(parallax, float), np.asarray(parallax_error, float)
    snr_dp = (w_sp - parallax) / np.sqrt(s_sp ** 2 + parallax_error ** 2)
    single = np.where(snr_dp > C.BINARY_DPARALLAX_CUT, 0, 1).astype(np.int8)
    (cool_teff, cool_logg), hot = C.BINARY_UNDEFINED
    undefined = ((teff < cool_teff) & (logg < cool_logg)) | (teff > hot) | ~np.isfinite(snr_dp)
    single[undefined] = -1
    return snr_dp, single
