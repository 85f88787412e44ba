"""Initializer training loss: L1 on the complex image, plus optional SSIM on its magnitude."""

from __future__ import annotations

import torch
from monai.losses import SSIMLoss


def channel_magnitude(channels: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` real/imag -> ``(B, 1, H, W)`` magnitude."""
    return torch.sqrt(channels.square().sum(dim=1, keepdim=True) + 1e-12)


class L1SSIMLoss(torch.nn.Module):
    """``mean |pred - target|`` over real/imag channels ``+ ssim_weight * (1 - SSIM(|pred|, |target|))``.

    SSIM uses a 7x7 uniform window (fastMRI's choice) and the batch's target magnitude
    maximum as data range. Both terms are scale-free in the sense that the images are
    already intensity-scaled (``image / scale``).

    Args:
        ssim_weight: weight of the SSIM term; 0 gives plain L1.
    """

    def __init__(self, ssim_weight: float = 0.0) -> None:
        super().__init__()
        if ssim_weight < 0:
            raise ValueError(f"ssim_weight: expected >= 0, found {ssim_weight}")
        self.ssim_weight = float(ssim_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: ``pred``, ``target`` real ``(B, 2, H, W)``. Returns a 0-d loss."""
        loss = torch.nn.functional.l1_loss(pred, target)
        if self.ssim_weight > 0:
            pred_mag, target_mag = channel_magnitude(pred), channel_magnitude(target)
            data_range = float(target_mag.detach().amax().clamp_min(1e-6))
            ssim = SSIMLoss(spatial_dims=2, data_range=data_range, kernel_type="uniform", win_size=7)
            loss = loss + self.ssim_weight * ssim(pred_mag, target_mag)
        return loss
