"""The emulator (X19 sec. 4; Z24 sec. 3.1). In: normalized training spectra and their reference
labels, ab initio reference gradients. Out: a trained per-pixel neural-network emulator
(``EmulatorModel``) regularized so its gradient spectra follow the ab initio ones
(``loss``, ``train``, with Adam or per-pixel Levenberg-Marquardt, ``levenberg``); ``trainingset`` chooses the training stars."""

from .emulator import (
    FORMAT_VERSION,
    Emulator,
    EmulatorModel,
    config_dict,
    estimate_pixel_scatter,
    with_model_error,
)
from .loss import GradientPrior, chi2_per_pixel, default_d_scale, relative_weights
from .train import (
    TrainConfig,
    TrainingCancelled,
    outlier_keep,
    solve_output_layer,
    split_train_valid,
    train_emulator,
    validation_chi2,
)
from .trainingset import (
    KEEP_ALL_FEH,
    MIN_MG_FE,
    SNR_RELAX_FEH,
    TRAINING_MIN_SNR,
    TRAINING_MIN_SNR_METAL_POOR,
    TRANSFER_MIN_SNR,
    TrainingSetConfig,
    combine_label_sources,
    crossmatch,
    select_training,
    training_summary,
    transfer_labels,
)

__all__ = [
    "Emulator",
    "EmulatorModel",
    "FORMAT_VERSION",
    "GradientPrior",
    "KEEP_ALL_FEH",
    "MIN_MG_FE",
    "SNR_RELAX_FEH",
    "TRAINING_MIN_SNR",
    "TRAINING_MIN_SNR_METAL_POOR",
    "TRANSFER_MIN_SNR",
    "TrainConfig",
    "TrainingCancelled",
    "TrainingSetConfig",
    "chi2_per_pixel",
    "config_dict",
    "combine_label_sources",
    "crossmatch",
    "default_d_scale",
    "outlier_keep",
    "relative_weights",
    "select_training",
    "solve_output_layer",
    "split_train_valid",
    "train_emulator",
    "training_summary",
    "transfer_labels",
    "validation_chi2",
    "estimate_pixel_scatter",
    "with_model_error",
]
