"""Synthetic stand-ins in the real file layouts, so the real-data path (FITS folder -> ingest ->
cross-match with a high-resolution catalogue -> training set -> model -> catalogue) can be run
end to end without real data: LAMOST DR5-DR7 spectra (5-row primary image, header cards as in
the real files) and an APOGEE allStar table. Every file says SYNTHETIC in its header.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..constants import C_KMS
from ..io.store import SpectralStore
from ..io_utils import atomic_path
from ..labels import LABEL_SETS


def export_lamost_fits(store: SpectralStore, rows, folder: str | Path) -> list[Path]:
    """Write store ``rows`` as LAMOST DR5-layout FITS files (observed frame, the store's grid
    as the wavelength row) named like real ones (spec-<lmjd>-<plan>_sp<sp>-<fiber>.fits)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = store.meta()
    flux, ivar = store.read_rows(np.asarray(rows))
    wave = store.wave
    out = []
    for k, row in enumerate(rows):
        rec = meta.iloc[row]
        lmjd = int(rec["mjd"])
        name = folder / f"spec-{lmjd}-SYNTH{row // 250:04d}_sp{row % 16 + 1:02d}-{row % 250 + 1:03d}.fits"
        h = fits.Header()
        h["OBSID"] = int(rec["specid"])
        h["RA"], h["DEC"] = float(rec["ra"]), float(rec["dec"])
        h["DESIG"] = f"SYNTH J{float(rec['ra']):08.4f}{float(rec['dec']):+08.4f}"
        h["MJD"], h["LMJD"] = lmjd, lmjd
        h["PLANID"], h["FIBERID"] = f"SYNTH{row // 250:04d}", int(row % 250 + 1)
        for band in "UGRIZ":
            h[f"SNR{band}"] = float(rec["snr"])
        h["Z"] = float(rec["rv"]) / C_KMS
        h["Z_ERR"] = float(rec.get("rv_err", 5.0)) / C_KMS
        h["CLASS"], h["SUBCLASS"] = "STAR", ""
        h["COMMENT"] = "SYNTHETIC stand-in written by ddpayne (not a LAMOST observation)"
        zeros = np.zeros_like(wave, dtype=np.float32)
        data = np.stack([flux[k], ivar[k], wave, zeros, zeros]).astype(np.float32)
        with atomic_path(name) as tmp:
            fits.PrimaryHDU(data, header=h).writeto(tmp, overwrite=True)
        out.append(name)
    return out


def export_allstar(meta, rows, path: str | Path, survey: str = "apogee") -> Path:
    """Write the ``<survey>_*`` labels of ``rows`` as an APOGEE allStar table (APOGEE_ID, RA, DEC,
    TEFF, LOGG, VMICRO, FE_H, <X>_FE with _ERR and _FLAG, ASPCAPFLAG); missing labels -9999."""
    column = {"teff": "TEFF", "logg": "LOGG", "vmic": "VMICRO", "feh": "FE_H"}
    sub = meta.iloc[np.asarray(rows)]
    t = Table({"APOGEE_ID": [f"2M-SYNTH-{int(s)}" for s in sub["star_id"]],
               "RA": sub["ra"].to_numpy(float), "DEC": sub["dec"].to_numpy(float)})
    for lab in LABEL_SETS["lamost-apogee"]:
        src = f"{survey}_{lab}"
        if src not in sub:
            continue
        v = sub[src].to_numpy(float)
        col = column.get(lab, lab.upper())
        t[col] = np.where(np.isfinite(v), v, -9999.0)
        t[f"{col}_ERR"] = np.full(len(t), 60.0 if lab == "teff" else 0.05)
        if lab.endswith("_fe"):
            t[f"{col}_FLAG"] = np.zeros(len(t), np.int32)
    t["ASPCAPFLAG"] = np.zeros(len(t), np.int64)
    t.meta["COMMENT"] = "SYNTHETIC stand-in written by ddpayne (not APOGEE data)"
    with atomic_path(Path(path)) as tmp:
        t.write(tmp, format="fits", overwrite=True)
    return Path(path)
