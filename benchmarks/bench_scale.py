"""Scale-out: fit a million synthetic spectra through Dask from the store.

Stores: SYNTHETIC surveys simulated (`simulate_survey`) from a random emulator on the LAMOST grid
(LAMOST-APOGEE labels, 10 neurons; the same emulator fits them), a small one of about --base
spectra and a large one of about --n. Fits use the default FitConfig (the catalogue's settings).
Baselines in the same run: the small store fitted with 1 and with 2 workers.

Prints throughput with 2 workers on the large store, `scaling_2_workers` (2 over 1 worker, small
store), peak RSS per worker on each store and `worker_peak_rss_ratio` (large over small: ~1 when
memory is flat in survey size), and the extrapolation to LAMOST DR5's 8 million spectra.

Resumable: stores and fit parts stay in --dir, so a killed run continues where it stopped; the
large store's throughput then counts only the spectra fitted in this run.
Usage: python benchmarks/bench_scale.py [--n 1000000] [--base 20000] [--dir /tmp/ddpayne-scale] [--quick]
"""
import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import random_lamost_emulator  # noqa: E402

from ddpayne_core.fit import FitConfig
from ddpayne_core.fit.survey import _parts, fit_store_dask
from ddpayne_core.io import open_store
from ddpayne_core.model import EmulatorModel
from ddpayne_core.simulate import SurveyConfig, simulate_survey

SPECTRA_PER_STAR = 1.23  # repeat visits of the default SurveyConfig (24,626 spectra / 20,000 stars)
LAMOST_DR5 = 8_000_000


def _peak_rss_mb() -> float:
    """This process's peak resident memory [MB]: VmHWM of its own address space. (ru_maxrss is
    wrong here: a spawned worker inherits the high-water mark of the parent it forked from.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def fit_on_cluster(model_path, store, out, n_workers: int) -> tuple[float, int, list[float]]:
    """Fit ``store`` on a fresh LocalCluster; returns (seconds, spectra fitted now, peak RSS MB of
    each worker process)."""
    from dask.distributed import Client, LocalCluster

    _, _, todo = _parts(out, store, EmulatorModel.load(model_path), FitConfig())
    n_todo = sum(b - a for a, b in todo)
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        t0 = time.perf_counter()
        fit_store_dask(model_path, store, out, client=client, config=FitConfig(),
                       log=lambda *a: None, collect=False)
        seconds = time.perf_counter() - t0
        peaks = list(client.run(_peak_rss_mb).values())
    return seconds, n_todo, peaks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--base", type=int, default=20_000)
    ap.add_argument("--dir", default="/tmp/ddpayne-scale")
    ap.add_argument("--quick", action="store_true", help="2,000 and 6,000 spectra: a check that it runs")
    args = ap.parse_args()
    if args.quick:
        args.base, args.n, args.dir = 2000, 6000, args.dir + "-quick"
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    model_path = root / "model.pt"
    if not model_path.exists():
        random_lamost_emulator(seed=2).save(model_path)
    stores = {}
    for name, n in (("small", args.base), ("large", args.n)):
        cfg = replace(SurveyConfig(), n_stars=round(n / SPECTRA_PER_STAR), chunk=1000, featureless=())
        t0 = time.perf_counter()
        simulate_survey(root / name, cfg, model_path, log=lambda *a: None)
        stores[name] = open_store(root / name)
        print(f"{name} store: {stores[name].n_spec} synthetic spectra "
              f"(simulated or resumed in {time.perf_counter() - t0:.0f} s)", flush=True)

    rates, peaks = {}, {}
    for workers in (1, 2):
        out = root / f"small_{workers}w.parquet"
        seconds, n_fit, worker_peaks = fit_on_cluster(model_path, stores["small"], out, workers)
        if n_fit:
            rates[workers] = n_fit / seconds
            print(f"small store, {workers} worker(s): {rates[workers]:.1f} spectra/s, "
                  f"worker peak RSS {max(worker_peaks):.0f} MB", flush=True)
        peaks["small"] = max(worker_peaks)
    seconds, n_fit, worker_peaks = fit_on_cluster(model_path, stores["large"],
                                                  root / "large_2w.parquet", 2)
    peaks["large"] = max(worker_peaks)
    print(f"large store, 2 workers: {n_fit} spectra fitted in this run in {seconds:.0f} s"
          + (f" = {n_fit / seconds:.1f} spectra/s" if n_fit else ""))
    print(f"worker peak RSS: {peaks['small']:.0f} MB ({stores['small'].n_spec} spectra), "
          f"{peaks['large']:.0f} MB ({stores['large'].n_spec} spectra): "
          f"worker_peak_rss_ratio={peaks['large'] / peaks['small']:.2f}")
    if len(rates) == 2:
        scaling = rates[2] / rates[1]
        print(f"scaling_2_workers={scaling:.2f}")
    if n_fit:
        per_worker = n_fit / seconds / 2
        print(f"LAMOST DR5 ({LAMOST_DR5:,} spectra) at {per_worker:.1f} spectra/s per worker: "
              + ", ".join(f"{LAMOST_DR5 / (per_worker * cores) / 3600:.1f} h on {cores} cores"
                          for cores in (2, 16, 64, 256))
              + " (assumes each added worker adds a worker's throughput: chunks are independent "
                "and only read the store; measured here up to 2 workers)")


if __name__ == "__main__":
    main()
