"""What the gradient prior costs where the regularizing physics and the survey's truth disagree.

The synthetic survey's spectra come from the *truth* physics (fewer weak lines, 0.1 dex log gf
errors); the prior regularizes with the *regularizing* physics, as real stars and model
atmospheres differ. This script trains the demo emulator on every ``--stride``-th pixel (as
``emulator_study.py``) with and without the prior, same seed and settings otherwise, and fits
high-S/N single stars of three populations (red giants 4500-5000 K with logg < 2.5, dwarfs with
logg > 4.2, and cool dwarfs below 5000 K) with each model and with the committed model seen on the
same pixels. Per population and label it records the median and robust scatter of fitted - true,
and the median reduced chi2 of the fits.

Usage (writes JSON atomically, marked synthetic):
    python studies/emulator_settings/population_bias.py --demo /tmp/demo_new --out studies/emulator_settings/population_bias.json
"""
import json
from dataclasses import replace

import numpy as np
from emulator_study import on_pixels, pixel_reference, study_parser, training_on_pixels

from ddpayne_core import constants as C
from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.demo import COMMITTED_MODEL
from ddpayne_core.fit import fit_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel, TrainConfig, train_emulator
from ddpayne_core.preprocess import instrument_mask, preprocess_batch
from ddpayne_core.theory import load_reference_gradients

POPULATIONS = {
    "red giants (4500-5000 K, logg < 2.5)": "logg < 2.5 and teff > 4500 and teff < 5000",
    "dwarfs (logg > 4.2)": "logg > 4.2",
    "cool dwarfs (logg > 4.2, Teff < 5000 K)": "logg > 4.2 and teff < 5000",
}
LABELS = ("teff", "logg", "vmic", "feh", "n_fe", "o_fe", "mg_fe", "mn_fe", "ni_fe")


def main():
    ap = study_parser(__doc__, "studies/emulator_settings/population_bias.json")
    ap.add_argument("--n-per-population", type=int, default=300)
    args = ap.parse_args()

    store = open_store(args.demo / "survey")
    meta = store.meta()
    inst = get_instrument(store.info["instrument"])
    pix, _, labels, names, norm, nivar = training_on_pixels(store, args.stride)
    reference = pixel_reference(load_reference_gradients(C.TABLE1_GRID), pix)

    models = {"committed (pixel subset)": on_pixels(EmulatorModel.load(COMMITTED_MODEL), pix)}
    for name, regularize in (("regularized (Table 1, D 5/50)", True), ("no regularization", False)):
        config = replace(TrainConfig(), epochs=420, regularize=regularize,
                         reference=C.TABLE1_GRID)  # X19 Table 1, as in the committed JSON
        models[name] = train_emulator(norm, nivar, labels, names, inst.wave[pix],
                                      instrument_mask(inst.wave)[pix], config, reference,
                                      log=lambda *a: None)

    clean = meta[~meta["is_binary"] & ~meta["injected_bad"] & (meta["snr"] > 80)]
    doc = {"synthetic": True, "what": __doc__.splitlines()[0] + " (SYNTHETIC demo survey)",
           "stride": args.stride, "populations": {}}
    for pop, query in POPULATIONS.items():
        stars = clean.query(query).head(args.n_per_population)
        f, iv = store.read_rows(stars.index.to_numpy())
        pnorm, pnivar = preprocess_batch(f, iv, stars["rv"].to_numpy(), inst)
        result = {"n_stars": len(stars)}
        for name, model in models.items():
            fit = fit_spectra(model, pnorm[:, pix], pnivar[:, pix])
            entry = {"median_redchi2": float(np.nanmedian(fit.redchi2))}
            for lab in LABELS:
                bias, scatter = robust_bias_scatter(fit.labels[:, model.labels.index(lab)]
                                                    - stars[lab].to_numpy())
                entry[lab] = {"median_offset": bias, "robust_scatter": scatter}
            result[name] = entry
            print(pop, name, json.dumps({k: entry[k] for k in ("median_redchi2", "teff", "logg")},
                                        default=float), flush=True)
        doc["populations"][pop] = result
    atomic_write_text(args.out, json.dumps(doc, indent=2, default=float))


if __name__ == "__main__":
    main()
