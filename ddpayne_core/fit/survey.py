"""Fitting a whole survey: stream the spectral store in chunks, preprocess, fit, and append one
Parquet part per chunk (atomic), so a killed run resumes without refitting what is done."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import NA_D_WINDOW_AA
from ..instrument import get_instrument
from ..io.spectra import fits_files
from ..io.store import SpectralStore
from ..io_utils import atomic_path, atomic_write_text
from ..model.emulator import EmulatorModel, config_dict, with_model_error
from ..preprocess.grid import preprocess_batch
from ..progress import progress
from .lm import FitConfig, fit_result_table, fit_spectra, lsf_dvar_expected, model_error, window_chi2

# Store metadata carried into catalogues where the store has them (LAMOST and DESI alike).
META_COLUMNS = ("specid", "star_id", "ra", "dec", "snr", "rv", "rv_err", "mjd", "filename",
                "subclass", "phot_g_mean_mag", "a_g", "parallax", "parallax_error",
                "targetid", "row", "snr_b", "snr_r", "snr_z", "lsf_var", "rr_spectype", "ingest_error")


def fit_table(model: EmulatorModel, norm: np.ndarray, norm_ivar: np.ndarray, config: FitConfig,
              lsf_dvar_prior: np.ndarray | None = None) -> pd.DataFrame:
    """Fit normalized spectra (n_spec, n_pix) and tabulate the results (``fit_result_table``) with
    the Na D window's chi^2 (``chi2_na``, for the binary flag) under the fit's own pixel weights."""
    result = fit_spectra(model, norm, norm_ivar, config, lsf_dvar_prior)
    table = fit_result_table(model, result)
    table["chi2_na"] = window_chi2(model, result.labels, norm,
                                   with_model_error(norm_ivar, model_error(model, config)),
                                   NA_D_WINDOW_AA, result.lsf_dvar)
    return table


def fit_chunk(model: EmulatorModel, store: SpectralStore, start: int, stop: int,
              config: FitConfig, subset: np.ndarray | None = None) -> pd.DataFrame:
    """Fit rows [start, stop) of a store (only those at the offsets ``subset`` when given): a
    table of fit results joined to their metadata."""
    model.check_preprocessing()
    inst = get_instrument(store.info["instrument"])
    meta = store.meta_rows(start, stop, META_COLUMNS)
    flux, ivar = store.read(start, stop)
    if subset is not None:
        if len(subset) == 0:
            return pd.DataFrame()
        meta, flux, ivar = meta.iloc[subset].reset_index(drop=True), flux[subset], ivar[subset]
    norm, norm_ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy(), inst)
    table = fit_table(model, norm, norm_ivar, config, lsf_dvar_expected(model, meta.get("lsf_var")))
    keep = [c for c in META_COLUMNS if c in meta.columns]
    return pd.concat([meta[keep], table], axis=1)


def fit_workers() -> int:
    """Worker processes for a survey fit: the CPU cores this process may use. One single-threaded
    process per core fits ~2x faster than one process using every core through torch's
    intra-op threads: the fit's tensor operations are small (a batch of 32 spectra), too small
    for threads to share well (docs/performance.md)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def fit_store(model: EmulatorModel, store: SpectralStore, out: str | Path,
              config: FitConfig = FitConfig(), log=print, collect: bool = True,
              rows: np.ndarray | None = None, workers: int | None = None,
              refit_stale: bool = False) -> pd.DataFrame | None:
    """Fit every spectrum of ``store`` (or those where ``rows`` (n_spec,) bool is True), one
    chunk per process at a time; parts go to ``<out>.parts/``. ``workers``: processes (default
    ``fit_workers()``; 1 fits in this process). Every chunk is fitted with one torch thread,
    in a worker or here, so a resumed run reproduces the parts of the first to the bit. Returns the
    results in store order, or None with ``collect=False`` (memory then stays flat in survey
    size; read the parts later). Parts made with another model, fit configuration or selection
    raise ValueError, or with ``refit_stale`` (a demo's own folder) are fitted again."""
    parts_dir, chunks, todo = _parts(out, store, model, config, rows, refit_stale, log)
    if len(todo) < len(chunks):
        log(f"resuming: {len(chunks) - len(todo)} of {len(chunks)} chunks already fitted")
    jobs = [(str(store.path), a, b, str(parts_dir), config,
             None if rows is None else np.nonzero(rows[a:b])[0]) for a, b in todo]
    workers = min(workers or fit_workers(), len(jobs))
    if workers <= 1:
        with single_thread():
            for job in progress(jobs, desc="fitting"):
                _write_part(model, *job)
    else:
        # spawn, not fork: a forked child of a process whose OpenMP threads have run can hang.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(model,)) as pool:
            for done in progress(as_completed([pool.submit(_pool_part, *job) for job in jobs]),
                                 total=len(jobs), desc=f"fitting ({workers} processes)"):
                done.result()  # a worker's exception is raised here
    return _collect(parts_dir, chunks) if collect else None


@contextmanager
def single_thread():
    """torch on one thread inside the block (float32 sums depend on how work is split)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_WORKER_MODEL: EmulatorModel | None = None


def _start_worker(model: EmulatorModel) -> None:
    """A fit worker process: one torch thread (the processes provide the parallelism) and freed
    tensor memory kept for the next batch (``memory.keep_freed_memory``)."""
    global _WORKER_MODEL
    import torch

    from ..memory import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(1)
    _WORKER_MODEL = model


def _pool_part(*job) -> str:
    return _write_part(_WORKER_MODEL, *job)


def _write_part(model: EmulatorModel, store_path: str, start: int, stop: int, parts_dir: str,
                config: FitConfig, subset: np.ndarray | None = None) -> str:
    """Fit rows [start, stop) of the store (``subset`` offsets only, if given) and write their
    part atomically; a part already written is kept (resuming)."""
    part = Path(parts_dir) / f"part-{start:010d}.parquet"
    if not part.exists():
        table = fit_chunk(model, SpectralStore(Path(store_path)), start, stop, config, subset)
        with atomic_path(part) as tmp:
            table.to_parquet(tmp)
    return str(part)


def _parts(out, store: SpectralStore, model: EmulatorModel, config: FitConfig, rows=None,
           refit_stale: bool = False, log=print):
    """The parts folder of catalogue ``out``, the store's chunks and those not yet fitted.

    The folder's ``fit.json`` names the model (``EmulatorModel.digest``), fit configuration and
    row selection its parts were made with; a resumed run with any other raises ValueError
    rather than mixing two models' fits in one catalogue, or with ``refit_stale`` empties the
    folder and fits afresh."""
    out = Path(out)
    parts_dir = out.parent / f"{out.stem}.parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    made_with = {"model": model.digest(), "fit_config": config_dict(config),
                 "rows": None if rows is None
                 else hashlib.sha256(np.asarray(rows, bool).tobytes()).hexdigest()[:16]}
    manifest = parts_dir / "fit.json"
    if manifest.exists() or any(parts_dir.glob("part-*.parquet")):
        before = json.loads(manifest.read_text()) if manifest.exists() else "an unrecorded model"
        if before != made_with and refit_stale:
            log(f"{parts_dir}: fits made with another model, fit configuration or selection of "
                "spectra; fitting afresh")
            shutil.rmtree(parts_dir)
            return _parts(out, store, model, config, rows)
        if before != made_with:
            raise ValueError(f"{parts_dir}: holds fits made with another model, fit configuration "
                             f"or selection of spectra ({before} here, {made_with} now); delete "
                             "the folder, or fit to another output, to start afresh")
    else:
        atomic_write_text(manifest, json.dumps(made_with))
    chunks = list(store.chunks())
    todo = [(a, b) for a, b in chunks if not (parts_dir / f"part-{a:010d}.parquet").exists()]
    return parts_dir, chunks, todo


def _collect(parts_dir: Path, chunks) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(parts_dir / f"part-{a:010d}.parquet") for a, _ in chunks],
                     ignore_index=True)


def fit_fits_files(model: EmulatorModel, files, config: FitConfig = FitConfig(), log=print):
    """Fit LAMOST FITS files. Unreadable files are skipped and reported, not fatal.

    Returns (table, skipped) with skipped a list of (file, reason).
    """
    from ..io.spectra import SpectrumFormatError, read_lamost
    from ..preprocess.grid import to_grid

    model.check_preprocessing()
    inst = get_instrument("lamost")
    grids, metas, skipped = [], [], []
    for path in progress(files, desc="reading"):
        try:
            raw = read_lamost(path)
        except SpectrumFormatError as exc:
            skipped.append((str(path), str(exc)))
            log(f"skipped: {exc}")
            continue
        grids.append(to_grid(raw, inst))
        metas.append(raw.meta)
    if not grids:
        return pd.DataFrame(), skipped
    flux = np.stack([g[0] for g in grids])
    ivar = np.stack([g[1] for g in grids])
    meta = pd.DataFrame(metas)
    norm, norm_ivar = preprocess_batch(flux, ivar, meta["rv"].to_numpy(dtype=float), inst)
    table = fit_table(model, norm, norm_ivar, config)
    return pd.concat([meta.reset_index(drop=True), table], axis=1), skipped


def fit_paths(model: EmulatorModel, inputs, out, config: FitConfig = FitConfig(), log=print,
              dask: dict | None = None):
    """Fit a spectral store (a folder with store.json) or LAMOST FITS files and folders.

    ``dask``: None (in process) or {"model_path": ..., "scheduler": address or None,
    "n_workers": n} to fit a store on a Dask cluster (a LocalCluster when no address).
    Returns (table, info) where info records the inputs, skipped files and the synthetic marker.
    """
    from ..io.store import open_store

    inputs = [Path(p) for p in inputs]
    if len(inputs) == 1 and (inputs[0] / "store.json").exists():
        store = open_store(inputs[0])
        if dask is None:
            table = fit_store(model, store, out, config, log=log)
        else:
            from dask.distributed import Client
            client = Client(dask["scheduler"]) if dask.get("scheduler") else None
            table = fit_store_dask(dask["model_path"], store, out, client, dask.get("n_workers", 2),
                                   config, log=log)
        return table, {"input": str(inputs[0]), "synthetic": bool(store.info.get("synthetic")),
                       "n_skipped": 0}
    table, skipped = fit_fits_files(model, fits_files(inputs), config, log=log)
    return table, {"input": [str(p) for p in inputs], "synthetic": False,
                   "n_skipped": len(skipped), "skipped": skipped,
                   "model_trained_on_synthetic": bool(model.config.get("synthetic"))}


def _fit_part(model_path: str, store_path: str, start: int, stop: int, parts_dir: str,
              config: FitConfig) -> str:
    """One Dask task: fit rows [start, stop) and write their part (``_write_part``)."""
    _start_worker(EmulatorModel.load(model_path))
    return _pool_part(store_path, start, stop, parts_dir, config)


def fit_store_dask(model_path, store: SpectralStore, out, client=None, n_workers: int = 2,
                   config: FitConfig = FitConfig(), log=print, collect: bool = True) -> pd.DataFrame | None:
    """Fit a store on a Dask cluster: a LocalCluster of ``n_workers`` single-threaded workers by
    default, or ``client`` (e.g. ``Client("tcp://scheduler:8786")`` for a real cluster). Chunks
    already fitted (parts present) are skipped, so a killed run resumes; results equal the
    in-process ``fit_store`` (None with ``collect=False``: the parts stay on disk)."""
    from dask.distributed import Client, LocalCluster, as_completed

    parts_dir, chunks, todo = _parts(out, store, EmulatorModel.load(model_path), config)
    own = client is None
    if own:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(_fit_part, str(model_path), str(store.path), a, b,
                                 str(parts_dir), config, pure=False) for a, b in todo]
        for _ in progress(as_completed(futures), total=len(futures), desc="fitting (dask)"):
            pass
        client.gather(futures)
    finally:
        if own:
            client.close()
            cluster.close()
    return _collect(parts_dir, chunks) if collect else None
