"""Fitting every spectrum for all labels at once (SPEC sec. 7).

Batched Levenberg-Marquardt over (spectrum, start) pairs with the emulator's analytic Jacobian,
in scaled label space, bounded to the training range plus a margin. Several starting points per
spectrum (single starts fall into local minima at low resolution); the start with the lowest
chi^2 wins. Formal errors come from (J^T C^-1 J)^-1 at the solution.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .emulator import EmulatorModel

# Status codes of a fit.
CONVERGED, MAX_ITER, FAILED = 0, 1, 2
MIN_GOOD_PIXELS = 50  # fewer usable pixels than this cannot constrain ~20 labels


@dataclass(frozen=True)
class FitConfig:
    """n_starts: starting points per spectrum; margin: allowed excursion beyond the training
    range, in units of the scaled range (0.1 = 10%); max_iter, tol: LM stopping rules."""

    n_starts: int = 5
    margin: float = 0.1
    max_iter: int = 60
    tol: float = 1e-5
    lambda0: float = 1e-2
    seed: int = 0


@dataclass
class FitResult:
    """labels, errors: (n_spec, n_label) physical units; chi2 (n_spec,); redchi2 (n_spec,);
    n_pix_used (n_spec,); corr: (n_spec, n_label, n_label); status: (n_spec,) CONVERGED /
    MAX_ITER / FAILED; n_iter (n_spec,)."""

    labels: np.ndarray
    errors: np.ndarray
    chi2: np.ndarray
    redchi2: np.ndarray
    n_pix_used: np.ndarray
    corr: np.ndarray
    status: np.ndarray
    n_iter: np.ndarray


def _starts(n_label: int, n_starts: int, seed: int) -> torch.Tensor:
    """The centre of label space plus quasi-random points inside the inner half: (n_starts, n_label)."""
    pts = [np.zeros(n_label)]
    if n_starts > 1:
        sob = torch.quasirandom.SobolEngine(n_label, scramble=True, seed=seed)
        pts += list((sob.draw(n_starts - 1).numpy() - 0.5) * 0.6)
    return torch.as_tensor(np.array(pts), dtype=torch.float64)


def _lm(net, flux, ivar, x0, lo, hi, cfg: FitConfig):
    """Batched bounded LM. flux, ivar: (b, p); x0: (b, k). Returns x, chi2, n_iter, converged."""
    b, k = x0.shape
    x = x0.clone()
    lam = torch.full((b,), cfg.lambda0, dtype=torch.float64)
    model, jac = (t.double() for t in net.flux_and_jacobian(x.float()))
    resid = flux - model
    chi2 = (resid ** 2 * ivar).sum(1)
    done = torch.zeros(b, dtype=torch.bool)
    n_iter = torch.zeros(b, dtype=torch.int64)
    eye = torch.eye(k, dtype=torch.float64)
    for it in range(cfg.max_iter):
        jw = jac * ivar[..., None]
        a = torch.einsum("bpk,bpl->bkl", jw, jac)
        g = torch.einsum("bpk,bp->bk", jw, resid)
        diag = torch.diagonal(a, dim1=1, dim2=2).clamp_min(1e-12)
        damped = a + lam[:, None, None] * (diag[:, :, None] * eye)
        step = torch.linalg.solve(damped, g.unsqueeze(-1)).squeeze(-1)
        x_new = torch.minimum(torch.maximum(x + step, lo), hi)
        m_new, j_new = (t.double() for t in net.flux_and_jacobian(x_new.float()))
        r_new = flux - m_new
        chi2_new = (r_new ** 2 * ivar).sum(1)
        better = (chi2_new < chi2) & ~done
        rel = (chi2 - chi2_new) / chi2.clamp_min(1e-30)
        x = torch.where(better[:, None], x_new, x)
        resid = torch.where(better[:, None], r_new, resid)
        jac = torch.where(better[:, None, None], j_new, jac)
        n_iter += (~done).long()
        newly = better & (rel < cfg.tol)
        newly |= ~better & (lam > 1e6)
        chi2 = torch.where(better, chi2_new, chi2)
        lam = torch.where(better, lam * 0.3, lam * 10.0).clamp(1e-8, 1e8)
        done |= newly
        if bool(done.all()):
            break
    return x, chi2, jac, n_iter, done


def fit_spectra(model: EmulatorModel, flux: np.ndarray, ivar: np.ndarray,
                config: FitConfig = FitConfig()) -> FitResult:
    """Fit normalized spectra on the model's grid.

    flux, ivar: (n_spec, n_pix) normalized flux and inverse variance (0 = masked). Pixels outside
    the model's mask and non-finite values are ignored. Spectra with fewer than MIN_GOOD_PIXELS
    usable pixels get status FAILED and NaN labels; the others are fitted.
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    if flux.shape != ivar.shape:
        raise ValueError(f"flux {flux.shape} and ivar {ivar.shape} differ in shape")
    if flux.shape[1] != model.net.n_pix:
        raise ValueError(f"spectra have {flux.shape[1]} pixels, the emulator {model.net.n_pix}: "
                         "resample them onto the emulator's wavelength grid first")
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & model.mask[None, :]
    ivar = np.where(good, ivar, 0.0)
    flux = np.where(good, flux, 1.0)
    n_spec, n_lab = flux.shape[0], model.net.n_label
    n_used = good.sum(1)
    ok = n_used >= MIN_GOOD_PIXELS

    out = FitResult(np.full((n_spec, n_lab), np.nan), np.full((n_spec, n_lab), np.nan),
                    np.full(n_spec, np.nan), np.full(n_spec, np.nan), n_used,
                    np.full((n_spec, n_lab, n_lab), np.nan), np.full(n_spec, FAILED),
                    np.zeros(n_spec, dtype=int))
    if not ok.any():
        return out
    starts = _starts(n_lab, config.n_starts, config.seed)
    n_s = starts.shape[0]
    f_t = torch.as_tensor(flux[ok]).repeat_interleave(n_s, 0)
    iv_t = torch.as_tensor(ivar[ok]).repeat_interleave(n_s, 0)
    x0 = starts.repeat(int(ok.sum()), 1)
    lo = torch.full((n_lab,), -0.5 - config.margin, dtype=torch.float64)
    hi = torch.full((n_lab,), 0.5 + config.margin, dtype=torch.float64)
    with torch.no_grad():
        x, chi2, jac, n_iter, done = _lm(model.net, f_t, iv_t, x0, lo, hi, config)
    m = int(ok.sum())
    chi2 = chi2.view(m, n_s)
    best = chi2.argmin(1)
    pick = torch.arange(m) * n_s + best
    xb, jb = x[pick], jac[pick]
    a = torch.einsum("bpk,bpl->bkl", jb * iv_t[pick][..., None], jb)
    cov = torch.linalg.pinv(a).numpy()
    span = model.scaler.span
    var = np.diagonal(cov, axis1=1, axis2=2)
    sd = np.sqrt(np.clip(var, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / (sd[:, :, None] * sd[:, None, :])
    idx = np.nonzero(ok)[0]
    out.labels[idx] = model.scaler.unscale(xb.numpy())
    out.errors[idx] = sd * span
    out.chi2[idx] = chi2[torch.arange(m), best].numpy()
    out.redchi2[idx] = out.chi2[idx] / np.clip(n_used[idx] - n_lab, 1, None)
    out.corr[idx] = corr
    out.status[idx] = np.where(done[pick].numpy(), CONVERGED, MAX_ITER)
    out.n_iter[idx] = n_iter[pick].numpy()
    return out
