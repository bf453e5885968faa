"""Instruments: output wavelength grids and line spread functions (LSF).

An LSF is a Gaussian whose FWHM [A] depends on wavelength. LAMOST: the mean LSF, R ~ 1800
(X19 sec. 2). DESI: per camera, as measured from real coadds' resolution matrices
(constants.DESI_LSF_FWHM_AA; R from ~2200 at 3600 A to ~5300 at 9800 A, Z24 sec. 2).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .constants import (
    CONTINUUM_KERNEL_AA,
    DESI_CAMERA_RANGES_AA,
    DESI_CAMERA_SPLIT_AA,
    DESI_LSF_FWHM_AA,
    DESI_PIXEL_AA,
    LAMOST_LOGLAM_START,
    LAMOST_LOGLAM_STEP,
    LAMOST_NPIX,
    LAMOST_RESOLUTION,
    RESAMPLING,
)

_FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))


@dataclass(frozen=True)
class Instrument:
    """name; wave: (n_pix,) output grid [A]; continuum_width: smoothing L [A]; resampling: how
    spectra are interpolated to the rest frame (constants.RESAMPLING)."""

    name: str
    wave: np.ndarray
    continuum_width: float
    resampling: str = "linear"

    def fwhm(self, wave: np.ndarray) -> np.ndarray:
        """LSF FWHM [A] at ``wave`` [A]."""
        wave = np.asarray(wave, dtype=np.float64)
        if self.name == "lamost":
            return wave / LAMOST_RESOLUTION
        if self.name == "desi":
            return np.where(wave < DESI_CAMERA_SPLIT_AA[0], desi_camera_fwhm("B", wave),
                            np.where(wave < DESI_CAMERA_SPLIT_AA[1], desi_camera_fwhm("R", wave),
                                     desi_camera_fwhm("Z", wave)))
        raise ValueError(f"unknown instrument {self.name!r}")

    def resolution(self, wave: np.ndarray) -> np.ndarray:
        """Resolving power lambda / FWHM at ``wave`` [A]."""
        return np.asarray(wave, dtype=np.float64) / self.fwhm(wave)


def desi_camera_fwhm(camera: str, wave: np.ndarray) -> np.ndarray:
    """DESI LSF FWHM [A] of one camera (B, R, Z) at ``wave`` [A] (constants.DESI_LSF_FWHM_AA,
    interpolated linearly, constant beyond the end knots)."""
    knots, fwhm = DESI_LSF_FWHM_AA[camera]
    return np.interp(wave, knots, fwhm)


def desi_camera_wave(camera: str) -> np.ndarray:
    """One DESI camera's coadd grid [A] (0.8 A pixels)."""
    lo, hi = DESI_CAMERA_RANGES_AA[camera]
    return lo + DESI_PIXEL_AA * np.arange(int(round((hi - lo) / DESI_PIXEL_AA)) + 1)


def lamost_wave() -> np.ndarray:
    """LAMOST's native grid: log10-lambda from 3700 A in steps of 1e-4, 3909 pixels."""
    return 10.0 ** (LAMOST_LOGLAM_START + LAMOST_LOGLAM_STEP * np.arange(LAMOST_NPIX))


def desi_wave() -> np.ndarray:
    """DESI's coadd grid (B+R+Z merged): 3600-9824 A in 0.8 A steps (7,781 pixels)."""
    lo, hi = DESI_CAMERA_RANGES_AA["B"][0], DESI_CAMERA_RANGES_AA["Z"][1]
    return lo + DESI_PIXEL_AA * np.arange(int(round((hi - lo) / DESI_PIXEL_AA)) + 1)


def get_instrument(name: str) -> Instrument:
    if name == "lamost":
        return Instrument("lamost", lamost_wave(), CONTINUUM_KERNEL_AA["lamost"], RESAMPLING["lamost"])
    if name == "desi":
        return Instrument("desi", desi_wave(), CONTINUUM_KERNEL_AA["desi"], RESAMPLING["desi"])
    raise ValueError(f"unknown instrument {name!r}; choose 'lamost' or 'desi'")


def lsf_matrix(fine_wave: np.ndarray, out_wave: np.ndarray, fwhm: np.ndarray,
               reach: float = 4.0) -> sp.csr_matrix:
    """Sparse (n_out, n_fine) matrix that convolves a fine spectrum with a Gaussian LSF of
    FWHM ``fwhm`` (n_out,) [A] and samples it at ``out_wave``; each row sums to 1."""
    sigma = np.asarray(fwhm) * _FWHM_TO_SIGMA
    lo = np.searchsorted(fine_wave, out_wave - reach * sigma)
    hi = np.searchsorted(fine_wave, out_wave + reach * sigma)
    rows = np.repeat(np.arange(out_wave.size), hi - lo)
    cols = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])
    # Trapezoid weights of the fine grid, so uneven sampling integrates correctly.
    dw = np.gradient(fine_wave)
    vals = np.exp(-0.5 * ((fine_wave[cols] - out_wave[rows]) / sigma[rows]) ** 2) * dw[cols]
    m = sp.csr_matrix((vals, (rows, cols)), shape=(out_wave.size, fine_wave.size))
    norm = np.asarray(m.sum(axis=1)).ravel()
    norm[norm == 0] = 1.0
    return sp.diags(1.0 / norm) @ m


def convolve_to(fine_wave: np.ndarray, fine_flux: np.ndarray, instrument: Instrument,
                extra_fwhm: float | np.ndarray = 0.0) -> np.ndarray:
    """Convolve (n_spec, n_fine) or (n_fine,) spectra to the instrument grid; (.., n_pix).

    extra_fwhm [A] broadens the LSF in quadrature (fibre-to-fibre LSF variations).
    """
    fwhm = np.sqrt(instrument.fwhm(instrument.wave) ** 2 + np.square(extra_fwhm))
    m = lsf_matrix(fine_wave, instrument.wave, fwhm)
    return (m @ np.atleast_2d(fine_flux).T).T.reshape(np.shape(fine_flux)[:-1] + (instrument.wave.size,))


def air_to_vacuum(wave_air: np.ndarray) -> np.ndarray:
    """Air to vacuum wavelengths [A] (Morton 2000, ApJS 130, 403, eq. 8 inverted, IAU standard)."""
    s2 = (1e4 / np.asarray(wave_air, dtype=np.float64)) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) \
        + 1.599740894897e-4 / (38.92568793293 - s2)
    return wave_air * n
