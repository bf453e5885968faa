"""Speed/accuracy of the ab initio line-list pruning and sampling (issue 2).

For three Table-1 reference stars, compares R~1800 normalized spectra made with the production
physics (pruned list, production step) against a near-complete reference (threshold -13 dex, 0.01 A
the step) over the unmasked LAMOST range, and prints max |dF| of spectra and of [Fe/H]/[Mg/Fe]
gradient spectra plus the time ratio. Usage: python benchmarks/theory_pruning.py
"""
import time
from dataclasses import replace

import numpy as np

from ddpayne_core.instrument import get_instrument
from ddpayne_core.theory.synthesis import REGULARIZING, synthesize, to_instrument

STARS = [dict(teff=5778, logg=4.53, vmic=1.5, feh=0.0), dict(teff=4369, logg=1.65, vmic=1.5, feh=-0.5),
         dict(teff=6500, logg=4.02, vmic=1.5, feh=-1.5)]


def spectra(physics, labels):
    inst = get_instrument("lamost")
    t0 = time.perf_counter()
    base = to_instrument(*synthesize(labels, physics), inst)
    dfe = to_instrument(*synthesize({**labels, "feh": labels["feh"] + 0.5}, physics), inst) - base
    dmg = to_instrument(*synthesize({**labels, "mg_fe": 0.5}, physics), inst) - base
    return base, dfe, dmg, time.perf_counter() - t0


def main():
    wave = get_instrument("lamost").wave
    use = (wave > 3900) & (wave < 8880)
    reference = replace(REGULARIZING, name="pruning-reference", prune_threshold=-13.0,
                        step=0.01)
    for labels in STARS:
        prod = spectra(REGULARIZING, labels)
        ref = spectra(reference, labels)
        d = [np.max(np.abs(p - r)[use]) for p, r in zip(prod[:3], ref[:3])]
        print(f"star {labels}: max|dF| spectrum={d[0]:.4f} dF_FeH={d[1]:.4f} dF_MgFe={d[2]:.4f}; "
              f"time production={prod[3]:.1f}s reference={ref[3]:.1f}s "
              f"speedup={ref[3] / prod[3]:.1f}x")


if __name__ == "__main__":
    main()
