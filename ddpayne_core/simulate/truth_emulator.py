"""The synthetic survey's truth emulator: a Payne-style emulator of the truth-physics grid.

Trained with the same per-pixel networks and trainer as the DD-Payne emulator, on noiseless MOOG
spectra (uniform weights, no gradient prior), and checked on held-out grid spectra.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..instrument import get_instrument
from ..io_utils import atomic_write_text
from ..model.emulator import EmulatorModel
from ..model.train import TrainConfig, train_emulator
from ..theory.gradients import REFERENCE_LABELS, grid_spec, point_file
from .survey import TRUTH_EMULATOR

GRID_NOISE = 1e-3  # weight spectra as if sigma = 0.001: the emulator aims at 1e-3 accuracy


def computed_grid(name: str = "truth-grid"):
    """Points and spectra of a grid computed so far: ((n, n_label), (n, n_pix))."""
    spec = grid_spec(name)
    have = [(p, f) for p in spec.points if (f := point_file(spec, p)).exists()]
    if not have:
        raise RuntimeError(f"no spectra of grid {name} computed yet")
    return np.array([p for p, _ in have]), np.stack([np.load(f) for _, f in have]).astype(np.float64)


TRUTH_GRIDS = {"lamost": "truth-grid", "desi": "desi-truth-grid"}
# Where the held-out accuracy is measured: the pixels fits use (LAMOST: constants.BLUE_LIMIT_AA to
# RED_LIMIT_AA), DESI's grid 50 A inside its ends (the normalization's edges).
ACCURACY_WINDOW_AA = {"lamost": (3900.0, 8880.0), "desi": (3650.0, 9774.0)}


def train_truth_emulator(out: str | Path = TRUTH_EMULATOR, n_hidden: int = 20, epochs: int = 700,
                         holdout: int = 100, seed: int = 0, instrument: str = "lamost",
                         log=print) -> EmulatorModel:
    """Train on the computed truth grid of ``instrument`` (TRUTH_GRIDS) minus ``holdout``
    spectra; report held-out accuracy."""
    grid = TRUTH_GRIDS[instrument]
    points, flux = computed_grid(grid)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(points))
    test, train = perm[:holdout], perm[holdout:]
    inst = get_instrument(instrument)
    ivar = np.full_like(flux[train], GRID_NOISE ** -2)
    # Pure Adam: the exact output-layer solve made the training chi2 of these noiseless spectra
    # (weighted as sigma = 1e-3, no prior) jump by orders of magnitude between epochs.
    cfg = replace(TrainConfig(), n_hidden=n_hidden, epochs=epochs, regularize=False,
                  batch_size=128, patience=60, seed=seed, solve_output_every=0, optimizer="adam")
    model = train_emulator(flux[train], ivar, points[train], REFERENCE_LABELS, inst.wave,
                           np.ones(inst.wave.size, bool), cfg, log=log)
    resid = model.predict(points[test]) - flux[test]
    lo, hi = ACCURACY_WINDOW_AA[instrument]
    use = (inst.wave > lo) & (inst.wave < hi)
    accuracy = {"n_train": int(len(train)), "n_holdout": int(len(test)), "n_hidden": n_hidden,
                "epochs_run": len(model.history["epoch"]),
                "training_wall_hours": round(sum(model.history["seconds"]) / 3600, 2),
                "median_abs_residual": float(np.median(np.abs(resid[:, use]))),
                "rms_residual": float(np.sqrt(np.mean(resid[:, use] ** 2))),
                "p99_abs_residual": float(np.percentile(np.abs(resid[:, use]), 99)),
                "worst_spectrum_rms": float(np.sqrt(np.mean(resid[:, use] ** 2, axis=1)).max())}
    model.config.update(physics="truth-moog", grid=grid, holdout_accuracy=accuracy)
    model.save(out)
    atomic_write_text(Path(out).with_suffix(".json"), json.dumps(accuracy, indent=2))
    log(f"truth emulator -> {out}; held-out accuracy {accuracy}")
    return model
