"""Training-set coverage: how far each fit lies from the labels the emulator was trained on,
and out_of_coverage where it lies farther than the training stars do from theirs."""
from __future__ import annotations

import numpy as np

from .. import constants as C
from ..model.emulator import EmulatorModel


def coverage_distance(model: EmulatorModel, labels: np.ndarray, k: int = C.COVERAGE_K):
    """Distance of each fit's labels (n, n_label) physical to its k-th nearest training star
    in the model's min-max scaled space of constants.COVERAGE_LABELS (all labels when it has
    none of them), and the same for the training stars themselves
    (their own k-th neighbour, not counting themselves). Returns ((n,), (n_train,)), or None
    when the model carries no training labels."""
    if model.training_labels is None:
        return None
    from scipy.spatial import cKDTree

    cols = [i for i, lab in enumerate(model.labels) if lab in C.COVERAGE_LABELS] or \
        list(range(len(model.labels)))
    train = model.scaler.scale(np.asarray(model.training_labels, np.float64))[:, cols]
    tree = cKDTree(train)
    kk = min(k, len(train) - 1)
    x = model.scaler.scale(np.asarray(labels, np.float64))[:, cols]
    ok = np.all(np.isfinite(x), axis=1)
    dist = np.full(len(x), np.nan)
    dist[ok] = tree.query(x[ok], k=[kk])[0][:, 0]
    own = tree.query(train, k=[kk + 1])[0][:, 0]
    return dist, own


def add_coverage(table, model: EmulatorModel, quantile: float = C.COVERAGE_QUANTILE):
    """Add coverage_dist and out_of_coverage (True where the fit lies farther from the training
    set than ``quantile`` of the training stars lie from theirs; see constants.COVERAGE_K) to
    a catalogue table of fits made with ``model``; nothing when the model has no training
    labels."""
    found = coverage_distance(model, table[list(model.labels)].to_numpy(dtype=np.float64))
    if found is None:
        return table
    dist, own = found
    table["coverage_dist"] = dist
    table["out_of_coverage"] = ~(dist <= np.quantile(own, quantile))   # NaN (failed fit): out
    return table
