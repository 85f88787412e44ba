"""Intensity scaling: the one rule, shared by training and inference.

Each volume (or slice, when a dataset is sliced) is divided by ``scale`` before any
network sees it and multiplied back on output. ``scale`` is the 99th percentile of
the magnitude of the zero-filled SENSE image of that volume, so the scaled image has
most of its mass in ``[0, 1]`` whatever the scanner units. The factor is computed
from the undersampled data only (never the target) and stored with the output.
"""

from __future__ import annotations

import torch

PERCENTILE = 0.99


def intensity_scale(zero_filled: torch.Tensor) -> torch.Tensor:
    """Scale factor of a volume: the 99th percentile of ``|zero_filled|``.

    Args:
        zero_filled: complex image ``(..., H, W)`` (one volume or one slice).

    Returns:
        0-d float tensor, strictly positive (1.0 for an all-zero image).
    """
    magnitude = zero_filled.abs().reshape(-1).float()
    if magnitude.numel() > 2**24:  # torch.quantile's input limit
        magnitude = magnitude[:: magnitude.numel() // 2**24 + 1]
    scale = torch.quantile(magnitude, PERCENTILE)
    return torch.where(scale > 0, scale, torch.ones_like(scale))
