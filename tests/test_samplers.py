"""Reverse steps and unconditional sampling against a Gaussian model with exact epsilon."""

from __future__ import annotations

import pytest
import torch
from gaussian_model import ExactEpsilon, GaussianImageModel

from ccdf_mri.diffusion import (
    ComplexNoise,
    VESchedule,
    VPSchedule,
    ddim_step,
    ddpm_step,
    item_generators,
    make_epsilon_fn,
    reverse_diffusion,
    sample,
    ve_step,
)

MODEL = GaussianImageModel(size=(8, 8), rank=8, top=10.0, decay=0.7)


@pytest.mark.parametrize(
    ("sampler", "schedule"),
    [("ddpm", VPSchedule()), ("ddim", VPSchedule()), ("ve", VESchedule(0.01, 50.0, 1000))],
    ids=["ddpm", "ddim", "ve"],
)
def test_unconditional_sampling_reproduces_covariance(sampler, schedule) -> None:
    """Samples from N(0, Sigma): trace and top eigenvalues of the sample covariance.

    Tolerances: Monte Carlo (~2 % on the trace, ~5 % per eigenvalue) plus the ~4 %
    under-dispersion that ancestral sampling with 200 strided steps has on this model.
    """
    num = 1000
    x = sample(ExactEpsilon(MODEL, schedule), schedule.sub_schedule(200), (num, 8, 8), sampler,
               generator=torch.Generator().manual_seed(0))
    vectors = MODEL.to_vector(x)
    cov = vectors.T @ vectors / num
    assert torch.trace(cov).item() == pytest.approx(MODEL.eigenvalues.sum().item(), rel=0.1)
    top = torch.linalg.eigvalsh(cov).flip(0)[:4]
    torch.testing.assert_close(top, MODEL.eigenvalues[:4], rtol=0.15, atol=0.0)
    # the small directions stay small (noise was removed, not left at sigma_min scale)
    assert torch.linalg.eigvalsh(cov)[: MODEL.dim - 8].max().item() < 0.01


def test_ddpm_equals_ve_and_ddim_eta1_on_a_vp_ladder() -> None:
    """On VP sigmas the DDPM posterior step, the SMLD ancestral step and DDIM(eta=1) coincide."""
    sub = VPSchedule().sub_schedule(50)
    gen = torch.Generator().manual_seed(0)
    x, eps, noise = (torch.randn(2, 5, 5, 2, generator=gen) for _ in range(3))
    for level in (50, 17, 1):
        sigma, sigma_next = float(sub.sigmas[level]), float(sub.sigmas[level - 1])
        reference = ddpm_step(x, eps, sigma, sigma_next, noise)
        torch.testing.assert_close(ve_step(x, eps, sigma, sigma_next, noise), reference, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ddim_step(x, eps, sigma, sigma_next, noise, 1.0), reference, rtol=1e-4, atol=1e-4)


def test_last_step_returns_the_denoised_estimate() -> None:
    """sigma_next = 0: every sampler returns x - sigma eps (Tweedie's estimate), no noise."""
    gen = torch.Generator().manual_seed(1)
    x, eps, noise = (torch.randn(1, 4, 4, generator=gen) for _ in range(3))
    for step in (ddpm_step, ddim_step, ve_step):
        torch.testing.assert_close(step(x, eps, 0.3, 0.0, noise, 0.5), x - 0.3 * eps, rtol=1e-5, atol=1e-6)


def test_ddim_eta0_is_deterministic_and_stays_on_its_line() -> None:
    gen = torch.Generator().manual_seed(2)
    x, eps = torch.randn(1, 4, 4, generator=gen), torch.randn(1, 4, 4, generator=gen)
    out = ddim_step(x, eps, 2.0, 0.5, None, 0.0)
    torch.testing.assert_close(out, (x - 2.0 * eps) + 0.5 * eps)


def test_make_epsilon_fn_scales_to_network_coordinates() -> None:
    sched = VPSchedule()
    sub = sched.sub_schedule(10)
    seen = {}

    def network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen["x"], seen["t"] = x, t
        return torch.ones_like(x)

    image = torch.full((3, 4, 4), 2.0 + 1.0j, dtype=torch.complex64)
    eps = make_epsilon_fn(network, sub)(image, 4)
    scale = sched.alphas_cumprod[399].sqrt().item()
    assert seen["t"].tolist() == [399, 399, 399] and seen["t"].dtype == torch.long
    torch.testing.assert_close(seen["x"][:, 0], torch.full((3, 4, 4), 2.0 * scale))
    torch.testing.assert_close(seen["x"][:, 1], torch.full((3, 4, 4), 1.0 * scale))
    assert eps.dtype == torch.complex64 and torch.allclose(eps, torch.full_like(eps, 1 + 1j))


def test_complex_noise_is_per_item_and_standard() -> None:
    gens = [torch.Generator().manual_seed(s) for s in (10, 11)]
    batch = ComplexNoise(gens, 2, (3, 64, 64), torch.device("cpu"))()
    single = ComplexNoise([torch.Generator().manual_seed(11)], 1, (3, 64, 64), torch.device("cpu"))()
    assert batch.shape == (6, 64, 64) and batch.dtype == torch.complex64
    torch.testing.assert_close(batch[3:], single)
    assert batch.real.var().item() == pytest.approx(1.0, abs=0.05)
    assert batch.imag.var().item() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="expected 2 generators"):
        item_generators(gens[:1], 2)


def test_reverse_diffusion_counts_evaluations_with_corrector() -> None:
    sched = VESchedule(0.01, 50.0, 100)
    sub = sched.sub_schedule(20)
    net = ExactEpsilon(MODEL, sched)
    noise = ComplexNoise(None, 2, (1, 8, 8), torch.device("cpu"))
    x = float(sub.sigmas[7]) * noise()
    _, nfe = reverse_diffusion(x, 7, sub, make_epsilon_fn(net, sub), noise, "ve", corrector_steps=2)
    assert nfe == 21 and net.calls == 21
    with pytest.raises(ValueError, match="sampler"):
        reverse_diffusion(x, 7, sub, make_epsilon_fn(net, sub), noise, "euler")


def test_langevin_corrector_keeps_the_marginal() -> None:
    """Predictor-corrector VE sampling with exact scores still reproduces the covariance."""
    sched = VESchedule(0.01, 50.0, 1000)
    x = sample(ExactEpsilon(MODEL, sched), sched.sub_schedule(100), (1000, 8, 8), "ve",
               generator=torch.Generator().manual_seed(3), corrector_steps=1)
    vectors = MODEL.to_vector(x)
    cov = vectors.T @ vectors / vectors.shape[0]
    assert torch.trace(cov).item() == pytest.approx(MODEL.eigenvalues.sum().item(), rel=0.08)
