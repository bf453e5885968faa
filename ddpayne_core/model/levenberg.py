"""Second-order training: a Levenberg-Marquardt step for every pixel's network at once.

The training loss separates by pixel (the chi^2 of a pixel and its gradient prior involve its own
network only, X19 eqs. 1-2), so the Hessian is block diagonal: one small (n_param x n_param)
Gauss-Newton system per pixel, n_param = 291 for X19's 10 neurons and 16 labels. Each iteration:

- the exact gradient of each pixel's loss over every training spectrum (autograd);
- the Gauss-Newton matrix from ``hessian_rows`` randomly drawn spectra (scaled to all of them),
  plus the prior's: its |dF_emu - dF_ab| terms enter reweighted as D / |residual| (one
  iteratively reweighted least-squares step, as ``train.solve_output_layer`` does);
- per pixel, the damped step (H + lambda diag H) d = -g, kept only where it lowers that pixel's
  loss; lambda shrinks x0.3 on success and grows x4 on failure (Marquardt 1963);
- optionally a ridge ``ridge`` * sum(W1^2) on the first layer's label weights: unpenalized,
  second-order steps sharpen sigmoids into steps in label space (|W1| ~ 30 on the scaled labels)
  that fit the training labels but leave the fit's chi^2 surface full of local minima
  (studies/training_speed/ridge.py).

Memory is bounded by ``chunk`` pixels at a time. The shape-only prior (``GradientPrior.
amplitude_range``) ties pixels together through its amplitudes and is left to Adam. The cost grows with n_param^2 per pixel, so this
suits LAMOST's 10 neurons; DESI's 40 neurons (2,321 parameters a pixel) train with Adam.
"""
from __future__ import annotations

import torch

from .loss import GradientPrior

DAMPING_START = 1.0    # Marquardt's lambda at the first iteration, relative to diag(H) (studies/training_speed)
# Ridge weight on sum(W1^2) per pixel (chi^2 per spectrum and pixel ~ 1): on the demo's training
# set it costs 1.9 % in validation chi^2 and cuts the fits stuck > 10 in chi^2 above a thorough
# fit's from 19 % to 0.8 % of spectra (studies/ridge).
RIDGE = 1e-2
DAMPING_RANGE = (1e-7, 1e7)
IRLS_FLOOR = 1e-4      # |dF_emu - dF_ab| below this weighs as this (normalized flux)


def pixel_loss(net, x: torch.Tensor, flux: torch.Tensor, ivar: torch.Tensor,
               prior: GradientPrior | None, batch: int = 1024, backward: bool = False,
               ridge: float = 0.0):
    """Each pixel's training loss split into chi^2 (mean over spectra, as ``loss.chi2_per_pixel``)
    and regularization (the prior plus ``ridge`` * sum(W1^2)), both (n_pix,); with ``backward``
    the gradients are left in the parameters' .grad. x: (n, n_label) scaled labels; flux, ivar:
    (n, n_pix). Spectra go in batches of ``batch``."""
    chi = torch.zeros(net.n_pix)
    with torch.set_grad_enabled(backward):
        for a in range(0, len(x), batch):
            part = ((net(x[a:a + batch]) - flux[a:a + batch]) ** 2 * ivar[a:a + batch]).sum(0) / len(x)
            if backward:
                part.sum().backward()
            chi += part.detach()
        reg = prior.per_pixel(net) if prior is not None else torch.zeros(net.n_pix)
        if ridge:
            reg = reg + ridge * (net.W1 ** 2).sum((1, 2))
        if backward and reg.requires_grad:
            reg.sum().backward()
    return chi, reg.detach()


def gauss_newton_matrix(net, x: torch.Tensor, ivar: torch.Tensor,
                        prior: GradientPrior | None) -> torch.Tensor:
    """(n_pix, n_param, n_param): 2 J^T W J of the chi^2 (a mean over spectra, estimated by the
    mean over the rows given) plus the prior's reweighted J^T C J. x: (m, n_label); ivar: (m, n_pix)."""
    _, jac = net.parameter_jacobian(x)                                   # (p, P, m)
    hess = torch.bmm(jac * (2.0 * ivar.T / len(x))[:, None, :], jac.transpose(1, 2))
    if prior is not None:
        n_ref, n_lab = prior.x_ref.shape
        base, jac_base = net.parameter_jacobian(prior.x_ref)
        step, jac_step = net.parameter_jacobian(prior.x_step.reshape(n_ref * n_lab, n_lab))
        n_pix, n_param = jac_base.shape[:2]
        emu = step.reshape(n_pix, n_ref, n_lab) - base[:, :, None]
        resid = emu - prior.dflux.permute(2, 0, 1)
        c = (prior.weight[None] * prior.pix_weight[:, None, None]
             / resid.abs().clamp_min(IRLS_FLOOR)).reshape(n_pix, 1, -1)
        djac = (jac_step.reshape(n_pix, n_param, n_ref, n_lab) - jac_base[:, :, :, None]) \
            .reshape(n_pix, n_param, -1)
        hess += torch.bmm(djac * c, djac.transpose(1, 2))
    return hess


def lm_iteration(net, x: torch.Tensor, flux: torch.Tensor, ivar: torch.Tensor,
                 prior: GradientPrior | None, damping: torch.Tensor, hessian_rows: torch.Tensor,
                 chunk: int = 128, ridge: float = 0.0):
    """One Levenberg-Marquardt iteration of every pixel, in place on ``net`` and ``damping``.

    x: (n, n_label) scaled labels; flux, ivar: (n, n_pix) training spectra; damping: (n_pix,)
    lambda per pixel; hessian_rows: indices of the spectra the Gauss-Newton matrix is built from;
    ridge: weight of sum(W1^2) in each pixel's loss. Returns the summed chi^2 and regularization
    terms after the iteration."""
    # Trial steps can saturate the sigmoids, whose derivatives then underflow to denormal floats
    # that CPUs process a hundred times slower; they are zero for every purpose here.
    flushed = torch.set_flush_denormal(True)
    try:
        return _lm_pixels(net, x, flux, ivar, prior, damping, hessian_rows, chunk, ridge)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _lm_pixels(net, x, flux, ivar, prior, damping, hessian_rows, chunk, ridge):
    chi_total, prior_total = 0.0, 0.0
    # The ridge's Hessian: 2 ridge on the diagonal entries of W1 (the first of PARAMETERS).
    ridge_diag = torch.zeros(sum(getattr(net, n)[0].numel() for n in net.PARAMETERS))
    ridge_diag[:net.W1[0].numel()] = 2.0 * ridge
    for a in range(0, net.n_pix, chunk):
        pix = slice(a, min(a + chunk, net.n_pix))
        sub = net.pixel_subset(pix)
        sub_prior = prior.pixels(pix) if prior is not None else None
        chi, reg = pixel_loss(sub, x, flux[:, pix], ivar[:, pix], sub_prior, backward=True, ridge=ridge)
        grad = torch.cat([getattr(sub, n).grad.reshape(sub.n_pix, -1) for n in sub.PARAMETERS], 1)
        hess = gauss_newton_matrix(sub, x[hessian_rows], ivar[hessian_rows, pix], sub_prior) \
            + torch.diag(ridge_diag)
        diag = torch.diagonal(hess, dim1=1, dim2=2)
        lam = damping[pix]
        # A tiny ridge keeps pixels with no data (masked) solvable; their gradient is zero.
        system = hess + torch.diag_embed(lam[:, None] * diag + 1e-9 * diag.mean(1, keepdim=True) + 1e-30)
        factor, info = torch.linalg.cholesky_ex(system)
        theta = sub.flat_parameters()
        step = -torch.cholesky_solve(grad[:, :, None], factor)[..., 0]
        step = torch.where((info == 0)[:, None] & torch.isfinite(step), step, torch.zeros_like(step))
        sub.set_flat_parameters(theta + step)
        new_chi, new_reg = pixel_loss(sub, x, flux[:, pix], ivar[:, pix], sub_prior, ridge=ridge)
        better = (new_chi + new_reg < chi + reg) & (info == 0)
        sub.set_flat_parameters(torch.where(better[:, None], theta + step, theta))
        damping[pix] = torch.where(better, lam * 0.3, lam * 4.0).clamp(*DAMPING_RANGE)
        with torch.no_grad():
            for name in net.PARAMETERS:
                getattr(net, name)[pix] = getattr(sub, name).detach()
        chi_total += float(torch.where(better, new_chi, chi).sum())
        prior_total += float(torch.where(better, new_reg, reg).sum())
    return chi_total, prior_total
