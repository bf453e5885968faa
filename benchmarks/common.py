"""Shared pieces of the benchmarks."""
import numpy as np
import torch

from ddpayne_core.emulator import Emulator, EmulatorModel
from ddpayne_core.instrument import get_instrument
from ddpayne_core.labels import LABEL_SETS, Scaler
from ddpayne_core.spectra import instrument_mask


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
    return EmulatorModel(net, labels, Scaler(lo, hi), inst.wave, instrument_mask(inst.wave))
