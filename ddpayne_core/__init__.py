"""ddpayne: The Data-Driven Payne engine (no UI imports, no side effects on import).

Pipeline, one module each: spectra -> trainingset -> emulator (loss, train) -> fit (survey) ->
catalog; the synthetic default survey in simulate; ab initio physics in theory.
"""
__version__ = "0.1.0"
