"""Speed/accuracy of line-list pruning and wavelength sampling of the ab initio spectra (issue 2).

The Sun (Teff 5778, logg 4.53, vmic 1.5, [Fe/H] 0) synthesized over 3800-5200 A (the most
line-dense region; spectra are compared over 4000-5000 A, away from the synthesis edges) at
several (threshold, step) settings, convolved to R~1800 and normalized. Printed: time, max |dF| of
the spectrum and of the [Mg/Fe] gradient spectrum (step +0.5) against the near-complete
reference (threshold -13 dex, 0.01 A), which runs first in the same process.
Usage: python studies/theory_checks/theory_pruning.py        (~3 minutes)
"""
import time
from dataclasses import replace

import numpy as np

from ddpayne_core.instrument import get_instrument
from ddpayne_core.theory import REGULARIZING, TRUTH, synthesize, to_instrument

STAR = dict(teff=5778, logg=4.53, vmic=1.5, feh=0.0)
SETTINGS = [(-13.0, 0.01), (-13.0, 0.025), (-13.0, 0.04), (-12.0, 0.025), (-11.5, 0.025),
            (-11.5, 0.04), (-11.0, 0.025)]


def main():
    inst = get_instrument("lamost")
    use = (inst.wave > 4000) & (inst.wave < 5000)
    ref = None
    for threshold, step in SETTINGS:
        base = REGULARIZING if (threshold, step) != (TRUTH.prune_threshold, TRUTH.step) else TRUTH
        physics = replace(base, name=f"prune{threshold}_{step}", prune_threshold=threshold,
                          step=step, loggf_sigma=0.0)
        t0 = time.perf_counter()
        spec = to_instrument(*synthesize(STAR, physics, 3800.0, 5200.0), inst)
        seconds = time.perf_counter() - t0
        grad = to_instrument(*synthesize({**STAR, "mg_fe": 0.5}, physics, 3800.0, 5200.0), inst) - spec
        if ref is None:
            ref = (spec, grad, seconds)
        print(f"threshold {threshold:6.1f} step {step:.3f} A: {seconds:5.1f} s "
              f"(reference {ref[2]:.1f} s, speedup {ref[2] / seconds:.1f}x) "
              f"max|dF| {np.max(np.abs(spec - ref[0])[use]):.4f} "
              f"max|d dF_Mg| {np.max(np.abs(grad - ref[1])[use]):.4f}", flush=True)


if __name__ == "__main__":
    main()
