"""X_response: does a fitted label follow its own spectral signal, or the training set's
abundance correlations? (docs/flags.md; studies/population_shift.)

X_gradcorr asks whether the emulator's gradient spectrum of a label has the ab initio *shape*. A
label can pass it and still not be measured: when the training set's labels are correlated (alpha
elements with [Fe/H], Ni with Fe, ...) the emulator may learn a gradient of the right shape but
of the wrong size, or mixed with its neighbours', and the fit then returns the population's trend
instead of the star's own value. To first order the fit answers a change of the true labels
``dl`` with ``dl_fit = S dl``, where, with J the (n_label, n_pix) gradient spectra per unit label,

    S = (J_emu J_emu^T)^-1 J_emu J_abinitio^T

(the least-squares solution for the emulator's labels of an ab initio spectral change). The
diagonal S_kk is the slope d fitted / d true of label k when it varies alone: 1 for a label the
fit measures, below 1 where part of its signal is read as other labels or not at all.

Evaluated as X_gradcorr is: the emulator's gradients at the star's fitted labels, the ab initio
ones at its nearest reference star (X19's metric), here among the stars of reference grids that
did NOT regularize the model (``response_reference``). Measured against the truth emulator's own
response on the independent-[X/Fe] population of studies/population_shift, this per-star form
tracks it (medians within ~0.1, rank correlation 0.4-0.8 for the abundances); the response of
the emulator at the reference stars' labels instead was optimistic by 0.3-0.5.
"""
from __future__ import annotations

import numpy as np

from .. import constants as C
from ..model.emulator import EmulatorModel
from ..theory.gradients import ReferenceGradients, load_reference_gradients
from .xflag import paired_dflux


def response_grid(instrument: str, prior: str) -> str:
    """Name of the reference grids that measure the X_response of a model of ``instrument``
    whose gradient prior used the grid ``prior`` (one of ``constants.RESPONSE_GRIDS``): the
    instrument's other grids (at the prior's stars the prior pulled the emulator's gradients to
    the ab initio ones), or the prior's own grid where no other exists (DESI)."""
    return "+".join([g for g in C.RESPONSE_GRIDS[instrument] if g != prior] or [prior])


def response_reference(model: EmulatorModel, reference: ReferenceGradients) -> ReferenceGradients:
    """The ab initio gradients that measure ``model``'s X_response, given ``reference``, the ones
    its X_gradcorr compares with: where ``reference`` is one of the instrument's MOOG grids
    (``constants.RESPONSE_GRIDS``), ``response_grid``'s; otherwise ``reference`` itself (a grid
    file of other physics, the tests' truth emulators: the only ab initio gradients of that
    physics are its own stars)."""
    instrument = model.config.get("instrument", "lamost")
    if reference.name not in C.RESPONSE_GRIDS[instrument]:
        return reference
    return load_reference_gradients(response_grid(instrument, reference.name))


def label_response(model: EmulatorModel, labels: np.ndarray, reference: ReferenceGradients) -> np.ndarray:
    """X_response of fitted stars: the diagonal of S (module docstring) with the emulator's
    gradient spectra at each star's fitted labels and the ab initio ones of its nearest star
    (X19's metric) in ``reference`` (``response_reference``), both with that star's steps,
    per unit label, unweighted over the model's unmasked pixels.
    labels: (n, n_label) physical -> (n, n_label); NaN where the labels are not finite."""
    out = np.full(labels.shape, np.nan)
    for rows, emu, ab, steps in paired_dflux(model, labels, reference):
        emu, ab = emu / steps[:, :, None], ab / steps[:, :, None]
        gram, cross = emu @ emu.transpose(0, 2, 1), emu @ ab.transpose(0, 2, 1)
        out[rows] = np.diagonal(np.linalg.pinv(gram) @ cross, axis1=1, axis2=2)
    return out
