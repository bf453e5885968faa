"""Training the emulator on survey spectra with the gradient-spectrum prior (docs/spec.md sec. 5).

Two optimizers. ``"lm"``: Levenberg-Marquardt on every pixel's network at once (``levenberg``),
each iteration one pass over the training spectra; it reaches a lower validation chi^2 in a
tenth of Adam's passes (studies/training_speed) and stops when the summed validation chi^2 of the
kept weights gains less than ``lm_tolerance`` in ``lm_patience`` iterations. ``"adam"`` (X19):
Adam on mini-batches of 512, learning rate decaying exponentially from 1e-2 to 1e-4, the chi^2 and
the prior terms logged separately every epoch. After every epoch the output layer of each pixel
is set to its exact least-squares value for the current hidden layers (variable projection),
which cuts the number of Adam steps a CPU needs several-fold. Because the loss separates by pixel, early stopping
is per pixel: each pixel keeps the weights of its best validation chi^2, and training stops when
no pixel has improved for ``patience`` epochs. Optionally (``clip_sigma`` > 0), every
``clip_every`` epochs the training pixels that deviate from the current emulator by more than
``clip_sigma`` times the pixel's robust scatter get zero weight (unflagged cosmic rays, sky
residuals, which otherwise shift the pixel's model by spike / n_star); off by default, because on
the demo survey it also dropped the stars the emulator fits worst and cost accuracy (README,
*Training*). Checkpoints hold everything needed to resume.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import constants as C
from ..io_utils import atomic_path
from ..labels import Scaler
from ..progress import progress
from .emulator import Emulator, EmulatorModel, config_dict, with_model_error
from .levenberg import DAMPING_START, RIDGE, lm_iteration
from .loss import GradientPrior, chi2_per_pixel, default_d_scale


@dataclass(frozen=True)
class TrainConfig:
    """n_hidden: neurons per hidden layer (10 LAMOST, 40 DESI); regularize: use the gradient
    prior; d_scale: per-label overrides of D_scale; reference: reference-gradient grid name;
    solve_output_every: epochs between exact solves of the output layer (0 = pure Adam);
    clip_sigma, clip_every: outlier rejection of training pixels (``outlier_keep``; 0 = none);
    prior_weighting: "absolute" (X19 eq. 2) or "relative" (``loss.relative_weights``);
    prior_shape_only: hold the emulator's gradients to the ab initio shape with an amplitude
    free within constants.SHAPE_PRIOR_AMPLITUDE (``GradientPrior.amplitude_range``);
    model_error: a floor s under every pixel's error, ivar -> 1 / (1/ivar + s^2) (The Cannon's
    scatter term, Ness et al. 2015): without it the highest-S/N spectra, which no emulator fits
    to their noise, dominate the loss (``fit.with_model_error``);
    pixel_scatter: after training, estimate each pixel's model scatter from the training
    spectra's residuals at their fitted labels (``estimate_pixel_scatter``; The Cannon's s^2),
    which every fit then adds to the noise (``pipeline.train_from_store``);
    optimizer: "adam" (X19; ``epochs`` are passes of mini-batches) or "lm" (``epochs`` are
    Levenberg-Marquardt iterations, the Gauss-Newton matrix from ``hessian_rows`` spectra drawn
    anew each iteration; stops when the validation chi^2 gains less than ``lm_tolerance`` in
    ``lm_patience`` iterations); lm_ridge: with "lm", weight of sum(W1^2) in each pixel's loss
    (``levenberg`` module docstring)."""

    n_hidden: int = 10
    epochs: int = 300
    batch_size: int = C.BATCH_SIZE
    lr_start: float = C.LEARNING_RATE_START
    lr_end: float = C.LEARNING_RATE_END
    patience: int = 30
    valid_fraction: float = 0.1
    regularize: bool = True
    d_scale: dict = field(default_factory=dict)
    reference: str = C.REFERENCE_GRID
    seed: int = 0
    solve_output_every: int = 1
    clip_sigma: float = 0.0
    clip_every: int = 20
    prior_weighting: str = "absolute"
    prior_shape_only: bool = False
    model_error: float = 0.0
    pixel_scatter: bool = False
    optimizer: str = "lm"
    hessian_rows: int = 512
    lm_patience: int = 3
    lm_tolerance: float = 1e-3
    lm_ridge: float = RIDGE
    param_prior_feh_min: float | None = None

    @classmethod
    def for_instrument(cls, instrument: str, **changes) -> "TrainConfig":
        """An instrument's settings: X19's 10 neurons per pixel trained by Levenberg-Marquardt
        for LAMOST; for DESI the same, at most ``constants.DESI_LM_ITERATIONS`` iterations,
        regularized with DESI's own reference grid (desi-isochrone). Z24's DESI network (sec.
        3.1: 40 neurons, Adam with batch 512 and learning rate 0.01 -> 0.0001) is
        ``for_instrument("desi", **Z24_DESI_NETWORK)``: 2,321 parameters a pixel are too many
        for per-pixel Gauss-Newton, and on the DESI demo's ~700 training stars Adam leaves them
        4-7x less accurate than 10 neurons by LM (studies/desi_network)."""
        if instrument == "desi":
            return cls(**{"reference": C.DESI_REFERENCE_GRID, "epochs": C.DESI_LM_ITERATIONS, **changes})
        return cls(**changes)

    @classmethod
    def of_model(cls, model) -> "TrainConfig":
        """The settings an emulator was trained with (recorded in its config by
        ``train_emulator``); defaults for those it does not record."""
        return cls(**{f.name: model.config[f.name] for f in fields(cls) if f.name in model.config})


Z24_DESI_NETWORK = {"n_hidden": C.DESI_N_HIDDEN, "optimizer": "adam", "epochs": 300}   # Z24 sec. 3.1


class TrainingCancelled(Exception):
    """Raised when ``should_stop`` asks training to end; the checkpoint stays resumable."""


def prior_d_scale(config: TrainConfig, label_names, ref_labels: np.ndarray) -> np.ndarray:
    """(n_ref, n_label) D of each reference star's gradient in each label: X19's D_scale with the
    config's per-label overrides; with ``param_prior_feh_min``, 0 for Teff, logg, vmic and [Fe/H]
    at the reference stars below it. ref_labels: (n_ref, n_label) physical, in ``label_names``."""
    d_scale = default_d_scale(label_names)
    for lab, val in config.d_scale.items():
        d_scale[label_names.index(lab)] = val
    d = np.tile(d_scale, (len(ref_labels), 1))
    if config.param_prior_feh_min is not None:
        below = ref_labels[:, label_names.index("feh")] < config.param_prior_feh_min
        params = [label_names.index(lab) for lab in ("teff", "logg", "vmic", "feh") if lab in label_names]
        d[np.ix_(below, params)] = 0.0
    return d


def split_train_valid(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices: a seeded random ``frac`` of n rows (at least one)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(frac * n)))
    return perm[n_val:], perm[:n_val]


def _copy_pixels(dst: dict, src: dict, pix: torch.Tensor) -> None:
    for name, t in src.items():
        dst[name][pix] = t.detach()[pix]


def outlier_keep(net: Emulator, x: torch.Tensor, flux: torch.Tensor, ivar: torch.Tensor,
                 clip_sigma: float, batch: int = 2048) -> torch.Tensor:
    """Which pixels of the spectra to keep: (n, n_pix) bool, False where |flux - model| sqrt(ivar)
    exceeds ``clip_sigma`` times the pixel's robust scatter over the spectra (1.4826 x median
    absolute normalized residual, at least 1, so that noise alone is never clipped).
    x: (n, n_label) scaled labels; flux, ivar: (n, n_pix), ivar 0 where unused."""
    with torch.no_grad():
        r = torch.cat([((net(x[a:a + batch]) - flux[a:a + batch]) * ivar[a:a + batch].sqrt()).abs()
                       for a in range(0, len(x), batch)])
        r = r.masked_fill(ivar <= 0, float("nan"))
        scale = (1.4826 * torch.nanmedian(r, dim=0).values).nan_to_num(1.0).clamp_min(1.0)
        return ~(r > clip_sigma * scale)


def solve_output_layer(net: Emulator, x: torch.Tensor, flux: torch.Tensor, ivar: torch.Tensor,
                       prior: GradientPrior | None = None, ridge: float = 1e-6,
                       batch: int = 2048, l1_floor: float = 1e-4) -> None:
    """Set the output layer (w, fbar) of every pixel to the minimizer of the training loss given
    the current hidden layers (variable projection: the flux is linear in w and fbar).

    The chi^2 term is quadratic in (w, fbar); the prior's |dF_emu - dF_ab| is linear inside the
    absolute value, so it enters as one iteratively-reweighted least-squares step (weights
    D_k / |current residual|, floored at ``l1_floor``), which never increases the loss (with a
    shape-only prior, the loss at the current amplitudes, ``GradientPrior.target``).
    x: (n, n_label) scaled labels; flux, ivar: (n, n_pix). Cheap next to a gradient step."""
    n_pix, n_hidden = net.w.shape
    ata = torch.zeros(n_pix, n_hidden + 1, n_hidden + 1, dtype=torch.float64)
    atb = torch.zeros(n_pix, n_hidden + 1, dtype=torch.float64)
    with torch.no_grad():
        for a in range(0, len(x), batch):
            _, h2 = net._hidden(x[a:a + batch])                           # (p, h, s)
            design = torch.cat([h2, torch.ones_like(h2[:, :1])], 1)       # (p, h+1, s)
            wt = ivar[a:a + batch].T[:, None, :] / len(x)                   # chi^2 is a mean
            ata += torch.bmm(design * wt, design.transpose(1, 2)).double()
            atb += ((design * wt) @ flux[a:a + batch].T[:, :, None])[..., 0].double()
        if prior is not None:
            n_ref, n_lab = prior.x_ref.shape
            _, h_ref = net._hidden(prior.x_ref)                            # (p, h, j)
            _, h_step = net._hidden(prior.x_step.reshape(n_ref * n_lab, n_lab))
            dh = h_step.reshape(n_pix, n_hidden, n_ref, n_lab) - h_ref[:, :, :, None]
            dh = dh.reshape(n_pix, n_hidden, n_ref * n_lab)
            emu = (net.w[:, None, :] @ dh)[:, 0, :]                           # (p, j*k)
            target = prior.target(emu.T.reshape(n_ref, n_lab, n_pix)).permute(2, 0, 1) \
                .reshape(n_pix, n_ref * n_lab)
            resid = emu - target
            c = (prior.weight.reshape(-1)[None, :] * prior.pix_weight[:, None]
                 / resid.abs().clamp_min(l1_floor))[:, None, :]
            ata[:, :n_hidden, :n_hidden] += torch.bmm(dh * c, dh.transpose(1, 2)).double()
            atb[:, :n_hidden] += ((dh * c) @ target[:, :, None])[..., 0].double()
        scale = torch.diagonal(ata, dim1=1, dim2=2).mean(1).clamp_min(1e-30)
        ata += ridge * scale[:, None, None] * torch.eye(n_hidden + 1, dtype=torch.float64)
        sol = torch.linalg.solve(ata, atb).float()
        ok = torch.isfinite(sol).all(1) & (scale > 1e-20)
        net.w[ok] = sol[ok, :n_hidden]
        net.fbar[ok] = sol[ok, n_hidden]


def validation_chi2(model: EmulatorModel, flux: np.ndarray, ivar: np.ndarray, labels: np.ndarray,
                    config: TrainConfig = TrainConfig()) -> np.ndarray:
    """A model's chi^2 per pixel (n_pix,) on the validation spectra ``train_emulator`` holds out
    of this training set under ``config`` (its split, pixel mask and model-error floor), so that
    any model can be compared with the ``valid_chi2`` of a training on the same spectra.
    flux, ivar: (n_star, n_pix) normalized; labels: (n_star, n_label) physical."""
    _, va = split_train_valid(len(flux), config.valid_fraction, config.seed)
    iv = with_model_error(np.where(np.isfinite(flux[va]) & model.mask[None, :], ivar[va], 0.0),
                          config.model_error)
    resid = model.predict(labels[va]) - np.where(iv > 0, flux[va], 1.0)
    return (resid ** 2 * iv).mean(0)


def adam_epoch(net: Emulator, opt, x: torch.Tensor, flux: torch.Tensor, ivar: torch.Tensor,
               prior: GradientPrior | None, order: torch.Tensor, batch_size: int):
    """One pass of Adam over the spectra ``order`` in mini-batches; returns the summed chi^2 and
    prior over the batches and the number of batches."""
    chi_sum, prior_sum, n_batches = 0.0, 0.0, 0
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        chi = chi2_per_pixel(net, x[idx], flux[idx], ivar[idx]).sum()
        reg = prior.per_pixel(net).sum() if prior is not None else torch.zeros(())
        opt.zero_grad()
        (chi + reg).backward()
        opt.step()
        chi_sum, prior_sum, n_batches = chi_sum + chi.item(), prior_sum + reg.item(), n_batches + 1
    return chi_sum, prior_sum, n_batches


def train_emulator(flux: np.ndarray, ivar: np.ndarray, labels: np.ndarray, label_names,
                   wave: np.ndarray, mask: np.ndarray, config: TrainConfig = TrainConfig(),
                   reference=None, checkpoint: str | Path | None = None,
                   on_epoch: Callable[[int, dict], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, log=print) -> EmulatorModel:
    """Train an emulator.

    flux, ivar: (n_star, n_pix) normalized training spectra; labels: (n_star, n_label) physical;
    wave: (n_pix,); mask: (n_pix,) bool pixels used; reference: ``ReferenceGradients`` holding
    every label in ``label_names`` (required when config.regularize). A ``checkpoint`` file is
    written every epoch and, if present at start, training resumes from it.
    """
    label_names = tuple(label_names)
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape != (flux.shape[0], len(label_names)):
        raise ValueError(f"labels shape {labels.shape} does not match {flux.shape[0]} spectra x "
                         f"{len(label_names)} label names")
    if not np.all(np.isfinite(labels)):
        bad = np.argwhere(~np.isfinite(labels))[0]
        raise ValueError(f"training label {label_names[bad[1]]} of star {bad[0]} is not finite")
    if config.optimizer not in ("adam", "lm"):
        raise ValueError(f"optimizer {config.optimizer!r}: choose 'adam' or 'lm'")
    if config.optimizer == "lm" and config.prior_shape_only:
        raise ValueError("the shape-only prior ties pixels together; train it with optimizer='adam'")
    lm = config.optimizer == "lm"
    torch.manual_seed(config.seed)
    scaler = Scaler.fit(labels)
    ivar = with_model_error(np.where(np.isfinite(flux) & mask[None, :], ivar, 0.0), config.model_error)
    flux = np.where(ivar > 0, flux, 1.0)
    tr, va = split_train_valid(len(flux), config.valid_fraction, config.seed)
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)
    x_all, f_all, iv_raw = f32(scaler.scale(labels)), f32(flux), f32(ivar)
    iv_all = iv_raw

    net = Emulator(len(label_names), flux.shape[1], config.n_hidden, seed=config.seed)
    tr_t = torch.as_tensor(tr)

    prior = None
    if config.regularize:
        if reference is None:
            raise ValueError("regularize=True needs reference gradients")
        ref = reference.select_labels(label_names)
        prior = GradientPrior.build(ref.reference_labels(), ref.steps(), ref.dflux, scaler,
                                    prior_d_scale(config, label_names, ref.reference_labels()),
                                    np.ones(flux.shape[1]),
                                    relative=config.prior_weighting == "relative",
                                    amplitude_range=C.SHAPE_PRIOR_AMPLITUDE
                                    if config.prior_shape_only else None)

    solve = (lambda: solve_output_layer(net, x_all[tr_t], f_all[tr_t], iv_all[tr_t], prior)) \
        if config.solve_output_every else (lambda: None)
    solve()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr_start)
    decay = (config.lr_end / config.lr_start) ** (1.0 / max(config.epochs - 1, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=decay)
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    best_val = torch.full((flux.shape[1],), float("inf"))
    history = {"epoch": [], "train_chi2": [], "train_prior": [], "valid_chi2": [], "lr": [],
               "clipped_fraction": [], "seconds": [], "valid_chi2_kept": []}
    start_epoch, stale = 0, 0
    damping = torch.full((flux.shape[1],), DAMPING_START)

    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        best_state = state["best_state"]
        best_val = state["best_val"]
        meta = json.loads(state["meta"])
        history, start_epoch, stale = meta["history"], meta["epoch"] + 1, meta["stale"]
        damping = state.get("damping", damping)
        # Re-plan the decay so the rate still ends at lr_end if the epoch budget changed (the
        # same gamma as before when it did not).
        lr_now = opt.param_groups[0]["lr"]
        sched.gamma = (config.lr_end / lr_now) ** (1.0 / max(config.epochs - start_epoch - 1, 1))
        log(f"resuming training at epoch {start_epoch} from {ckpt}")
        if config.clip_sigma > 0 and start_epoch >= config.clip_every:
            iv_all = iv_raw * outlier_keep(net, x_all, f_all, iv_raw, config.clip_sigma)

    gen = torch.Generator().manual_seed(config.seed + start_epoch)
    for epoch in progress(range(start_epoch, config.epochs), desc="training epochs"):
        t0 = time.perf_counter()
        order = torch.randperm(len(tr_t), generator=gen)
        if lm:   # rows drawn by iteration number, so a resumed run repeats them exactly
            rows = torch.randperm(len(tr_t), generator=torch.Generator().manual_seed(
                config.seed * 1_000_003 + epoch))[:config.hessian_rows]
            chi_sum, prior_sum = lm_iteration(net, x_all[tr_t], f_all[tr_t], iv_all[tr_t], prior,
                                              damping, rows, ridge=config.lm_ridge)
            n_batches = 1
        else:
            chi_sum, prior_sum, n_batches = adam_epoch(net, opt, x_all, f_all, iv_all, prior,
                                                       tr_t[order], config.batch_size)
            sched.step()
        if config.clip_sigma > 0 and (epoch + 1) % config.clip_every == 0:
            iv_all = iv_raw * outlier_keep(net, x_all, f_all, iv_raw, config.clip_sigma)
            # The validation chi^2 changed meaning: rescore the kept weights under the new mask.
            kept = Emulator(len(label_names), flux.shape[1], config.n_hidden)
            kept.load_state_dict(best_state)
            with torch.no_grad():
                best_val = chi2_per_pixel(kept, x_all[va], f_all[va], iv_all[va])
        if not lm and config.solve_output_every and (epoch + 1) % config.solve_output_every == 0:
            solve()
        with torch.no_grad():
            val = chi2_per_pixel(net, x_all[va], f_all[va], iv_all[va])
            improved = val < best_val * (1 - 1e-4)
            _copy_pixels(best_state, net.state_dict(), improved)
            best_val = torch.where(improved, val, best_val)
        history.setdefault("valid_chi2_kept", []).append(float(best_val.sum()))
        kept = history["valid_chi2_kept"]
        if lm:   # a few pixels always gain a little: judge the summed chi^2's progress
            stale = 0 if len(kept) <= config.lm_patience or \
                kept[-1] < kept[-1 - config.lm_patience] * (1 - config.lm_tolerance) else stale + 1
        else:
            stale = 0 if bool(improved.any()) else stale + 1
        for key, value in (("epoch", epoch), ("train_chi2", chi_sum / n_batches),
                           ("train_prior", prior_sum / n_batches), ("valid_chi2", float(val.sum())),
                           ("lr", float("nan") if lm else opt.param_groups[0]["lr"]),
                           ("clipped_fraction", float((iv_all == 0).sum() - (iv_raw == 0).sum())
                            / float((iv_raw > 0).sum())),
                           ("seconds", time.perf_counter() - t0)):
            history[key].append(value)
        if ckpt is not None:
            with atomic_path(ckpt) as tmp:
                torch.save({"net": net.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "best_state": best_state,
                            "best_val": best_val, "damping": damping,
                            "meta": json.dumps({"history": history, "epoch": epoch,
                                                "stale": stale})}, tmp)
        if on_epoch is not None:
            on_epoch(epoch, history)
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"training cancelled after epoch {epoch}")
        if lm and stale:
            log(f"stop at iteration {epoch}: validation chi2 gained less than "
                f"{config.lm_tolerance:.1%} in {config.lm_patience} iterations")
            break
        if not lm and stale >= config.patience:
            log(f"early stop at epoch {epoch}: no pixel improved for {config.patience} epochs")
            break

    net.load_state_dict(best_state)
    net.eval()
    cfg = config_dict(config)
    # The spectra were normalized by the pipeline's pseudo-continuum; a fit must use the same.
    cfg.update(n_train=int(len(tr)), n_valid=int(len(va)), continuum_weights=C.CONTINUUM_WEIGHTS)
    history["valid_chi2_best"] = float(best_val.sum())
    if prior is not None:
        history["final_prior"] = float(prior.per_pixel(net).sum().detach())
    return EmulatorModel(net, label_names, scaler, np.asarray(wave), np.asarray(mask, bool),
                         cfg, history, labels)
