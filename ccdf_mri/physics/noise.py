"""The k-space noise level, estimated from the measured samples themselves.

Far from the k-space centre an MR signal has decayed to little more than the receiver noise,
so the measured samples of the outer k-space (both axes beyond ``outer`` of the half-width)
estimate it robustly: for complex Gaussian noise of variance ``sigma^2`` per sample,
``|n|^2`` is exponential with median ``ln 2 sigma^2``. Signal left in the periphery only
raises the estimate (the safe direction for a stopping rule).
"""

from __future__ import annotations

import math
from typing import Optional

import torch


def estimate_kspace_noise(kspace: torch.Tensor, mask: Optional[torch.Tensor] = None, outer: float = 0.6) -> torch.Tensor:
    """Per-item noise standard deviation ``sigma`` (``E|n|^2 = sigma^2`` per complex sample).

    Args:
        kspace: measured k-space ``(B, C, H, W)`` (zero where not sampled).
        mask: 0/1 mask broadcastable to it (None: the non-zero samples).
        outer: the periphery starts at this fraction of the half-width, on both axes.

    Returns:
        ``(B,)`` float tensor on ``kspace``'s device.
    """
    batch, _, height, width = kspace.shape
    rows = (torch.arange(height, device=kspace.device) - height // 2).abs() >= outer * height / 2
    cols = (torch.arange(width, device=kspace.device) - width // 2).abs() >= outer * width / 2
    region = rows[:, None] & cols[None, :]
    sampled = (kspace != 0) if mask is None else torch.broadcast_to(mask != 0, kspace.shape)
    power = kspace.abs().square()
    sigmas = []
    for b in range(batch):
        values = power[b][sampled[b] & region]
        if values.numel() < 16:  # too few peripheral samples: use every sampled one
            values = power[b][sampled[b]]
        sigmas.append((values.median() / math.log(2.0)).sqrt() if values.numel() else torch.zeros((), device=kspace.device))
    return torch.stack(sigmas).to(power.dtype)
