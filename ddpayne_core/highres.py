"""High-resolution survey catalogues that supply training labels: APOGEE allStar (ASPCAP), the
APOGEE-Payne catalogue (Ting et al. 2019) and GALAH DR2/DR3.

Each reader returns a DataFrame with ra, dec [deg], an identifier, and for every label of the
matching label set ``<survey>_<label>`` and ``<survey>_<label>_err`` (NaN where the survey
flags the value as unreliable), in ddpayne label names (teff, logg, vmic, feh, <x>_fe).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table

from .labels import LABEL_SETS
from .spectra import SpectrumFormatError


def _read_table(path: Path, hdu: int = 1) -> Table:
    try:
        with fits.open(path, memmap=False) as hdul:
            return Table(hdul[hdu].data)
    except FileNotFoundError:
        raise SpectrumFormatError(f"{path}: no such file") from None
    except Exception as exc:
        raise SpectrumFormatError(f"{path}: not a readable FITS table ({exc})") from None


def _require(table: Table, path: Path, cols) -> None:
    missing = [c for c in cols if c not in table.colnames]
    if missing:
        raise SpectrumFormatError(f"{path}: missing column(s) {missing}")


def read_apogee_allstar(path: str | Path, max_aspcapflag_bits: int = 0) -> pd.DataFrame:
    """APOGEE allStar (DR14-DR17 layout): TEFF, LOGG, VMICRO, FE_H, <X>_FE with _ERR and
    <X>_FE_FLAG; a value whose flag is set, or which is -9999 / NaN, becomes NaN; stars with
    ASPCAPFLAG STAR_BAD (bit 23) lose all labels."""
    path = Path(path)
    t = _read_table(path)
    _require(t, path, ["APOGEE_ID", "RA", "DEC", "TEFF", "LOGG", "FE_H"])
    out = {"apogee_id": np.asarray(t["APOGEE_ID"]).astype(str), "ra": np.asarray(t["RA"], float),
           "dec": np.asarray(t["DEC"], float)}
    star_bad = (np.asarray(t["ASPCAPFLAG"]).astype(np.int64) >> 23) & 1 if "ASPCAPFLAG" in t.colnames \
        else np.zeros(len(t), dtype=np.int64)
    column = {"teff": "TEFF", "logg": "LOGG", "vmic": "VMICRO", "feh": "FE_H"}
    for lab in LABEL_SETS["lamost-apogee"]:
        col = column.get(lab, lab.upper())
        if col not in t.colnames:
            continue
        v = np.asarray(t[col], dtype=np.float64)
        e = np.asarray(t[f"{col}_ERR"], dtype=np.float64) if f"{col}_ERR" in t.colnames \
            else np.full(len(t), np.nan)
        bad = ~np.isfinite(v) | (v < -9000) | (star_bad == 1)
        if f"{col}_FLAG" in t.colnames:
            bad |= np.asarray(t[f"{col}_FLAG"]).astype(np.int64) != 0
        out[f"apogee_{lab}"] = np.where(bad, np.nan, v)
        out[f"apogee_{lab}_err"] = np.where(bad, np.nan, e)
    return pd.DataFrame(out)


def read_galah(path: str | Path) -> pd.DataFrame:
    """GALAH DR3 (lowercase columns: sobject_id, ra_dr2/ra, teff, logg, fe_h, <x>_fe with e_ and
    flag_ columns, flag_sp) or DR2 (uppercase) catalogue; flagged values become NaN (flag_sp != 0
    removes all labels of a star)."""
    path = Path(path)
    t = _read_table(path)
    lower = {c.lower(): c for c in t.colnames}
    ra = lower.get("ra_dr2", lower.get("ra"))
    dec = lower.get("dec_dr2", lower.get("dec"))
    if ra is None or dec is None or "teff" not in lower or "fe_h" not in lower:
        raise SpectrumFormatError(f"{path}: not a GALAH catalogue (needs ra/dec, teff, fe_h)")
    out = {"sobject_id": np.asarray(t[lower["sobject_id"]]) if "sobject_id" in lower else np.arange(len(t)),
           "ra": np.asarray(t[ra], float), "dec": np.asarray(t[dec], float)}
    flag_sp = np.asarray(t[lower["flag_sp"]]).astype(np.int64) if "flag_sp" in lower \
        else np.zeros(len(t), dtype=np.int64)
    column = {"teff": "teff", "logg": "logg", "feh": "fe_h"}
    for lab in LABEL_SETS["lamost-galah"]:
        name = column.get(lab, lab)
        if name not in lower:
            continue
        v = np.asarray(t[lower[name]], dtype=np.float64)
        err = lower.get(f"e_{name}")
        e = np.asarray(t[err], dtype=np.float64) if err else np.full(len(t), np.nan)
        bad = ~np.isfinite(v) | (flag_sp != 0)
        if f"flag_{name}" in lower:
            bad |= np.asarray(t[lower[f"flag_{name}"]]).astype(np.int64) != 0
        out[f"galah_{lab}"] = np.where(bad, np.nan, v)
        out[f"galah_{lab}_err"] = np.where(bad, np.nan, e)
    return pd.DataFrame(out)
