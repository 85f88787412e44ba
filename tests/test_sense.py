"""SENSE operator, coil combination and compression: adjointness, sigpy parity, closed forms, errors."""

import numpy as np
import pytest
import sigpy
import sigpy.mri
import torch

from ccdf_mri.physics import SenseOp, compress_coils, ifft2c, make_mask, rss, sense_combine


def _complex(shape, dtype=torch.complex64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=dtype, generator=gen)


def _rel_gap(a: complex, b: complex) -> float:
    return abs(a - b) / max(abs(a), abs(b))


@pytest.mark.parametrize("dtype, tol", [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
@pytest.mark.parametrize("shape", [(2, 4, 32, 32), (1, 3, 17, 24)])
def test_adjoint_identity_multicoil(dtype, tol, shape):
    batch, coils, height, width = shape
    maps = _complex(shape, dtype, seed=1)
    mask = make_mask("random", shape, 4, 0.1, seed=3)
    op = SenseOp(maps, mask)
    x = _complex((batch, height, width), dtype, seed=2)
    y = _complex(shape, dtype, seed=4) * mask.to(maps.real.dtype)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten()).item()
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten()).item()
    assert _rel_gap(lhs, rhs) < tol


@pytest.mark.parametrize("mask_kind", ["equispaced_fraction", "poisson2d"])
def test_adjoint_identity_single_coil(mask_kind):
    mask = make_mask(mask_kind, (32, 32), 3, 0.1, seed=5)
    op = SenseOp.single_coil(mask, (2, 32, 32))
    assert op.num_coils == 1 and op.is_single_coil and op.image_shape == (2, 32, 32)
    x = _complex((2, 32, 32), seed=6)
    y = _complex((2, 1, 32, 32), seed=7)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten()).item()
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten()).item()
    assert _rel_gap(lhs, rhs) < 1e-5


@pytest.mark.parametrize("shape", [(2, 4, 24, 20), (1, 3, 15, 13)])
@pytest.mark.parametrize("two_d", [False, True])
def test_forward_and_adjoint_match_sigpy_sense(shape, two_d):
    maps = _complex(shape, torch.complex128, seed=8)
    kind = "poisson2d" if two_d else "equispaced_fraction"
    mask = make_mask(kind, shape, 2, 0.2, seed=9)
    op = SenseOp(maps, mask)
    x = _complex((shape[0],) + shape[2:], torch.complex128, seed=10)
    y = _complex(shape, torch.complex128, seed=11)
    forward, adjoint = op.forward(x).numpy(), op.adjoint(y).numpy()
    weights = np.broadcast_to(mask.numpy()[0], shape[1:]).astype(np.float64)
    for item in range(shape[0]):
        sense = sigpy.mri.linop.Sense(maps[item].numpy(), weights=weights)
        np.testing.assert_allclose(forward[item], sense(x[item].numpy()), atol=1e-12)
        np.testing.assert_allclose(adjoint[item], sense.H(y[item].numpy()), atol=1e-12)


def test_fully_sampled_operator_matches_sigpy_and_normal_is_sum_of_squares():
    maps = _complex((1, 3, 12, 10), torch.complex128, seed=12)
    op = SenseOp(maps)
    x = _complex((1, 12, 10), torch.complex128, seed=13)
    sense = sigpy.mri.linop.Sense(maps[0].numpy())
    np.testing.assert_allclose(op.forward(x)[0].numpy(), sense(x[0].numpy()), atol=1e-12)
    expected = (maps.abs() ** 2).sum(1) * x
    assert torch.allclose(op.normal(x), expected, atol=1e-12)


@pytest.mark.parametrize("mask_kind", ["random", "poisson2d"])
def test_normal_equals_adjoint_of_forward(mask_kind):
    maps = _complex((2, 3, 20, 18), seed=14)
    op = SenseOp(maps, make_mask(mask_kind, (20, 18), 2, 0.2, seed=15))
    x = _complex((2, 20, 18), seed=16)
    reference = op.adjoint(op.forward(x))
    assert torch.linalg.vector_norm(op.normal(x) - reference) <= 1e-5 * torch.linalg.vector_norm(reference)


def test_max_eigenvalue_matches_dense_operator_per_item():
    maps = _complex((2, 2, 6, 6), torch.complex128, seed=17)
    maps[1] *= 3.0
    op = SenseOp(maps, make_mask("random", (6, 6), 2, 0.34, seed=18))
    eig = op.max_eigenvalue(num_iters=200)
    assert eig.shape == (2,)
    for item in range(2):
        item_op = SenseOp(maps[item : item + 1], op.mask)
        basis = torch.eye(36, dtype=torch.complex128).reshape(36, 6, 6)
        columns = [item_op.forward(b[None]).flatten() for b in basis]
        matrix = torch.stack(columns, dim=1)
        expected = torch.linalg.matrix_norm(matrix, ord=2) ** 2
        assert abs(eig[item].item() - expected.item()) < 1e-6 * expected.item()
    assert eig[1] > 8 * eig[0]


def test_max_eigenvalue_seeded_generator_is_reproducible():
    op = SenseOp(_complex((1, 2, 8, 8), seed=19), make_mask("random", (8, 8), 2, 0.25, seed=1))
    first = op.max_eigenvalue(10, generator=torch.Generator().manual_seed(3))
    second = op.max_eigenvalue(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_operator_is_differentiable_with_wirtinger_gradient():
    maps = _complex((1, 3, 12, 12), torch.complex128, seed=25)
    op = SenseOp(maps, make_mask("random", (12, 12), 2, 0.25, seed=2))
    x = _complex((1, 12, 12), torch.complex128, seed=26).requires_grad_(True)
    (op.forward(x).abs() ** 2).sum().backward()
    assert torch.allclose(x.grad, 2 * op.normal(x.detach()), atol=1e-12)


def test_default_eigenvalue_start_does_not_depend_on_the_generator_device():
    op = SenseOp(_complex((2, 2, 8, 8), seed=27), make_mask("random", (8, 8), 2, 0.25, seed=1))
    assert torch.equal(op.max_eigenvalue(5), op.max_eigenvalue(5, generator=torch.Generator().manual_seed(0)))


def test_sense_combine_is_unmasked_adjoint():
    maps = _complex((2, 3, 16, 16), seed=20)
    kspace = _complex((2, 3, 16, 16), seed=21)
    expected = (maps.conj() * ifft2c(kspace)).sum(1)
    assert torch.allclose(sense_combine(kspace, maps), expected, atol=1e-5)
    assert torch.allclose(SenseOp(maps).adjoint(kspace), expected, atol=1e-5)


def test_rss_matches_numpy():
    x = _complex((2, 5, 7, 3), seed=22)
    expected = np.sqrt((np.abs(x.numpy()) ** 2).sum(axis=1))
    np.testing.assert_allclose(rss(x).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(rss(x.abs(), dim=1).numpy(), expected, rtol=1e-6)


def test_compress_coils_keeps_top_singular_energy_and_rss():
    kspace = _complex((2, 6, 12, 10), torch.complex128, seed=23)
    kspace[:, 3] = 4 * kspace[:, 0] + 0.01 * kspace[:, 3]  # one dominant direction
    full = compress_coils(kspace, 6)
    assert torch.allclose(rss(ifft2c(full)), rss(ifft2c(kspace)), atol=1e-10)
    compressed = compress_coils(kspace, 2)
    assert compressed.shape == (2, 2, 12, 10)
    for item in range(2):
        singular = np.linalg.svd(kspace[item].reshape(6, -1).numpy(), compute_uv=False)
        energy = (compressed[item].abs() ** 2).sum(dim=(-2, -1)).numpy()
        np.testing.assert_allclose(energy, singular[:2] ** 2, rtol=1e-10)
    with pytest.raises(ValueError, match=r"num_virtual: expected 1\.\.6"):
        compress_coils(kspace, 7)


def test_operator_rejects_bad_input_with_clear_messages():
    maps = _complex((1, 2, 8, 8), seed=24)
    with pytest.raises(ValueError, match=r"maps: expected a complex tensor .* found dtype torch.float32"):
        SenseOp(maps.real)
    with pytest.raises(ValueError, match=r"maps: expected 4 dims \(B,C,H,W\), found shape \(2, 8, 8\)"):
        SenseOp(maps[0])
    bad = maps.clone()
    bad[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"maps: expected finite values, found 1 NaN/Inf"):
        SenseOp(bad)
    with pytest.raises(ValueError, match=r"mask: expected a shape broadcastable to k-space \(1, 2, 8, 8\).*found \(1, 1, 1, 6\)"):
        SenseOp(maps, torch.ones(1, 1, 1, 6))
    with pytest.raises(ValueError, match="mask: expected only 0 and 1"):
        SenseOp(maps, torch.full((1, 1, 1, 8), 0.5))
    op = SenseOp(maps, torch.ones(1, 1, 1, 8))
    with pytest.raises(ValueError, match=r"image: expected shape \(1, 8, 8\) \(B, H, W\), found \(1, 8, 9\)"):
        op.forward(_complex((1, 8, 9)))
    with pytest.raises(ValueError, match=r"kspace: expected shape \(1, 2, 8, 8\) .*found \(1, 3, 8, 8\)"):
        op.adjoint(_complex((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="kspace: expected a complex tensor"):
        op.adjoint(torch.zeros(1, 2, 8, 8))
    infinite = _complex((1, 2, 8, 8))
    infinite[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="kspace: expected finite values"):
        op.adjoint(infinite)
    with pytest.raises(ValueError, match=r"image: expected dtype torch.complex64 .*found torch.complex128"):
        op.forward(_complex((1, 8, 8), torch.complex128))
