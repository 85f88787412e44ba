"""The epsilon (score) network: a MONAI ``DiffusionModelUNet`` on real/imaginary channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from monai.networks.nets import DiffusionModelUNet
from torch import nn


def make_score_network(
    channels: Sequence[int] = (32, 64, 64),
    attention_levels: Optional[Sequence[bool]] = None,
    num_res_blocks: int = 1,
    norm_num_groups: int = 8,
    num_head_channels: int = 8,
) -> DiffusionModelUNet:
    """2-D epsilon predictor ``net(x (B,2,H,W), t (B,) long) -> (B,2,H,W)``.

    Without attention (the default) the network is fully convolutional and small enough to
    train on a CPU; H and W must be divisible by ``2 ** (len(channels) - 1)``. MONAI's
    ``DiffusionModelUNet`` always puts a self-attention block in its middle block; with no
    attention level asked for, that block is replaced by the identity, so the prior learnt
    on patches applies unchanged to any image size (and global attention over the
    ``(H/4) x (W/4)`` tokens of a 256x256 image, most of the CPU time, is avoided).

    Args:
        channels: feature channels per resolution level (each divisible by ``norm_num_groups``).
        attention_levels: self-attention per level; ``None`` = none.
        num_res_blocks: residual blocks per level.
        norm_num_groups: GroupNorm groups.
        num_head_channels: channels per attention head (used only where attention is on).
    """
    levels = tuple(attention_levels) if attention_levels is not None else (False,) * len(channels)
    if len(levels) != len(channels):
        raise ValueError(f"attention_levels: expected {len(channels)} entries (one per level), found {len(levels)}")
    if any(c % norm_num_groups for c in channels):
        raise ValueError(f"channels {tuple(channels)} must all be divisible by norm_num_groups={norm_num_groups}")
    network = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=2,
        out_channels=2,
        channels=tuple(channels),
        attention_levels=levels,
        num_res_blocks=num_res_blocks,
        norm_num_groups=norm_num_groups,
        num_head_channels=num_head_channels,
    )
    if not any(levels):
        network.middle_block.attention = nn.Identity()
    return network
