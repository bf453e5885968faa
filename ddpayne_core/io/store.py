"""The chunked on-disk spectral store (zarr), with per-spectrum metadata alongside (Parquet).

Layout of a store folder:
    spectra.zarr/  flux, ivar: (n_spec, n_pix) float32, observed frame, on the instrument grid,
                   chunked by rows; wave: (n_pix,) vacuum [A]
    meta.parquet   one row per spectrum (specid, rv, snr, ra, dec, ... and, for synthetic
                   surveys, truth and high-resolution training labels)
    store.json     instrument, n_spec, chunk size, "synthetic" marker and provenance

Spectra are never all loaded: readers iterate over row chunks. Writers fill chunks one at a time
and record each finished chunk, so an interrupted build resumes where it stopped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import zarr

from ..io_utils import atomic_path, atomic_write_text


@dataclass
class SpectralStore:
    path: Path

    @property
    def info(self) -> dict:
        return json.loads((self.path / "store.json").read_text())

    @property
    def wave(self) -> np.ndarray:
        return np.asarray(self._group()["wave"][:])

    @property
    def n_spec(self) -> int:
        return int(self.info["n_spec"])

    @property
    def chunk(self) -> int:
        return int(self.info["chunk"])

    def _group(self, mode="r"):
        return zarr.open_group(str(self.path / "spectra.zarr"), mode=mode)

    def meta(self, columns=None) -> pd.DataFrame:
        return pd.read_parquet(self.path / "meta.parquet", columns=columns)

    def meta_rows(self, start: int, stop: int, columns=None) -> pd.DataFrame:
        """Metadata rows [start, stop) (of ``columns`` that exist, all when None), reading only
        the Parquet row groups that hold them: one per chunk in stores written by
        ``write_meta``, so a worker's memory does not grow with the survey."""
        f = pq.ParquetFile(self.path / "meta.parquet")
        if columns is not None:
            columns = [c for c in columns if c in f.schema_arrow.names]
        ends = np.cumsum([f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)])
        first, last = np.searchsorted(ends, start, side="right"), np.searchsorted(ends, stop - 1, side="right")
        table = f.read_row_groups(list(range(first, last + 1)), columns=columns)
        offset = int(ends[first - 1]) if first else 0
        return table.slice(start - offset, stop - start).to_pandas()

    def read(self, start: int, stop: int):
        """Rows [start, stop): (flux, ivar) float64 arrays (n, n_pix)."""
        g = self._group()
        return (np.asarray(g["flux"][start:stop], dtype=np.float64),
                np.asarray(g["ivar"][start:stop], dtype=np.float64))

    def read_rows(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Arbitrary rows (sorted internally), returned in the order asked."""
        rows = np.asarray(rows)
        order = np.argsort(rows)
        g = self._group()
        f = np.asarray(g["flux"].get_orthogonal_selection((rows[order], slice(None))), np.float64)
        iv = np.asarray(g["ivar"].get_orthogonal_selection((rows[order], slice(None))), np.float64)
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        return f[inv], iv[inv]

    def chunks(self):
        """Yield (start, stop) row ranges aligned with the storage chunks."""
        for start in range(0, self.n_spec, self.chunk):
            yield start, min(start + self.chunk, self.n_spec)


def create_store(path: str | Path, wave: np.ndarray, n_spec: int, meta: pd.DataFrame,
                 instrument: str, chunk: int = 1000, synthetic: bool = False,
                 provenance: dict | None = None) -> SpectralStore:
    """Create an empty store of ``n_spec`` rows (or reopen one with the same shape to resume)."""
    path = Path(path)
    if len(meta) != n_spec:
        raise ValueError(f"meta has {len(meta)} rows for {n_spec} spectra")
    info_path = path / "store.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info["n_spec"] != n_spec or info["n_pix"] != len(wave):
            raise ValueError(f"{path} holds a different store ({info['n_spec']} spectra); remove it")
        if info["provenance"] != json.loads(json.dumps(provenance or {})):
            raise ValueError(f"{path} was made from other inputs (store.json provenance "
                             f"{info['provenance']}); remove it to make this one")
        return SpectralStore(path)
    path.mkdir(parents=True, exist_ok=True)
    g = zarr.open_group(str(path / "spectra.zarr"), mode="w")
    for name in ("flux", "ivar"):
        g.create_array(name, shape=(n_spec, len(wave)), chunks=(chunk, len(wave)), dtype="f4",
                       fill_value=0.0)
    g.create_array("wave", shape=(len(wave),), dtype="f8")[:] = wave
    write_meta(path, meta, chunk)
    info = {"instrument": instrument, "n_spec": int(n_spec), "n_pix": int(len(wave)),
            "chunk": int(chunk), "synthetic": bool(synthetic), "done_chunks": [],
            "provenance": provenance or {}}
    atomic_write_text(info_path, json.dumps(info, indent=2))
    return SpectralStore(path)


def write_meta(path: str | Path, meta: pd.DataFrame, chunk: int) -> None:
    """Write a store's meta.parquet atomically, one row group per chunk of rows (see
    ``SpectralStore.meta_rows``)."""
    with atomic_path(Path(path) / "meta.parquet") as tmp:
        meta.to_parquet(tmp, row_group_size=int(chunk))


def write_chunk(store: SpectralStore, start: int, flux: np.ndarray, ivar: np.ndarray) -> None:
    """Write rows [start, start + len(flux)) and mark that chunk done."""
    g = store._group("r+")
    stop = start + len(flux)
    g["flux"][start:stop] = flux.astype(np.float32)
    g["ivar"][start:stop] = ivar.astype(np.float32)
    info = store.info
    info["done_chunks"] = sorted(set(info["done_chunks"]) | {int(start)})
    atomic_write_text(store.path / "store.json", json.dumps(info, indent=2))


def chunk_done(store: SpectralStore, start: int) -> bool:
    return int(start) in store.info["done_chunks"]


def open_store(path: str | Path) -> SpectralStore:
    path = Path(path)
    if not (path / "store.json").exists():
        raise FileNotFoundError(f"{path}: not a ddpayne spectral store (no store.json)")
    store = SpectralStore(path)
    missing = [s for s, _ in store.chunks() if s not in store.info["done_chunks"]]
    if missing:
        raise ValueError(f"{path}: store incomplete ({len(missing)} chunks missing); rerun the "
                         "command that builds it to resume")
    return store
