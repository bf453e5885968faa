"""Ab initio spectra offline: MOOG + linemake + atmosnet atmospheres, reference gradient spectra.

Public API: ``load_reference_gradients(name)``, ``synthesize(labels, ...)``,
``to_instrument(wave, flux, instrument)``.
"""
from .gradients import ReferenceGradients, load_reference_gradients
from .synthesis import PHYSICS, REGULARIZING, TRUTH, Physics, synthesize, to_instrument

__all__ = ["ReferenceGradients", "load_reference_gradients", "synthesize", "to_instrument",
           "Physics", "PHYSICS", "REGULARIZING", "TRUTH"]
