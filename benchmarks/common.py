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


def random_lamost_emulator(seed: int = 1) -> EmulatorModel:
    """A random emulator of LAMOST size (3909 pixels, LAMOST-APOGEE labels, 10 neurons) with
    label sensitivities of a few per cent: a stand-in where no trained model is committed."""
    inst = get_instrument("lamost")
    labels = LABEL_SETS["lamost-apogee"]
    net = Emulator(len(labels), inst.wave.size, 10, seed=seed)
    with torch.no_grad():
        net.w.mul_(3.0)
    lo = np.array([4000, 0.5, 0.5, -2.5] + [-0.4] * 12, float)
    hi = np.array([7000, 5.0, 3.0, 0.5] + [0.4] * 12, float)
    return EmulatorModel(net, labels, Scaler(lo, hi), inst.wave, instrument_mask(inst.wave),
                         config={"continuum_weights": CONTINUUM_WEIGHTS})


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


def random_desi_emulator(seed: int = 1) -> EmulatorModel:
    """A random emulator of DESI size (7,781 pixels, Z24's 15 labels, 40 neurons; the telluric
    bands masked) with label sensitivities of a few per cent: the size of the DESI model, where
    no trained one is committed yet."""
    inst = get_instrument("desi")
    labels = LABEL_SETS["desi"]
    net = Emulator(len(labels), inst.wave.size, 40, seed=seed)
    with torch.no_grad():
        net.w.mul_(1.5)
    lo = np.array([4000, 0.5, 0.5, -3.0] + [-0.4] * 11, float)
    hi = np.array([7000, 5.0, 3.0, 0.5] + [0.4] * 11, float)
    return EmulatorModel(net, labels, Scaler(lo, hi), inst.wave, instrument_mask(inst.wave, "desi"),
                         config={"continuum_weights": CONTINUUM_WEIGHTS, "instrument": "desi",
                                 "resampling": inst.resampling})
