"""Input checks shared by the physics modules: each failure names the argument and expected vs found."""

from __future__ import annotations

import torch


def check_complex(tensor: torch.Tensor, name: str, layout: str) -> None:
    """Raise ValueError unless ``tensor`` is a complex torch tensor with ``len(layout.split(','))`` dims.

    Args:
        tensor: the value to check.
        name: argument name used in the message (e.g. ``"maps"``).
        layout: expected axes, comma separated, e.g. ``"B,C,H,W"``.
    """
    expected_ndim = len(layout.split(","))
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a complex torch.Tensor ({layout}), found {type(tensor).__name__}")
    if not torch.is_complex(tensor):
        raise ValueError(f"{name}: expected a complex tensor ({layout}), found dtype {tensor.dtype}")
    if tensor.ndim != expected_ndim:
        raise ValueError(
            f"{name}: expected {expected_ndim} dims ({layout}), found shape {tuple(tensor.shape)}"
        )


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``tensor`` holds NaN or Inf.

    Fast path: the sum of finite values is finite unless it overflows, so only a non-finite sum
    (NaN/Inf present, or overflow) triggers the exact elementwise check.
    """
    values = torch.view_as_real(tensor) if torch.is_complex(tensor) else tensor
    if bool(torch.isfinite(values.sum())):
        return
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name}: expected finite values, found {bad} NaN/Inf entries in shape {tuple(tensor.shape)}")
