"""Reading LAMOST spectra in every layout the archive has used (DESI coadds: ``io.desi``).

Every LAMOST reader returns a ``RawSpectrum`` in its observed frame (``preprocess.grid`` puts it
on an instrument's grid in the rest frame and normalizes it); a bad file raises
``SpectrumFormatError`` naming the file and the problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..constants import C_KMS


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


def fits_files(inputs) -> list[Path]:
    """FITS files named in ``inputs``: files as given, folders expanded (sorted)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.name.endswith((".fits", ".fits.gz", ".fit")))
        else:
            files.append(item)
    return files
