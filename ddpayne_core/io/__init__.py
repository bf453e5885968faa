"""Reading (the pipeline's first stage). In: survey files (LAMOST FITS in every archive layout,
DESI coadds), label tables, high-resolution survey catalogues. Out: ``RawSpectrum`` objects,
joined label tables, and the chunked on-disk ``SpectralStore`` every later stage reads."""

from .desi import (
    CAMERAS,
    FIBERMAP_COLUMNS,
    MWS_TARGET_COLUMNS,
    CameraData,
    DesiCoadd,
    apply_resolution,
    gaussian_resolution,
    read_desi_coadd,
    resolution_fwhm,
    resolution_kernels,
    resolution_offsets,
    write_desi_coadd,
    write_mws_catalog,
)
from .highres import read_apogee_allstar, read_desi_mws, read_galah, read_payne_apogee
from .labeltable import LABEL_TABLE_KEYS, attach_labels, heldout_split, read_label_table, star_ids
from .spectra import RawSpectrum, SpectrumFormatError, fits_files, lamost_header_meta, read_lamost
from .store import SpectralStore, chunk_done, create_store, open_store, write_chunk, write_meta

__all__ = [
    "CAMERAS",
    "CameraData",
    "DesiCoadd",
    "FIBERMAP_COLUMNS",
    "LABEL_TABLE_KEYS",
    "MWS_TARGET_COLUMNS",
    "RawSpectrum",
    "SpectralStore",
    "SpectrumFormatError",
    "apply_resolution",
    "attach_labels",
    "chunk_done",
    "create_store",
    "fits_files",
    "gaussian_resolution",
    "heldout_split",
    "lamost_header_meta",
    "open_store",
    "read_apogee_allstar",
    "read_desi_coadd",
    "read_desi_mws",
    "read_galah",
    "read_label_table",
    "read_lamost",
    "read_payne_apogee",
    "resolution_fwhm",
    "resolution_kernels",
    "resolution_offsets",
    "star_ids",
    "write_chunk",
    "write_desi_coadd",
    "write_meta",
    "write_mws_catalog",
]
