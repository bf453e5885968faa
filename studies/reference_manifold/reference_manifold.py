"""Does an emulator keep the ab initio gradients where the stars are, or only where it was regularized?

For every X19 Table 1 reference star, the gradient correlation (X_gradcorr's Pearson r over the
model's pixels) of each model's finite differences with the ab initio ones, at two label points
with the star's Teff, logg, [Fe/H] and vmic: Table 1's ([X/Fe] = 0, the `lamost-table1` grid)
and the Milky Way's ([X/Fe] from `galactic_xfe`: alpha-enhanced, Mn- and Cu-poor when metal-poor;
the `lamost-table1-galactic` grid), each against the MOOG gradients computed at that point.
Metal-poor survey stars lie near the second point, not the first.

Usage (writes JSON atomically, marked synthetic: the models are trained on the synthetic survey):
    python studies/reference_manifold/reference_manifold.py [NAME=]MODEL.pt [[NAME=]MORE.pt ...] \
        --out studies/reference_manifold/reference_manifold.json
"""
import argparse
import json
from pathlib import Path

import numpy as np

from ddpayne_core.flags import centred, emulator_dflux
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.theory import load_reference_gradients

GRIDS = ("lamost-table1", "lamost-table1-galactic")


def correlations(model: EmulatorModel, grid: str) -> np.ndarray:
    """(n_star, n_label) r between the model's and the grid's finite differences at the grid's
    own reference labels and steps."""
    ref = load_reference_gradients(grid).select_labels(model.labels)
    ab, ab_norm = centred(ref.dflux[:, :, model.mask])
    emu, emu_norm = centred(emulator_dflux(model, ref.reference_labels(), ref.steps())[:, :, model.mask])
    return (emu * ab).sum(-1) / (emu_norm * ab_norm)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="[NAME=]PATH of a model (NAME defaults to PATH)")
    ap.add_argument("--out", type=Path, default=Path("studies/reference_manifold/reference_manifold.json"))
    args = ap.parse_args()
    stars = load_reference_gradients(GRIDS[0]).stars
    metal_poor = np.asarray(stars["feh"]) <= -1.0
    doc = {"synthetic": True, "what": __doc__.splitlines()[0],
           "metal_poor_stars (0-based)": np.flatnonzero(metal_poor).tolist(), "models": {}}
    for item in args.models:
        name, _, path = item.rpartition("=")
        model = EmulatorModel.load(path)
        row = {"reference": model.config.get("reference")}
        for grid in GRIDS:
            r = correlations(model, grid)
            row[grid] = {"median_metal_poor": dict(zip(model.labels, np.median(r[metal_poor], 0).round(3).tolist())),
                         "median_other": dict(zip(model.labels, np.median(r[~metal_poor], 0).round(3).tolist())),
                         "per_star": r.round(3).tolist()}
        doc["models"][name or path] = row
        print(name or path, model.config.get("reference"))
        for grid in GRIDS:
            print(f"  {grid:24s} metal-poor median r:",
                  " ".join(f"{k}={v:.2f}" for k, v in row[grid]["median_metal_poor"].items()))
    atomic_write_text(args.out, json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
