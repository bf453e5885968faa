"""How much accuracy can a fit of the model's 15 labels reach at all, when the survey's truth also
varies 9 labels the model does not fit (Li, Na, Sc, V, Co, Zn, Y, Ba, Eu: a real star's spectrum
varies in more than any model's labels)? A linear-response estimate at S/N 100, for the 200
stars and 2 visits of ``crb_experiment`` (same sample, same forward model as
``simulate.survey_crb``: truth emulator -> fibre LSF -> continuum -> normalization):

- crb: the bound with the 15 labels alone varying (what the report divides by);
- crb_marginal: the bound had the fit also fitted the 9 others;
- nuisance_error: the error the 9 others cause in a 15-label fit with a *perfect* emulator,
  (J_f' W J_f)^-1 J_f' W J_n dn, with dn the part of the 9 labels the 15 do not predict
  (residual covariance of their linear regression on the 15 over the survey's true labels: a
  data-driven emulator learns the predictable part);
- floor = sqrt(crb^2 + nuisance_error^2): the accuracy of a perfect 15-label emulator with
  noise-free training labels.

Then each model of ``accuracy_floor.json`` is put against the floor, and refitted to the same
visits made without the instrument effects that change from visit to visit (fibre LSF, flux
calibration, sky and telluric residuals, cosmics, bad pixels; noise only): what its accuracy
owes to them. SYNTHETIC (`ddpayne demo`).
Usage: python studies/accuracy_floor/nuisance.py [--demo data/demo] [--work /tmp/accuracy_floor]
"""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ddpayne_core.catalog import robust_bias_scatter
from ddpayne_core.fit import fit_spectra
from ddpayne_core.instrument import get_instrument
from ddpayne_core.io import open_store
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.preprocess import preprocess_batch
from ddpayne_core.simulate import SurveyConfig
from ddpayne_core.simulate.survey import TRUTH_EMULATOR, expected_observation, forward_jacobian, reobserve

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import VARIANTS  # noqa: E402  (the models run.py trained)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=DEMO_OUT)
    ap.add_argument("--stars", type=int, default=200)
    ap.add_argument("--work", type=Path, default=Path("/tmp/accuracy_floor"),
                    help="run.py's --work, with the models it trained")
    ap.add_argument("--result", type=Path, default=HERE / "nuisance.json")
    args = ap.parse_args()
    store = open_store(args.demo / "survey")
    cfg = SurveyConfig(**store.info["provenance"]["config"])
    model = EmulatorModel.load(args.demo / "model.pt")
    truth = EmulatorModel.load(TRUTH_EMULATOR)
    fitted = [lab for lab in model.labels if lab not in cfg.featureless]
    nuisance = [lab for lab in truth.labels if lab not in model.labels and lab not in cfg.featureless]
    meta = store.meta()
    single = meta[(meta["visit"] == 0) & ~meta["is_binary"] & ~meta["injected_bad"]]
    stars = single.sample(min(args.stars, len(single)), random_state=0)   # crb_experiment's stars
    visits = reobserve(stars, TRUTH_EMULATOR, cfg, 100.0, 2, 0)[2]
    inst = get_instrument("lamost")

    def normalized(lab):
        flux, ivar = expected_observation(truth.predict(lab), inst.wave, visits)
        return preprocess_batch(flux, ivar, np.zeros(len(visits)), inst)

    _, ivar, jac = forward_jacobian(normalized, truth, visits, cfg.featureless, fitted + nuisance)
    jw = np.nan_to_num(jac * np.sqrt(ivar)[:, :, None])
    fisher = np.einsum("npi,npj->nij", jw, jw)                        # (n_visit, 24, 24)
    nf = len(fitted)
    crb = np.sqrt(np.diagonal(np.linalg.inv(fisher[:, :nf, :nf]), axis1=1, axis2=2))
    crb_marginal = np.sqrt(np.diagonal(np.linalg.inv(fisher), axis1=1, axis2=2))[:, :nf]
    # the part of the nuisance labels the fitted ones do not predict, over the survey's stars
    x = np.column_stack([np.ones(len(single)), single[fitted].to_numpy(dtype=np.float64)])
    y = single[nuisance].to_numpy(dtype=np.float64)
    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    cov_n = np.cov(resid, rowvar=False)
    response = np.linalg.solve(fisher[:, :nf, :nf], fisher[:, :nf, nf:])   # d fitted / d nuisance
    nuisance_error = np.sqrt(np.diagonal(response @ cov_n @ response.transpose(0, 2, 1), axis1=1, axis2=2))
    floor = np.sqrt(crb ** 2 + nuisance_error ** 2)
    measured = json.loads((HERE / "accuracy_floor.json").read_text())
    models = {"committed (APOGEE-like labels)": model}
    models.update({name: EmulatorModel.load(args.work / f"{stem}.pt") for name, (stem, _) in VARIANTS.items()})
    flux, ivar, quiet = reobserve(stars, TRUTH_EMULATOR, replace(cfg, effects=()), 100.0, 2, 0)
    norm, norm_ivar = preprocess_batch(flux, ivar, quiet["rv"].to_numpy(), inst)
    noise_only = {name: fit_spectra(m, norm, norm_ivar).labels for name, m in models.items()}
    out = {"synthetic": True, "snr": 100.0, "n_visits": len(visits), "nuisance_labels": nuisance,
           "nuisance_residual_sd": dict(zip(nuisance, np.sqrt(np.diag(cov_n)).tolist())), "labels": {}}
    for k, lab in enumerate(fitted):
        row = {"crb": float(np.median(crb[:, k])), "crb_marginal": float(np.median(crb_marginal[:, k])),
               "nuisance_error": float(np.median(nuisance_error[:, k])),
               "floor": float(np.median(floor[:, k]))}
        row["floor_over_crb"] = row["floor"] / row["crb"]
        row["crb_in_accuracy_floor_json"] = measured["committed (APOGEE-like labels)"]["labels"][lab]["crb"]
        row["accuracy_over_floor"] = {name: m["labels"][lab]["accuracy"] / row["floor"]
                                      for name, m in measured.items()}
        true = quiet[lab].to_numpy(dtype=np.float64)
        row["accuracy_noise_only_over_floor"] = {
            name: robust_bias_scatter(labels[:, m.labels.index(lab)] - true)[1] / row["floor"]
            for (name, labels), m in zip(noise_only.items(), models.values())}
        out["labels"][lab] = row
        print(f"{lab:6s} crb {row['crb']:.4g} (report {row['crb_in_accuracy_floor_json']:.4g}), marginal "
              f"{row['crb_marginal']:.4g}, nuisance error {row['nuisance_error']:.4g}, floor/crb "
              f"{row['floor_over_crb']:.2f}; accuracy/floor "
              + ", ".join(f"{v:.2f}" for v in row["accuracy_over_floor"].values())
              + "; noise only " + ", ".join(f"{v:.2f}" for v in row["accuracy_noise_only_over_floor"].values()),
              flush=True)
    atomic_write_text(args.result, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
