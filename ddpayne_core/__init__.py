"""ddpayne: The Data-Driven Payne (X19, Z24) for low-resolution stellar spectra.

The engine, one subpackage per pipeline stage (no UI imports, no side effects on import):

    io -> preprocess -> model -> fit -> flags -> catalog -> validation -> app (logic only)

``theory`` computes the ab initio reference gradient spectra the emulator is regularized with;
``simulate`` makes the synthetic survey (our laboratory, always marked synthetic); ``pipeline``
composes the stages once for the command line, the demos, the app and notebooks. The names
below are the public API; they load on first use, so ``import ddpayne_core`` stays light.

    from ddpayne_core import open_store, train_from_store, EmulatorModel, fit_and_flag
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "io": ["RawSpectrum", "SpectrumFormatError", "read_lamost", "read_desi_coadd", "fits_files",
           "open_store", "read_label_table", "attach_labels"],
    "preprocess": ["preprocess_batch", "ingest_lamost"],
    "model": ["EmulatorModel", "TrainConfig", "TrainingSetConfig", "train_emulator"],
    "fit": ["FitConfig", "fit_spectra", "fit_store"],
    "flags": ["XFlagConfig", "add_flags", "model_reference", "reflag"],
    "catalog": ["write_catalog", "read_catalog_metadata"],
    "pipeline": ["train_from_store", "fit_and_flag", "flag_catalog", "recommended_catalog"],
    "theory": ["load_reference_gradients"],
    "simulate": ["SurveyConfig", "simulate_survey"],
    "validation": ["write_report"],
    "app": ["load_bundle"],
    "demo": ["run_demo"],
    "real": ["run_real"],
}
_WHERE = {name: module for module, names in _API.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'ddpayne_core' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
