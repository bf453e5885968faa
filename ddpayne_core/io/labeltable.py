"""Training labels by label transfer (Z24 sec. 3.2): any catalogue of labels joined to ingested
survey spectra by observation id or file name, spectra grouped into stars by position, and a
train/test split by star so that no star lends spectra to both sides.

A label table is a CSV, Parquet or FITS table with one row per spectrum: an id column (``obsid``
or ``file``) and label columns in ddpayne names (teff [K], logg [dex], feh [dex], <x>_fe [dex]).
Joined labels become ``<prefix>_<label>`` columns of the survey metadata, the layout
``trainingset.select_training`` reads for any training survey.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .spectra import SpectrumFormatError

LABEL_TABLE_KEYS = ("obsid", "file", "filename")


def read_label_table(path: str | Path, labels) -> pd.DataFrame:
    """A label table with an id column and the ``labels`` columns, checked row by row: a
    missing id, a duplicated id or a missing label column is a ValueError naming the rows or
    the column; a label that is not a finite number becomes NaN (that star is not trained on)."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
        elif path.suffix in (".fits", ".fit"):
            from astropy.table import Table
            table = Table.read(path).to_pandas()
        else:
            table = pd.read_csv(path)
    except FileNotFoundError:
        raise SpectrumFormatError(f"{path}: no such file") from None
    except Exception as exc:
        raise SpectrumFormatError(f"{path}: not a readable label table ({exc})") from None
    key = next((k for k in LABEL_TABLE_KEYS if k in table.columns), None)
    if key is None:
        raise ValueError(f"{path}: no id column; name one of {LABEL_TABLE_KEYS}")
    missing = [lab for lab in labels if lab not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing label column(s) {missing}")
    ids = table[key]
    blank = ids.isna() | (ids.astype(str).str.strip() == "")
    if blank.any():
        raise ValueError(f"{path}: {int(blank.sum())} row(s) without {key}, e.g. table row(s) "
                         f"{[int(i) + 2 for i in np.nonzero(blank.to_numpy())[0][:5]]} (counting the header as row 1)")
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise ValueError(f"{path}: {key} repeated in {int(dup.sum())} rows, e.g. "
                         f"{sorted(ids[dup].astype(str).unique())[:5]}")
    for lab in labels:
        table[lab] = pd.to_numeric(table[lab], errors="coerce")
    return table


def attach_labels(meta: pd.DataFrame, table: pd.DataFrame, labels, prefix: str) -> pd.DataFrame:
    """``meta`` (survey spectra) with ``<prefix>_<label>`` columns from ``table``, matched by
    obsid where both have it, else by file name (the table's ``file`` may carry folders).
    Unmatched spectra get NaN labels; ``<prefix>_matched`` says which matched."""
    out = meta.copy()
    if "obsid" in table.columns and "obsid" in meta.columns and meta["obsid"].notna().any():
        left = pd.to_numeric(meta["obsid"], errors="coerce")
        right = pd.to_numeric(table["obsid"], errors="coerce")
    else:
        col = "file" if "file" in table.columns else "filename"
        left = meta["filename"].astype(str)
        right = table[col].astype(str).map(lambda f: Path(f).name)
    index = pd.Series(np.arange(len(table)), index=right.to_numpy())
    where = index.reindex(left.to_numpy()).to_numpy()
    ok = np.isfinite(where)
    take = np.where(ok, where, 0).astype(int)
    for lab in labels:
        out[f"{prefix}_{lab}"] = np.where(ok, table[lab].to_numpy(dtype=float)[take], np.nan)
    out[f"{prefix}_matched"] = ok
    return out


def star_ids(ra: np.ndarray, dec: np.ndarray, radius_arcsec: float = 3.0) -> np.ndarray:
    """(n,) int: spectra within ``radius_arcsec`` of each other (friends of friends) share a
    star id, so repeat observations of one star are one star. ra, dec: (n,) [deg]."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    ok = np.isfinite(ra) & np.isfinite(dec)
    ids = np.arange(len(ra))
    c = SkyCoord(ra[ok] * u.deg, dec[ok] * u.deg)
    i, j, _, _ = c.search_around_sky(c, radius_arcsec * u.arcsec)
    n = int(ok.sum())
    _, comp = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)),
                                   directed=False)
    ids[ok] = len(ra) + comp   # spectra without a position stay stars of their own
    _, dense = np.unique(ids, return_inverse=True)
    return dense


def heldout_split(star_id: np.ndarray, test_fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """(n,) bool: True for spectra of the held-out stars, a random ``test_fraction`` of the
    distinct stars (every spectrum of a star on the same side)."""
    stars = np.unique(star_id)
    rng = np.random.default_rng(seed)
    test = rng.choice(stars, int(round(test_fraction * len(stars))), replace=False)
    return np.isin(star_id, test)
