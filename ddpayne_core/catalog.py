"""Catalogue output: Parquet (default) or FITS, written atomically, with metadata recording the
model, its configuration and whether the data are synthetic."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .io_utils import atomic_path

SYNTHETIC_NOTE = "SYNTHETIC SURVEY: simulated spectra, not observations"


def write_catalog(table: pd.DataFrame, path: str | Path, metadata: dict) -> Path:
    """Write ``table`` to ``path`` (.parquet or .fits); ``metadata`` (JSON-able) is stored as
    Parquet key-value metadata under ``ddpayne`` or as FITS header cards."""
    path = Path(path)
    meta = dict(metadata)
    if meta.get("synthetic"):
        meta["note"] = SYNTHETIC_NOTE
    if path.suffix == ".parquet":
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                               b"ddpayne": json.dumps(meta, default=str).encode()})
        with atomic_path(path) as tmp:
            pq.write_table(arrow, tmp)
    elif path.suffix in (".fits", ".fit"):
        from astropy.table import Table

        flat = table.drop(columns=[c for c in table.columns if table[c].dtype == object
                                   and not isinstance(table[c].iloc[0], str)])
        t = Table.from_pandas(flat)
        for key, value in meta.items():
            card = key.upper()[:8]
            t.meta[card] = value if isinstance(value, (int, float, str, bool)) else \
                json.dumps(value, default=str)[:60]
        with atomic_path(path) as tmp:
            t.write(tmp, format="fits", overwrite=True)
    else:
        raise ValueError(f"{path}: catalogue format must be .parquet or .fits")
    return path


def read_catalog_metadata(path: str | Path) -> dict:
    """The ddpayne metadata of a Parquet catalogue."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(b"ddpayne", b"{}"))


def recovery_scatter(catalog: pd.DataFrame, truth: pd.DataFrame, labels, snr_targets=(20, 50, 100),
                     width: float = 0.2) -> pd.DataFrame:
    """Label recovery against truth in S/N bins (snr within +-width of each target):
    rows = labels, columns bias_<snr>, scatter_<snr> (robust: 1.4826 MAD), n_<snr>."""
    merged = catalog.merge(truth, on="specid", suffixes=("", "_true"))
    ok = merged["fit_status"] < 2
    rows = {}
    for lab in labels:
        row = {}
        for snr in snr_targets:
            sel = ok & (np.abs(merged["snr"] / snr - 1) < width)
            d = (merged.loc[sel, lab] - merged.loc[sel, f"{lab}_true"]).to_numpy()
            row[f"bias_{snr}"] = float(np.median(d)) if d.size else np.nan
            row[f"scatter_{snr}"] = float(1.4826 * np.median(np.abs(d - np.median(d)))) if d.size else np.nan
            row[f"n_{snr}"] = int(d.size)
        rows[lab] = row
    return pd.DataFrame(rows).T
