"""CCDF theory: Lemma 1 by Monte Carlo, eq. 18 against the samplers, eq. 17, t0 selection."""

from __future__ import annotations

import pytest
import torch
from gaussian_model import ExactEpsilon, GaussianImageModel

from ccdf_mri.diffusion import VESchedule, VPSchedule, ddim_step, ddpm_step, ve_step
from ccdf_mri.diffusion.theory import (
    calibrate_t0,
    contraction_rate,
    contraction_rates,
    error_bound,
    forward_jump_distance,
    select_t0,
)
from ccdf_mri.inferers import CCDFInferer
from ccdf_mri.physics import SenseOp


def test_lemma1_by_monte_carlo_through_the_inferer() -> None:
    """Forward-jump x0 and the truth with independent noise (the inferer's own jump, read from
    the network's first input in VP coordinates): mean distance = a^2 eps0 + 2 b^2 n."""
    size, batch = (8, 8), 2000
    model = GaussianImageModel(size=size, rank=2)
    schedule = VPSchedule()
    gen = torch.Generator().manual_seed(0)
    truth = model.sample(1, gen)
    x0 = truth + 1.0  # eps0 = 64, comparable to 2 b^2 n, so both terms of eq. 16 are tested
    op = SenseOp.single_coil(None, (batch, *size))
    jumped = []
    for start in (x0, truth):
        net = ExactEpsilon(model, schedule, record=True)
        inputs = start.expand(batch, *size).contiguous()
        CCDFInferer(schedule, "ddim", t0=0.1, num_steps=10)(inputs, net, op, op(inputs), generator=gen)
        jumped.append(net.inputs[0][0].double())
    distances = (jumped[0] - jumped[1]).pow(2).sum(dim=(1, 2, 3))
    a, b = schedule.sub_schedule(10).forward_coefficients(1)
    eps0 = (x0 - truth).abs().pow(2).sum().item()
    expected = forward_jump_distance(a, b, eps0, 2 * size[0] * size[1])
    # distances are a^2 eps0 + b^2 * chi-square with 2n degrees of freedom (x2): std known
    stderr = (2 * b**2) * (2 * 2 * 64) ** 0.5 / batch**0.5 + 4 * a * b * eps0**0.5 / batch**0.5
    assert abs(distances.mean().item() - expected) < 4 * stderr


def _x_coefficient(step, sigma: float, sigma_next: float, vp: bool) -> float:
    """d x_next / d x of a step with the denoised estimate held fixed (noise off)."""
    x0_hat = torch.tensor([0.7], dtype=torch.float64)

    def apply(x_ve: torch.Tensor) -> torch.Tensor:
        eps = (x_ve - x0_hat) / sigma  # the epsilon that makes x - sigma eps = x0_hat
        return step(x_ve, eps, sigma, sigma_next, torch.zeros_like(x_ve), 0.0)

    x = torch.tensor([1.3], dtype=torch.float64)
    slope_ve = ((apply(x + 1.0) - apply(x)) / 1.0).item()
    if not vp:
        return slope_ve
    # VP coordinates: x_vp = x_ve sqrt(abar); slope_vp = slope_ve sqrt(abar_next / abar)
    return slope_ve * ((1 + sigma**2) / (1 + sigma_next**2)) ** 0.5


@pytest.mark.parametrize(
    ("sampler", "step", "vp"), [("ddpm", ddpm_step, True), ("ve", ve_step, False), ("ddim", ddim_step, False)]
)
def test_eq18_rates_are_the_samplers_contraction(sampler, step, vp) -> None:
    sub = VPSchedule().sub_schedule(50)
    rates = contraction_rates(sub, sampler)
    for level in (2, 10, 50):
        sigma, sigma_next = float(sub.sigmas[level]), float(sub.sigmas[level - 1])
        assert rates[level].item() == pytest.approx(_x_coefficient(step, sigma, sigma_next, vp), rel=1e-6)
    assert bool((rates[1:] < 1).all()) and rates[1].item() == 0.0


def test_contraction_rate_is_max_over_levels() -> None:
    sub = VESchedule(0.01, 50.0, 100).sub_schedule(100)
    rates = contraction_rates(sub, "ve")
    # geometric sigmas: constant ratio after the first level
    assert contraction_rate(sub, "ve", 30) == pytest.approx((0.01 / 50.0) ** (2 / 99))
    assert contraction_rate(sub, "ddim", 30) == pytest.approx((0.01 / 50.0) ** (1 / 99))
    assert contraction_rate(sub, "ve", 30) == pytest.approx(rates[1:31].max().item())
    with pytest.raises(ValueError, match="start"):
        contraction_rate(sub, "ve", 0)


def test_error_bound_eq17() -> None:
    assert error_bound(0.5, 3, 10.0, noise_constant=0.2, tau=0.5) == pytest.approx(2 * 0.2 * 0.5 / 0.75 + 0.5**6 * 10)
    with pytest.raises(ValueError, match="contraction rate"):
        error_bound(1.0, 3, 10.0)


def test_select_t0_is_the_smallest_meeting_the_target() -> None:
    sub = VESchedule(0.01, 50.0, 1000).sub_schedule(100)
    n, eps0, target = 128, 20.0, 0.5
    t0 = select_t0(eps0, sub, "ve", n, target=target)
    start = round(t0 * sub.num_steps)
    rate = contraction_rate(sub, "ve", sub.num_steps)

    def ratio(k: int) -> float:
        a, b = sub.forward_coefficients(k)
        return error_bound(rate, k, forward_jump_distance(a, b, eps0, n)) / eps0

    assert ratio(start) <= target < ratio(start - 1)
    with pytest.raises(ValueError, match="no t0 reaches"):
        select_t0(eps0, sub, "ve", n, target=0.5, noise_constant=10.0)


def test_calibrate_t0_picks_the_best_and_the_cheapest_near_best() -> None:
    curve = {0.05: 0.30, 0.1: 0.21, 0.2: 0.20, 0.4: 0.25}
    best, errors = calibrate_t0(curve.__getitem__, curve)
    assert best == 0.2 and errors == curve
    assert calibrate_t0(curve.__getitem__, curve, tolerance=0.06)[0] == 0.1
    with pytest.raises(ValueError, match="candidate"):
        calibrate_t0(curve.__getitem__, [])
