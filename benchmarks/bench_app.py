"""Survey explorer on a large catalogue, measured server side (no browser): first render of the
explorer page (both datashaded maps, counts, flag tables), re-render after a gradcorr-cutoff
change (with the X_flag filter on, so the maps change), and click-to-inspector latency (nearest
row by k-d tree, spectrum, model, residual, gradient spectra). Peak memory of the process.

The catalogue is the demo catalogue (data/demo) resampled to --rows rows with small jitter in
every label; it is SYNTHETIC and labelled so (`store_row` points each row to its spectrum).
Baselines in the same process: the nearest row by a full scan, and X_flag recomputed without
the cached bin medians (flags.x_flag).

The maps are images aggregated with datashader (explore.density_map) in plain Bokeh figures;
a filter or cutoff change re-aggregates both maps and updates counts and gradcorr maps.

Usage: python benchmarks/bench_app.py [--rows 6000000] [--bundle data/demo] [--quick]
"""
import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "apps"))

from ddpayne_core.app import load_bundle, selection
from ddpayne_core.flags import FlagTuner, XFlagConfig, x_flag


def scaled_bundle(bundle, rows: int, seed: int = 0):
    cat = bundle.catalog.drop(columns=[c for c in ("label_corr",) if c in bundle.catalog])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(cat), rows)
    big = cat.iloc[pick].reset_index(drop=True)
    big["store_row"] = pick
    for lab in bundle.model.labels:
        scale = 20.0 if lab == "teff" else 0.02
        big[lab] = (big[lab] + rng.normal(0, scale, rows)).astype(np.float32)
    for col in big.columns:
        if big[col].dtype == np.float64:
            big[col] = big[col].astype(np.float32)
    bundle.catalog = big
    bundle.metadata = {**bundle.metadata, "synthetic": True,
                       "note": f"SYNTHETIC: demo catalogue resampled to {rows:,} rows"}
    return bundle


def render(layout, controls):
    """What the server does for a new session: build the Bokeh models of the page and
    serialize the document that is sent to the browser."""
    from bokeh.document import Document

    doc = Document()
    doc.add_root(layout.get_root(doc))
    return doc.to_json()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=6_000_000)
    ap.add_argument("--bundle", default=str(REPO / "data" / "demo"))
    ap.add_argument("--quick", action="store_true", help="100,000 rows: a check that it runs")
    args = ap.parse_args()
    if args.quick:
        args.rows = 100_000
    import holoviews as hv
    import panel as pn

    hv.extension("bokeh")
    from explorer_page import build_explorer

    t_load, b = timed(lambda: scaled_bundle(load_bundle(args.bundle), args.rows))
    t_tuner, tuner = timed(lambda: FlagTuner(b.catalog, b.model.labels))
    print(f"rows={len(b.catalog):,} (SYNTHETIC, resampled demo catalogue); load+resample "
          f"{t_load:.1f} s, flag tuner {t_tuner:.1f} s")
    # Warm numba (datashader) and the k-d trees as the server does at start.
    pixel = (10.0, 0.01)  # data units per screen pixel: a ~1,000 x 500 px Kiel map
    b.nearest_row(5000, 3, "teff", "logg", pixel)
    render(*build_explorer(b, tuner))
    t_first, (layout, ctl) = timed(lambda: build_explorer(b, tuner))
    t_root, _ = timed(lambda: render(layout, ctl))
    print(f"first_render_s={t_first + t_root:.2f}  (build {t_first:.2f} s + Bokeh models and "
          f"their JSON for the browser {t_root:.2f} s; target < 1 s)")
    ctl.xflag.value = "mg_fe"
    times = []
    for cut in (0.6, 0.7, 0.4):
        dt, _ = timed(lambda: setattr(ctl.cutoff, "value", cut))
        times.append(dt)
    print(f"rerender_after_cutoff_s={np.median(times):.2f}  (median of 3; target < 1 s)")
    rng = np.random.default_rng(1)
    clicks = [(rng.uniform(4500, 6500), rng.uniform(1.5, 4.5)) for _ in range(5)]
    ct = [timed(lambda: ctl.click(x, y, "teff", "logg"))[0] for x, y in clicks]
    print(f"click_to_inspector_s={np.median(ct):.2f}  (median of 5; target < 0.5 s)")

    keep = selection(b.catalog)
    x, y = clicks[0]
    t_tree, _ = timed(lambda: b.nearest_row(x, y, "teff", "logg", pixel, keep))
    def scan():
        d2 = ((b.catalog["teff"].to_numpy() - x) / 3000.0) ** 2 + \
            ((b.catalog["logg"].to_numpy() - y) / 5.0) ** 2
        d2[~keep] = np.inf
        return int(np.nanargmin(d2))
    t_scan, _ = timed(scan)
    cfg = XFlagConfig(cutoff=0.55)
    tuner.flag("mg_fe", XFlagConfig())
    t_cached, _ = timed(lambda: tuner.flag("mg_fe", cfg))
    c = b.catalog
    t_full, _ = timed(lambda: x_flag(c["mg_fe_gradcorr"], c["teff"], c["logg"], c["feh"], c["snr"], cfg))
    print(f"nearest_row: k-d tree {t_tree * 1e3:.1f} ms vs full scan {t_scan * 1e3:.1f} ms "
          f"(speedup {t_scan / t_tree:.0f}x)")
    print(f"re-flag one label: cached medians {t_cached * 1e3:.0f} ms vs flags.x_flag "
          f"{t_full * 1e3:.0f} ms (speedup {t_full / t_cached:.1f}x)")
    print(f"peak_rss_gb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2:.2f}")
    pn.state.kill_all_servers()


if __name__ == "__main__":
    main()
