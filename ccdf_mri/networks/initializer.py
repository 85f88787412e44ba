"""The U-Net initializer: a residual MONAI ``UNet`` on real/imaginary channels.

It maps the intensity-scaled zero-filled SENSE image ``image / scale`` (``(B, 2, H, W)``)
to the intensity-scaled complex target: ``out = x + head(unet(x))``, where ``unet`` ends in
``channels[0]`` features and ``head`` is a 1x1 convolution to 2 channels initialised to
zero, so an untrained network returns its input (the zero-filled image) and training
learns a correction from there. Any ``H, W`` is accepted: the input
is zero-padded up to a multiple of the U-Net's total stride and cropped back.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from monai.networks.nets import UNet


class ResidualUNet(torch.nn.Module):
    """``x + head(unet(x))`` (``head`` a zero-initialised 1x1 convolution), padded to the
    U-Net's stride multiple.

    Args:
        unet: a 2-D network mapping ``(B, 2, H, W) -> (B, F, H, W)`` for ``H, W`` divisible by
            ``multiple``.
        features: ``F``.
        multiple: total down-sampling factor of ``unet``.
    """

    def __init__(self, unet: torch.nn.Module, features: int, multiple: int) -> None:
        super().__init__()
        self.unet = unet
        self.multiple = int(multiple)
        self.head = torch.nn.Conv2d(int(features), 2, kernel_size=1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, H, W)`` real -> ``(B, 2, H, W)`` real."""
        if x.ndim != 4 or x.shape[1] != 2:
            raise ValueError(f"initializer input: expected (B, 2, H, W), found {tuple(x.shape)}")
        height, width = x.shape[-2:]
        pad_h = (-height) % self.multiple
        pad_w = (-width) % self.multiple
        padded = torch.nn.functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        residual = self.head(self.unet(padded))
        return x + residual[..., pad_h // 2 : pad_h // 2 + height, pad_w // 2 : pad_w // 2 + width]


class InitializerUNet(ResidualUNet):
    """The residual U-Net initializer built from its hyper-parameters (a bundle ``_target_``).

    ``x + head(unet(x))`` with ``unet = monai.networks.nets.UNet(spatial_dims=2, in_channels=2,
    out_channels=channels[0], ...)``; see :func:`make_initializer_network` for the arguments.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 1,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        if len(channels) != len(strides) + 1:
            raise ValueError(
                f"initializer: expected len(channels) == len(strides) + 1, found {len(channels)} and {len(strides)}"
            )
        unet = UNet(
            spatial_dims=2,
            in_channels=2,
            out_channels=int(channels[0]),
            channels=tuple(channels),
            strides=tuple(strides),
            num_res_units=num_res_units,
            norm=norm,
            dropout=dropout,
        )
        super().__init__(unet, int(channels[0]), math.prod(int(s) for s in strides))


def make_initializer_network(
    channels: Sequence[int] = (32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 1,
    norm: str = "instance",
    dropout: float = 0.0,
) -> ResidualUNet:
    """The residual U-Net initializer, 2 -> 2 channels.

    Args:
        channels: feature channels per level (``len(strides) + 1`` entries).
        strides: down-sampling stride between consecutive levels.
        num_res_units: residual units per convolution block (0: plain convolutions).
        norm: MONAI normalisation name (``"instance"``, ``"batch"``, ...).
        dropout: dropout probability.

    Returns:
        :class:`ResidualUNet` wrapping ``monai.networks.nets.UNet(spatial_dims=2, in_channels=2,
        out_channels=channels[0], ...)`` and a zero-initialised 1x1 convolution to 2 channels.
    """
    return InitializerUNet(channels, strides, num_res_units, norm, dropout)
