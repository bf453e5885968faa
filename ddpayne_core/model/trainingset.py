"""Training sets: survey spectra of stars with high-resolution labels (X19 sec. 3, eqs. 3-4;
docs/spec.md sec. 5).

``crossmatch`` attaches a high-resolution catalogue (``highres.read_*``) to survey metadata by
sky position (astropy). ``select_training`` applies X19's rules: LAMOST g-band S/N > 50, relaxed
to > 30 for [Fe/H] < -0.6; [Mg/Fe] > -0.3; every label available (flagged values are NaN); no
binaries or broken spectra; one spectrum per star (its highest-S/N visit). ``max_stars`` keeps
every metal-poor star ([Fe/H] < -1) and samples the rest. For the synthetic survey the
high-resolution labels are already ``apogee_<label>`` / ``galah_<label>`` metadata columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..constants import METAL_POOR_TRAINING_FEH
from ..labels import get_label_set

TRAINING_MIN_SNR = 50.0  # X19 eq. 3: S/N_LAMOST > 50 ...
TRAINING_MIN_SNR_METAL_POOR = 30.0  # ... relaxed to 30 where [Fe/H] < -0.6 (X19 eq. 3)
SNR_RELAX_FEH = -0.6  # X19 eq. 3
MIN_MG_FE = -0.3  # X19 eq. 3: lower [Mg/Fe] are unrealistic
KEEP_ALL_FEH = -1.0  # metal-poor stars always kept when sampling (X19 sec. 3)
TRANSFER_MIN_SNR = 20.0  # Z24 sec. 3.2: S/N > 20 for both the DESI and the LAMOST spectra


@dataclass(frozen=True)
class TrainingSetConfig:
    survey: str = "apogee"          # which high-resolution labels: "apogee" or "galah"
    label_set: str = "lamost-apogee"
    min_snr: float = TRAINING_MIN_SNR
    min_snr_metal_poor: float = TRAINING_MIN_SNR_METAL_POOR
    metal_poor: bool = False        # the metal-poor training set ([Fe/H] < -0.5, docs/spec.md sec. 5)
    max_stars: int | None = None
    seed: int = 0

    @classmethod
    def of_model(cls, model) -> "TrainingSetConfig":
        """The configuration an emulator was trained with (recorded in its config by
        pipeline.train_from_store); its own labels from the APOGEE-like survey if not recorded."""
        cfg = dict(model.config.get("training_set") or {})
        label_set = cfg.pop("label_set", None)
        if isinstance(label_set, list) or label_set is None:
            label_set = tuple(label_set or model.labels)
        return cls(label_set=label_set, **cfg)


def crossmatch(survey: pd.DataFrame, hires: pd.DataFrame, radius_arcsec: float = 3.0) -> pd.DataFrame:
    """Attach to every survey row the nearest high-resolution row within ``radius_arcsec``
    (columns ra, dec in degrees in both); unmatched rows get NaN labels. Adds ``match_sep_arcsec``."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    a = SkyCoord(survey["ra"].to_numpy() * u.deg, survey["dec"].to_numpy() * u.deg)
    b = SkyCoord(hires["ra"].to_numpy() * u.deg, hires["dec"].to_numpy() * u.deg)
    idx, sep, _ = a.match_to_catalog_sky(b)
    ok = sep.arcsec < radius_arcsec
    extra = hires.drop(columns=["ra", "dec"]).iloc[idx].reset_index(drop=True)
    extra[~ok] = np.nan
    out = pd.concat([survey.reset_index(drop=True), extra], axis=1)
    out["match_sep_arcsec"] = np.where(ok, sep.arcsec, np.nan)
    return out


def transfer_labels(meta: pd.DataFrame, catalog: pd.DataFrame, labels, prefix: str = "lamost",
                    min_snr: float = TRANSFER_MIN_SNR, radius_arcsec: float = 3.0) -> pd.DataFrame:
    """Training labels by transfer from another survey's DD-Payne catalogue (Z24 sec. 3.2: DESI
    trained on LAMOST labels of the stars both observed, S/N > 20 in both).

    meta: this survey's spectra (ra, dec, snr); catalog: the other survey's catalogue (ra, dec,
    snr, ``labels``, and where present fit_status, qflag_chi2). Its good fits (S/N > ``min_snr``,
    not failed, qflag_chi2 0) are reduced to one row per position (the highest S/N) and matched
    by sky position; ``meta`` is returned with ``<prefix>_<label>`` columns (NaN where unmatched
    or where this survey's S/N is not above ``min_snr``) and ``<prefix>_sep_arcsec``."""
    good = catalog["snr"].to_numpy(dtype=float) > min_snr
    if "fit_status" in catalog:
        good &= catalog["fit_status"].to_numpy() != 2
    if "qflag_chi2" in catalog:
        good &= catalog["qflag_chi2"].to_numpy() == 0
    src = catalog.loc[good, ["ra", "dec", "snr"] + list(labels)].sort_values("snr", ascending=False)
    src = src.assign(_key=(src["ra"].round(4).astype(str) + src["dec"].round(4).astype(str)))
    src = src.drop_duplicates("_key").drop(columns=["_key", "snr"])
    src = src.rename(columns={lab: f"{prefix}_{lab}" for lab in labels})
    matched = crossmatch(meta[["ra", "dec"]].reset_index(drop=True), src, radius_arcsec)
    out = meta.reset_index(drop=True).copy()
    weak = ~(out["snr"].to_numpy(dtype=float) > min_snr)
    for lab in labels:
        values = matched[f"{prefix}_{lab}"].to_numpy(dtype=float)
        out[f"{prefix}_{lab}"] = np.where(weak, np.nan, values)
    out[f"{prefix}_sep_arcsec"] = matched["match_sep_arcsec"].to_numpy()
    return out


def combine_label_sources(meta: pd.DataFrame, sources, labels, prefix: str = "combined") -> pd.DataFrame:
    """One training label set from several reference surveys (Z24 sec. 3.2: DESI's training set
    joins its APOGEE overlap and its LAMOST overlap). ``sources``: column prefixes, best first
    (e.g. ("apogee", "lamost")); each row takes every label from the first source that has all of
    them. Returns ``meta`` with ``<prefix>_<label>`` columns (NaN where no source has them) and
    ``<prefix>_source`` (the source's name, "" for none)."""
    out = meta.copy()
    source = np.full(len(out), "", dtype=object)
    values = np.full((len(out), len(labels)), np.nan)
    for name in reversed(tuple(sources)):       # later sources are overwritten by better ones
        cols = [f"{name}_{lab}" for lab in labels]
        missing = [c for c in cols if c not in out.columns]
        if missing:
            raise ValueError(f"label source {name!r}: metadata lacks columns {missing}")
        block = out[cols].to_numpy(dtype=float)
        full = np.isfinite(block).all(axis=1)
        values[full], source[full] = block[full], name
    for k, lab in enumerate(labels):
        out[f"{prefix}_{lab}"] = values[:, k]
    out[f"{prefix}_source"] = source
    return out


def select_training(meta: pd.DataFrame, config: TrainingSetConfig):
    """Rows of ``meta`` for training and their labels.

    Returns (rows (n,) store row indices, labels (n, n_label) physical, label names).
    """
    names = get_label_set(config.label_set)
    cols = [f"{config.survey}_{lab}" for lab in names]
    missing = [c for c in cols if c not in meta.columns]
    if missing:
        raise ValueError(f"metadata lacks high-resolution label columns {missing}")
    snr = meta["snr_g"] if "snr_g" in meta.columns else meta["snr"]
    feh = meta[f"{config.survey}_feh"]
    snr_cut = np.where(feh < SNR_RELAX_FEH, config.min_snr_metal_poor, config.min_snr)
    ok = meta[cols].notna().all(axis=1) & (snr >= snr_cut)
    if f"{config.survey}_mg_fe" in meta.columns and "mg_fe" in names:
        ok &= meta[f"{config.survey}_mg_fe"] > MIN_MG_FE
    for flag in ("is_binary", "injected_bad", "training_outlier"):
        if flag in meta.columns:
            ok &= ~meta[flag].astype(bool)
    if "qflag_singlestar" in meta.columns:
        ok &= meta["qflag_singlestar"] != 0
    if config.metal_poor:
        ok &= feh < METAL_POOR_TRAINING_FEH
    cand = meta[ok]
    key = "star_id" if "star_id" in cand else "specid"
    best = cand.sort_values("snr", ascending=False).drop_duplicates(key)
    if config.max_stars is not None and len(best) > config.max_stars:
        poor = best[best[f"{config.survey}_feh"] < KEEP_ALL_FEH]
        rest = best.drop(poor.index)
        n_rest = max(config.max_stars - len(poor), 0)
        best = pd.concat([poor, rest.sample(min(n_rest, len(rest)), random_state=config.seed)])
    best = best.sort_index()
    if len(best) < 20:
        raise ValueError(f"only {len(best)} training stars pass the cuts (S/N >= {config.min_snr}/"
                         f"{config.min_snr_metal_poor}, labels {config.survey}); need at least 20")
    return best.index.to_numpy(), best[cols].to_numpy(dtype=np.float64), names


def training_summary(meta: pd.DataFrame, config: TrainingSetConfig) -> pd.DataFrame:
    """Like X19 Table 2: per label, how many overlap stars have it, and how many training stars
    survive the cuts."""
    rows, _, names = select_training(meta, config)
    overlap = meta[f"{config.survey}_teff"].notna()
    return pd.DataFrame({
        "label": names,
        "overlap_available": [int(meta.loc[overlap, f"{config.survey}_{lab}"].notna().sum())
                              for lab in names],
        "overlap_stars": int(overlap.sum()),
        "training_stars": len(rows)})
