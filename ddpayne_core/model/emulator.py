"""The DD-Payne spectral emulator (X19 eq. 1; docs/spec.md sec. 4).

One small network per pixel, evaluated for all pixels in one batched tensor operation:
    f_p(l) = w_p . sigmoid(W2_p sigmoid(W1_p x + b1_p) + b2_p) + fbar_p,
with x the min-max scaled labels in [-0.5, 0.5]. Files are versioned ``.pt`` archives holding
only tensors and plain metadata, loaded with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..constants import CONTINUUM_WEIGHTS, PIXEL_SCATTER_GRID
from ..instrument import get_instrument
from ..io_utils import atomic_path
from ..labels import Scaler

FORMAT_VERSION = 1


class Emulator(torch.nn.Module):
    """Per-pixel two-hidden-layer networks.

    Parameters: W1 (n_pix, n_hidden, n_label), b1 (n_pix, n_hidden), W2 (n_pix, n_hidden,
    n_hidden), b2 (n_pix, n_hidden), w (n_pix, n_hidden), fbar (n_pix,); flattened per pixel in
    the order of ``PARAMETERS`` (``flat_parameters``, ``parameter_jacobian``).
    """

    PARAMETERS = ("W1", "b1", "W2", "b2", "w", "fbar")

    def __init__(self, n_label: int, n_pix: int, n_hidden: int = 10, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        s1, s2 = 1.0 / np.sqrt(n_label), 1.0 / np.sqrt(n_hidden)
        self.W1 = torch.nn.Parameter(torch.randn(n_pix, n_hidden, n_label, generator=g) * s1 * 2)
        self.b1 = torch.nn.Parameter(torch.zeros(n_pix, n_hidden))
        self.W2 = torch.nn.Parameter(torch.randn(n_pix, n_hidden, n_hidden, generator=g) * s2)
        self.b2 = torch.nn.Parameter(torch.zeros(n_pix, n_hidden))
        self.w = torch.nn.Parameter(torch.randn(n_pix, n_hidden, generator=g) * s2 * 0.1)
        self.fbar = torch.nn.Parameter(torch.ones(n_pix))

    @property
    def n_label(self) -> int:
        return self.W1.shape[2]

    @property
    def n_pix(self) -> int:
        return self.W1.shape[0]

    @property
    def n_hidden(self) -> int:
        return self.W1.shape[1]

    def _hidden(self, x):
        """Hidden activations in pixel-major layout, h1 and h2: (n_pix, n_hidden, n_spec).

        Each layer is one batched matrix product over pixels, which is much faster on CPUs than
        the equivalent einsum with the spectrum index first."""
        z1 = torch.matmul(self.W1, x.T) + self.b1[:, :, None]
        h1 = torch.sigmoid(z1)
        h2 = torch.sigmoid(torch.bmm(self.W2, h1) + self.b2[:, :, None])
        return h1, h2

    def label_steps(self, x: torch.Tensor, steps: torch.Tensor, columns) -> torch.Tensor:
        """Finite differences F(x + steps[:, j] e_columns[j]) - F(x): x (n_spec, n_label) scaled
        labels, steps (n_spec, n_step) scaled, columns (n_step,) label indices -> (n_spec, n_step,
        n_pix). A step along one label moves the first layer's input by one column of W1, so the
        stepped spectra reuse the unstepped product over labels."""
        z1 = torch.matmul(self.W1, x.T) + self.b1[:, :, None]                      # (p, i, s)
        stepped = z1[:, :, :, None] + self.W1[:, :, list(columns)][:, :, None, :] * steps[None, None]
        h1 = torch.sigmoid(torch.cat([z1[:, :, :, None], stepped], dim=3).flatten(2))
        h2 = torch.sigmoid(torch.bmm(self.W2, h1) + self.b2[:, :, None])
        f = (self.w[:, None, :] @ h2)[:, 0, :].reshape(self.n_pix, len(x), -1)     # (p, s, 1 + n_step)
        return (f[:, :, 1:] - f[:, :, :1]).permute(1, 2, 0)

    def pixel_subset(self, pixels) -> "Emulator":
        """The same networks for a subset of pixels (index or slice), sharing no storage."""
        sub = Emulator(self.n_label, 1, self.n_hidden)
        with torch.no_grad():
            for name, p in self.named_parameters():
                setattr(sub, name, torch.nn.Parameter(p[pixels].clone()))
        return sub

    def flat_parameters(self) -> torch.Tensor:
        """Every pixel's parameters as one row: (n_pix, n_param), a copy."""
        return torch.cat([getattr(self, n).detach().reshape(self.n_pix, -1) for n in self.PARAMETERS], 1)

    def set_flat_parameters(self, theta: torch.Tensor) -> None:
        """Set every pixel's parameters from rows as ``flat_parameters`` gives them."""
        start = 0
        with torch.no_grad():
            for name in self.PARAMETERS:
                param = getattr(self, name)
                size = param[0].numel()
                param.copy_(theta[:, start:start + size].reshape(param.shape))
                start += size

    def parameter_jacobian(self, x: torch.Tensor):
        """Flux and its derivatives with respect to each pixel's own parameters.

        x: (n_spec, n_label) scaled labels -> flux (n_pix, n_spec) and J (n_pix, n_param,
        n_spec), n_param = H K + H + H^2 + H + H + 1 in ``PARAMETERS`` order (291 for 10 neurons
        and 16 labels). A pixel's flux depends on its own parameters only, so this is the whole
        Jacobian of the emulator, block by block."""
        h1, h2 = self._hidden(x)
        flux = (self.w[:, None, :] @ h2)[:, 0, :] + self.fbar[:, None]
        g2 = h2 * (1 - h2) * self.w[:, :, None]                                # d f / d b2
        g1 = torch.bmm(self.W2.transpose(1, 2), g2) * h1 * (1 - h1)          # d f / d b1
        n_pix, n_hidden, n_spec = h1.shape
        parts = [(g1[:, :, None, :] * x.T[None, None]).reshape(n_pix, -1, n_spec), g1,
                 (g2[:, :, None, :] * h1[:, None]).reshape(n_pix, -1, n_spec), g2, h2,
                 torch.ones(n_pix, 1, n_spec)]
        return flux.detach(), torch.cat(parts, 1).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n_spec, n_label) scaled labels -> (n_spec, n_pix) normalized flux."""
        _, h2 = self._hidden(x)
        return (self.w[:, None, :] @ h2)[:, 0, :].T + self.fbar

    def flux_and_jacobian(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                          pixel_major: bool = False):
        """Flux (n_spec, n_pix) and the analytic d flux / d x (n_spec, n_pix, n_label), each
        row of the latter multiplied by ``weights`` (n_spec, n_pix) when given: with weights
        1/sigma a fit's normal equations are one product of it with itself. ``pixel_major``:
        the Jacobian as (n_pix, n_spec, n_label) instead, as computed (no transposing copy);
        gathers of neighbouring pixels are contiguous block copies in this layout."""
        h1, h2 = self._hidden(x)
        flux = (self.w[:, None, :] @ h2)[:, 0, :].T + self.fbar
        # sigmoid' = h - h^2, fused into one op per layer
        g2 = torch.addcmul(h2, h2, h2, value=-1.0).mul_(self.w[:, :, None])    # (p, i, s)
        g1 = torch.bmm(self.W2.transpose(1, 2), g2).mul_(torch.addcmul(h1, h1, h1, value=-1.0))
        if weights is not None:
            g1.mul_(weights.T[:, None, :])
        # One (n_spec x n_hidden) @ (n_hidden x n_label) product per pixel.
        jac = torch.bmm(g1.transpose(1, 2), self.W1)                           # (p, s, k)
        return flux, jac if pixel_major else jac.transpose(0, 1).contiguous()


@dataclass
class EmulatorModel:
    """An emulator with everything needed to use it: label names, scaling, wavelength grid,
    pixel mask and the training configuration/history."""

    net: Emulator
    labels: tuple
    scaler: Scaler
    wave: np.ndarray  # (n_pix,) vacuum [A]
    mask: np.ndarray  # (n_pix,) bool, True = pixel used in fits
    config: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    # (n_train, n_label) physical labels of the training stars: where the model has seen data
    # (flags.out_of_coverage). None for a model saved without them.
    training_labels: np.ndarray | None = None
    # (n_pix,) the emulator's own error at each pixel [normalized flux] (``estimate_pixel_scatter``),
    # added in quadrature to the noise by the fit; None: the emulator describes spectra to their noise.
    pixel_scatter: np.ndarray | None = None

    def predict(self, labels: np.ndarray) -> np.ndarray:
        """labels: (n_spec, n_label) physical units -> (n_spec, n_pix) normalized flux."""
        x = torch.as_tensor(self.scaler.scale(np.atleast_2d(labels)), dtype=torch.float32)
        with torch.no_grad():
            return self.net(x).numpy().astype(np.float64)

    def check_preprocessing(self, name: str = "emulator") -> None:
        """Raise ValueError if the emulator was trained on spectra whose pseudo-continuum was
        weighted otherwise than this ddpayne weights it (``constants.CONTINUUM_WEIGHTS``), or
        shifted to the rest frame by another interpolation than its instrument's
        (``constants.RESAMPLING``): its fits would be biased. Models that record nothing predate
        the choice and were trained with inverse-variance weights and linear interpolation."""
        resampled = self.config.get("resampling", "linear")
        instrument = self.config.get("instrument")
        if instrument and resampled != get_instrument(instrument).resampling:
            raise ValueError(f"{name}: trained on spectra shifted to the rest frame by {resampled!r} "
                             f"interpolation, but {instrument} spectra are now shifted by "
                             f"{get_instrument(instrument).resampling!r} (constants.RESAMPLING); retrain it")
        used = self.config.get("continuum_weights", "ivar")
        if used != CONTINUUM_WEIGHTS:
            raise ValueError(f"{name}: trained on spectra normalized with {used!r} continuum weights, "
                             f"but this ddpayne normalizes with {CONTINUUM_WEIGHTS!r} "
                             "(constants.CONTINUUM_WEIGHTS); retrain it with `ddpayne train`")

    def digest(self) -> str:
        """A short SHA-256 of the weights, labels, scaling and pixel mask: which model made a
        resumable fit's parts (``survey.fit_store``)."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.net.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().numpy().tobytes())
        h.update("\n".join(self.labels).encode())
        for array in (self.scaler.lo, self.scaler.hi, self.mask):
            h.update(np.ascontiguousarray(array).tobytes())
        if self.pixel_scatter is not None:   # it changes the fits' weights
            h.update(np.ascontiguousarray(self.pixel_scatter, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        meta = {"format_version": FORMAT_VERSION, "labels": list(self.labels),
                "n_hidden": self.net.n_hidden, "config": self.config, "history": self.history}
        payload = {"state": state, "meta": json.dumps(meta),
                   "scaler_lo": torch.as_tensor(self.scaler.lo), "scaler_hi": torch.as_tensor(self.scaler.hi),
                   "wave": torch.as_tensor(self.wave), "mask": torch.as_tensor(self.mask)}
        if self.training_labels is not None:
            payload["training_labels"] = torch.tensor(np.asarray(self.training_labels, np.float64))
        if self.pixel_scatter is not None:
            payload["pixel_scatter"] = torch.tensor(np.asarray(self.pixel_scatter, np.float64))
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "EmulatorModel":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such emulator file")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(payload["meta"])
        except Exception as exc:  # any unreadable or foreign file
            raise ValueError(f"{path}: not a ddpayne emulator file ({exc})") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: emulator format {meta.get('format_version')} "
                             f"unsupported (this ddpayne reads {FORMAT_VERSION})")
        state = payload["state"]
        n_pix, n_hidden, n_label = state["W1"].shape
        net = Emulator(n_label, n_pix, n_hidden)
        net.load_state_dict(state)
        net.eval()
        return cls(net, tuple(meta["labels"]),
                   Scaler(payload["scaler_lo"].numpy(), payload["scaler_hi"].numpy()),
                   payload["wave"].numpy(), payload["mask"].numpy().astype(bool),
                   meta["config"], meta["history"],
                   payload["training_labels"].numpy() if "training_labels" in payload else None,
                   payload["pixel_scatter"].numpy() if "pixel_scatter" in payload else None)


def config_dict(cfg) -> dict:
    """A dataclass configuration as a JSON-safe dict."""
    return json.loads(json.dumps(asdict(cfg), default=float))


def with_model_error(ivar: np.ndarray, model_error) -> np.ndarray:
    """Inverse variance with an error floor ``model_error`` s (normalized flux; a number, or one
    per pixel, (n_pix,)) added in quadrature: 1 / (1/ivar + s^2); zero stays zero. ivar: any
    shape ending in n_pix."""
    if np.all(np.asarray(model_error) <= 0):
        return ivar
    return ivar / (1.0 + ivar * np.asarray(model_error) ** 2)


def estimate_pixel_scatter(residual: np.ndarray, ivar: np.ndarray,
                           grid: np.ndarray = PIXEL_SCATTER_GRID) -> np.ndarray:
    """Each pixel's model scatter s [normalized flux] by maximum likelihood (The Cannon's s^2,
    Ness et al. 2015 sec. 2): the value on ``grid`` that minimizes
    sum_i r_i^2 / (sigma_i^2 + s^2) + ln(sigma_i^2 + s^2) over the spectra i with ivar > 0.

    residual: (n_spec, n_pix) data minus model; ivar: (n_spec, n_pix) the data's inverse
    variance (0 = masked). Returns (n_pix,); 0 where no spectrum has the pixel."""
    residual = np.asarray(residual, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    use = (ivar > 0) & np.isfinite(residual)
    var = np.where(use, 1.0 / np.where(use, ivar, 1.0), 1.0)
    r2 = np.where(use, residual, 0.0) ** 2
    best = np.full(residual.shape[1], np.inf)
    scatter = np.zeros(residual.shape[1])
    for s in np.asarray(grid, dtype=np.float64):   # 201 values, each a batched pass over all pixels
        total = var + s * s
        nll = np.where(use, r2 / total + np.log(total), 0.0).sum(0)
        better = nll < best
        best[better], scatter[better] = nll[better], s
    return scatter
