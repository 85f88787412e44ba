"""The torch wavelet transform and L1-wavelet compressed sensing (the default initial estimate)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recon_data as rd
from ccdf_mri.physics import SenseOp, make_mask
from ccdf_mri.physics.wavelet import Wavelet2D, l1_objective, l1_wavelet_recon, soft_threshold


@pytest.mark.parametrize("name", ["haar", "db2", "db4"])
def test_coefficients_equal_pywavelets_periodization(name):
    pywt = pytest.importorskip("pywt")
    x = np.random.default_rng(0).standard_normal((32, 48))
    coeffs = Wavelet2D((32, 48), name, levels=2).forward(torch.from_numpy(x)).numpy()
    approx, (h2, v2, d2), (h1, v1, d1) = pywt.wavedec2(x, name, mode="periodization", level=2)
    np.testing.assert_allclose(coeffs[:8, :12], approx, atol=1e-12)
    for block, ref in ((coeffs[8:16, :12], h2), (coeffs[:8, 12:24], v2), (coeffs[8:16, 12:24], d2),
                       (coeffs[16:, :24], h1), (coeffs[:16, 24:], v1), (coeffs[16:, 24:], d1)):
        np.testing.assert_allclose(block, ref, atol=1e-12)


def test_transform_is_orthogonal_on_complex_batches():
    transform = Wavelet2D((64, 40), "db4", levels=5)
    assert transform.levels == 3  # 40 -> 20 -> 10 -> 5: three even levels
    x = torch.randn(3, 64, 40, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    c = transform.forward(x)
    torch.testing.assert_close(transform.adjoint(c), x)
    torch.testing.assert_close(torch.linalg.vector_norm(c), torch.linalg.vector_norm(x))
    y = torch.randn(3, 64, 40, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))
    # <W x, y> = <x, W^H y>
    torch.testing.assert_close(torch.vdot(c.flatten(), y.flatten()), torch.vdot(x.flatten(), transform.adjoint(y).flatten()))


def test_fully_sampled_single_coil_converges_to_the_closed_form():
    """E = I: the minimiser of 1/2 ||x - y||^2 + lam ||Psi x||_1 is Psi^H soft(Psi y, lam) (orthogonal Psi)."""
    image = torch.from_numpy(rd.phantom(32, 32, 0))[None].to(torch.complex128)
    noisy = image + 0.05 * torch.randn(image.shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    op = SenseOp(torch.ones(1, 1, 32, 32, dtype=torch.complex128), None)
    kspace = op(noisy)
    transform = Wavelet2D((32, 32), "haar", levels=5)
    coeffs = transform.forward(noisy)
    expected = transform.adjoint(torch.where(transform.detail, soft_threshold(coeffs, torch.tensor(0.05)), coeffs))
    found = l1_wavelet_recon(op, kspace, 0.05, num_iters=30, wavelet="haar", levels=5, shift=False)
    torch.testing.assert_close(found, expected, atol=1e-6, rtol=1e-6)
    assert float(l1_objective(op, kspace, found, 0.05, transform)) <= float(l1_objective(op, kspace, noisy, 0.05, transform))


def test_undersampled_recon_beats_zero_filled_is_zero_outside_the_maps_and_independent_of_the_batch():
    maps = torch.from_numpy(rd.coil_maps(48, 48, 4))[None].repeat(2, 1, 1, 1)
    maps[1, :, :, :6] = 0  # item 1: no coil covers the first columns
    truth = torch.from_numpy(np.stack([rd.phantom(48, 48, 0), rd.phantom(48, 48, 1)]))
    mask = make_mask("equispaced_fraction", (4, 48, 48), 4, 0.17, seed=1)
    op = SenseOp(maps, mask)
    kspace = op(truth)
    x = l1_wavelet_recon(op, kspace, 0.001, num_iters=60)
    assert torch.count_nonzero(x[1, :, :6]) == 0
    covered = maps.abs().square().sum(1) > 0
    for b in range(2):
        error = torch.linalg.vector_norm((x[b] - truth[b])[covered[b]])
        zero_filled = torch.linalg.vector_norm((op.adjoint(kspace)[b] - truth[b])[covered[b]])
        assert error < 0.8 * zero_filled  # (0.65 on item 0 here)
    alone = l1_wavelet_recon(SenseOp(maps[:1], mask), kspace[:1], 0.001, num_iters=60)
    torch.testing.assert_close(alone, x[:1], atol=1e-4, rtol=1e-4)  # float32 rounding of batched products


def _noisy_problem(acceleration: float, sigma: float, seed: int = 0):
    maps = torch.from_numpy(rd.coil_maps(64, 64, 4))[None]
    truth = torch.from_numpy(rd.phantom(64, 64, 0))[None]
    mask = make_mask("equispaced_fraction", (4, 64, 64), acceleration, 0.08, seed=1)
    op = SenseOp(maps, mask)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.complex(torch.randn(4, 64, 64, generator=generator), torch.randn(4, 64, 64, generator=generator)) / 2**0.5
    return op, op(truth) + sigma * noise[None] * op.mask  # complex noise of E|n|^2 = sigma^2 on the samples


def test_auto_l1_weight_follows_the_noise_and_the_acceleration_rule():
    """lam = noise_weight (R / 4)^p sigma^q with the noise estimated from the data."""
    from ccdf_mri.initializers import L1Wavelet

    rule = L1Wavelet("auto", lam_min=0.0, lam_max=float("inf"))
    q, p = rule.noise_power, rule.acceleration_power
    op4, y4 = _noisy_problem(4, 0.1)  # noise well above the phantom's outer k-space
    lam4 = float(rule.weights(op4, y4)[0])
    fraction = float(op4.mask.float().mean())
    expected = rule.noise_weight * (1 / (4 * fraction)) ** p * 0.1**q
    assert lam4 == pytest.approx(expected, rel=0.2)  # the noise estimate from 64x64 periphery samples
    op4b, y4b = _noisy_problem(4, 0.2)
    assert float(rule.weights(op4b, y4b)[0]) / lam4 == pytest.approx(2.0**q, rel=0.2)  # twice the noise
    op8, y8 = _noisy_problem(8, 0.1)
    ratio = float(rule.weights(op8, y8)[0]) / lam4
    r4, r8 = 1 / fraction, 1 / float(op8.mask.float().mean())
    assert ratio == pytest.approx((r8 / r4) ** p, rel=0.2)
    assert float(L1Wavelet("auto", lam_min=0.003).weights(op4, op4(torch.zeros(1, 64, 64, dtype=torch.complex64)))[0]) == pytest.approx(0.003)
    assert float(L1Wavelet("auto", lam_max=0.004).weights(op8, y8)[0]) == pytest.approx(0.004)  # the rule gives about 0.13 here


def test_auto_l1_start_is_the_fixed_weight_start_it_computes():
    from ccdf_mri.initializers import L1Wavelet

    op, y = _noisy_problem(4, 0.02)
    auto = L1Wavelet("auto", max_iter=20)
    lam = float(auto.weights(op, y)[0])
    torch.testing.assert_close(auto(op, y), L1Wavelet(lam, max_iter=20)(op, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="lam"):
        L1Wavelet("often")


def test_batched_l1_start_equals_item_by_item_with_each_items_own_weight():
    """items_per_call (the whole batch, CUDA's default) gives each slice the x0 it gets alone:
    its own automatic weight, step size and shifts; only rounding differs."""
    from ccdf_mri.initializers import L1Wavelet

    (op_a, y_a), (op_b, y_b) = _noisy_problem(4, 0.1, seed=0), _noisy_problem(4, 0.4, seed=1)
    op = SenseOp(torch.cat([op_a.maps, op_b.maps]), op_a.mask)
    y = torch.cat([y_a, y_b])
    rule = {"lam_min": 0.0, "lam_max": float("inf")}
    weights = L1Wavelet("auto", **rule).weights(op, y)
    assert float(weights[1]) > 4 * float(weights[0])  # the two items need different weights
    together = L1Wavelet("auto", max_iter=30, items_per_call=2, **rule)(op, y)
    alone = L1Wavelet("auto", max_iter=30, items_per_call=1, **rule)(op, y)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="items_per_call"):
        L1Wavelet(items_per_call=0)
