"""Batched CG and the data-consistency maps: solutions, non-expansiveness, projections, errors."""

import pytest
import sigpy.mri
import torch

from ccdf_mri.physics import (
    GradientDC,
    ProjectionDC,
    ProximalDC,
    SenseOp,
    conjugate_gradient,
    fft2c,
    ifft2c,
    make_mask,
)


def _complex(shape, dtype=torch.complex64, seed=0):
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _norm(x):
    return torch.linalg.vector_norm(x).item()


def _birdcage_op(batch=2, coils=4, size=32, acceleration=3, dtype=torch.complex64, kind="equispaced_fraction"):
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((coils, size, size))).to(dtype)
    maps = maps / torch.linalg.vector_norm(maps, dim=0).max()
    mask = make_mask(kind, (size, size), acceleration, 0.125, seed=1)
    return SenseOp(maps.expand(batch, -1, -1, -1).clone(), mask)


def _spd_system(batch=2, n=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    factor = torch.randn(batch, n, n, dtype=torch.complex128, generator=gen)
    matrix = factor @ factor.mH + 0.5 * torch.eye(n, dtype=torch.complex128)
    rhs = torch.randn(batch, n, dtype=torch.complex128, generator=gen)
    return matrix, rhs


def test_cg_solves_hermitian_system_per_item():
    matrix, rhs = _spd_system()
    solution = conjugate_gradient(lambda v: (matrix @ v.unsqueeze(-1)).squeeze(-1), rhs, num_iters=60, tol=1e-13)
    expected = torch.linalg.solve(matrix, rhs)
    assert torch.allclose(solution, expected, atol=1e-9)


def test_cg_stops_each_item_on_its_own():
    matrix, rhs = _spd_system(batch=3, seed=1)
    rhs[2] = 0
    exact = torch.linalg.solve(matrix, rhs)
    start = torch.zeros_like(rhs)
    start[0] = exact[0]  # item 0 starts converged and must not move
    calls = []

    def apply(v):
        calls.append(1)
        return (matrix @ v.unsqueeze(-1)).squeeze(-1)

    solution = conjugate_gradient(apply, rhs, x0=start, num_iters=60, tol=1e-8)
    assert torch.equal(solution[0], start[0])
    assert torch.allclose(solution[1], exact[1], atol=1e-6)
    assert torch.equal(solution[2], torch.zeros_like(rhs[2]))
    assert len(calls) < 40  # stopped early once item 1 converged
    calls.clear()
    without_check = conjugate_gradient(apply, rhs, x0=start, num_iters=60, tol=1e-8, stop_early=False)
    assert len(calls) == 1 + 60  # the start's residual, then no host check (a GPU's default): every iteration runs ...
    assert torch.equal(without_check, solution)  # ... and stopped items do not move


def test_cg_from_zero_gives_minimum_norm_solution_of_singular_system():
    op = _birdcage_op(batch=1, size=8, dtype=torch.complex128, coils=2, acceleration=2)
    rhs = op.adjoint(op.forward(_complex((1, 8, 8), torch.complex128, seed=2)))
    solution = conjugate_gradient(op.normal, rhs, num_iters=200, tol=1e-14)
    basis = torch.eye(64, dtype=torch.complex128).reshape(64, 1, 8, 8)
    matrix = torch.stack([op.normal(b).flatten() for b in basis], dim=1)
    expected = torch.linalg.pinv(matrix, hermitian=True) @ rhs.flatten()
    assert torch.allclose(solution.flatten(), expected, atol=1e-8)


def _power_norm(apply, shape, dtype, iters=60):
    """Largest ||A v|| / ||v|| seen by power iteration (A self-adjoint here) and on random vectors."""
    vec = _complex(shape, dtype, seed=11)
    largest = 0.0
    for _ in range(iters):
        vec = vec / torch.linalg.vector_norm(vec)
        out = apply(vec)
        largest = max(largest, _norm(out))
        vec = out
    for seed in range(5):
        probe = _complex(shape, dtype, seed=100 + seed)
        largest = max(largest, _norm(apply(probe)) / _norm(probe))
    return largest


@pytest.mark.parametrize(
    "dc",
    [ProjectionDC(), ProximalDC(lam=1.0), ProximalDC(lam=0.05, num_iters=3), ProximalDC(lam="auto"), GradientDC()],
    ids=["projection", "proximal_lam1", "proximal_lam0.05_3iters", "proximal_auto", "gradient"],
)
@pytest.mark.parametrize("kind", ["equispaced_fraction", "poisson2d"])
def test_linear_part_is_non_expansive(dc, kind):
    op = _birdcage_op(batch=2, kind=kind)
    op.maps[1] *= 2.0  # per-item norms differ
    op = SenseOp(op.maps, op.mask)
    norm = _power_norm(lambda v: dc.linear_part(v, op), op.image_shape, torch.complex64)
    assert norm <= 1 + 1e-4
    assert norm > 0.9  # undersampling leaves a null space: the bound is tight, not vacuous


def test_gradient_step_above_limit_is_rejected():
    op = _birdcage_op(batch=1)
    limit = 1 / op.max_eigenvalue().item()
    x = _complex(op.image_shape, seed=3)
    y = op.forward(x)
    with pytest.raises(ValueError, match=r"GradientDC step: expected <= 1/\|\|E\|\|\^2 = .*found"):
        GradientDC(step=1.5 * limit)(x, op, y)
    out = GradientDC(step=0.5 * limit)(x + 1, op, y)
    assert _norm(op.forward(out) - y) < _norm(op.forward(x + 1) - y)


def test_single_coil_projection_is_kspace_replacement():
    mask = make_mask("random", (32, 32), 4, 0.08, seed=4)
    op = SenseOp.single_coil(mask, (2, 32, 32))
    truth = _complex((2, 32, 32), seed=5)
    y = op.forward(truth)
    x_prime = _complex((2, 32, 32), seed=6)
    expected = ifft2c((1 - mask[0]) * fft2c(x_prime) + y[:, 0])
    out = ProjectionDC()(x_prime, op, y)
    assert _norm(out - expected) <= 1e-5 * _norm(expected)
    assert _norm(ProjectionDC().linear_part(x_prime, op) - ifft2c((1 - mask[0]) * fft2c(x_prime))) <= 1e-5 * _norm(x_prime)


@pytest.mark.parametrize("kind", ["equispaced_fraction", "random"])
def test_multicoil_projection_fits_noiseless_data(kind):
    # per-pixel normalised coil maps (as ESPIRiT gives), 8 coils, 2x: CG converges within 50 steps
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((8, 32, 32), r=1.0)).to(torch.complex64)
    maps = maps / torch.linalg.vector_norm(maps, dim=0)
    op = SenseOp(maps.expand(2, -1, -1, -1).clone(), make_mask(kind, (32, 32), 2, 0.125, seed=1))
    truth = _complex(op.image_shape, seed=7)
    y = op.forward(truth)
    dc = ProjectionDC(num_iters=50)
    out = dc(_complex(op.image_shape, seed=8), op, y)
    for item in range(2):
        residual = _norm(op.forward(out)[item] - y[item]) / _norm(y[item])
        assert residual < 1e-3
    # a projection: applying it again changes (almost) nothing
    assert _norm(dc(out, op, y) - out) < 1e-3 * _norm(out)


def test_projection_with_fully_sampled_single_coil_returns_the_measured_image():
    op = SenseOp.single_coil(None, (1, 8, 8))
    truth = _complex((1, 8, 8), seed=9)
    out = ProjectionDC()(_complex((1, 8, 8), seed=10), op, op.forward(truth))
    assert torch.allclose(out, truth, atol=1e-5)


def test_proximal_matches_closed_form():
    op = _birdcage_op(batch=1, size=8, dtype=torch.complex128, coils=2, acceleration=2)
    x_prime = _complex((1, 8, 8), torch.complex128, seed=12)
    y = op.forward(_complex((1, 8, 8), torch.complex128, seed=13)) + 0.1 * _complex(op.kspace_shape, torch.complex128, seed=14) * op.mask
    lam = 0.3
    basis = torch.eye(64, dtype=torch.complex128).reshape(64, 1, 8, 8)
    normal = torch.stack([op.normal(b).flatten() for b in basis], dim=1)
    system = normal + lam * torch.eye(64, dtype=torch.complex128)
    expected = torch.linalg.solve(system, op.adjoint(y).flatten() + lam * x_prime.flatten())
    out = ProximalDC(lam=lam, num_iters=100)(x_prime, op, y)
    assert _norm(out.flatten() - expected) <= 1e-5 * _norm(expected)
    few = ProximalDC(lam=lam, num_iters=2)(x_prime, op, y)
    assert _norm(few.flatten() - expected) < _norm(x_prime.flatten() - expected)


def test_gradient_step_formula_and_affine_split():
    op = _birdcage_op(batch=2)
    x_prime = _complex(op.image_shape, seed=15)
    y = op.forward(_complex(op.image_shape, seed=16))
    dc = GradientDC()
    step = (1 / op.max_eigenvalue()).view(-1, 1, 1)
    expected = x_prime - step * op.adjoint(op.forward(x_prime) - y)
    out = dc(x_prime, op, y)
    assert _norm(out - expected) <= 1e-5 * _norm(expected)
    offset = dc(torch.zeros_like(x_prime), op, y)
    assert _norm(out - offset - dc.linear_part(x_prime, op)) <= 1e-5 * _norm(out)


def test_dc_is_batched_per_item():
    op = _birdcage_op(batch=2, dtype=torch.complex128)
    maps = op.maps.clone()
    maps[1] *= 1.7
    op = SenseOp(maps, op.mask)
    x_prime = _complex(op.image_shape, torch.complex128, seed=17)
    y = op.forward(_complex(op.image_shape, torch.complex128, seed=18))
    # a fixed gradient step: the default one comes from power iteration, whose start vector
    # (and so its last digits) depends on the batch
    inputs = (x_prime.clone(), y.clone())
    for dc in (ProjectionDC(), ProximalDC(), GradientDC(step=0.3)):
        batched = dc(x_prime, op, y)
        assert torch.equal(x_prime, inputs[0]) and torch.equal(y, inputs[1])  # inputs untouched
        for item in range(2):
            single_op = SenseOp(maps[item : item + 1], op.mask)
            single = dc(x_prime[item : item + 1], single_op, y[item : item + 1])
            assert _norm(batched[item] - single[0]) <= 1e-9 * _norm(single)


def test_dc_rejects_bad_arguments():
    op = _birdcage_op(batch=1)
    x = _complex(op.image_shape, seed=19)
    with pytest.raises(ValueError, match=r"y: expected shape \(1, 4, 32, 32\) \(B, C, H, W\), found \(1, 4, 32, 31\)"):
        ProximalDC()(x, op, _complex((1, 4, 32, 31)))
    with pytest.raises(ValueError, match=r"x_prime: expected shape \(1, 32, 32\)"):
        ProjectionDC()(x[:, :16], op, op.forward(x))
    with pytest.raises(ValueError, match=r"ProximalDC lam: expected > 0, found 0"):
        ProximalDC(lam=0)
    with pytest.raises(ValueError, match=r"GradientDC step: expected > 0 or None, found -1"):
        GradientDC(step=-1)


def _noisy_measurements(op, sigma, seed):
    """``y = M (E x + n)``: a band-limited image (no signal in the outer k-space, as in MRI) and
    complex white noise ``E|n|^2 = sigma^2`` per sample."""
    size = op.image_shape[-1]
    band = torch.zeros(size, size)
    band[size // 2 - size // 8 : size // 2 + size // 8, size // 2 - size // 8 : size // 2 + size // 8] = 1
    x = ifft2c(fft2c(_complex(op.image_shape, seed=seed)) * band)
    noise = _complex((op.image_shape[0], op.maps.shape[1], *op.image_shape[1:]), seed=seed + 1) * sigma  # complex randn: E|n|^2 = 1
    return x, op.forward(x) + op.mask * noise


def test_automatic_proximal_weight_is_noise_variance_over_prior_variance():
    """lam = 'auto': per item sigma^2 / prior_std^2 from the measured periphery (MAP weight of the
    Gaussian model), within 20 % of the true noise; noisier data get a larger weight."""
    op = _birdcage_op(batch=2, size=64, acceleration=2)
    sigma = torch.tensor([0.01, 0.04])
    _, y = _noisy_measurements(op, sigma.reshape(2, 1, 1, 1), seed=3)
    dc = ProximalDC(lam="auto", prior_std=0.05)
    weight = dc.weight(op, y).flatten()
    expected = (sigma / 0.05) ** 2
    assert torch.allclose(weight, expected, rtol=0.2), (weight, expected)
    # the map uses it: item by item equal to the fixed-weight map with that item's weight
    x_prime = _complex(op.image_shape, seed=9)
    out = dc(x_prime, op, y)
    for b in range(2):
        single = SenseOp(op.maps[b : b + 1], op.mask)
        fixed = ProximalDC(lam=weight[b].item())(x_prime[b : b + 1], single, y[b : b + 1])
        assert torch.allclose(out[b : b + 1], fixed, atol=1e-5)
    assert ProximalDC(lam="auto").weight(op, None) == ProximalDC(lam="auto").lam_min  # linear part: no data


def test_automatic_proximal_weight_rejects_bad_settings():
    for kwargs in ({"lam": "strong"}, {"lam": -1.0}, {"lam": "auto", "prior_std": 0.0}):
        with pytest.raises(ValueError, match="ProximalDC"):
            ProximalDC(**kwargs)
