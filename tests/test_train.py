"""Training details on hand-made data: outlier rejection of training pixels, the priors, the
Levenberg-Marquardt optimizer."""
import tempfile
from dataclasses import replace

import numpy as np
import torch
from astropy.table import Table

from ddpayne_core.labels import Scaler
from ddpayne_core.model import (
    Emulator,
    TrainConfig,
    TrainingCancelled,
    outlier_keep,
    train_emulator,
)
from ddpayne_core.theory import ReferenceGradients

QUIET = dict(log=lambda *a: None)


def test_outlier_keep_clips_spikes_not_noise():
    """Pure Gaussian noise (5,000 x 20 draws) loses nothing at 5 sigma; a 6-sigma spike goes,
    and so does a 12-sigma one on a pixel whose scatter is twice the noise (robust scale 2)."""
    net = Emulator(2, 20, 4)
    x = torch.zeros(5000, 2)
    with torch.no_grad():
        model = net(x)
    gen = torch.Generator().manual_seed(1)
    ivar = torch.full((5000, 20), 1e4)
    noise = torch.randn(5000, 20, generator=gen) * 0.01
    noise[:, 3] *= 2.0
    flux = model + noise.clamp(-0.045, 0.045)
    flux[10, 5] += 0.06
    flux[11, 3] += 0.12
    flux[12, 3] += 0.06            # 6 sigma of noise but 3 of this pixel's scatter: kept
    ivar[13, 6] = 0.0              # unused pixels never enter the scale and stay as they are
    keep = outlier_keep(net, x, flux, ivar, 5.0)
    assert set(map(tuple, (~keep).nonzero().tolist())) == {(10, 5), (11, 3)}


def test_training_ignores_an_unflagged_spike():
    """A 100-sigma spike on one pixel of one star pulls that pixel's unclipped network (its model
    rises by spike / n_star on average over the stars); with clipping it is, on average, the one
    trained without the spike (star by star they differ by the optimizer's path). Pixels are independent networks, so the others are untouched."""
    rng = np.random.default_rng(0)
    n, p = 400, 30
    labels = rng.uniform(0, 1, (n, 2))
    wave = np.linspace(4000.0, 5000.0, p)
    clean = 1 - 0.3 * labels[:, :1] * np.exp(-((wave - 4500) / 150) ** 2)[None] \
        + rng.normal(0, 0.01, (n, p))
    spiked = clean.copy()
    spiked[7, 15] += 1.0
    ivar = np.full((n, p), 1e4)
    # No ridge: the unclipped least-squares premise (a mean rise of spike / n) is what is tested.
    cfg = replace(TrainConfig(), epochs=80, regularize=False, n_hidden=6, clip_every=5,
                  valid_fraction=0.05, lm_ridge=0.0)

    def pixel_model(flux, clip):
        m = train_emulator(flux, ivar, labels, ("a", "b"), wave, np.ones(p, bool),
                           replace(cfg, clip_sigma=clip), **QUIET)
        return m.predict(labels)[:, 15], m.history["clipped_fraction"][-1] * n * p

    reference, _ = pixel_model(clean, 0.0)
    unclipped, _ = pixel_model(spiked, 0.0)
    clipped, n_clipped = pixel_model(spiked, 5.0)
    assert n_clipped < 5
    pull = (unclipped - reference).mean()
    assert pull > 0.5 / n
    assert abs((clipped - reference).mean()) < 0.2 * pull


def test_relative_prior_weights_hold_weak_gradients_to_the_same_shape():
    """Three reference stars with one label's gradient of one shape at amplitudes 1, 0.5 and
    0.001: relative weighting gives 1/amplitude times the mean amplitude, floored at
    RELATIVE_PRIOR_FLOOR of the mean; an emulator off by the same *fraction* of each star's
    gradient then pays the same for every star above the floor, where X19's absolute weights
    make the weak star cheap."""
    from ddpayne_core.constants import RELATIVE_PRIOR_FLOOR
    from ddpayne_core.model import GradientPrior, relative_weights

    shape = np.sin(np.linspace(0, 6, 50))
    amp = np.array([1.0, 0.5, 0.001])
    dflux = amp[:, None, None] * shape[None, None, :]
    rms = amp * np.sqrt(np.mean(shape ** 2))
    w = relative_weights(dflux, np.ones(50))[:, 0]
    mean = rms.mean()
    np.testing.assert_allclose(w, mean / np.maximum(rms, RELATIVE_PRIOR_FLOOR * mean))
    assert w[1] == 2 * w[0] and w[2] < 1000 * w[0]

    ref = np.array([[5000.0], [5500.0], [6000.0]])
    scaler = Scaler(np.array([4000.0]), np.array([7000.0]))
    for relative in (False, True):
        prior = GradientPrior.build(ref, np.full((3, 1), 100.0), dflux, scaler, np.array([5.0]),
                                    np.ones(50), relative=relative)
        # An emulator whose gradient is 90 % of the ab initio one, star by star (flux 0 at each
        # reference point, 0.9 dF at its step): per_pixel is then sum_j 0.1 D w_j |dF_j|.
        x_step = prior.x_step[:, 0, 0]

        def net(x, x_step=x_step):
            hit = (x[:, :1] == x_step[None, :]).float()                     # (n, 3)
            return 0.9 * hit @ torch.as_tensor(dflux[:, 0], dtype=torch.float32)

        per_star = 0.1 * prior.weight[:, 0].numpy()[:, None] * np.abs(dflux[:, 0])   # (3, 50)
        np.testing.assert_allclose(prior.per_pixel(net).numpy(), per_star.sum(0), rtol=1e-4,
                                   atol=1e-9)
        totals = per_star.sum(1)
        if relative:
            np.testing.assert_allclose(totals[0], totals[1], rtol=1e-5)
        else:
            np.testing.assert_allclose(totals[1], totals[0] / 2, rtol=1e-5)
            np.testing.assert_allclose(prior.weight.numpy(), 5.0)


def test_shape_only_prior_frees_the_amplitude_within_its_range():
    """An emulator whose gradients have the ab initio shape at 1.5 and 3 times the amplitude
    (two reference stars): X19's prior charges both; the shape-only prior charges nothing at
    1.5 (inside SHAPE_PRIOR_AMPLITUDE) and, at 3, only the excess over the range's top; a
    gradient of another shape is charged either way."""
    from ddpayne_core.constants import SHAPE_PRIOR_AMPLITUDE
    from ddpayne_core.model import GradientPrior

    shape = np.sin(np.linspace(0, 6, 50))
    dflux = np.stack([shape, shape])[:, None, :]                          # (2 stars, 1 label, 50)
    ref = np.array([[5000.0], [6000.0]])
    scaler = Scaler(np.array([4000.0]), np.array([7000.0]))

    def emulator(gradients):
        def net(x, x_step=prior.x_step[:, 0, 0]):
            hit = (x[:, :1] == x_step[None, :]).float()
            return hit @ torch.as_tensor(gradients, dtype=torch.float32)
        return net

    hi = SHAPE_PRIOR_AMPLITUDE[1]
    scaled = np.stack([1.5 * shape, 3.0 * shape])
    for shape_only in (False, True):
        prior = GradientPrior.build(ref, np.full((2, 1), 100.0), dflux, scaler, np.array([5.0]),
                                    np.ones(50), amplitude_range=SHAPE_PRIOR_AMPLITUDE
                                    if shape_only else None)
        excess = (np.array([0.0, 3.0 - hi]) if shape_only else np.array([0.5, 2.0]))
        np.testing.assert_allclose(prior.per_pixel(emulator(scaled)).numpy(),
                                   5.0 * (excess[:, None] * np.abs(shape)).sum(0), rtol=1e-4, atol=1e-6)
        other = np.stack([np.cos(np.linspace(0, 6, 50))] * 2)
        assert prior.per_pixel(emulator(other)).sum() > 0.5 * 5.0 * 2 * np.abs(shape).sum()


def _lm_data(n=500, p=12, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.uniform(0, 1, (n, 3))
    wave = np.linspace(4000.0, 5000.0, p)
    line = np.exp(-((wave - 4500) / 200) ** 2)[None]
    truth = 1 - 0.3 * labels[:, :1] * line - 0.1 * labels[:, 1:2] ** 2 * line[:, ::-1] \
        + 0.05 * labels[:, 2:] * labels[:, :1]
    return labels, wave, truth + rng.normal(0, 0.01, (n, p)), np.full((n, p), 1e4)


def test_levenberg_marquardt_reaches_a_lower_validation_chi2_than_adam_in_fewer_passes():
    """On a smooth 3-label problem (500 spectra, noise 0.01), 15 Levenberg-Marquardt iterations
    (about the cost of 45 Adam epochs) reach a validation chi2 near the noise (chi2 ~ 1 a pixel)
    and below Adam's after 45 epochs; every iteration's kept validation chi2 is recorded and
    never rises."""
    labels, wave, flux, ivar = _lm_data()
    base = replace(TrainConfig(), regularize=False, n_hidden=6, valid_fraction=0.2)
    adam = train_emulator(flux, ivar, labels, ("a", "b", "c"), wave, np.ones(12, bool),
                          replace(base, optimizer="adam", epochs=45, batch_size=64), **QUIET)
    lm = train_emulator(flux, ivar, labels, ("a", "b", "c"), wave, np.ones(12, bool),
                        replace(base, optimizer="lm", epochs=15, lm_patience=20), **QUIET)
    kept = lm.history["valid_chi2_kept"]
    assert len(kept) == 15 and np.all(np.diff(kept) <= 0)
    print(lm.history["valid_chi2_best"], adam.history["valid_chi2_best"])
    assert lm.history["valid_chi2_best"] < adam.history["valid_chi2_best"]
    assert lm.history["valid_chi2_best"] < 1.2 * 12
    assert lm.config["optimizer"] == "lm"


def test_levenberg_marquardt_with_the_prior_and_a_resumed_run_match():
    """With the gradient prior, an LM training stopped after 3 iterations and resumed from its
    checkpoint ends where an uninterrupted one does (the damping and the drawn Hessian rows are
    part of the state); the loss, chi2 plus prior, falls as it trains."""
    labels, wave, flux, ivar = _lm_data(n=300)
    names = ("a", "b", "c")
    ref_labels = np.array([[0.3, 0.3, 0.3], [0.7, 0.6, 0.5]])
    steps = np.full((2, 3), 0.1)
    stars = Table({lab: ref_labels[:, i] for i, lab in enumerate(names)}
                  | {f"d_{lab}": steps[:, i] for i, lab in enumerate(names)})
    truth = lambda lab: 1 - 0.3 * lab[:, :1] * np.exp(-((wave - 4500) / 200) ** 2)[None]
    dflux = np.stack([truth(ref_labels + steps[:, [k]] * np.eye(3)[k]) - truth(ref_labels)
                      for k in range(3)], 1)
    ref = ReferenceGradients("test", wave, names, stars, truth(ref_labels), dflux, {})
    cfg = replace(TrainConfig(), optimizer="lm", epochs=6, n_hidden=5, lm_patience=20)
    args = (flux, ivar, labels, names, wave, np.ones(12, bool), cfg, ref)
    whole = train_emulator(*args, **QUIET)
    h = whole.history
    assert h["train_prior"][-1] + h["train_chi2"][-1] < h["train_prior"][0] + h["train_chi2"][0]

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = f"{tmp}/m.ckpt"
        try:
            seen = []
            train_emulator(*args, checkpoint=ckpt, on_epoch=lambda e, h: seen.append(e),
                           should_stop=lambda: len(seen) == 3, **QUIET)
        except TrainingCancelled:
            pass
        resumed = train_emulator(*args, checkpoint=ckpt, **QUIET)
    assert resumed.history["epoch"] == list(range(6))
    assert np.allclose(resumed.history["valid_chi2_kept"], whole.history["valid_chi2_kept"], rtol=1e-5)


def test_levenberg_marquardt_ridge_keeps_label_weights_small_and_is_part_of_the_loss():
    """The ridge on W1 (``TrainConfig.lm_ridge``) enters each pixel's loss and its Hessian: with
    it the first-layer weights end smaller than without, the recorded regularization term is the
    ridge itself (no prior here), and the fit to the data stays near the noise."""
    from ddpayne_core.model.levenberg import pixel_loss

    labels, wave, flux, ivar = _lm_data()
    base = replace(TrainConfig(), regularize=False, n_hidden=6, valid_fraction=0.2, optimizer="lm",
                   epochs=15, lm_patience=20, lm_ridge=0.0)
    free = train_emulator(flux, ivar, labels, ("a", "b", "c"), wave, np.ones(12, bool), base, **QUIET)
    ridged = train_emulator(flux, ivar, labels, ("a", "b", "c"), wave, np.ones(12, bool),
                            replace(base, lm_ridge=1e-2), **QUIET)
    size = lambda m: float((m.net.W1.detach() ** 2).sum())
    assert size(ridged) < 0.5 * size(free)
    assert free.history["train_prior"][-1] == 0
    assert ridged.history["train_prior"][-1] > 0
    assert ridged.history["valid_chi2_best"] < 1.5 * 12
    # pixel_loss with the ridge: chi2 unchanged, regularization = ridge * sum(W1^2) per pixel.
    x = torch.as_tensor(ridged.scaler.scale(labels), dtype=torch.float32)
    f, iv = torch.as_tensor(flux, dtype=torch.float32), torch.as_tensor(ivar, dtype=torch.float32)
    chi0, reg0 = pixel_loss(ridged.net, x, f, iv, None)
    chi1, reg1 = pixel_loss(ridged.net, x, f, iv, None, ridge=0.5)
    assert torch.allclose(chi0, chi1) and torch.all(reg0 == 0)
    assert torch.allclose(reg1, 0.5 * (ridged.net.W1.detach() ** 2).sum((1, 2)))


def test_optimizer_choices_are_checked():
    labels, wave, flux, ivar = _lm_data(n=50)
    for bad in (dict(optimizer="sgd"), dict(optimizer="lm", prior_shape_only=True, regularize=False)):
        try:
            train_emulator(flux, ivar, labels, ("a", "b", "c"), wave, np.ones(12, bool),
                           replace(TrainConfig(), epochs=1, **bad), **QUIET)
        except ValueError as exc:
            assert "optimizer" in str(exc) or "shape-only" in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")


def test_param_prior_feh_min_frees_the_parameters_at_metal_poor_reference_stars_only():
    """X19's D (5 Teff, logg, vmic; 50 [Fe/H], [X/Fe]) with a per-label override; with
    param_prior_feh_min -1, the reference stars below it lose the prior on Teff, logg, vmic and
    [Fe/H] (D 0) and keep it on [Mg/Fe]; the stars at or above it keep every D; the prior's
    per-star weight is exactly that table."""
    from ddpayne_core.model import GradientPrior
    from ddpayne_core.model.train import prior_d_scale

    names = ["teff", "logg", "vmic", "feh", "mg_fe"]
    ref = np.array([[5000.0, 4.5, 1.0, -2.5, 0.3], [5500.0, 4.0, 1.2, -1.0, 0.1],
                    [6000.0, 4.2, 1.1, 0.2, 0.0]])
    x19 = np.tile([5.0, 5.0, 5.0, 50.0, 20.0], (3, 1))
    cfg = TrainConfig(d_scale={"mg_fe": 20.0})
    np.testing.assert_array_equal(prior_d_scale(cfg, names, ref), x19)
    d = prior_d_scale(replace(cfg, param_prior_feh_min=-1.0), names, ref)
    np.testing.assert_array_equal(d[0], [0.0, 0.0, 0.0, 0.0, 20.0])
    np.testing.assert_array_equal(d[1:], x19[1:])
    scaler = Scaler(ref.min(0) - 1, ref.max(0) + 1)
    prior = GradientPrior.build(ref, np.full((3, 5), 0.1), np.ones((3, 5, 7)), scaler, d, np.ones(7))
    np.testing.assert_array_equal(prior.weight.numpy(), d)


def test_train_config_of_model_is_the_config_it_was_trained_with():
    """A trained emulator's recorded settings give back its TrainConfig (the studies retrain
    with a model's own settings); a setting the model predates takes its default."""
    labels, wave, flux, ivar = _lm_data()
    config = replace(TrainConfig(), regularize=False, n_hidden=4, epochs=2, lm_ridge=0.05,
                     d_scale={"a": 3.0})
    model = train_emulator(flux, ivar, labels, ("a", "b", "c"), wave, np.ones(12, bool), config, **QUIET)
    assert TrainConfig.of_model(model) == config
    del model.config["lm_ridge"]
    assert TrainConfig.of_model(model) == replace(config, lm_ridge=TrainConfig().lm_ridge)
