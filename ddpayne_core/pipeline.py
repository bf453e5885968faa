"""The pipeline's composed stages, each written once and called by the command line, the demos,
the app's retraining and the notebooks alike:

- ``train_from_store``: training set from a spectral store (and optional label columns) ->
  preprocessed spectra -> emulator with the gradient-spectrum prior (resumable).
- ``fit_and_flag``: every spectrum of a store fitted (resumable, streamed) -> flags (X_flag,
  chi2, coverage, binaries) -> errors scaled to the repeat-visit scatter.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .emulator import EmulatorModel
from .fit import FitConfig
from .flags import XFlagConfig, add_flags, calibrate_errors
from .instrument import get_instrument
from .spectra import instrument_mask, preprocess_batch
from .store import open_store
from .survey import fit_store
from .theory.gradients import load_reference_gradients
from .train import TrainConfig, train_emulator
from .trainingset import TrainingSetConfig, select_training


def train_from_store(store_path, model_path, ts_config: TrainingSetConfig = TrainingSetConfig(),
                     config: TrainConfig = TrainConfig(), reference_name: str | None = None,
                     log=print, meta: pd.DataFrame | None = None, **hooks) -> EmulatorModel:
    """Build the training set from a store, preprocess it and train (resumable checkpoint).
    meta: the store's metadata with training-label columns, when they are not in the store
    itself (labels attached by ``labeltable.attach_labels``)."""
    store = open_store(store_path)
    meta = store.meta() if meta is None else meta
    rows, labels, names = select_training(meta, ts_config)
    flux, ivar = store.read_rows(rows)
    inst = get_instrument(store.info["instrument"])
    norm, norm_ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy()[rows], inst)
    reference = load_reference_gradients(reference_name or config.reference) \
        if config.regularize else None
    log(f"training on {len(rows)} stars ({ts_config.survey} labels: {', '.join(names)}); "
        f"regularization {'on' if config.regularize else 'off'}")
    model_path = Path(model_path)
    model = train_emulator(norm, norm_ivar, labels, names, inst.wave, instrument_mask(inst.wave), config,
                           reference, checkpoint=model_path.with_suffix(".ckpt"), log=log, **hooks)
    model.config.update(training_set=asdict(ts_config), store=str(store_path),
                        synthetic=bool(store.info.get("synthetic")),
                        survey_config=store.info["provenance"].get("config"),
                        truth_emulator_sha256=store.info["provenance"].get("truth_emulator_sha256"))
    model.save(model_path)
    model_path.with_suffix(".ckpt").unlink(missing_ok=True)
    return model


def fit_and_flag(model: EmulatorModel, store, out, fit_config: FitConfig, reference,
                 rows=None, config: XFlagConfig = XFlagConfig(), log=print) -> pd.DataFrame:
    """Fit (resumably) the store's spectra (or ``rows``) and ``flag_catalog`` them; the error
    scale report is left in ``table.attrs["error_scale"]``."""
    results = fit_store(model, store, out, fit_config, log=log, rows=rows)
    results.attrs["error_scale"] = flag_catalog(results, model, reference, config, log)
    return results


def flag_catalog(table: pd.DataFrame, model: EmulatorModel, reference,
                 config: XFlagConfig = XFlagConfig(), log=print) -> dict | None:
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
