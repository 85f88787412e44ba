"""Epsilon-prediction training loss sharing the sampler's schedule object."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F

from ccdf_mri.diffusion.schedules import VESchedule, VPSchedule


def epsilon_loss(
    network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: VPSchedule | VESchedule,
    clean: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Mean squared error between the network's epsilon and the noise that was added.

    Draws one uniform training timestep ``t`` per item and standard normal noise ``z``, forms
    ``schedule.add_noise(clean, z, t)`` (VP: ``sqrt(abar_t) clean + sqrt(1 - abar_t) z``;
    VE: ``clean + sigma_t z``) and compares ``network(x_t, t)`` with ``z``.

    Args:
        network: ``network(x (B,2,H,W), t (B,) long) -> eps (B,2,H,W)``.
        schedule: the schedule the sampler will use.
        clean: real ``(B, 2, H, W)`` intensity-scaled images (real/imaginary channels).
        generator: source of ``t`` and ``z`` (on the generator's device, moved to ``clean``'s).

    Returns:
        0-d loss tensor (differentiable w.r.t. the network's parameters).
    """
    if clean.ndim != 4 or clean.shape[1] != 2 or torch.is_complex(clean):
        raise ValueError(f"clean: expected a real (B, 2, H, W) tensor, found {tuple(clean.shape)} {clean.dtype}")
    device = clean.device if generator is None else generator.device
    t = torch.randint(0, schedule.num_train_steps, (clean.shape[0],), generator=generator, device=device)
    noise = torch.randn(clean.shape, generator=generator, device=device, dtype=clean.dtype)
    t, noise = t.to(clean.device), noise.to(clean.device)
    return F.mse_loss(network(schedule.add_noise(clean, noise, t), t), noise)
