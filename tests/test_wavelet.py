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
