"""Reading (the pipeline's first stage). In: survey files (LAMOST FITS in every archive layout,
DESI coadds), label tables, high-resolution survey catalogues. Out: ``RawSpectrum`` objects,
joined label tables, and the chunked on-disk ``SpectralStore`` every later stage reads."""

from .highres import read_apogee_allstar, read_desi_mws, read_galah, read_payne_apogee
from .labeltable import LABEL_TABLE_KEYS, attach_labels, heldout_split, read_label_table, star_ids
from .spectra import (
                      DESI_CAMERAS,
                      RawSpectrum,
                      SpectrumFormatError,
                      fits_files,
                      lamost_header_meta,
                      read_desi_coadd,
                      read_lamost,
)
from .store import SpectralStore, chunk_done, create_store, open_store, write_chunk, write_meta

__all__ = [
    "DESI_CAMERAS",
    "LABEL_TABLE_KEYS",
    "RawSpectrum",
    "SpectralStore",
    "SpectrumFormatError",
    "attach_labels",
    "chunk_done",
    "create_store",
    "fits_files",
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
    "star_ids",
    "write_chunk",
    "write_meta",
]
