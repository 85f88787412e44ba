"""The epsilon (score) network: a MONAI ``DiffusionModelUNet`` on real/imaginary channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two axes of ``x`` up to multiples of ``multiple`` (split evenly).

    Returns:
        ``(padded, (left, right, top, bottom))``; :func:`crop_padding` undoes it.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    return (nn.functional.pad(x, pads) if any(pads) else x), pads


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Remove the padding of :func:`pad_to_multiple` from the last two axes."""
    left, right, top, bottom = pads
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]


class ScoreUNet(DiffusionModelUNet):
    """2-D epsilon predictor ``net(x (B,2,H,W), t (B,) long) -> (B,2,H,W)`` for any ``H, W``.

    A MONAI ``DiffusionModelUNet`` (its state-dict keys unchanged) that zero-pads inputs to a
    multiple of its total stride ``2 ** (len(channels) - 1)`` and crops the output back, so any
    matrix size works (fastMRI brain widths such as 396 included). Without attention (the
    default) it is fully convolutional: MONAI always builds a self-attention block in the
    middle, which is replaced by the identity here, so the prior learnt on patches applies
    unchanged to any image size (and global attention over ``(H/8) x (W/8)`` tokens is avoided).

    For TorchScript export through ``python -m monai.bundle ckpt_export`` (one input tensor),
    ``net(x)`` with ``x`` ``(B, 3, H, W)`` reads the timestep from channel 2 (its value at pixel
    ``(0, 0)``), see the bundle's ``docs/README.md``.

    Args:
        channels: feature channels per resolution level (each divisible by ``norm_num_groups``).
        attention_levels: self-attention per level; ``None`` = none.
        num_res_blocks: residual blocks per level (an int or one per level).
        norm_num_groups: GroupNorm groups.
        num_head_channels: channels per attention head (used only where attention is on).
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64, 128),
        attention_levels: Optional[Sequence[bool]] = None,
        num_res_blocks: Union[int, Sequence[int]] = 1,
        norm_num_groups: int = 8,
        num_head_channels: int = 8,
    ) -> None:
        levels = tuple(attention_levels) if attention_levels is not None else (False,) * len(channels)
        if len(levels) != len(channels):
            raise ValueError(f"attention_levels: expected {len(channels)} entries (one per level), found {len(levels)}")
        if any(c % norm_num_groups for c in channels):
            raise ValueError(f"channels {tuple(channels)} must all be divisible by norm_num_groups={norm_num_groups}")
        super().__init__(
            spatial_dims=2,
            in_channels=2,
            out_channels=2,
            channels=tuple(channels),
            attention_levels=levels,
            num_res_blocks=num_res_blocks if isinstance(num_res_blocks, int) else tuple(num_res_blocks),
            norm_num_groups=norm_num_groups,
            num_head_channels=num_head_channels,
        )
        if not any(levels):
            self.middle_block.attention = nn.Identity()
        self.multiple = 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor, timesteps: Optional[torch.Tensor] = None, *args, **kwargs) -> torch.Tensor:  # type: ignore[override]
        """``(B, 2, H, W), (B,) -> (B, 2, H, W)``; or ``(B, 3, H, W)`` with the timestep in channel 2."""
        if timesteps is None:
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"score network: expected x (B, 2, H, W) and timesteps (B,), or x (B, 3, H, W), found {tuple(x.shape)}")
            timesteps = x[:, 2, 0, 0].round().long()
            x = x[:, :2]
        padded, pads = pad_to_multiple(x, self.multiple)
        return crop_padding(super().forward(padded, timesteps, *args, **kwargs), pads)


def make_score_network(
    channels: Sequence[int] = (16, 32, 64, 128),
    attention_levels: Optional[Sequence[bool]] = None,
    num_res_blocks: Union[int, Sequence[int]] = 1,
    norm_num_groups: int = 8,
    num_head_channels: int = 8,
) -> ScoreUNet:
    """:class:`ScoreUNet` (the factory name training exports record)."""
    return ScoreUNet(channels, attention_levels, num_res_blocks, norm_num_groups, num_head_channels)
