"""How much does the rest-frame shift's interpolation smooth the lines? (ab initio spectra)

Each computed reference spectrum of the DESI grid (desi-isochrone, MOOG at DESI resolution) and of
X19's LAMOST grid (lamost-table1) is moved to a random radial velocity within +-300 km/s and
back with ``preprocess.shift_to_rest`` (linear and cubic), as the synthetic survey and the
pipeline do; the difference from the original is the interpolation error (noise-free spectra).

    python studies/desi_resampling/resampling.py [--out studies/desi_resampling/resampling.json]
"""
import argparse
import json

import numpy as np

from ddpayne_core.instrument import get_instrument
from ddpayne_core.preprocess import instrument_mask, shift_to_rest
from ddpayne_core.simulate import to_velocity
from ddpayne_core.theory.gradients import REFERENCE_GRIDS, grid_spec, point_file


def reference_spectra(name: str) -> np.ndarray:
    """The computed spectra of a grid's reference stars at their reference labels."""
    spec = grid_spec(name)
    per_star = 1 + len(REFERENCE_GRIDS[name][1])
    files = [f for p in spec.points[::per_star] if (f := point_file(spec, p)).exists()]
    return np.stack([np.load(f) for f in files]).astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="studies/desi_resampling/resampling.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    for grid, instrument in (("desi-isochrone", "desi"), ("lamost-table1", "lamost")):
        inst = get_instrument(instrument)
        flux = reference_spectra(grid)
        v = rng.uniform(-300, 300, len(flux))
        use = instrument_mask(inst.wave, instrument) & (inst.wave > inst.wave[0] + 30) \
            & (inst.wave < inst.wave[-1] - 30)
        results[grid] = {"n_spectra": int(len(flux))}
        for kind in ("linear", "cubic"):
            there, iv = to_velocity(inst.wave, flux, np.ones_like(flux), v, kind)
            back, iv = shift_to_rest(inst.wave, there, iv, v, kind)
            ok = use[None, :] & (iv > 0)
            err = np.abs(back - flux)[ok]
            results[grid][kind] = {"rms": float(np.sqrt(np.mean(err ** 2))),
                                   "p99": float(np.percentile(err, 99)), "max": float(err.max())}
        print(grid, json.dumps(results[grid]))
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
