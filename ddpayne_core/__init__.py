"""ddpayne: The Data-Driven Payne engine (no UI imports).

Pipeline, one module each: spectra -> trainingset -> emulator (loss, train) -> fit (survey) ->
catalog; the synthetic default survey in simulate; ab initio physics in theory.
"""
from .memory import keep_freed_memory

__version__ = "0.1.0"
# Every process that imports the engine (command line, Dask workers, notebooks, tests) batches
# tensors of tens to hundreds of MB: keep their memory rather than re-fault it (memory.py).
keep_freed_memory()
