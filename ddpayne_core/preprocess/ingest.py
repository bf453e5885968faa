"""Ingest: a folder (or list) of LAMOST FITS files into the spectral store, in parallel,
resumable, with a report of skipped files.

Pass 1 reads every header (fast) and fixes the row of every file; pass 2 reads the spectra chunk
by chunk with a process pool and writes each chunk once. A file that cannot be read keeps its row
with zero inverse variance (fits give it status FAILED) and its reason in ``ingest_error``.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from ..instrument import get_instrument
from ..io.spectra import SpectrumFormatError, fits_files, lamost_header_meta, read_lamost
from ..io.store import SpectralStore, chunk_done, create_store, write_chunk, write_meta
from ..io_utils import atomic_path
from ..progress import progress
from .grid import to_grid


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
