"""Fitting every spectrum for all labels at once (docs/spec.md sec. 7).

Batched Levenberg-Marquardt over (spectrum, start) pairs with the emulator's analytic Jacobian,
in scaled label space, bounded to the training range plus a margin. Several starting points per
spectrum (single starts fall into local minima at low resolution); the start with the lowest
chi^2 wins. Formal errors come from (J^T C^-1 J)^-1 at the solution.

The line spread function differs from fibre to fibre (X19 sec. 2) while the emulator learned the
survey's mean one. Unmodelled, a sharper or blurrier LSF changes line depths the way [Fe/H] does
and sets a floor under the repeat-visit precision. So the fit also solves for ``lsf_dvar``, the
spectrum's LSF variance minus the emulator's [pixel^2]: the model is the emulator's spectrum
blurred by a Gaussian of that variance, exp(v/2 d^2/dx^2) f expanded to second order in v
(a five-pixel stencil), with v < 0 sharpening. Its formal errors are marginalized over v.
Where the spectrum says what its LSF is (a DESI coadd's RESOLUTION matrices, ``io.desi.lsf_variance``),
v gets a Gaussian prior centred on that LSF's variance minus the emulator's (``lsf_dvar_prior``):
the data then no longer trade the LSF against logg and [Fe/H].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import constants as C
from ..model.emulator import EmulatorModel, with_model_error

# Status codes of a fit.
CONVERGED, MAX_ITER, FAILED = 0, 1, 2
MIN_GOOD_PIXELS = 50  # fewer usable pixels than this cannot constrain ~20 labels


@dataclass(frozen=True)
class FitConfig:
    """n_candidates: points of label space whose chi^2 is evaluated for every spectrum (forward
    passes only); n_starts: the best candidates from which LM runs explore_iter iterations before
    the best is polished; margin: allowed excursion beyond the training range, in units of the
    scaled range (0.1 = 10%); max_iter, tol: LM stopping rules; batch: spectra per tensor batch (32: the
    fastest on CPUs, docs/performance.md);
    fit_lsf: also fit the LSF variance offset lsf_dvar, bounded to +-lsf_dvar_max [pixel^2];
    lsf_prior_sigma: width [pixel^2] of the prior on lsf_dvar where a spectrum's LSF is known
    (``fit_spectra``'s lsf_dvar_prior);
    model_error: error floor s in normalized flux added in quadrature to every pixel's
    (``with_model_error``); 0 for spectra the emulator describes to their noise;
    pixel_scatter: also add the model's own per-pixel scatter (``EmulatorModel.pixel_scatter``,
    where it has one) in quadrature."""

    n_candidates: int = 64
    n_starts: int = 2
    explore_iter: int = 3
    margin: float = 0.1
    max_iter: int = 60
    batch: int = 32
    tol: float = 1e-4
    lambda0: float = 1e-2
    seed: int = 0
    fit_lsf: bool = True
    lsf_dvar_max: float = 1.0
    lsf_prior_sigma: float = C.DESI_LSF_PRIOR_SIGMA
    model_error: float = 0.0
    pixel_scatter: bool = True


@dataclass
class FitResult:
    """labels, errors: (n_spec, n_label) physical units; chi2 (n_spec,); redchi2 (n_spec,);
    n_pix_used (n_spec,); corr: (n_spec, n_label, n_label); status: (n_spec,) CONVERGED /
    MAX_ITER / FAILED; n_iter (n_spec,); lsf_dvar, lsf_dvar_err (n_spec,) [pixel^2], NaN where
    not fitted."""

    labels: np.ndarray
    errors: np.ndarray
    chi2: np.ndarray
    redchi2: np.ndarray
    n_pix_used: np.ndarray
    corr: np.ndarray
    status: np.ndarray
    n_iter: np.ndarray
    lsf_dvar: np.ndarray
    lsf_dvar_err: np.ndarray
    at_bound: np.ndarray | None = None   # (n_spec, n_label + fit_lsf) bool: pinned at a fit bound


def _candidates(n_label: int, n: int, seed: int) -> torch.Tensor:
    """The centre of label space plus quasi-random points over its inner 80%: (n, n_label)."""
    pts = [np.zeros(n_label)]
    if n > 1:
        sob = torch.quasirandom.SobolEngine(n_label, scramble=True, seed=seed)
        pts += list((sob.draw(n - 1).numpy() - 0.5) * 0.8)
    return torch.as_tensor(np.array(pts), dtype=torch.float64)


_OFFSETS = np.arange(-2, 3)  # the LSF stencil: two pixels either side


def lsf_stencil(wave: np.ndarray, pixels: np.ndarray, usable: np.ndarray | None = None):
    """The pixels an LSF-broadened model of ``pixels`` (indices into ``wave``) needs, and how to
    combine them: (ext (n_ext,) sorted pixel indices, pos (n, 5) positions in ext of each pixel's
    neighbours -2..+2, valid (n,) bool). A pixel is left unbroadened (invalid) if a neighbour
    lies beyond the spectrum's ends, across a jump in the pixel spacing (a gap between arms)
    or outside ``usable`` (n_pix,) bool: an emulator's output is meaningless where it was not
    trained (its mask)."""
    n_pix = wave.size
    nb = np.clip(pixels[:, None] + _OFFSETS, 0, n_pix - 1)
    ext = np.unique(nb)
    dlog = np.diff(np.log(wave))
    uniform = np.abs(dlog[1:] / dlog[:-1] - 1) < 0.01                 # (n_pix - 2,) at 1..n-2
    ok = np.zeros(n_pix, dtype=bool)
    ok[2:-2] = uniform[:-2] & uniform[1:-1] & uniform[2:]            # all four spacings agree
    if usable is not None:
        ok[2:-2] &= np.lib.stride_tricks.sliding_window_view(usable, _OFFSETS.size).all(1)
    return ext, np.searchsorted(ext, nb), ok[pixels]


def lsf_coefficients(v):
    """Weights of the centre, the +-1 and the +-2 neighbours for an extra Gaussian LSF variance
    ``v`` [pixel^2] (exp(v/2 D) with D = [1, -2, 1], to second order in v), less the identity
    at the centre, and their derivatives d/dv: two tuples (c0, c1, c2). Broadcasts over v."""
    return ((-v + 0.75 * v * v, 0.5 * v - 0.5 * v * v, v * v / 8),
            (-1 + 1.5 * v, 0.5 - v, v / 4))


def broaden(flux: np.ndarray, wave: np.ndarray, lsf_dvar: np.ndarray,
            usable: np.ndarray | None = None) -> np.ndarray:
    """Model spectra ``flux`` (n_spec, n_pix) on ``wave`` with their LSF variance changed by
    ``lsf_dvar`` (n_spec,) [pixel^2], as the fit models it (``usable`` as in lsf_stencil);
    NaN lsf_dvar leaves a row as is."""
    flux = np.atleast_2d(flux)
    v = np.nan_to_num(np.asarray(lsf_dvar, dtype=np.float64))[:, None]
    ext, pos, valid = lsf_stencil(wave, np.arange(wave.size), usable)
    (c0, c1, c2), _ = lsf_coefficients(v)
    f = flux[:, ext]
    delta = c0 * f[:, pos[:, 2]] + c1 * (f[:, pos[:, 1]] + f[:, pos[:, 3]]) \
        + c2 * (f[:, pos[:, 0]] + f[:, pos[:, 4]])
    return flux + np.where(valid, delta, 0.0)


class _Forward:
    """The fit's forward model on the pixels it uses: the emulator, optionally broadened by the
    LSF offset carried as the last column of the fit parameters x (b, n_label [+1]), with an
    optional Gaussian prior on that offset per spectrum: lsf_prior = (mean, 1/sigma^2), each
    (n_spec,) float64 tensors, weight 0 where the LSF is not known."""

    def __init__(self, model: EmulatorModel, used: np.ndarray, fit_lsf: bool, lsf_prior=None):
        self.n_label, self.fit_lsf, self.lsf_prior = model.net.n_label, fit_lsf, lsf_prior
        if fit_lsf:
            ext, pos, valid = lsf_stencil(model.wave, used, model.mask)
            self.net = model.net.pixel_subset(ext)
            self.pos = torch.as_tensor(pos)
            self.valid = torch.as_tensor(valid, dtype=torch.float32)
        else:
            self.net = model.net.pixel_subset(used)

    def flux(self, x: torch.Tensor) -> torch.Tensor:
        """Unbroadened model (b, p) at scaled labels x (b, n_label)."""
        f = self.net(x.float())
        return f[:, self.pos[:, 2]] if self.fit_lsf else f

    def _neighbour_sums(self, t):
        """t (n_ext, ...) pixel-major -> (t, t(-1) + t(+1), t(-2) + t(+2)) at the pixels, each
        (p, ...); gathers along the first axis copy contiguous blocks."""
        pos = self.pos
        n1 = t.index_select(0, pos[:, 1]).add_(t.index_select(0, pos[:, 3]))
        n2 = t.index_select(0, pos[:, 0]).add_(t.index_select(0, pos[:, 4]))
        return t.index_select(0, pos[:, 2]), n1, n2

    def normal_equations(self, x, flux, sqrt_ivar, rows):
        """chi^2 (b,), A = J^T C^-1 J (b, k, k) and g = J^T C^-1 (flux - model) (b, k), float64,
        at parameters x (b, k); flux, sqrt_ivar: (b, p) float32; rows (b,): the spectra, for the
        LSF prior (its term is part of chi^2, A and g). The Jacobian is formed already weighted
        by 1/sigma and reduced at once: it is never stored beyond one batch."""
        if not self.fit_lsf:
            model, jw = self.net.flux_and_jacobian(x.float(), weights=sqrt_ivar)
            rw = (flux - model).mul_(sqrt_ivar)
            jt = jw.transpose(1, 2)
            return ((rw * rw).sum(1, dtype=torch.float64), torch.bmm(jt, jw).double(),
                    torch.bmm(rw[:, None, :], jw)[:, 0].double())
        f, jac = self.net.flux_and_jacobian(x[:, :self.n_label].float(), pixel_major=True)
        (c0, c1, c2), (d0, d1, d2) = lsf_coefficients(x[:, self.n_label, None].float())
        f0, f1, f2 = (t.T for t in self._neighbour_sums(f.T))                  # (b, p) each
        valid = self.valid
        # Per-pixel weights of the stencil terms, times 1/sigma, shared by flux and Jacobian.
        w0 = (1 + c0 * valid) * sqrt_ivar
        w1, w2 = c1 * valid * sqrt_ivar, c2 * valid * sqrt_ivar
        rw = flux * sqrt_ivar - (w0 * f0 + w1 * f1 + w2 * f2)                  # (b, p)
        dvw = (d0 * f0 + d1 * f1 + d2 * f2) * valid * sqrt_ivar                # d model / dv
        j0, j1, j2 = self._neighbour_sums(jac)                                 # (p, b, k)
        jw = j0.mul_(w0.T[..., None]).addcmul_(j1, w1.T[..., None]).addcmul_(j2, w2.T[..., None])
        jw = jw.transpose(0, 1).contiguous()                                   # (b, p, k)
        jt = jw.transpose(1, 2)
        b, k = x.shape
        a_mat = torch.empty(b, k, k, dtype=torch.float64)
        a_mat[:, :-1, :-1] = torch.bmm(jt, jw)
        # Row vectors times J: a transposed J in a matrix-vector product is ~10x slower on CPUs.
        a_mat[:, :-1, -1] = a_mat[:, -1, :-1] = torch.bmm(dvw[:, None, :], jw)[:, 0]
        a_mat[:, -1, -1] = (dvw * dvw).sum(1)
        grad = torch.cat([torch.bmm(rw[:, None, :], jw)[:, 0], (dvw * rw).sum(1, keepdim=True)], 1).double()
        chi2 = (rw * rw).sum(1, dtype=torch.float64)
        if self.lsf_prior is not None:
            mean, weight = (t[rows] for t in self.lsf_prior)
            dv = mean - x[:, self.n_label]
            chi2 = chi2 + weight * dv * dv
            a_mat[:, -1, -1] += weight
            grad[:, -1] += weight * dv
        return chi2, a_mat, grad


def _best_candidates(fwd: _Forward, flux, ivar, cand, n_keep):
    """chi^2 of every candidate (unbroadened) for every spectrum (forward passes only, cheap);
    the n_keep best per spectrum as starting points: (n_spec * n_keep, n_label), spectrum-major."""
    model = fwd.flux(cand)                                              # (c, p)
    # sum_p iv (f - m)^2 = sum iv f^2 - 2 (iv f) . m + iv . m^2, as matrix products
    chi2 = (ivar * flux * flux).sum(1, keepdim=True) - 2 * (ivar * flux) @ model.T \
        + ivar @ (model * model).T                                      # (s, c)
    best = chi2.topk(n_keep, dim=1, largest=False).indices              # (s, n_keep)
    return cand[best.reshape(-1)]


def _lm(fwd: _Forward, flux, sqrt_ivar, rows, x0, lo, hi, cfg: FitConfig, n_iter_max: int):
    """Bounded Levenberg-Marquardt for many tasks, ``cfg.batch`` at a time: a task that finishes
    frees its slot for the next one in the queue, so every evaluation of the model works on a
    full batch (the cost of one is mostly per pixel, hardly per spectrum, so a half-empty batch
    wastes nearly half of it).

    flux, sqrt_ivar: (n_spec, p) float32; rows: (n,) the spectrum of each task; x0: (n, k)
    float64 starting points. Returns (x, n_iter, converged, (chi2, A, g) at x), one row per task.
    """
    n, k = x0.shape
    res_x, res_chi2 = x0.clone(), torch.full((n,), float("inf"), dtype=torch.float64)
    res_a, res_g = torch.zeros(n, k, k, dtype=torch.float64), torch.zeros(n, k, dtype=torch.float64)
    res_it, res_done = torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.bool)
    eye = torch.eye(k, dtype=torch.float64)
    task = torch.zeros(0, dtype=torch.int64)                # the tasks in the batch's slots
    x, chi2, lam, it = res_x[task], res_chi2[task], res_chi2[task], res_it[task]
    a_mat, grad = res_a[task], res_g[task]
    queued = 0

    def finish(sel, converged):
        t = task[sel]
        res_x[t], res_chi2[t], res_a[t], res_g[t] = x[sel], chi2[sel], a_mat[sel], grad[sel]
        res_it[t], res_done[t] = it[sel], converged[sel]

    while True:
        # A damped step for the running tasks. One whose predicted chi^2 decrease (2 g.d -
        # d^T A d, the model linear in the step d) is below the tolerance would be accepted and
        # end the task: end it now, without evaluating the model there.
        diag = torch.diagonal(a_mat, dim1=1, dim2=2).clamp_min(1e-12)
        step = torch.linalg.solve(a_mat + lam[:, None, None] * (diag[:, :, None] * eye), grad)
        x_try = torch.minimum(torch.maximum(x + step, lo), hi)
        d = x_try - x
        settled = 2 * (grad * d).sum(1) - torch.einsum("bi,bij,bj->b", d, a_mat, d) < cfg.tol * chi2
        if settled.any():
            it = it + settled
            finish(settled, settled)
            keep = ~settled
            task, x, chi2, a_mat, grad, lam, it, x_try = (
                v[keep] for v in (task, x, chi2, a_mat, grad, lam, it, x_try))
        new = torch.arange(queued, min(n, queued + cfg.batch - len(task)))
        queued += len(new)
        if len(task) + len(new) == 0:
            break
        # One evaluation for all slots: the step for the running tasks, the start for new ones.
        r = rows[torch.cat([task, new])]
        c_new, a_new, g_new = fwd.normal_equations(torch.cat([x_try, x0[new]]), flux[r], sqrt_ivar[r], r)
        m = len(task)
        better = c_new[:m] < chi2
        rel = (chi2 - c_new[:m]) / chi2.clamp_min(1e-30)
        x = torch.where(better[:, None], x_try, x)
        chi2 = torch.where(better, c_new[:m], chi2)
        a_mat = torch.where(better[:, None, None], a_new[:m], a_mat)
        grad = torch.where(better[:, None], g_new[:m], grad)
        lam = torch.where(better, lam * 0.3, lam * 10.0).clamp(1e-8, 1e8)
        it = it + 1
        converged = (better & (rel < cfg.tol)) | (~better & (lam >= 1e8))
        finished = converged | (it >= n_iter_max)
        finish(finished, converged)
        keep = ~finished
        task = torch.cat([task[keep], new])
        x, chi2 = torch.cat([x[keep], x0[new]]), torch.cat([chi2[keep], c_new[m:]])
        a_mat, grad = torch.cat([a_mat[keep], a_new[m:]]), torch.cat([grad[keep], g_new[m:]])
        lam = torch.cat([lam[keep], torch.full((len(new),), cfg.lambda0, dtype=torch.float64)])
        it = torch.cat([it[keep], torch.zeros(len(new), dtype=torch.int64)])
    return res_x, res_it, res_done, (res_chi2, res_a, res_g)


def lsf_dvar_expected(model: EmulatorModel, lsf_var) -> np.ndarray | None:
    """Each spectrum's LSF variance offset from the emulator's [pixel^2]: its own (``lsf_var``
    (n_spec,), from its RESOLUTION matrices; ``preprocess.ingest_desi``) minus the median of the
    model's training spectra (``lsf_var_ref`` in its config). None where either is unknown."""
    ref = model.config.get("lsf_var_ref")
    if lsf_var is None or ref is None:
        return None
    return np.asarray(lsf_var, dtype=np.float64) - float(ref)


def model_error(model: EmulatorModel, config: FitConfig):
    """The error added in quadrature to every pixel's noise in a fit [normalized flux]: the
    floor ``config.model_error`` and, with ``config.pixel_scatter``, the model's own per-pixel
    scatter; a number, or (n_pix,)."""
    if not config.pixel_scatter or model.pixel_scatter is None:
        return config.model_error
    return np.sqrt(config.model_error ** 2 + np.asarray(model.pixel_scatter, dtype=np.float64) ** 2)


def fit_spectra(model: EmulatorModel, flux: np.ndarray, ivar: np.ndarray,
                config: FitConfig = FitConfig(), lsf_dvar_prior: np.ndarray | None = None) -> FitResult:
    """Fit normalized spectra on the model's grid.

    flux, ivar: (n_spec, n_pix) normalized flux and inverse variance (0 = masked). Pixels outside
    the model's mask and non-finite values are ignored. Spectra with fewer than MIN_GOOD_PIXELS
    usable pixels get status FAILED and NaN labels; the others are fitted. lsf_dvar_prior:
    (n_spec,) each spectrum's known LSF variance minus the emulator's [pixel^2]
    (``lsf_dvar_expected``), NaN where not known: the centre of a prior of width
    ``config.lsf_prior_sigma`` on the fitted lsf_dvar (with ``config.fit_lsf``).
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    if flux.shape != ivar.shape:
        raise ValueError(f"flux {flux.shape} and ivar {ivar.shape} differ in shape")
    if flux.shape[1] != model.net.n_pix:
        raise ValueError(f"spectra have {flux.shape[1]} pixels, the emulator {model.net.n_pix}: "
                         "resample them onto the emulator's wavelength grid first")
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & model.mask[None, :]
    ivar = with_model_error(np.where(good, ivar, 0.0), model_error(model, config))
    flux = np.where(good, flux, 1.0)
    n_spec, n_lab = flux.shape[0], model.net.n_label
    n_used = good.sum(1)
    ok = n_used >= MIN_GOOD_PIXELS

    out = FitResult(np.full((n_spec, n_lab), np.nan), np.full((n_spec, n_lab), np.nan),
                    np.full(n_spec, np.nan), np.full(n_spec, np.nan), n_used,
                    np.full((n_spec, n_lab, n_lab), np.nan), np.full(n_spec, FAILED),
                    np.zeros(n_spec, dtype=int), np.full(n_spec, np.nan), np.full(n_spec, np.nan),
                    np.zeros((n_spec, n_lab + config.fit_lsf), dtype=bool))
    if not ok.any():
        return out
    n_par = n_lab + config.fit_lsf
    cand = _candidates(n_lab, config.n_candidates, config.seed)
    n_s = min(config.n_starts, config.n_candidates)
    bound = np.full(n_par, 0.5 + config.margin)
    bound[n_lab:] = config.lsf_dvar_max
    hi = torch.as_tensor(bound, dtype=torch.float64)
    lo = -hi
    used = np.nonzero(model.mask)[0]
    f_all = torch.as_tensor(flux[ok][:, used], dtype=torch.float32)
    sq_all = torch.as_tensor(np.sqrt(ivar[ok][:, used]), dtype=torch.float32)
    m = int(ok.sum())
    # Pixels outside the model's mask never enter chi^2: the fit runs on the others only.
    prior = None
    if config.fit_lsf and lsf_dvar_prior is not None:
        v0 = np.asarray(lsf_dvar_prior, dtype=np.float64)
        if v0.shape != (n_spec,):
            raise ValueError(f"lsf_dvar_prior has {v0.size} values for {n_spec} spectra")
        v0 = v0[ok]
        known = np.isfinite(v0)
        prior = (torch.as_tensor(np.where(known, np.clip(v0, -config.lsf_dvar_max, config.lsf_dvar_max), 0.0)),
                 torch.as_tensor(np.where(known, config.lsf_prior_sigma ** -2.0, 0.0)))
    fwd = _Forward(model, used, config.fit_lsf, prior)
    with torch.no_grad():
        # Explore from every start for a few iterations at the emulator's own LSF (the LSF
        # offset is a small correction that does not move a start between basins, and the
        # unbroadened model costs half as much), then polish the best with everything fitted.
        half = slice(None, None, 2)
        explore = _Forward(model, used[half], fit_lsf=False)
        f_half, sq_half = f_all[:, half].contiguous(), sq_all[:, half].contiguous()
        starts = torch.cat([_best_candidates(explore, f_half[a:a + 1024], sq_half[a:a + 1024] ** 2,
                                             cand, n_s) for a in range(0, m, 1024)])
        it = torch.zeros(m, dtype=torch.int64)
        if n_s > 1:
            x, it, _, (chi2, _, _) = _lm(explore, f_half, sq_half, torch.arange(m).repeat_interleave(n_s),
                                         starts, lo[:n_lab], hi[:n_lab], config, config.explore_iter)
            pick = torch.arange(m) * n_s + chi2.view(m, n_s).argmin(1)
            starts, it = x[pick], it[pick]
        v_start = prior[0][:, None] if prior is not None else torch.zeros(m, n_par - n_lab, dtype=torch.float64)
        starts = torch.cat([starts, v_start], 1)
        x_best, it2, done_best, (chi2_best, a_mat, _) = _lm(
            fwd, f_all, sq_all, torch.arange(m), starts, lo, hi, config, config.max_iter)
        n_iter_best = it + it2
        # Formal covariance (J^T C^-1 J)^-1 at the solution, in scaled label units.
        cov = torch.linalg.pinv(a_mat).numpy()
    sd = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / (sd[:, :, None] * sd[:, None, :])
    idx = np.nonzero(ok)[0]
    out.labels[idx] = model.scaler.unscale(x_best.numpy()[:, :n_lab])
    out.errors[idx] = sd[:, :n_lab] * model.scaler.span
    chi2_data = chi2_best
    if prior is not None:   # the catalogue's chi2 is the spectrum's misfit alone (the flags read it)
        chi2_data = chi2_best - prior[1] * (prior[0] - x_best[:, n_lab]) ** 2
    out.chi2[idx] = chi2_data.numpy()
    out.redchi2[idx] = out.chi2[idx] / np.clip(n_used[idx] - n_par, 1, None)
    out.corr[idx] = corr[:, :n_lab, :n_lab]
    out.status[idx] = np.where(done_best.numpy(), CONVERGED, MAX_ITER)
    out.n_iter[idx] = n_iter_best.numpy()
    # A parameter the fit pressed against its bound is not measured: the bound set its value.
    out.at_bound[idx] = np.abs(x_best.numpy()) >= bound * (1 - C.AT_BOUND_TOLERANCE)
    if config.fit_lsf:
        out.lsf_dvar[idx], out.lsf_dvar_err[idx] = x_best.numpy()[:, n_lab], sd[:, n_lab]
    return out


def fit_result_table(model: EmulatorModel, result: FitResult) -> pd.DataFrame:
    """One row per spectrum: <label>, <label>_err, <label>_at_bound, chi2, redchi2, n_pix_used,
    fit_status, n_iter, lsf_dvar, lsf_dvar_err, lsf_at_bound, at_bound (any label or the LSF
    offset at its fit bound) and label_corr (the flattened upper triangle of the correlation
    matrix)."""
    cols = {}
    n_lab = len(model.labels)
    pinned = result.at_bound if result.at_bound is not None \
        else np.zeros((len(result.chi2), n_lab), dtype=bool)
    for k, lab in enumerate(model.labels):
        cols[lab] = result.labels[:, k]
        cols[f"{lab}_err"] = result.errors[:, k]
        cols[f"{lab}_at_bound"] = pinned[:, k]
    cols["lsf_at_bound"] = pinned[:, n_lab] if pinned.shape[1] > n_lab else np.zeros(len(pinned), bool)
    cols["at_bound"] = pinned.any(axis=1)
    cols.update(chi2=result.chi2, redchi2=result.redchi2, n_pix_used=result.n_pix_used,
                fit_status=result.status, n_iter=result.n_iter, lsf_dvar=result.lsf_dvar,
                lsf_dvar_err=result.lsf_dvar_err)
    iu = np.triu_indices(len(model.labels), 1)
    cols["label_corr"] = list(result.corr[:, iu[0], iu[1]].astype(np.float32))
    return pd.DataFrame(cols)


def fitted_spectra(model: EmulatorModel, labels: np.ndarray,
                   lsf_dvar: np.ndarray | None = None, pixels: slice = slice(None)) -> np.ndarray:
    """The fit's model of each spectrum: the emulator at ``labels`` (n_spec, n_label) broadened
    by the fitted LSF offsets ``lsf_dvar`` (n_spec,) [pixel^2] (None or NaN: none) ->
    (n_spec, n_pix) normalized flux, or only the model's ``pixels`` (a slice of the grid; the
    emulator is then evaluated there and on the stencil's two pixels either side only)."""
    lo, hi, _ = pixels.indices(model.net.n_pix)
    pad = slice(max(lo - 2, 0), min(hi + 2, model.net.n_pix))
    x = torch.as_tensor(model.scaler.scale(np.atleast_2d(labels)), dtype=torch.float32)
    with torch.no_grad():
        pred = model.net.pixel_subset(pad)(x).numpy().astype(np.float64)
    if lsf_dvar is not None:
        pred = broaden(pred, model.wave[pad], lsf_dvar, model.mask[pad])
    return pred[:, lo - pad.start:hi - pad.start]


def window_chi2(model: EmulatorModel, labels: np.ndarray, flux: np.ndarray, ivar: np.ndarray,
                window: tuple, lsf_dvar: np.ndarray | None = None) -> np.ndarray:
    """chi^2 of the best fit (``labels`` and ``lsf_dvar`` as in fitted_spectra) restricted to a
    wavelength window [A] (e.g. Na D): (n_spec,)."""
    inside = np.nonzero((model.wave >= window[0]) & (model.wave <= window[1]))[0]
    pixels = slice(inside.min(), inside.max() + 1)
    sel = model.mask[pixels]
    ok = np.all(np.isfinite(labels), axis=1)
    out = np.full(len(flux), np.nan)
    if ok.any():
        dvar = None if lsf_dvar is None else np.asarray(lsf_dvar)[ok]
        pred = fitted_spectra(model, labels[ok], dvar, pixels)[:, sel]
        out[ok] = ((pred - flux[ok][:, pixels][:, sel]) ** 2 * ivar[ok][:, pixels][:, sel]).sum(1)
    return out


def cramer_rao_bound(model: EmulatorModel, labels: np.ndarray, ivar: np.ndarray,
                     batch: int = 256, fitted=None) -> np.ndarray:
    """Cramer-Rao bound sqrt(diag((J^T C^-1 J)^-1)) of every label, from ``model``'s Jacobian at
    ``labels`` (n, n_label, physical) and the noise ``ivar`` (n, n_pix). ``fitted``: names of the
    labels a fit solves for (default all; the others are held at their values). Returns
    (n, len(fitted)) in physical units. With the truth model this is the best any fit could do
    (DESI Fig. 9)."""
    cols = [model.labels.index(l) for l in (fitted or model.labels)]
    out = np.full((len(labels), len(cols)), np.nan)
    ok = np.nonzero(np.all(np.isfinite(labels), axis=1))[0]
    iv = np.where(model.mask[None, :], ivar, 0.0)
    with torch.no_grad():
        for a in range(0, len(ok), batch):
            r = ok[a:a + batch]
            x = torch.as_tensor(model.scaler.scale(labels[r]), dtype=torch.float32)
            w = torch.as_tensor(np.sqrt(iv[r]), dtype=torch.float32)
            jw = model.net.flux_and_jacobian(x, weights=w)[1][:, :, cols]
            out[r] = bound_from_jacobian(jw.double().numpy()) * model.scaler.span[cols]
    return out


def bound_from_jacobian(jac_w: np.ndarray) -> np.ndarray:
    """Cramer-Rao bound sqrt(diag((J^T C^-1 J)^-1)): jac_w (n, n_pix, n_label) is the Jacobian
    with every pixel row times sqrt(ivar) -> (n, n_label) in the Jacobian's label units."""
    jw = torch.as_tensor(jac_w, dtype=torch.float64)
    cov = torch.linalg.pinv(torch.bmm(jw.transpose(1, 2), jw)).numpy()
    return np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0, None))
