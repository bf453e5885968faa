"""The real-data model (REAL LAMOST DR10 spectra, LASP labels by label transfer) trained with
Levenberg-Marquardt instead of the committed model's Adam, all else as ``ddpayne demo --real``;
prints the held-out F/G and A accuracy against LASP for both.

Usage: python studies/real_training/lm_vs_adam.py --out /tmp/real_lm [--result lm_vs_adam.json]
"""
import argparse
import json
from dataclasses import replace
from pathlib import Path

from ddpayne_core.paths import DEMO_OUT
from ddpayne_core.real import REAL_TRAIN_CONFIG, run_real


def held_out(summary: dict) -> list:
    return [row for row in summary["validation"] if row["snr"] == "S/N > 20"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--result", type=Path, default=Path(__file__).with_name("lm_vs_adam.json"))
    args = ap.parse_args()
    lm = run_real(args.out, retrain=True, train_config=replace(REAL_TRAIN_CONFIG, optimizer="lm"))
    adam = json.loads((DEMO_OUT.parent / "demo_real" / "report" / "summary.json").read_text())
    result = {"lm": held_out(lm), "adam_committed": held_out(adam)}
    args.result.write_text(json.dumps(result, indent=1))
    for name, rows in result.items():
        for r in rows:
            print(f"{name:15s} {r['type']:4s} n={r['n']:4d} Teff {r['teff_scatter']:.0f} ({r['teff_bias']:+.0f}) "
                  f"logg {r['logg_scatter']:.3f} ({r['logg_bias']:+.3f}) [Fe/H] {r['feh_scatter']:.3f} "
                  f"({r['feh_bias']:+.3f})")


if __name__ == "__main__":
    main()
