"""Schedules: closed forms, VP <-> VE rescaling, strided sub-schedules, the epsilon loss."""

from __future__ import annotations

import math

import pytest
import torch
from gaussian_model import ExactEpsilon, GaussianImageModel

from ccdf_mri.diffusion import VESchedule, VPSchedule, epsilon_loss


def test_vp_linear_closed_form() -> None:
    sched = VPSchedule(1000, 1e-4, 0.02)
    assert sched.betas.dtype == torch.float64 and sched.alphas_cumprod.dtype == torch.float64
    assert sched.betas[0].item() == pytest.approx(1e-4) and sched.betas[-1].item() == pytest.approx(0.02)
    expected = math.prod(1.0 - (1e-4 + (0.02 - 1e-4) * k / 999) for k in range(500))
    assert sched.alphas_cumprod[499].item() == pytest.approx(expected, rel=1e-10)


def test_vp_cosine_matches_squared_cosine() -> None:
    sched = VPSchedule(1000, kind="cosine")
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 250, 700):
        assert sched.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


def test_forward_coefficients_eq5_and_eq10() -> None:
    vp, ve = VPSchedule(), VESchedule(0.01, 50.0, 100)
    t = torch.tensor([0, 10, 999])
    a, b = vp.forward_coefficients(t)
    torch.testing.assert_close(a**2 + b**2, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(a, vp.alphas_cumprod[t].sqrt())
    a, b = ve.forward_coefficients(torch.tensor([0, 99]))
    torch.testing.assert_close(a, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(b, torch.tensor([0.01, 50.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        vp.forward_coefficients(torch.tensor([1000]))


def test_ve_geometric() -> None:
    sched = VESchedule(0.01, 50.0, 100)
    ratios = sched.sigmas[1:] / sched.sigmas[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, (5000.0) ** (1 / 99)))
    torch.testing.assert_close(sched.alphas_cumprod, 1.0 / (1.0 + sched.sigmas**2))


def test_vp_to_ve_rescaling() -> None:
    """x_vp / sqrt(abar) = clean + sigma z: the VP sample rescaled is the VE sample."""
    sched = VPSchedule()
    gen = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)
    t = torch.tensor([5, 300, 990])
    x_vp = sched.add_noise(clean, noise, t)
    sigma = sched.sigmas[t].float().view(-1, 1, 1, 1)
    scale = sched.input_scales[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(x_vp / scale, clean + sigma * noise, rtol=1e-5, atol=1e-5)


def test_sub_schedule_even_spacing() -> None:
    sched = VPSchedule(1000)
    full = sched.sub_schedule(None)
    assert full.num_steps == 1000
    torch.testing.assert_close(full.timesteps[1:], torch.arange(1000))
    sub = sched.sub_schedule(10)
    assert sub.timesteps.tolist() == [-1, 99, 199, 299, 399, 499, 599, 699, 799, 899, 999]
    assert sub.sigmas[0].item() == 0.0 and sub.alphas_cumprod[0].item() == 1.0
    torch.testing.assert_close(sub.sigmas[1:], sched.sigmas[sub.timesteps[1:]])
    torch.testing.assert_close(sub.input_scales[1:], sched.alphas_cumprod[sub.timesteps[1:]].sqrt())
    odd = VPSchedule(1000).sub_schedule(7).timesteps[1:]
    assert bool((odd.diff() > 0).all()) and odd[-1].item() == 999
    assert set(odd.diff().tolist()) <= {142, 143}
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="num_steps"):
            sched.sub_schedule(bad)


def test_start_level_and_forward_coefficients_of_ladder() -> None:
    sub = VPSchedule().sub_schedule(100)
    assert sub.start_level(0.2) == 20 and sub.start_level(0.0) == 0 and sub.start_level(1.0) == 100
    assert sub.start_level(0.013) == 1
    with pytest.raises(ValueError, match="t0"):
        sub.start_level(1.5)
    a, b = sub.forward_coefficients(20)
    abar = VPSchedule().alphas_cumprod[199].item()
    assert (a, b) == pytest.approx((math.sqrt(abar), math.sqrt(1 - abar)))
    ve_sub = VESchedule(0.01, 50.0, 100).sub_schedule(10)
    assert ve_sub.forward_coefficients(10) == pytest.approx((1.0, 50.0))


@pytest.mark.parametrize("schedule", [VPSchedule(), VESchedule(0.01, 20.0, 200)], ids=["vp", "ve"])
def test_epsilon_loss_of_exact_network_matches_closed_form(schedule) -> None:
    """With the exact E[eps|x_t] the loss is the posterior variance of eps, averaged over t."""
    model = GaussianImageModel(size=(4, 4), rank=3, top=5.0)
    gen = torch.Generator().manual_seed(1)
    clean = torch.view_as_real(model.sample(4000, gen)).permute(0, 3, 1, 2).float()
    loss = epsilon_loss(ExactEpsilon(model, schedule), schedule, clean, gen).item()
    # per dimension: Var[eps | x_t] = s / (s + sigma^2); mean over dims and timesteps
    var = schedule.sigmas[:, None] ** 2
    expected = (model.eigenvalues[None, :] / (model.eigenvalues[None, :] + var)).mean().item()
    assert loss == pytest.approx(expected, rel=0.05)
    zero_loss = epsilon_loss(lambda x, t: torch.zeros_like(x), schedule, clean, gen).item()
    assert zero_loss == pytest.approx(1.0, rel=0.02)


def test_epsilon_loss_rejects_complex() -> None:
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        epsilon_loss(lambda x, t: x, VPSchedule(), torch.zeros(1, 4, 4, dtype=torch.complex64))
