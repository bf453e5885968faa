"""The DD-Payne training loss (X19 eq. 2; docs/spec.md sec. 5).

    L = (1/N_S) sum_i sum_p (f(l_i)_p - f_i,p)^2 ivar_i,p
        + sum_j sum_k D_k sum_p |dF_emu(j, k)_p - dF_abinitio(j, k)_p|,

dF(j, k) = F(l_ref_j + step_jk e_k) - F(l_ref_j), with the steps of the ab initio grid. Both terms
are sums over pixels of per-pixel quantities, so the loss separates by pixel: every pixel's
network is trained by its own terms alone (used for per-pixel early stopping in ``train``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..constants import D_SCALE_ABUNDANCES, D_SCALE_PARAMS, RELATIVE_PRIOR_FLOOR
from ..labels import Scaler


def default_d_scale(labels) -> np.ndarray:
    """D_scale per label: 5 for Teff, logg, vmic and 50 for [Fe/H], [X/Fe] (X19 sec. 2)."""
    return np.array([D_SCALE_PARAMS if lab in ("teff", "logg", "vmic") else D_SCALE_ABUNDANCES
                     for lab in labels])


@dataclass
class GradientPrior:
    """Ab initio gradient spectra in the emulator's terms.

    x_ref: (n_ref, n_label) scaled reference labels; x_step: (n_ref, n_label, n_label) scaled
    stepped labels; dflux: (n_ref, n_label, n_pix) ab initio dF; weight: (n_ref, n_label) the
    D of each star's gradient in each label; pix_weight: (n_pix,) 1 where the prior applies;
    amplitude_range: None (X19: the emulator matches dF_abinitio itself) or (lo, hi): it matches
    a * dF_abinitio, a the least-squares amplitude of its own gradient on the ab initio one,
    clipped to [lo, hi] (the prior then holds the gradient's shape and lets the data set its
    size within that range).
    """

    x_ref: torch.Tensor
    x_step: torch.Tensor
    dflux: torch.Tensor
    weight: torch.Tensor
    pix_weight: torch.Tensor
    amplitude_range: tuple | None = None

    @classmethod
    def build(cls, ref_labels: np.ndarray, steps: np.ndarray, dflux: np.ndarray,
              scaler: Scaler, d_scale: np.ndarray, pix_weight: np.ndarray,
              relative: bool = False, amplitude_range: tuple | None = None) -> "GradientPrior":
        """ref_labels, steps: (n_ref, n_label) physical; dflux: (n_ref, n_label, n_pix);
        d_scale: (n_label,), or (n_ref, n_label) for a D per star and label. relative: weigh each
        star's gradient by the inverse of its amplitude (``relative_weights``), else every star by
        D_scale alone (X19 eq. 2);
        amplitude_range: see the class."""
        n_lab = ref_labels.shape[1]
        stepped = ref_labels[:, None, :] + steps[:, :, None] * np.eye(n_lab)[None]
        weight = np.broadcast_to(np.asarray(d_scale, dtype=np.float64), (dflux.shape[0], n_lab)).copy()
        if relative:
            weight = weight * relative_weights(dflux, pix_weight)
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)
        return cls(f32(scaler.scale(ref_labels)), f32(scaler.scale(stepped)), f32(dflux),
                   f32(weight), f32(pix_weight), amplitude_range)

    def target(self, emulator_dflux: torch.Tensor) -> torch.Tensor:
        """What the emulator's gradients (n_ref, n_label, n_pix) are held to: dF_ab, or with an
        amplitude_range dF_ab times their clipped least-squares amplitude on it. The amplitude
        is taken as given (no gradient flows through it), so each pixel's network is still
        trained by its own terms alone, given the amplitudes of the current step."""
        if self.amplitude_range is None:
            return self.dflux
        with torch.no_grad():
            ab = self.dflux * self.pix_weight
            amp = (emulator_dflux * ab).sum(-1) / (ab * self.dflux).sum(-1).clamp_min(1e-30)
            amp = amp.clamp(*self.amplitude_range)
        return self.dflux * amp[..., None]

    def pixels(self, pix) -> "GradientPrior":
        """The prior of a subset of pixels (index or slice), for ``Emulator.pixel_subset``."""
        if self.amplitude_range is not None:
            raise ValueError("a shape-only prior ties the pixels together through its amplitudes; "
                             "it cannot be split by pixel")
        return GradientPrior(self.x_ref, self.x_step, self.dflux[:, :, pix], self.weight,
                             self.pix_weight[pix])

    def per_pixel(self, net) -> torch.Tensor:
        """D-weighted |dF_emu - target| summed over stars and labels, per pixel: (n_pix,)."""
        n_ref, n_lab = self.x_ref.shape
        base = net(self.x_ref)                                        # (n_ref, p)
        stepped = net(self.x_step.reshape(n_ref * n_lab, n_lab)).reshape(n_ref, n_lab, -1)
        emu = stepped - base[:, None, :]
        diff = (emu - self.target(emu)).abs()
        return torch.einsum("jkp,jk->p", diff, self.weight) * self.pix_weight

    def emulator_dflux(self, net) -> torch.Tensor:
        n_ref, n_lab = self.x_ref.shape
        with torch.no_grad():
            base = net(self.x_ref)
            stepped = net(self.x_step.reshape(n_ref * n_lab, n_lab)).reshape(n_ref, n_lab, -1)
        return stepped - base[:, None, :]


def relative_weights(dflux: np.ndarray, pix_weight: np.ndarray) -> np.ndarray:
    """(n_ref, n_label) factors that make the prior hold every star's gradient to the same
    *relative* accuracy: the label's mean rms amplitude over the stars divided by the star's own
    (floored at RELATIVE_PRIOR_FLOOR of the mean, so a gradient that is nearly zero is not
    weighted without bound). X19's loss weighs absolute differences, so the weak gradients of
    metal-poor and hot stars, five to ten times smaller, are held to a looser shape than the
    strong ones of cool metal-rich stars; X_flag judges the shape (a correlation).
    dflux: (n_ref, n_label, n_pix); pix_weight: (n_pix,)."""
    used = np.asarray(pix_weight) > 0
    amp = np.sqrt(np.nanmean(np.asarray(dflux)[:, :, used] ** 2, axis=2))
    mean = amp.mean(0, keepdims=True)
    return np.where(mean > 0, mean / np.maximum(amp, RELATIVE_PRIOR_FLOOR * mean), 1.0)


def chi2_per_pixel(net, x: torch.Tensor, flux: torch.Tensor, ivar: torch.Tensor) -> torch.Tensor:
    """Mean over spectra of (model - flux)^2 ivar, per pixel: (n_pix,)."""
    return ((net(x) - flux) ** 2 * ivar).mean(0)
