"""Model atmospheres from the atmosnet networks (C3K/ATLAS12-trained), without atmosnet itself.

atmosnet (Nidever, MIT licence) ships its networks as dill pickles and pins old numpy/scipy. We
read those pickles once with a restricted unpickler that can only rebuild numpy arrays, store the
weights as a plain ``.npz`` (``data/theory/atmosnet_c3k_cool.npz``), and evaluate the network with
numpy here. Each of the 8 atmosphere columns (RHOX, T, P, XNE, ABROSS, ACCRAD, VTURB, FLXCNV)
has its own network of two hidden leaky-ReLU layers over 80 depths; the output is
log10(value + 1e-16), which atmosnet wrongly exponentiates with e (docs/spec.md sec. 10).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_utils import atomic_write_npz
from ..paths import THEORY

ATMOSNET_FILE = THEORY / "atmosnet_c3k_cool.npz"
MIN_DEPTHS = 50  # of 80: a truncated model must still reach far below the photosphere
COLUMNS = ("RHOX", "T", "P", "XNE", "ABROSS", "ACCRAD", "VTURB", "FLXCNV")


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists and numpy arrays; refuses every other global."""

    def find_class(self, module, name):
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return np._core.multiarray._reconstruct
        if module == "dill._dill" and name == "_import_module":
            return lambda modname: np
        if module == "dill._dill" and name == "_get_attr":
            def get_reconstruct(_mod, attr):
                if attr != "_reconstruct":
                    raise pickle.UnpicklingError(f"refused attribute {attr!r}")
                return np._core.multiarray._reconstruct
            return get_reconstruct
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def convert_atmosnet_pickle(pickle_path: str | Path, out: str | Path = ATMOSNET_FILE) -> Path:
    """Convert an atmosnet ``atmosnet_c3k_*.pkl`` into a plain weights ``.npz``."""
    with open(pickle_path, "rb") as fh:
        columns = _ArraysOnlyUnpickler(fh).load()
    arrays = {}
    for col in columns:
        c = int(col["column"])
        for key in ("w_array_0", "w_array_1", "w_array_2", "b_array_0", "b_array_1", "b_array_2",
                    "x_min", "x_max"):
            arrays[f"{key}_{c}"] = np.asarray(col[key], dtype=np.float64)
    arrays["ranges"] = np.asarray(columns[0]["ranges"], dtype=np.float64)
    arrays["labels"] = np.array(columns[0]["labels"])
    return atomic_write_npz(out, **arrays)


def build_atmosnet_weights(out: Path = ATMOSNET_FILE, version: str = "1.0.1") -> Path:
    """Recreate ``out`` from the atmosnet wheel on PyPI (pip download; nothing is installed)."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        f"atmosnet=={version}", "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("atmosnet-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = "atmosnet/data/atmosnet_c3k_300neurons_cool.pkl"
            zf.extract(member, tmp)
        return convert_atmosnet_pickle(Path(tmp) / member, out)


@dataclass(frozen=True)
class Atmosphere:
    """A Kurucz-type model atmosphere.

    deck: (n_depth, 8) columns RHOX [g/cm2], T [K], P [dyn/cm2], XNE [cm-3], ABROSS [cm2/g],
    ACCRAD, VTURB [cm/s], FLXCNV.
    """

    teff: float
    logg: float
    feh: float
    alpha_fe: float
    deck: np.ndarray


def _leaky_relu(z):
    return np.where(z > 0, z, 0.01 * z)


_WEIGHTS: dict | None = None


def _weights(path: Path = ATMOSNET_FILE) -> dict:
    global _WEIGHTS
    if _WEIGHTS is None:
        if not path.exists():
            raise FileNotFoundError(f"{path}: atmosnet weights missing; run `ddpayne theory build`")
        with np.load(path, allow_pickle=False) as f:
            _WEIGHTS = {k: f[k] for k in f.files}
    return _WEIGHTS


def model_atmosphere(teff: float, logg: float, feh: float, alpha_fe: float = 0.0) -> Atmosphere:
    """Evaluate the atmosnet network at (Teff [K], logg [cgs], [M/H], [alpha/M])."""
    w = _weights()
    labels = np.array([teff, logg, feh, alpha_fe], dtype=np.float64)
    lo, hi = w["ranges"][:, 0], w["ranges"][:, 1]
    if np.any(labels < lo) or np.any(labels > hi):
        raise ValueError(f"atmosphere labels {labels.tolist()} outside atmosnet range "
                         f"{w['ranges'].tolist()}")
    deck = np.empty((w["b_array_2_0"].shape[0], len(COLUMNS)))
    for c in range(len(COLUMNS)):
        x = (labels - w[f"x_min_{c}"]) / (w[f"x_max_{c}"] - w[f"x_min_{c}"]) - 0.5
        h1 = _leaky_relu(w[f"w_array_0_{c}"] @ x + w[f"b_array_0_{c}"])
        h2 = _leaky_relu(w[f"w_array_1_{c}"] @ h1 + w[f"b_array_1_{c}"])
        deck[:, c] = 10.0 ** (w[f"w_array_2_{c}"] @ h2 + w[f"b_array_2_{c}"]) - 1e-16
    # The network can lose monotonicity in the deepest layers (seen at tau_Ross ~ 200 for hot
    # metal-poor dwarfs); keep the monotone part, which reaches far below the photosphere.
    rising = (np.diff(deck[:, 0]) > 0) & (np.diff(deck[:, 2]) > 0)
    n_keep = deck.shape[0] if rising.all() else int(np.argmin(rising)) + 1
    if n_keep < MIN_DEPTHS:
        raise ValueError(f"atmosnet model for {labels.tolist()} is not monotonic in column mass "
                         f"below depth {n_keep}")
    return Atmosphere(float(teff), float(logg), float(feh), float(alpha_fe), deck[:n_keep])
