"""Z24's 40-neuron Adam network against the 10-neuron Levenberg-Marquardt one on the DESI demo
(SYNTHETIC): both trained on the same DESI demo survey and training set, fitted, flagged and
reported by ``run_desi_demo``.

Usage: python studies/desi_network/run.py DIR   (DIR/adam40 and DIR/lm10; ~3 h for Adam, ~50 min
for LM on 2 cores; each resumes). Then compare DIR/*/report/summary.json (results/).
"""
import shutil
import sys
from pathlib import Path

from ddpayne_core.desi_demo import run_desi_demo
from ddpayne_core.model.train import Z24_DESI_NETWORK, TrainConfig

if __name__ == "__main__":     # the fit's worker processes re-import this file
    root = Path(sys.argv[1])
    runs = {"adam40": TrainConfig.for_instrument("desi", **Z24_DESI_NETWORK),
            "lm10": TrainConfig.for_instrument("desi")}
    for name, config in runs.items():
        out = root / name
        first = root / next(iter(runs))
        if name != next(iter(runs)) and not (out / "survey").exists():   # the same survey for both
            out.mkdir(parents=True, exist_ok=True)
            for part in ("desi", "survey"):
                shutil.copytree(first / part, out / part)
        run_desi_demo(out, train_config=config, retrain=True)
