"""Emulator shapes, analytic Jacobian versus autograd and finite differences, save/load."""
import numpy as np
import pytest
import torch

from ddpayne_core.labels import Scaler
from ddpayne_core.model import Emulator, EmulatorModel


def test_shapes():
    net = Emulator(n_label=5, n_pix=40, n_hidden=10)
    x = torch.zeros(7, 5)
    assert net(x).shape == (7, 40)
    flux, jac = net.flux_and_jacobian(x)
    assert flux.shape == (7, 40) and jac.shape == (7, 40, 5)


def test_pixels_are_independent_networks():
    """Changing one pixel's weights changes only that pixel's flux (batched per-pixel nets)."""
    net = Emulator(3, 20, 6, seed=3)
    x = torch.rand(4, 3) - 0.5
    before = net(x).detach().clone()
    with torch.no_grad():
        net.W2[7] += 1.0
    after = net(x).detach()
    changed = (after - before).abs().amax(0) > 0
    assert changed.tolist() == [i == 7 for i in range(20)]


def test_analytic_jacobian_matches_autograd_and_finite_differences():
    torch.manual_seed(0)
    net = Emulator(4, 30, 10, seed=1).double()
    x = (torch.rand(3, 4, dtype=torch.float64) - 0.5)
    _, jac = net.flux_and_jacobian(x)
    auto = torch.autograd.functional.jacobian(lambda z: net(z), x)  # (s, p, s, k)
    auto = torch.stack([auto[i, :, i, :] for i in range(3)])
    np.testing.assert_allclose(jac.detach().numpy(), auto.detach().numpy(), rtol=1e-10, atol=1e-12)
    eps = 1e-6
    for k in range(4):
        dx = torch.zeros_like(x)
        dx[:, k] = eps
        fd = (net(x + dx) - net(x - dx)) / (2 * eps)
        np.testing.assert_allclose(jac[:, :, k].detach().numpy(), fd.detach().numpy(), atol=1e-8)


def test_label_steps_are_the_stepped_spectra_minus_the_unstepped():
    net = Emulator(4, 30, 6, seed=5)
    x = torch.rand(5, 4, dtype=torch.float32) - 0.5
    steps = torch.rand(5, 2, dtype=torch.float32) * 0.2 - 0.1
    columns = [3, 1]
    with torch.no_grad():
        d = net.label_steps(x, steps, columns)
        want = torch.stack([net(x + steps[:, [j]] * torch.eye(4)[c]) - net(x)
                            for j, c in enumerate(columns)], dim=1)
    assert d.shape == (5, 2, 30)
    torch.testing.assert_close(d, want, atol=1e-5, rtol=0)


def test_save_load_round_trip(tmp_path):
    net = Emulator(3, 25, 10, seed=5)
    scaler = Scaler(np.array([4000.0, 1.0, -2.0]), np.array([7000.0, 5.0, 0.5]))
    model = EmulatorModel(net, ("teff", "logg", "feh"), scaler, np.linspace(4000, 5000, 25),
                          np.ones(25, bool), {"n_hidden": 10}, {"valid_chi2": [1.0]})
    path = model.save(tmp_path / "m.pt")
    back = EmulatorModel.load(path)
    labels = np.array([[5000.0, 3.0, -0.5], [6000.0, 4.2, 0.1]])
    np.testing.assert_array_equal(back.predict(labels), model.predict(labels))
    assert back.labels == model.labels and back.config == model.config
    assert back.pixel_scatter is None and back.digest() == model.digest()
    # A per-pixel model scatter travels with the model and changes its digest (resumed fits
    # made without it are refitted).
    model.pixel_scatter = np.linspace(0, 0.02, 25)
    back = EmulatorModel.load(model.save(tmp_path / "m2.pt"))
    np.testing.assert_array_equal(back.pixel_scatter, model.pixel_scatter)
    assert back.digest() == model.digest() != EmulatorModel.load(path).digest()


def test_pixel_scatter_is_recovered_by_maximum_likelihood():
    """Residuals of 1,000 spectra whose noise differs from spectrum to spectrum (S/N 20-300)
    plus a known model scatter per pixel: the estimate recovers it, 0 where there is none and
    where no spectrum has the pixel."""
    from ddpayne_core.model import estimate_pixel_scatter
    rng = np.random.default_rng(0)
    n, true = 1000, np.array([0.0, 0.0, 0.002, 0.005, 0.01, 0.03, 0.1, 0.05])
    sigma = 1 / rng.uniform(20, 300, (n, 1)) * np.ones((1, len(true)))
    residual = rng.normal(0, np.sqrt(sigma ** 2 + true ** 2))
    ivar = 1 / sigma ** 2
    ivar[:, 7] = 0.0                         # a pixel masked everywhere
    ivar[rng.random((n, len(true))) < 0.1] = 0.0
    residual[ivar == 0] = 10.0               # masked pixels carry garbage and must not count
    s = estimate_pixel_scatter(residual, ivar)
    assert s[7] == 0.0 and s[0] < 0.001 and s[1] < 0.001
    np.testing.assert_allclose(s[3:7], true[3:7], rtol=0.1)
    assert 0.001 < s[2] < 0.003              # below most spectra's noise, still seen


def test_load_rejects_foreign_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="bad.pt"):
        EmulatorModel.load(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        EmulatorModel.load(tmp_path / "missing.pt")


def test_pixel_subset_and_weighted_jacobian():
    """A pixel subset is the same networks; weights scale each row of the Jacobian (the fit's
    1/sigma-weighted normal equations rely on both)."""
    net = Emulator(5, 50, 10, seed=2)
    x = torch.rand(6, 5) - 0.5
    pix = torch.tensor([0, 3, 17, 49])
    flux, jac = net.flux_and_jacobian(x)
    sub_flux, sub_jac = net.pixel_subset(pix).flux_and_jacobian(x)
    torch.testing.assert_close(sub_flux, flux[:, pix])
    torch.testing.assert_close(sub_jac, jac[:, pix])
    w = torch.rand(6, 50)
    _, wjac = net.flux_and_jacobian(x, weights=w)
    torch.testing.assert_close(wjac, jac * w[..., None])


def test_parameter_jacobian_matches_autograd_and_flat_parameters_round_trip():
    """Every pixel's derivative with respect to its own parameters, in PARAMETERS order, equals
    autograd's; flat_parameters and set_flat_parameters are inverse."""
    torch.manual_seed(0)
    net = Emulator(3, 4, 5, seed=2)
    x = torch.rand(6, 3) - 0.5
    flux, jac = net.parameter_jacobian(x)                       # (4, 6), (4, P, 6)
    assert torch.allclose(flux, net(x).T.detach(), atol=1e-6)
    for s in range(6):
        net.zero_grad()
        net(x[s:s + 1]).sum().backward()       # pixels are independent: each grad row is its own
        grad = torch.cat([getattr(net, n).grad.reshape(4, -1) for n in net.PARAMETERS], 1)
        assert torch.allclose(jac[:, :, s], grad, atol=1e-6)
    theta = net.flat_parameters()
    assert theta.shape == (4, 5 * 3 + 5 + 25 + 5 + 5 + 1)
    other = Emulator(3, 4, 5, seed=9)
    other.set_flat_parameters(theta)
    assert torch.equal(other(x), net(x))
