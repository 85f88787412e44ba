"""Complex <-> real/imaginary channels: the one place networks meet complex images.

Inside the library images are complex tensors ``(B, H, W)``; networks see real
tensors ``(B, 2, H, W)`` with channel 0 the real part and channel 1 the imaginary part.
"""

from __future__ import annotations

import torch


def complex_to_channels(image: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` complex -> ``(B, 2, H, W)`` real (channel 0 real, 1 imaginary)."""
    if not torch.is_complex(image):
        raise ValueError(f"expected a complex tensor (B, H, W), found dtype {image.dtype}")
    if image.ndim != 3:
        raise ValueError(f"expected a complex tensor (B, H, W), found shape {tuple(image.shape)}")
    return torch.view_as_real(image).permute(0, 3, 1, 2).contiguous()


def channels_to_complex(channels: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` real -> ``(B, H, W)`` complex; inverse of :func:`complex_to_channels`."""
    if channels.ndim != 4 or channels.shape[1] != 2:
        raise ValueError(f"expected a real tensor (B, 2, H, W), found shape {tuple(channels.shape)}")
    return torch.view_as_complex(channels.float().permute(0, 2, 3, 1).contiguous())
