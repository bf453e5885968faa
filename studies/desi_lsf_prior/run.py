"""The DESI fit with each spectrum's LSF from its RESOLUTION matrices (a prior on the fitted LSF
offset, fit.lm) against the LSF fitted freely (SYNTHETIC DESI demo).

The DESI demo's Cramer-Rao experiment (``validation.studies.desi_crb_experiment``: stars of the
survey observed twice more at S/N 100, each visit on its own fibre, and fitted) is run once per
fit setting with the demo's model, on the same stars and the same noise:

- "LSF free": no prior (the model without ``lsf_var_ref``, as before RESOLUTION was read);
- "prior 0.03", "prior 0.01" (the default, ``constants.DESI_LSF_PRIOR_SIGMA``): a Gaussian
  prior of that width [pixel^2] centred on what the RESOLUTION matrices say.

    python studies/desi_lsf_prior/run.py [--demo data/demo_desi] [--stars 600]
      -> studies/desi_lsf_prior/desi_lsf_prior.json (about 12 min on 2 cores)
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ddpayne_core.fit.lm import FitConfig
from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.model import EmulatorModel
from ddpayne_core.simulate import DesiSurveyConfig
from ddpayne_core.simulate.survey import DESI_TRUTH_EMULATOR
from ddpayne_core.validation.studies import desi_crb_experiment

HERE = Path(__file__).resolve().parent
SETTINGS = {"LSF free": None, "prior 0.03": 0.03, "prior 0.01": 0.01}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=Path("data/demo_desi"))
    ap.add_argument("--stars", type=int, default=600)
    ap.add_argument("--out", type=Path, default=HERE / "desi_lsf_prior.json")
    args = ap.parse_args(argv)
    truth = pd.read_parquet(args.demo / "desi" / "truth.parquet")
    model = EmulatorModel.load(args.demo / "model.pt")
    if "lsf_var_ref" not in model.config:
        raise SystemExit(f"{args.demo / 'model.pt'} has no lsf_var_ref: rerun `ddpayne demo --survey desi`")
    ref = model.config["lsf_var_ref"]
    result = {"synthetic": True, "n_stars": args.stars, "snr": 100.0, "lsf_var_ref": ref, "settings": {}}
    for name, sigma in SETTINGS.items():
        if sigma is None:
            model.config.pop("lsf_var_ref")
        else:
            model.config["lsf_var_ref"] = ref
        fit_config = replace(FitConfig(), lsf_prior_sigma=sigma or FitConfig().lsf_prior_sigma)
        result["settings"][name] = desi_crb_experiment(truth, model, DESI_TRUTH_EMULATOR, DesiSurveyConfig(),
                                                       fit_config, n_stars=args.stars)["labels"]
        print(name, flush=True)
    atomic_write_text(args.out, json.dumps(result, indent=1))
    for key in ("precision_over_crb", "error_over_crb", "slope"):
        print(key)
        print(pd.DataFrame({name: {lab: r[key] for lab, r in rows.items()}
                            for name, rows in result["settings"].items()}).round(2).to_string())


if __name__ == "__main__":
    main()
