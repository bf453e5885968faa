"""Label catalogues: APOGEE allStar (ASPCAP), The Payne's APOGEE catalogue and GALAH DR2/DR3,
which supply training labels, and the DESI MWS catalogue (RVSpecfit + FERRE), for comparison
with DESI fits.

Each high-resolution reader returns a DataFrame with ra, dec [deg], an identifier, and for every label of the
matching label set ``<survey>_<label>`` and ``<survey>_<label>_err`` (NaN where the survey
flags the value as unreliable), in ddpayne label names (teff, logg, vmic, feh, <x>_fe).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.table import Table

from ..labels import LABEL_SETS
from .spectra import SpectrumFormatError


def _read_table(path: Path, hdu: int | str = 1) -> Table:
    try:
        with fits.open(path, memmap=False) as hdul:
            return Table(hdul[hdu].data)
    except FileNotFoundError:
        raise SpectrumFormatError(f"{path}: no such file") from None
    except KeyError:
        raise SpectrumFormatError(f"{path}: no HDU {hdu!r}") from None
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


def read_payne_apogee(path: str | Path, hdu: int | str | None = None,
                      drop_warnings: bool = False) -> pd.DataFrame:
    """The Payne's APOGEE catalogue (Ting et al. 2019, the labels X19 trained on) in the layout
    SDSS releases it (Astra ``astraAllStarThePayne``): lowercase ra, dec, teff, logg, v_turb and
    [X/H] columns <x>_h, each with e_<name>, and result_flags (bit 0 fitting failure; bits 1-4
    warnings on Teff, logg, [Fe/H] range and S/N < 70). ``hdu``: default the first table HDU
    with a teff column (the APOGEE one).

    Returns apogee_<label> and apogee_<label>_err in the lamost-apogee label set, so the
    training-set builder treats it like allStar: [X/Fe] = [X/H] - [Fe/H], errors added in
    quadrature (correlations unknown). A failed fit, or with ``drop_warnings`` any set bit,
    leaves the star without labels."""
    path = Path(path)
    if hdu is None:
        try:
            with fits.open(path, memmap=False) as hdul:
                hdu = next((i for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU)
                            and "teff" in [c.lower() for c in h.columns.names]), 1)
        except FileNotFoundError:
            raise SpectrumFormatError(f"{path}: no such file") from None
        except OSError as exc:
            raise SpectrumFormatError(f"{path}: not a readable FITS file ({exc})") from None
    t = _read_table(path, hdu)
    _require(t, path, ["ra", "dec", "teff", "logg", "fe_h", "result_flags"])
    ident = next((c for c in ("sdss4_apogee_id", "apogee_id", "sdss_id") if c in t.colnames), None)
    flags = np.asarray(t["result_flags"]).astype(np.int64)
    bad_star = (flags != 0) if drop_warnings else (flags & 1).astype(bool)
    out = {"apogee_id": np.asarray(t[ident]).astype(str) if ident else np.arange(len(t)).astype(str),
           "ra": np.asarray(t["ra"], float), "dec": np.asarray(t["dec"], float)}
    col = lambda name: np.asarray(t[name], np.float64) if name in t.colnames else np.full(len(t), np.nan)
    fe, e_fe = col("fe_h"), col("e_fe_h")
    direct = {"teff": "teff", "logg": "logg", "vmic": "v_turb", "feh": "fe_h"}
    for lab in LABEL_SETS["lamost-apogee"]:
        if lab in direct:
            name = direct[lab]
            if name not in t.colnames:
                continue
            v, e = col(name), col(f"e_{name}")
        else:
            name = lab.replace("_fe", "_h")
            if name not in t.colnames:
                continue
            v, e = col(name) - fe, np.hypot(col(f"e_{name}"), e_fe)
        bad = bad_star | ~np.isfinite(v)
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


def read_desi_mws(path: str | Path, primary_only: bool = True) -> pd.DataFrame:
    """DESI MWS catalogue (mwsAll layout, EDR/DR1): HDU RVTAB (RVSpecfit: VRAD, TEFF, LOGG,
    FEH, ALPHAFE with _ERR, RVS_WARN, PRIMARY) and HDU SPTAB (FERRE, row-matched: TEFF, LOGG,
    FEH, ALPHAFE, LOG10MICRO, SUCCESS). Returns targetid, ra, dec, rv, rv_err, rvs_<label>
    (NaN where RVS_WARN != 0) and sp_<label> (NaN where SUCCESS == 0; vmic = 10**LOG10MICRO).
    ``primary_only`` keeps the PRIMARY observation of each source."""
    path = Path(path)
    rv = _read_table(path, "RVTAB")
    _require(rv, path, ["TARGETID", "TARGET_RA", "TARGET_DEC", "VRAD", "VRAD_ERR", "TEFF", "LOGG",
                        "FEH", "RVS_WARN"])
    sp = _read_table(path, "SPTAB")
    _require(sp, path, ["TARGETID", "TEFF", "LOGG", "FEH", "SUCCESS"])
    if len(sp) != len(rv) or np.any(np.asarray(sp["TARGETID"]) != np.asarray(rv["TARGETID"])):
        raise SpectrumFormatError(f"{path}: SPTAB does not match RVTAB row by row")
    warn = np.asarray(rv["RVS_WARN"]).astype(np.int64) != 0
    fail = np.asarray(sp["SUCCESS"]).astype(np.int64) == 0
    out = {"targetid": np.asarray(rv["TARGETID"]).astype(np.int64), "ra": np.asarray(rv["TARGET_RA"], float),
           "dec": np.asarray(rv["TARGET_DEC"], float),
           "rv": np.where(warn, np.nan, np.asarray(rv["VRAD"], float)),
           "rv_err": np.where(warn, np.nan, np.asarray(rv["VRAD_ERR"], float))}
    if "COADD_FILE" in rv.colnames:    # ours (synthetic survey): which coadd each row describes
        out["coadd_file"] = np.array([str(f).strip() for f in rv["COADD_FILE"]], dtype=object)
    if "RR_SPECTYPE" in rv.colnames:   # Z24 sec. 2 keeps only the spectra redrock calls STAR
        out["rr_spectype"] = np.array([str(t).strip() for t in rv["RR_SPECTYPE"]], dtype=object)
    for lab, col in (("teff", "TEFF"), ("logg", "LOGG"), ("feh", "FEH"), ("alpha_fe", "ALPHAFE")):
        if col in rv.colnames:
            out[f"rvs_{lab}"] = np.where(warn, np.nan, np.asarray(rv[col], float))
        if f"{col}_ERR" in rv.colnames:
            out[f"rvs_{lab}_err"] = np.where(warn, np.nan, np.asarray(rv[f"{col}_ERR"], float))
        if col in sp.colnames:
            out[f"sp_{lab}"] = np.where(fail, np.nan, np.asarray(sp[col], float))
    if "LOG10MICRO" in sp.colnames:
        out["sp_vmic"] = np.where(fail, np.nan, 10 ** np.asarray(sp["LOG10MICRO"], float))
    df = pd.DataFrame(out)
    if primary_only and "PRIMARY" in rv.colnames:
        df = df[np.asarray(rv["PRIMARY"]).astype(bool)].reset_index(drop=True)
    return df
