"""The pipeline's composed stages, each written once and called by the command line, the demos,
the app's retraining and the notebooks alike:

- ``training_spectra``, ``train_from_store``: training set from a spectral store (and optional label columns) ->
  preprocessed spectra -> emulator with the gradient-spectrum prior (resumable).
- ``lsf_reference``: the LSF a DESI emulator learned, for the fit's LSF prior.
- ``fit_and_flag``: every spectrum of a store fitted (resumable, streamed) -> flags (X_flag,
  chi2, coverage, binaries) -> errors scaled to the repeat-visit scatter.
- ``metal_poor_blend``: the metal-poor model's refits blended into the overall catalogue
  (X19 sec. 4.3).
- ``recommended_catalog``: each label from the training set X19 Table 4 names, in X19
  Table 3's columns.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import constants as C
from .catalog import blend_metal_poor, recommended, table3, write_catalog
from .fit.lm import FitConfig, fit_spectra, fitted_spectra
from .fit.survey import fit_store
from .flags import XFlagConfig, add_flags, calibrate_errors, model_reference
from .instrument import get_instrument
from .io.store import open_store
from .model.emulator import EmulatorModel, estimate_pixel_scatter
from .model.train import TrainConfig, train_emulator
from .model.trainingset import TrainingSetConfig, select_training
from .preprocess.grid import instrument_mask, preprocess_batch
from .theory.gradients import load_reference_gradients


def training_spectra(store, ts_config: TrainingSetConfig = TrainingSetConfig(),
                     meta: pd.DataFrame | None = None):
    """The training set of a store, preprocessed: flux, ivar (n_star, n_pix) normalized in the
    rest frame, labels (n_star, n_label) physical, label names. meta: as ``train_from_store``."""
    meta = store.meta() if meta is None else meta
    rows, labels, names = select_training(meta, ts_config)
    return (*preprocessed_rows(store, meta, rows), labels, names)


def preprocessed_rows(store, meta: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flux and ivar (n_rows, n_pix) of the store's ``rows``, normalized in the rest frame
    (``meta``'s rv)."""
    flux, ivar = store.read_rows(rows)
    return preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], get_instrument(store.info["instrument"]))


def training_outliers(model: EmulatorModel, store, meta: pd.DataFrame, ts_config: TrainingSetConfig,
                      sigma: float, groups: str | None = None,
                      fit_config: FitConfig = FitConfig()) -> np.ndarray:
    """(len(meta),) bool: the training stars whose reference labels ``model`` (trained on them)
    cannot reproduce. Each training spectrum is fitted; a star is an outlier when, in any label,
    its fitted minus reference label lies more than ``sigma`` robust standard deviations (1.4826
    MAD) from the median, taken within its ``groups`` column's value (e.g. spectral type: A stars
    scatter 5x more than F/G against LASP) or over all when None. A failed fit is an outlier.
    Every row of such a star (``star_id``, else the row itself) is marked, so that none of its
    visits is trained on (``select_training`` skips rows with ``training_outlier``)."""
    rows, labels, _ = select_training(meta, ts_config)
    fit = fit_spectra(model, *preprocessed_rows(store, meta, rows), fit_config)
    resid = fit.labels - labels
    group = meta[groups].to_numpy()[rows] if groups else np.zeros(len(rows))
    bad = ~np.isfinite(resid).all(1)
    for g in np.unique(group):
        sel = (group == g) & ~bad
        med = np.median(resid[sel], axis=0)
        scale = 1.4826 * np.median(np.abs(resid[sel] - med), axis=0)
        bad[sel] = (np.abs(resid[sel] - med) > sigma * scale).any(1)
    out = np.zeros(len(meta), bool)
    out[rows[bad]] = True
    if "star_id" in meta:
        out |= meta["star_id"].isin(meta["star_id"].to_numpy()[out]).to_numpy()
    return out


def train_from_store(store_path, model_path, ts_config: TrainingSetConfig = TrainingSetConfig(),
                     config: TrainConfig = TrainConfig(), reference_name: str | None = None,
                     log=print, meta: pd.DataFrame | None = None, **hooks) -> EmulatorModel:
    """Build the training set from a store, preprocess it and train (resumable checkpoint).
    meta: the store's metadata with training-label columns, when they are not in the store
    itself (labels attached by ``labeltable.attach_labels``)."""
    store = open_store(store_path)
    meta = store.meta() if meta is None else meta
    norm, norm_ivar, labels, names = training_spectra(store, ts_config, meta)
    inst = get_instrument(store.info["instrument"])
    reference = load_reference_gradients(reference_name or config.reference) \
        if config.regularize else None
    log(f"training on {len(norm)} stars ({ts_config.survey} labels: {', '.join(names)}); "
        f"regularization {'on' if config.regularize else 'off'}")
    model_path = Path(model_path)
    model = train_emulator(norm, norm_ivar, labels, names, inst.wave, instrument_mask(inst.wave, inst.name), config,
                           reference, checkpoint=model_path.with_suffix(".ckpt"), log=log, **hooks)
    model.config.update(training_set=asdict(ts_config), store=str(store_path),
                        instrument=inst.name, resampling=inst.resampling,
                        synthetic=bool(store.info.get("synthetic")),
                        survey_config=store.info["provenance"].get("config"),
                        truth_emulator_sha256=store.info["provenance"].get("truth_emulator_sha256"))
    if "lsf_var" in meta:
        model.config["lsf_var_ref"] = lsf_reference(meta, ts_config)
    if config.pixel_scatter:
        model.pixel_scatter = training_scatter(model, norm, norm_ivar)
        log(f"model scatter per pixel (median over used pixels): "
            f"{np.median(model.pixel_scatter[model.mask]):.4f}")
    model.save(model_path)
    model_path.with_suffix(".ckpt").unlink(missing_ok=True)
    return model


def training_scatter(model: EmulatorModel, norm: np.ndarray, norm_ivar: np.ndarray,
                     config: FitConfig = FitConfig()) -> np.ndarray:
    """Each pixel's model scatter [normalized flux] (n_pix,): fit the training spectra
    (n_spec, n_pix, normalized) and estimate the scatter of their residuals beyond their noise
    (``estimate_pixel_scatter``). At the fitted labels rather than the training labels, so
    that the reference labels' own errors, which move a spectrum along the emulator's
    gradients, are not taken for model error (``studies/real_training/pixel_scatter.py``).
    0 at pixels outside the model's mask."""
    fit = fit_spectra(model, norm, norm_ivar, replace(config, pixel_scatter=False))
    ok = np.isfinite(fit.labels).all(1)
    residual = norm[ok] - fitted_spectra(model, fit.labels[ok], fit.lsf_dvar[ok])
    ivar = np.where(model.mask[None, :] & np.isfinite(norm[ok]), norm_ivar[ok], 0.0)
    return estimate_pixel_scatter(residual, ivar)


def lsf_reference(meta: pd.DataFrame, ts_config: TrainingSetConfig) -> float:
    """The LSF an emulator learned [pixel^2]: the median LSF variance (``lsf_var``, from DESI's
    RESOLUTION matrices) of its training spectra; the fit's LSF prior is centred on each
    spectrum's own minus this (``fit.lm.lsf_dvar_expected``)."""
    return float(np.nanmedian(meta["lsf_var"].to_numpy()[select_training(meta, ts_config)[0]]))


def fit_and_flag(model: EmulatorModel, store, out, fit_config: FitConfig, reference,
                 rows=None, config: XFlagConfig | None = None, log=print,
                 refit_stale: bool = False) -> pd.DataFrame:
    """Fit (resumably) the store's spectra (or ``rows``) and ``flag_catalog`` them; the error
    scale report is left in ``table.attrs["error_scale"]``. ``refit_stale``: see ``fit_store``."""
    results = fit_store(model, store, out, fit_config, log=log, rows=rows, refit_stale=refit_stale)
    results.attrs["error_scale"] = flag_catalog(results, model, reference, config, log)
    return results


def flag_catalog(table: pd.DataFrame, model: EmulatorModel, reference,
                 config: XFlagConfig | None = None, log=print) -> dict | None:
    """Add every flag to a catalogue of ``model``'s fits (``flags.add_flags``) and, where it has
    repeat visits (star_id, mjd), scale the errors to their scatter (``flags.calibrate_errors``).
    In place; returns the error-scale report (None without repeat-visit columns)."""
    log("flagging: gradient correlations against the ab initio reference stars")
    add_flags(table, model, reference, config)
    if not {"star_id", "mjd"} <= set(table.columns):
        return None
    scale = calibrate_errors(table, model.labels)
    log("formal errors scaled to the repeat-visit scatter; median factor per label: "
        + ", ".join(f"{lab} {r['median_scale']:.2f}" for lab, r in scale.items()))
    return scale


def metal_poor_blend(results: pd.DataFrame, model_mp: EmulatorModel, store, out: Path,
                     fit_config: FitConfig, meta: dict, log=print) -> pd.DataFrame:
    """Refit with the metal-poor model the spectra the blend gives it weight (overall [Fe/H] <
    -0.6), write catalog_mp.parquet and catalog_blended.parquet; returns the blended table."""
    poor = (results["feh"] < C.METAL_POOR_BLEND_FEH[1]).to_numpy()
    log(f"metal-poor model: fitting the {poor.sum()} spectra with overall [Fe/H] < "
        f"{C.METAL_POOR_BLEND_FEH[1]}")
    mp = fit_and_flag(model_mp, store, out / "catalog_mp.parquet", fit_config,
                      model_reference(model_mp), rows=poor, log=log)
    write_catalog(mp, out / "catalog_mp.parquet",
                  {**meta, "model": str(out / "model_mp.pt"), "model_config": model_mp.config,
                   "error_scale": mp.attrs["error_scale"],
                   "rows": f"spectra with overall [Fe/H] < {C.METAL_POOR_BLEND_FEH[1]}"})
    blended = blend_subset(results, mp, poor, model_mp.labels)
    write_catalog(blended, out / "catalog_blended.parquet",
                  {**meta, "model_mp": str(out / "model_mp.pt"), "error_scale_mp": mp.attrs["error_scale"],
                   "blend": f"metal-poor model below [Fe/H] {C.METAL_POOR_BLEND_FEH[0]}, overall "
                            f"above {C.METAL_POOR_BLEND_FEH[1]}, linear between (docs/spec.md sec. 9)"})
    return blended


def blend_subset(overall: pd.DataFrame, metal_poor: pd.DataFrame, rows: np.ndarray, labels) -> pd.DataFrame:
    """The overall catalogue with the rows ``rows`` (n,) bool replaced by their blend with the
    metal-poor model's fits of those rows (catalog.blend_metal_poor); metal_poor_weight column."""
    out = overall.copy()
    out["metal_poor_weight"] = 0.0
    idx = np.nonzero(rows)[0]
    if len(idx):
        mixed = blend_metal_poor(overall.iloc[idx].reset_index(drop=True), metal_poor, labels)
        for col in mixed.columns:
            values = out[col].to_numpy().copy()
            values[idx] = mixed[col].to_numpy()
            out[col] = values
    return out


def recommended_catalog(apogee: pd.DataFrame, galah: pd.DataFrame, meta: pd.DataFrame,
                        path: str | Path, metadata: dict) -> pd.DataFrame:
    """The recommended catalogue: every label from the catalogue of the training set X19 Table 4
    recommends for it (``catalog.recommended``), in X19 Table 3's columns with one row per
    spectrum (``catalog.table3``; ``meta`` the store's metadata), written atomically to ``path``
    with ``metadata``."""
    table = table3(recommended(apogee, galah), meta)
    write_catalog(table, path, {**metadata, "recommended": "X19 Table 4"})
    return table
