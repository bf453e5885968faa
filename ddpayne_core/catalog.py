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


def robust_bias_scatter(d) -> tuple[float, float]:
    """Median and robust scatter (1.4826 x median absolute deviation) of the finite values of
    ``d``; NaN for none."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return np.nan, np.nan
    med = float(np.median(d))
    return med, float(1.4826 * np.median(np.abs(d - med)))


def _good_fits_with_truth(catalog: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The catalogue's good fits (fit_status < 2) with the true labels as <label>_true."""
    merged = catalog.merge(truth, on="specid", suffixes=("", "_true"))
    return merged[merged["fit_status"] < 2]


def recovery_scatter(catalog: pd.DataFrame, truth: pd.DataFrame, labels, snr_targets=(20, 50, 100),
                     width: float = 0.2) -> pd.DataFrame:
    """Label recovery against truth in S/N bins (snr within +-width of each target):
    rows = labels, columns bias_<snr>, scatter_<snr> (robust: 1.4826 MAD), n_<snr>."""
    merged = _good_fits_with_truth(catalog, truth)
    rows = {}
    for lab in labels:
        row = {}
        for snr in snr_targets:
            sel = np.abs(merged["snr"] / snr - 1) < width
            d = (merged.loc[sel, lab] - merged.loc[sel, f"{lab}_true"]).to_numpy()
            row[f"bias_{snr}"], row[f"scatter_{snr}"] = robust_bias_scatter(d)
            row[f"n_{snr}"] = int(d.size)
        rows[lab] = row
    return pd.DataFrame(rows).T


def bias_against_training_labels(catalog: pd.DataFrame, truth: pd.DataFrame, meta: pd.DataFrame,
                                 labels, training_ids, survey: str, snr_min: float = 30.0) -> pd.DataFrame:
    """The fitted labels' median bias against truth beside the training labels' own bias.

    A data-driven model learns the scale of its training labels, biases included, so what the
    method itself adds is the difference. catalog: fits (specid, snr, fit_status, labels);
    truth: specid and the true labels; meta: specid and the training labels <survey>_<label>;
    training_ids: specids trained on. Rows = labels; columns training_bias (median of
    <survey>_<label> - true over the training spectra), fitted_bias (median of fitted - true over
    good fits with S/N > snr_min), added_bias (fitted_bias - training_bias), n_training, n_fitted;
    units of each label."""
    fits = _good_fits_with_truth(catalog, truth)
    fits = fits[fits["snr"] > snr_min]
    cols = [f"{survey}_{lab}" for lab in labels if f"{survey}_{lab}" in meta]
    train = meta.loc[meta["specid"].isin(set(training_ids)), ["specid"] + cols].merge(truth, on="specid")
    rows = {}
    for lab in labels:
        if f"{survey}_{lab}" not in train:
            continue
        own = (train[f"{survey}_{lab}"] - train[lab]).to_numpy(dtype=float)
        fitted = (fits[lab] - fits[f"{lab}_true"]).to_numpy(dtype=float)
        rows[lab] = {"training_bias": float(np.nanmedian(own)), "fitted_bias": float(np.nanmedian(fitted)),
                     "n_training": int(np.isfinite(own).sum()), "n_fitted": int(np.isfinite(fitted).sum())}
        rows[lab]["added_bias"] = rows[lab]["fitted_bias"] - rows[lab]["training_bias"]
    return pd.DataFrame(rows).T


def recovery_by_feh(catalog: pd.DataFrame, truth: pd.DataFrame, labels,
                    edges=(-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.6), snr_min: float = 30.0) -> pd.DataFrame:
    """Label recovery against truth in bins of true [Fe/H] [dex] (good fits with S/N > snr_min;
    truth needs feh): rows = bins "lo..hi", columns n, bias_<label>, scatter_<label> (robust)."""
    merged = _good_fits_with_truth(catalog, truth)
    merged = merged[merged["snr"] > snr_min]
    rows = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (merged["feh_true"] >= lo) & (merged["feh_true"] < hi)
        row = {"n": int(sel.sum())}
        for lab in labels:
            row[f"bias_{lab}"], row[f"scatter_{lab}"] = robust_bias_scatter(
                merged.loc[sel, lab] - merged.loc[sel, f"{lab}_true"])
        rows[f"{lo:+.1f}..{hi:+.1f}"] = row
    return pd.DataFrame(rows).T


def starid(ra, dec) -> np.ndarray:
    """X19 Table 3 star ID "Sdddmmss+ddmmss": RA in degrees/arcmin/arcsec, Dec signed."""
    ra = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    dec = np.asarray(dec, dtype=np.float64)
    ra_s = np.floor(ra * 3600.0 + 1e-6).astype(np.int64)
    dec_s = np.floor(np.abs(dec) * 3600.0 + 1e-6).astype(np.int64)
    sign = np.where(dec < 0, "-", "+")
    return np.array([f"S{r // 3600:03d}{r // 60 % 60:02d}{r % 60:02d}{s}{d // 3600:02d}"
                     f"{d // 60 % 60:02d}{d % 60:02d}" for r, s, d in zip(ra_s, sign, dec_s)])


def uqflag(star_key, snr) -> np.ndarray:
    """X19 Table 3: 1 for the highest-S/N visit of a star, 2, 3, ... for the others."""
    df = pd.DataFrame({"k": np.asarray(star_key), "snr": np.asarray(snr, dtype=np.float64)})
    return df.groupby("k")["snr"].rank(ascending=False, method="first").astype(int).to_numpy()


def alpha_fe(values: dict, errors: dict):
    """[alpha/Fe]: inverse-variance weighted mean of [Mg/Fe], [Si/Fe], [Ca/Fe], [Ti/Fe]
    (X19 Table 3 note 4), using those present and finite. Returns (value, error) arrays."""
    from .constants import ALPHA_FE_ELEMENTS

    v = np.array([values[k] for k in ALPHA_FE_ELEMENTS if k in values], dtype=np.float64)
    e = np.array([errors[k] for k in ALPHA_FE_ELEMENTS if k in values], dtype=np.float64)
    w = np.where(np.isfinite(v) & np.isfinite(e) & (e > 0), 1.0 / np.where(e > 0, e, 1.0) ** 2, 0.0)
    wsum = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(wsum > 0, (np.nan_to_num(v) * w).sum(axis=0) / wsum, np.nan),
                np.where(wsum > 0, 1.0 / np.sqrt(wsum), np.nan))


def metal_poor_weight(feh_overall) -> np.ndarray:
    """Weight of the metal-poor model: 0 above [Fe/H] = -0.6, 1 below -1.0, linear between
    (docs/spec.md sec. 9), read on the overall model's [Fe/H]."""
    from .constants import METAL_POOR_BLEND_FEH

    lo, hi = METAL_POOR_BLEND_FEH
    return np.clip((hi - np.asarray(feh_overall, dtype=np.float64)) / (hi - lo), 0.0, 1.0)


def recommended(apogee: pd.DataFrame, galah: pd.DataFrame) -> pd.DataFrame:
    """The recommended catalogue (X19 Table 4): each label from the training set recommended for
    it, with its _err/_flag/_gradcorr/_response columns; abundances whose X_flag is 0 become -999 (Teff,
    logg, [Fe/H] always kept). Rows of the two inputs must be the same spectra, same order."""
    from .constants import ALWAYS_KEPT, MISSING, RECOMMENDED_FROM

    if len(apogee) != len(galah) or not np.array_equal(apogee["specid"], galah["specid"]):
        raise ValueError("the APOGEE- and GALAH-trained catalogues must list the same spectra")
    out = pd.DataFrame({"specid": apogee["specid"].to_numpy()})
    for source, table in (("apogee", apogee), ("galah", galah)):
        for lab in RECOMMENDED_FROM[source]:
            if lab not in table:
                continue
            for suffix in ("", "_err", "_flag", "_gradcorr", "_response"):
                if lab + suffix in table:
                    out[lab + suffix] = table[lab + suffix].to_numpy()
            if lab not in ALWAYS_KEPT and f"{lab}_flag" in table:
                rejected = table[f"{lab}_flag"].to_numpy() == 0
                out.loc[rejected, lab] = MISSING
                out.loc[rejected, f"{lab}_err"] = MISSING
    return out


def blend_metal_poor(overall: pd.DataFrame, metal_poor: pd.DataFrame, labels) -> pd.DataFrame:
    """Blend the overall and metal-poor models' results (docs/spec.md sec. 9): weights from the overall
    [Fe/H]; values and errors mixed linearly; flags, gradcorr and response from the model of larger
    weight."""
    if not np.array_equal(overall["specid"], metal_poor["specid"]):
        raise ValueError("overall and metal-poor catalogues must list the same spectra")
    w = metal_poor_weight(overall["feh"].to_numpy())
    out = overall.copy()
    for lab in labels:
        for suffix in ("", "_err"):
            col = lab + suffix
            if col in overall and col in metal_poor:
                out[col] = (1 - w) * overall[col].to_numpy() + w * metal_poor[col].to_numpy()
        for suffix in ("_flag", "_gradcorr", "_response"):
            col = lab + suffix
            if col in overall and col in metal_poor:
                out[col] = np.where(w > 0.5, metal_poor[col].to_numpy(), overall[col].to_numpy())
    out["metal_poor_weight"] = w
    return out


# Leading columns of X19 Table 3, in order (labels, flags and the rest follow).
TABLE3_HEAD = ("specid", "ra", "dec", "snr_u", "snr_g", "snr_r", "snr_i", "snr_z", "rv", "rv_err")
TABLE3_TAIL = ("chi2", "chi2ratio", "qflag_chi2", "chi2_na", "chi2ratio_na", "qflag_chi2na",
               "dsnr_parallax", "qflag_singlestar", "uqflag", "starid", "subclass", "filename")


def table3(recommended_table: pd.DataFrame, meta: pd.DataFrame, star_key: str = "star_id") -> pd.DataFrame:
    """The recommended catalogue in X19 Table 3 layout: survey metadata, every label with _err,
    _flag, _gradcorr, [alpha/Fe], chi2 flags, binary flag, uqflag and starid."""
    # Survey metadata only: a synthetic store's meta also holds truth labels, never to be mixed in.
    keep = [c for c in meta.columns if c in TABLE3_HEAD + TABLE3_TAIL + ("snr", star_key, "mjd")
            and c not in recommended_table.columns or c == "specid"]
    t = meta[keep].merge(recommended_table, on="specid", how="right")
    vals = {k: t[k].to_numpy() for k in ("mg_fe", "si_fe", "ca_fe", "ti_fe") if k in t}
    errs = {k: t[f"{k}_err"].to_numpy() for k in vals}
    vals = {k: np.where(v == -999.0, np.nan, v) for k, v in vals.items()}
    t["alpha_fe"], t["alpha_fe_err"] = alpha_fe(vals, errs)
    t["starid"] = starid(t["ra"], t["dec"])
    t["uqflag"] = uqflag(t[star_key] if star_key in t else t["starid"], t.get("snr_g", t.get("snr")))
    head = [c for c in TABLE3_HEAD if c in t]
    tail = [c for c in TABLE3_TAIL if c in t]
    middle = [c for c in t.columns if c not in head and c not in tail]
    return t[head + middle + tail]
