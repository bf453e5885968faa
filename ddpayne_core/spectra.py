"""Survey spectra: reading LAMOST FITS, rest-frame shift, common grid, masks, normalization
(docs/spec.md sec. 3).

Every reader returns a ``RawSpectrum``; ``preprocess`` turns raw spectra into normalized flux and
inverse variance on an instrument's grid, masked pixels having zero inverse variance (never NaN).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from .constants import (BLUE_LIMIT_AA, C_KMS, CONTINUUM_WEIGHTS, DICHROIC_AA, NA_D_WINDOW_AA,
                        RED_LIMIT_AA, TELLURIC_BANDS_AA)
from .instrument import Instrument
from .normalize import normalize


class SpectrumFormatError(ValueError):
    """A file that is not a readable spectrum; the message names the file and the problem."""


@dataclass
class RawSpectrum:
    """One observed spectrum. wave: (n,) vacuum [A] observed frame; flux, ivar: (n,);
    bad: (n,) bool instrument-flagged pixels; meta: catalogue fields (ra, dec, rv [km/s], ...)."""

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    bad: np.ndarray
    meta: dict = field(default_factory=dict)


_LAMOST_META = {"obsid": "OBSID", "ra": "RA", "dec": "DEC", "snr_u": "SNRU", "snr_g": "SNRG",
                "snr_r": "SNRR", "snr_i": "SNRI", "snr_z": "SNRZ", "subclass": "SUBCLASS",
                "mjd": "MJD", "lmjd": "LMJD", "fiberid": "FIBERID", "planid": "PLANID",
                "desig": "DESIG"}


def lamost_header_meta(header, path: Path) -> dict:
    """Catalogue fields of a LAMOST primary header (ra, dec, snr_u..z, rv from Z, ...)."""
    meta = {key: header.get(card) for key, card in _LAMOST_META.items()}
    for band in "ugriz":  # DR5 headers spell S/N as SN_U .. SN_Z in some releases
        if meta[f"snr_{band}"] is None:
            meta[f"snr_{band}"] = header.get(f"SN_{band.upper()}")
    z, z_err = header.get("Z"), header.get("Z_ERR")
    meta["rv"] = float(z) * C_KMS if z is not None and float(z) > -9000 else np.nan
    meta["rv_err"] = float(z_err) * C_KMS if z_err is not None and float(z_err) > -9000 else np.nan
    meta["filename"] = path.name
    meta["subclass"] = (meta["subclass"] or "").strip()
    return meta


def read_lamost(path: str | Path) -> RawSpectrum:
    """Read a LAMOST low-resolution spectrum in any released layout: the DR1-DR4 primary image
    (flux, inverse variance, subcontinuum, andmask, ormask; log-linear wavelength from COEFF0 and
    COEFF1), the DR5-DR7 and DR8-pipeline primary image (flux, inverse variance, wavelength,
    andmask, ormask) or the DR8+ binary table (FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK columns).
    Raises SpectrumFormatError naming the file and the problem."""
    path = Path(path)
    try:
        hdul = fits.open(path, memmap=False)
    except FileNotFoundError:
        raise SpectrumFormatError(f"{path}: no such file") from None
    except Exception as exc:
        raise SpectrumFormatError(f"{path}: not a readable FITS file ({exc})") from None
    with hdul:
        try:
            header = hdul[0].header
            data = hdul[0].data
            if data is not None and data.ndim == 2:
                flux, ivar, wave, andmask = _lamost_image(header, data, path)
            elif len(hdul) > 1 and isinstance(hdul[1], fits.BinTableHDU):
                table = hdul[1].data
                missing = [c for c in ("FLUX", "IVAR", "WAVELENGTH") if c not in table.names]
                if missing:
                    raise SpectrumFormatError(f"{path}: table HDU lacks column(s) {missing}")
                flux = np.asarray(table["FLUX"][0], dtype=np.float64)
                ivar = np.asarray(table["IVAR"][0], dtype=np.float64)
                wave = np.asarray(table["WAVELENGTH"][0], dtype=np.float64)
                andmask = np.asarray(table["ANDMASK"][0]) if "ANDMASK" in table.names \
                    else np.zeros_like(flux)
            else:
                raise SpectrumFormatError(f"{path}: neither a 5-row primary image nor a "
                                          "spectrum table in HDU 1")
        except SpectrumFormatError:
            raise
        except (TypeError, IndexError, OSError, ValueError) as exc:
            raise SpectrumFormatError(f"{path}: truncated or malformed data ({exc})") from None
    if not (flux.shape == ivar.shape == wave.shape) or flux.size < 10:
        raise SpectrumFormatError(f"{path}: flux/ivar/wavelength have shapes "
                                  f"{flux.shape}/{ivar.shape}/{wave.shape}")
    if np.any(np.diff(wave) <= 0):
        raise SpectrumFormatError(f"{path}: wavelength is not increasing")
    bad = (andmask != 0) | ~np.isfinite(flux) | ~np.isfinite(ivar) | (ivar <= 0)
    meta = lamost_header_meta(header, path)
    if header.get("VACUUM") is False:
        raise SpectrumFormatError(f"{path}: air wavelengths (VACUUM = F) are not supported")
    return RawSpectrum(wave, flux, np.where(bad, 0.0, ivar), bad, meta)


def _lamost_image(header, data: np.ndarray, path: Path):
    """flux, ivar, wavelength [A, vacuum], andmask of a LAMOST primary-image spectrum. The rows
    are named by the EXTEN0 card: 'Flux, Inverse, Wavelength, Andmask, Ormask' from DR5 on (and
    in the DR8 pipeline's image files), 'Flux Inverse Subcontinuum Andmask Ormask' in DR1-DR4,
    where the wavelength is log-linear, log10(lambda) = COEFF0 + COEFF1 * pixel (LAMOST DR1
    data-release description, FITS format)."""
    rows = [r.strip().lower() for r in str(header.get("EXTEN0") or "").replace(",", " ").split()]
    if data.shape[0] < 2 or (rows and rows[:2] != ["flux", "inverse"]):
        raise SpectrumFormatError(f"{path}: primary image of {data.shape[0]} rows named "
                                  f"{header.get('EXTEN0')!r}; a LAMOST spectrum starts with "
                                  "flux and inverse variance")
    flux, ivar = (np.asarray(data[i], dtype=np.float64) for i in range(2))
    named = {name: i for i, name in enumerate(rows)}
    if "wavelength" in named or (not rows and data.shape[0] >= 3):
        wave = np.asarray(data[named.get("wavelength", 2)], dtype=np.float64)
    elif header.get("COEFF0") is not None and header.get("COEFF1") is not None:
        wave = 10.0 ** (float(header["COEFF0"]) + float(header["COEFF1"]) * np.arange(flux.size))
    else:
        raise SpectrumFormatError(f"{path}: no wavelength row and no COEFF0/COEFF1 header cards")
    i_mask = named.get("andmask", 3 if not rows else None)
    andmask = np.asarray(data[i_mask]) if i_mask is not None and i_mask < data.shape[0] \
        else np.zeros_like(flux)
    return flux, ivar, wave, andmask


def instrument_mask(wave: np.ndarray) -> np.ndarray:
    """True where a pixel may be used in fits: outside telluric bands, within 3900-8880 A, out of
    the dichroic overlap except the Na D window (docs/spec.md sec. 3). (n_pix,) bool."""
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


def resample(wave_in: np.ndarray, flux: np.ndarray, ivar: np.ndarray, wave_out: np.ndarray):
    """One spectrum onto ``wave_out`` by linear interpolation (``_interpolate``); outside the
    input range, or touching a masked input pixel, ivar is 0. Returns (flux, ivar)."""
    pos = np.interp(wave_out, wave_in, np.arange(wave_in.size), left=-1.0, right=-1.0)
    f, iv = _interpolate(np.asarray(flux, np.float64)[None], np.asarray(ivar, np.float64)[None],
                         pos[None])
    return f[0], iv[0]


def shift_to_rest(wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, rv: np.ndarray):
    """Shift spectra on a common grid to the rest frame: F_rest(l) = F_obs(l (1 + rv/c)).

    wave: (n_pix,); flux, ivar: (n_spec, n_pix); rv: (n_spec,) km/s (NaN -> 0). Linear
    interpolation (``_interpolate``), batched over spectra; a pixel touching a masked one, or
    shifted off the grid, gets ivar 0. Returns (flux, ivar).
    """
    rv = np.nan_to_num(np.asarray(rv, dtype=np.float64), nan=0.0)
    target = wave[None, :] * (1.0 + rv[:, None] / C_KMS)
    pos = np.interp(target.ravel(), wave, np.arange(wave.size), left=-1.0, right=-1.0)
    return _interpolate(flux, ivar, pos.reshape(target.shape))


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
    rest_f, rest_iv = shift_to_rest(instrument.wave, flux, ivar, rv)
    norm, norm_ivar = normalize(instrument.wave, rest_f, rest_iv, instrument.continuum_width,
                                continuum_weights)
    return norm, np.where(instrument_mask(instrument.wave)[None, :], norm_ivar, 0.0)


def to_grid(raw: RawSpectrum, instrument: Instrument):
    """Resample a raw spectrum onto the instrument grid in its observed frame: (flux, ivar)."""
    return resample(raw.wave, raw.flux, raw.ivar, instrument.wave)


def preprocess(raw: RawSpectrum, instrument: Instrument):
    """One raw spectrum -> rest-frame normalized (flux (n_pix,), ivar (n_pix,)) on the grid."""
    flux, ivar = to_grid(raw, instrument)
    rv = raw.meta.get("rv", 0.0)
    norm, norm_ivar = preprocess_batch(flux[None], ivar[None], np.array([rv], float), instrument)
    return norm[0], norm_ivar[0]


DESI_CAMERAS = ("B", "R", "Z")


def read_desi_coadd(path: str | Path, instrument: Instrument):
    """Read a DESI coadd file (HDUs FIBERMAP, {B,R,Z}_WAVELENGTH, _FLUX, _IVAR, _MASK) and merge
    the three cameras onto ``instrument``'s grid (inverse-variance weighted where they overlap).

    Returns (flux (n_spec, n_pix), ivar (n_spec, n_pix), meta DataFrame with targetid, ra, dec,
    filename). Radial velocities come from the MWS catalogue (join on targetid).
    """
    import pandas as pd

    path = Path(path)
    try:
        hdul = fits.open(path, memmap=False)
    except Exception as exc:
        raise SpectrumFormatError(f"{path}: not a readable FITS file ({exc})") from None
    with hdul:
        names = {h.name for h in hdul}
        needed = {"FIBERMAP"} | {f"{c}_{k}" for c in DESI_CAMERAS for k in ("WAVELENGTH", "FLUX", "IVAR")}
        missing = sorted(needed - names)
        if missing:
            raise SpectrumFormatError(f"{path}: not a DESI coadd, missing HDU(s) {missing}")
        fmap = hdul["FIBERMAP"].data
        n = len(fmap)
        num = np.zeros((n, instrument.wave.size))
        den = np.zeros((n, instrument.wave.size))
        for cam in DESI_CAMERAS:
            try:
                wave = np.asarray(hdul[f"{cam}_WAVELENGTH"].data, dtype=np.float64)
                flux = np.asarray(hdul[f"{cam}_FLUX"].data, dtype=np.float64)
                ivar = np.asarray(hdul[f"{cam}_IVAR"].data, dtype=np.float64)
                mask = np.asarray(hdul[f"{cam}_MASK"].data) if f"{cam}_MASK" in names else 0
            except (TypeError, ValueError, OSError) as exc:
                raise SpectrumFormatError(f"{path}: truncated or malformed {cam} camera ({exc})") from None
            if flux.shape != (n, wave.size) or ivar.shape != flux.shape:
                raise SpectrumFormatError(f"{path}: {cam}_FLUX/{cam}_IVAR have shapes {flux.shape}/"
                                          f"{ivar.shape}, expected ({n}, {wave.size})")
            ivar = np.where((mask == 0) & np.isfinite(flux) & np.isfinite(ivar), ivar, 0.0)
            # Camera grid -> instrument grid: linear interpolation, masked outside the camera.
            pos = np.interp(instrument.wave, wave, np.arange(wave.size), left=-1, right=-1)
            inside = pos >= 0
            i0 = np.clip(np.floor(pos).astype(int), 0, wave.size - 2)
            frac = np.clip(pos - i0, 0, 1)
            f = (1 - frac) * flux[:, i0] + frac * flux[:, i0 + 1]
            iv = np.minimum(ivar[:, i0], ivar[:, i0 + 1]) * inside
            num += f * iv
            den += iv
        cols = {c.lower(): np.asarray(fmap[c]) for c in ("TARGETID", "TARGET_RA", "TARGET_DEC")
                if c in fmap.names}
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    meta = pd.DataFrame({"targetid": cols.get("targetid"), "ra": cols.get("target_ra"),
                         "dec": cols.get("target_dec")})
    meta["filename"] = path.name
    return merged, den, meta


def fits_files(inputs) -> list[Path]:
    """FITS files named in ``inputs``: files as given, folders expanded (sorted)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.name.endswith((".fits", ".fits.gz", ".fit")))
        else:
            files.append(item)
    return files
