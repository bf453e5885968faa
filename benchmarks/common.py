"""Shared pieces of the benchmarks."""
import contextlib
import io
import time

import numpy as np
import torch

from ddpayne_core.constants import CONTINUUM_WEIGHTS
from ddpayne_core.instrument import get_instrument
from ddpayne_core.labels import LABEL_SETS, Scaler
from ddpayne_core.model import Emulator, EmulatorModel
from ddpayne_core.preprocess import instrument_mask


def random_emulator(instrument: str, label_set: str, n_hidden: int, weight_scale: float,
                    feh_lo: float, seed: int = 1) -> EmulatorModel:
    """A random emulator of an instrument's size (its grid and fit mask, a label set, ``n_hidden``
    neurons) with label sensitivities of a few per cent: a stand-in where no trained model of
    that size is committed (throughput depends on the size, not on the weights)."""
    inst = get_instrument(instrument)
    labels = LABEL_SETS[label_set]
    net = Emulator(len(labels), inst.wave.size, n_hidden, seed=seed)
    with torch.no_grad():
        net.w.mul_(weight_scale)
    n_xfe = len(labels) - 4
    lo = np.array([4000, 0.5, 0.5, feh_lo] + [-0.4] * n_xfe, float)
    hi = np.array([7000, 5.0, 3.0, 0.5] + [0.4] * n_xfe, float)
    return EmulatorModel(net, labels, Scaler(lo, hi), inst.wave, instrument_mask(inst.wave, instrument),
                         config={"continuum_weights": CONTINUUM_WEIGHTS, "instrument": instrument,
                                 "resampling": inst.resampling})


def random_lamost_emulator(seed: int = 1) -> EmulatorModel:
    """LAMOST size: 3,909 pixels, the LAMOST-APOGEE labels, 10 neurons."""
    return random_emulator("lamost", "lamost-apogee", 10, 3.0, -2.5, seed)


def random_desi_emulator(seed: int = 1) -> EmulatorModel:
    """DESI size (Z24): 7,781 pixels (the telluric bands masked), 15 labels, 40 neurons."""
    return random_emulator("desi", "desi", 40, 1.5, -3.0, seed)


def cannon(train_flux, train_ivar, train_labels, test_flux, test_ivar, wave, names):
    """Train TheCannon (quadratic) and infer the test labels; returns (labels, train s, test s)."""
    with contextlib.redirect_stdout(io.StringIO()):   # TheCannon prints progress per pixel
        from TheCannon import dataset, model
        ds = dataset.Dataset(wave, np.arange(len(train_flux)).astype(str), train_flux, train_ivar,
                             train_labels, np.arange(len(test_flux)).astype(str), test_flux, test_ivar)
        ds.set_label_names(list(names))
        m = model.CannonModel(2, useErrors=False)
        t0 = time.perf_counter()
        m.train(ds)
        t1 = time.perf_counter()
        m.infer_labels(ds)
        t2 = time.perf_counter()
    return np.asarray(ds.test_label_vals), t1 - t0, t2 - t1
