"""Preprocessing. In: raw spectra in their observed frame. Out: normalized flux and inverse
variance on an instrument's rest-frame grid, masked pixels at zero weight (``grid``,
``normalize``); ``ingest`` streams survey files through this into a spectral store."""

from .continuum import MAX_FILLED_GAP, normalize, pseudo_continuum, smoothing_kernel, smoothing_mask
from .grid import (
    instrument_mask,
    merge_cameras,
    preprocess,
    preprocess_batch,
    resample,
    shift_to_rest,
    to_grid,
)
from .ingest import ingest_desi, ingest_lamost

__all__ = [
    "MAX_FILLED_GAP",
    "ingest_desi",
    "ingest_lamost",
    "instrument_mask",
    "merge_cameras",
    "normalize",
    "preprocess",
    "preprocess_batch",
    "pseudo_continuum",
    "resample",
    "shift_to_rest",
    "smoothing_kernel",
    "smoothing_mask",
    "to_grid",
]
