"""The synthetic survey, our controlled laboratory (docs/synthetic-survey.md). In: the truth
emulator (``truth_emulator``, trained on ab initio spectra). Out: a simulated LAMOST-like
survey with known true labels in a spectral store (``survey``), and stand-in high-resolution
label tables (``standins``). Everything it writes is marked synthetic."""

from .survey import (
    ALPHA,
    DESI_TRUTH_EMULATOR,
    HIRES_NOISE,
    HIRES_OFFSETS,
    SKY_LINES_AA,
    SurveyConfig,
    TRUTH_EMULATOR,
    build_meta,
    draw_population,
    expected_observation,
    reobserve,
    simulate_survey,
    survey_crb,
    to_velocity,
    truth_spectra,
)
from .standins import export_allstar, export_lamost_fits
from .truth_emulator import (
    ACCURACY_WINDOW_AA,
    GRID_NOISE,
    TRUTH_GRIDS,
    computed_grid,
    train_truth_emulator,
)

__all__ = [
    "ACCURACY_WINDOW_AA",
    "ALPHA",
    "DESI_TRUTH_EMULATOR",
    "GRID_NOISE",
    "HIRES_NOISE",
    "HIRES_OFFSETS",
    "SKY_LINES_AA",
    "SurveyConfig",
    "TRUTH_EMULATOR",
    "TRUTH_GRIDS",
    "build_meta",
    "computed_grid",
    "draw_population",
    "expected_observation",
    "export_allstar",
    "export_lamost_fits",
    "reobserve",
    "simulate_survey",
    "survey_crb",
    "to_velocity",
    "train_truth_emulator",
    "truth_spectra",
]
