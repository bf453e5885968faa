"""What the real-training studies share: the labelled spectra of a ``ddpayne demo --real`` bundle,
preprocessed, and the report's scoring of a fit of them against LASP, for training and held-out
stars apart. REAL LAMOST DR10 spectra, LASP labels."""
import numpy as np
import pandas as pd

from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.real import RealDataConfig
from ddpayne_core.validation.report import real_validation


def labelled_spectra(bundle, cfg: RealDataConfig = RealDataConfig()):
    """Every spectrum with a reference label and S/N(g) > cfg.min_snr that ingested cleanly:
    meta (n_spec rows, index reset), flux and ivar (n_spec, n_pix) preprocessed."""
    meta = pd.read_parquet(bundle / "labels.parquet")
    meta = meta[meta[f"{cfg.prefix}_matched"].astype(bool) & (meta["snr"] > cfg.min_snr)
                & (meta["ingest_error"].fillna("") == "")]
    rows = meta.index.to_numpy()          # labels.parquet lists the store's rows in order
    meta = meta.reset_index(drop=True)
    flux, ivar = open_store(bundle / "survey").read_rows(rows)
    flux, ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy(), get_instrument("lamost"))
    return meta, flux, ivar


def score(meta: pd.DataFrame, fit, cfg: RealDataConfig = RealDataConfig()) -> list:
    """The report's ``real_validation`` (S/N > cfg.min_snr) of a fit of ``labelled_spectra``,
    for the training and the held-out stars: a list of (row dict with ``stars`` added, boolean
    selection of that row's spectra (n_spec,))."""
    labels = list(cfg.label_names)
    cat = meta.copy()
    cat[labels] = fit.labels
    cat["fit_status"] = np.where(np.isfinite(fit.labels).all(1), 0, 2)
    out = []
    for stars, heldout in (("training", False), ("held-out", True)):
        table = real_validation(cat[cat["heldout"] == heldout].assign(heldout=True), labels, cfg.prefix)
        for r in table[table["snr"] == f"S/N > {cfg.min_snr:g}"].to_dict("records"):
            sel = ((cat["heldout"] == heldout) & cat["spectral_type"].isin(list(r["type"].replace("/", "")))).to_numpy()
            out.append((dict(r, stars=stars), sel))
    return out
