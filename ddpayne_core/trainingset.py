"""Training sets: survey spectra of stars with high-resolution labels (X19 sec. 3; SPEC sec. 5).

For the synthetic survey the high-resolution labels are the ``apogee_<label>`` / ``galah_<label>``
columns of the store's metadata. Cuts follow X19 eqs. 3-4 in spirit: S/N, all labels present,
no known binaries, no spectra flagged bad; one spectrum per star (the highest S/N visit). The
metal-poor set keeps stars with [Fe/H] < -0.5 (SPEC sec. 5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .constants import METAL_POOR_TRAINING_FEH
from .labels import get_label_set

TRAINING_MIN_SNR = 50.0  # X19 sec. 3: LAMOST S/N > 50 for training stars


@dataclass(frozen=True)
class TrainingSetConfig:
    survey: str = "apogee"          # which high-resolution labels: "apogee" or "galah"
    label_set: str = "lamost-apogee"
    min_snr: float = TRAINING_MIN_SNR
    metal_poor: bool = False
    max_stars: int | None = None
    seed: int = 0


def select_training(meta: pd.DataFrame, config: TrainingSetConfig):
    """Rows of ``meta`` for training and their labels.

    Returns (rows (n,) store row indices, labels (n, n_label) physical, label names).
    """
    names = get_label_set(config.label_set)
    cols = [f"{config.survey}_{lab}" for lab in names]
    missing = [c for c in cols if c not in meta.columns]
    if missing:
        raise ValueError(f"metadata lacks high-resolution label columns {missing}")
    ok = meta[cols].notna().all(axis=1) & (meta["snr"] >= config.min_snr)
    for flag in ("is_binary", "injected_bad"):
        if flag in meta.columns:
            ok &= ~meta[flag].astype(bool)
    if config.metal_poor:
        ok &= meta[f"{config.survey}_feh"] < METAL_POOR_TRAINING_FEH
    cand = meta[ok]
    best = cand.sort_values("snr", ascending=False).drop_duplicates("star_id" if "star_id" in cand
                                                                    else "specid")
    if config.max_stars is not None and len(best) > config.max_stars:
        best = best.sample(config.max_stars, random_state=config.seed)
    best = best.sort_index()
    if len(best) < 20:
        raise ValueError(f"only {len(best)} training stars pass the cuts (S/N >= {config.min_snr}, "
                         f"labels {config.survey}); need at least 20")
    return best.index.to_numpy(), best[cols].to_numpy(dtype=np.float64), names
