"""Training cost: seconds per Adam epoch per 1000 training stars and peak memory, with the
gradient prior (16 reference stars x 16 labels) against without it (the baseline) in the same
process; and the seconds per Levenberg-Marquardt iteration (the default optimizer) with the prior.

Data: random LAMOST-grid spectra (3909 pixels) with the LAMOST-APOGEE label set; the cost of an
epoch does not depend on the values. Usage: python benchmarks/bench_train.py [--stars N] [--quick]
"""
import argparse
import resource
import time
from dataclasses import replace

import numpy as np
from astropy.table import Table

from ddpayne_core.instrument import get_instrument
from ddpayne_core.labels import LABEL_SETS
from ddpayne_core.model import TrainConfig, train_emulator
from ddpayne_core.theory import ReferenceGradients


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stars", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="300 stars, 1 epoch: a check that it runs")
    args = ap.parse_args()
    if args.quick:
        args.stars, args.epochs = 300, 1
    inst = get_instrument("lamost")
    labels = LABEL_SETS["lamost-apogee"]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (args.stars, len(labels)))
    flux = 1 + 0.01 * rng.normal(size=(args.stars, inst.wave.size))
    ivar = np.full_like(flux, 2500.0)
    stars = Table({"star": np.arange(16)})
    for lab in labels:
        stars[lab] = rng.uniform(0.2, 0.8, 16)
        stars[f"d_{lab}"] = np.full(16, 0.1)
    ref = ReferenceGradients("bench", inst.wave, labels, stars, np.ones((16, inst.wave.size)),
                             np.zeros((16, len(labels), inst.wave.size)), {})
    per = {}
    for regularize in (False, True):
        cfg = replace(TrainConfig(), epochs=args.epochs, regularize=regularize, optimizer="adam")
        t0 = time.perf_counter()
        train_emulator(flux, ivar, x, labels, inst.wave, np.ones(inst.wave.size, bool), cfg, ref,
                       log=lambda *a: None)
        per[regularize] = (time.perf_counter() - t0) / args.epochs / (args.stars / 1000)
        print(f"Adam, regularize={regularize}: {per[regularize]:.2f} s per epoch per 1000 stars")
    cfg = replace(TrainConfig(), epochs=args.epochs, optimizer="lm", lm_patience=args.epochs)
    t0 = time.perf_counter()
    train_emulator(flux, ivar, x, labels, inst.wave, np.ones(inst.wave.size, bool), cfg, ref,
                   log=lambda *a: None)
    lm = (time.perf_counter() - t0) / args.epochs / (args.stars / 1000)
    print(f"Levenberg-Marquardt with the prior: {lm:.2f} s per iteration per 1000 stars "
          f"({lm / per[True]:.1f} Adam epochs)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_rss_mb={peak:.0f}")
    print(f"prior_overhead_ratio={per[True] / per[False]:.2f}")


if __name__ == "__main__":
    main()
