"""Ingest: survey files into the spectral store, resumable, with a report of what was skipped.

LAMOST (``ingest_lamost``): pass 1 reads every header (fast) and fixes the row of every file;
pass 2 reads the spectra chunk by chunk with a process pool and writes each chunk once. A file
that cannot be read keeps its row with zero inverse variance (fits give it status FAILED) and its
reason in ``ingest_error``.

DESI (``ingest_desi``): coadd files (many spectra each) and optionally the MWS catalogue for
radial velocities and redrock's class; every spectrum keeps its row, and what makes it unusable
(``io.desi.read_desi_coadd``'s problems, no radial velocity, not a star) is in ``ingest_error``.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from .. import constants as C
from ..instrument import get_instrument
from ..io.desi import lsf_variance, read_desi_coadd
from ..io.highres import read_desi_mws
from ..io.spectra import SpectrumFormatError, fits_files, lamost_header_meta, read_lamost
from ..io.store import SpectralStore, chunk_done, create_store, write_chunk, write_meta
from ..io_utils import atomic_path
from ..progress import progress
from .grid import merge_cameras, to_grid


def _header_row(path: Path) -> dict:
    try:
        header = fits.getheader(path, 0)
        row = lamost_header_meta(header, path)
        row["synthetic"] = "SYNTHETIC" in str(header.get("COMMENT", ""))
        row["ingest_error"] = ""
    except Exception as exc:  # any unreadable file keeps its row, with the reason
        row = {"filename": path.name, "rv": np.nan, "ingest_error": f"{path}: {exc}"}
    row["path"] = str(path)
    return row


def _read_one(path: str):
    inst = get_instrument("lamost")
    try:
        return to_grid(read_lamost(path), inst) + ("",)
    except SpectrumFormatError as exc:
        return np.ones(inst.wave.size), np.zeros(inst.wave.size), str(exc)


def ingest_lamost(files, out: str | Path, chunk: int = 1000, workers: int = 2,
                  log=print) -> SpectralStore:
    """Ingest LAMOST FITS ``files`` (paths or folders) into a store at ``out``; resumable."""
    paths = fits_files(files)
    if not paths:
        raise ValueError(f"no FITS files in {list(map(str, files))}")
    meta = pd.DataFrame([_header_row(p) for p in progress(paths, desc="headers")])
    meta.insert(0, "specid", np.arange(len(meta)))
    # The survey S/N of X19 is the g-band S/N.
    meta["snr"] = pd.to_numeric(meta.get("snr_g"), errors="coerce")
    synthetic = bool(meta.get("synthetic", pd.Series([False])).fillna(False).astype(bool).any())
    store = create_store(out, get_instrument("lamost").wave, len(meta), meta, "lamost", chunk,
                         synthetic=synthetic, provenance={"ingested_from": sorted({str(p.parent) for p in paths})})
    errors = list(meta["ingest_error"])
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for start, stop in progress(list(store.chunks()), desc="ingesting"):
            if chunk_done(store, start):
                continue
            rows = list(pool.map(_read_one, meta["path"].iloc[start:stop], chunksize=16))
            flux = np.stack([r[0] for r in rows])
            ivar = np.stack([r[1] for r in rows])
            for i, r in enumerate(rows):
                errors[start + i] = errors[start + i] or r[2]
            write_chunk(store, start, flux, ivar)
    meta["ingest_error"] = errors
    skipped = meta[meta["ingest_error"] != ""]
    with atomic_path(Path(out) / "ingest_report.csv") as tmp:
        skipped[["specid", "filename", "ingest_error"]].to_csv(tmp, index=False)
    write_meta(out, meta, store.chunk)
    log(f"ingested {len(meta) - len(skipped)} spectra into {out}; {len(skipped)} skipped "
        f"(see ingest_report.csv)")
    return store


def _coadd_rows(path: Path) -> tuple[pd.DataFrame | None, str]:
    """The FIBERMAP rows of one coadd (targetid, ra, dec, ...), or None and the reason."""
    try:
        return read_desi_coadd(path).fibermap, ""
    except SpectrumFormatError as exc:
        return None, str(exc)


def _desi_meta(coadd, mws: pd.DataFrame | None) -> pd.DataFrame:
    """Store metadata of a coadd's spectra: fibermap columns, per-camera S/N, the survey S/N, the
    LSF variance from the RESOLUTION matrices (lsf_var [pixel^2], ``io.desi.lsf_variance``), RV
    (and RR_SPECTYPE) from the MWS catalogue by TARGETID, and ingest_error."""
    meta = coadd.fibermap.copy()
    for cam, c in coadd.cameras.items():
        snr = np.where(c.ivar > 0, c.flux * np.sqrt(np.clip(c.ivar, 0, None)), np.nan)
        with warnings.catch_warnings():   # an all-masked camera: NaN, already a named problem
            warnings.simplefilter("ignore", RuntimeWarning)
            meta[f"snr_{cam.lower()}"] = np.nanmedian(snr, axis=1)
    meta["snr"] = meta.get(f"snr_{C.DESI_SURVEY_SNR_CAMERA.lower()}", np.nan)
    meta["lsf_var"] = lsf_variance(coadd.cameras, C.DESI_PIXEL_AA)
    problems = [[p] if p else [] for p in coadd.problems]
    if mws is not None:   # by TARGETID, and by coadd file where the catalogue names it
        if "coadd_file" in mws:
            found = meta[["targetid", "filename"]].merge(
                mws.rename(columns={"coadd_file": "filename"}).drop_duplicates(["targetid", "filename"]),
                on=["targetid", "filename"], how="left")
        else:
            found = meta[["targetid"]].merge(mws.drop_duplicates("targetid"), on="targetid", how="left")
        meta["rv"], meta["rv_err"] = found["rv"].to_numpy(), found["rv_err"].to_numpy()
        if "rr_spectype" in found:
            meta["rr_spectype"] = found["rr_spectype"].to_numpy()
            for i in np.nonzero(found["rr_spectype"].notna() & (found["rr_spectype"] != "STAR"))[0]:
                problems[i].append(f"not a star (RR_SPECTYPE {found['rr_spectype'].iloc[i]})")
    else:
        meta["rv"], meta["rv_err"] = np.nan, np.nan
    for i in np.nonzero(~np.isfinite(meta["rv"].to_numpy(dtype=float)))[0]:
        problems[i].append("no radial velocity (no MWS catalogue row with VRAD)")
    meta["ingest_error"] = ["; ".join(p) for p in problems]
    return meta


def ingest_desi(files, out: str | Path, mws_catalog: str | Path | None = None,
                chunk: int = 1000, log=print) -> SpectralStore:
    """Ingest DESI coadd ``files`` (paths or folders) into a store of spectra merged onto the DESI
    grid in the observed frame; resumable. ``mws_catalog``: the MWS catalogue (RVTAB, SPTAB;
    ``io.highres.read_desi_mws``) giving each TARGETID's RV (needed for the rest frame) and
    redrock class. Unreadable files are skipped and reported; every spectrum of a readable file
    keeps its row and the store's metadata name its problems in ``ingest_error`` (no RV, not a
    star, a camera missing or all masked), so catalogues carry them beside the fit."""
    paths = fits_files(files)
    if not paths:
        raise ValueError(f"no FITS files in {list(map(str, files))}")
    inst = get_instrument("desi")
    mws = read_desi_mws(mws_catalog, primary_only=False) if mws_catalog else None
    counted = [(p, *_coadd_rows(p)) for p in progress(paths, desc="fibermaps")]
    readable = [(p, rows) for p, rows, _ in counted if rows is not None]
    skipped_files = [(p, why) for p, rows, why in counted if rows is None]
    n = sum(len(rows) for _, rows in readable)
    if n == 0:
        raise ValueError(f"no readable DESI coadd among {len(paths)} files: "
                         + "; ".join(why for _, why in skipped_files[:3]))
    synthetic = any(fits.getheader(p, 0).get("SYNTHETI", False) for p, _ in readable)
    placeholder = pd.DataFrame({"specid": np.arange(n)})
    store = create_store(out, inst.wave, n, placeholder, "desi", chunk, synthetic=synthetic,
                         provenance={"ingested_from": sorted({str(p.parent) for p in paths}),
                                     "mws_catalog": str(mws_catalog) if mws_catalog else None})
    metas, pending, start = [], [], 0      # pending: merged (flux, ivar) not yet written

    def flush(final: bool):
        nonlocal pending, start
        flux = np.concatenate([f for f, _ in pending]) if pending else np.zeros((0, inst.wave.size))
        ivar = np.concatenate([v for _, v in pending]) if pending else flux
        while len(flux) >= chunk or (final and len(flux)):
            take = min(chunk, len(flux))
            if not chunk_done(store, start):
                write_chunk(store, start, flux[:take], ivar[:take])
            flux, ivar, start = flux[take:], ivar[take:], start + take
        pending = [(flux, ivar)]

    for path, _ in progress(readable, desc="ingesting"):
        coadd = read_desi_coadd(path)
        metas.append(_desi_meta(coadd, mws))
        pending.append(merge_cameras(coadd, inst))
        flush(final=False)
    flush(final=True)
    meta = pd.concat(metas, ignore_index=True)
    meta.insert(0, "specid", np.arange(n))
    # A star is a TARGETID: DESI keeps it across programmes and visits (repeat-visit errors).
    meta["star_id"] = pd.factorize(meta["targetid"].astype("Int64").astype(str))[0]
    write_meta(out, meta, store.chunk)
    with atomic_path(Path(out) / "ingest_report.csv") as tmp:
        report = meta.loc[meta["ingest_error"] != "", ["specid", "filename", "row", "ingest_error"]]
        files_report = pd.DataFrame({"specid": -1, "filename": [p.name for p, _ in skipped_files],
                                     "row": -1, "ingest_error": [w for _, w in skipped_files]})
        pd.concat([files_report, report], ignore_index=True).to_csv(tmp, index=False)
    log(f"ingested {n} DESI spectra from {len(readable)} coadds into {out}; "
        f"{int((meta['ingest_error'] != '').sum())} flagged, {len(skipped_files)} files skipped "
        "(see ingest_report.csv)")
    return store
