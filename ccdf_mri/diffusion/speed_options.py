"""Speed options of the network evaluation inside the reverse step (issue 11, item 3).

- :func:`resolve_amp_dtype`: autocast dtype from a dtype, its name or ``"auto"``;
- :func:`speed_options`: what ``amp_dtype="auto"`` and ``channels_last=None`` mean for a
  network on a device (measured in ``benchmarks/results/speed_summary.md``);
- :func:`network_input`: complex ``(B, H, W)`` -> ``(B, 2, H, W)``, a channels-last view (no
  copy) or the contiguous NCHW copy.

:func:`ccdf_mri.diffusion.samplers.make_epsilon_fn` applies them.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from ccdf_mri.networks.complex import complex_to_channels

AMP_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
AUTO = "auto"


def resolve_amp_dtype(amp_dtype: Union[torch.dtype, str, None]) -> Union[torch.dtype, str, None]:
    """``None``, a ``torch.dtype``, its name (``"bfloat16"``, ``"bf16"``, ``"float16"``, ``"fp16"``;
    ``"none"`` / ``"float32"`` = None) or ``"auto"`` -> the autocast dtype, None or ``"auto"``."""
    if amp_dtype is None or isinstance(amp_dtype, torch.dtype):
        return amp_dtype
    name = str(amp_dtype).lower().removeprefix("torch.")
    if name == AUTO:
        return AUTO
    if name in ("", "none", "float32", "fp32"):
        return None
    if name not in AMP_DTYPES:
        raise ValueError(f"amp_dtype: expected None, 'auto' or one of {sorted(AMP_DTYPES)}, found {amp_dtype!r}")
    return AMP_DTYPES[name]


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX, as oneDNN reports it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def is_convolutional(network: object) -> bool:
    """A ``torch.nn.Module`` with 2-D convolutions (what the ``"auto"`` speed options apply to)."""
    return isinstance(network, torch.nn.Module) and any(isinstance(m, torch.nn.Conv2d) for m in network.modules())


def speed_options(
    network: object, device: Union[torch.device, str], amp_dtype: Union[torch.dtype, str, None], channels_last: Optional[bool]
) -> tuple[Optional[torch.dtype], bool]:
    """Resolve ``amp_dtype="auto"`` and ``channels_last=None`` for ``network`` on ``device``.

    Measured on the CPU (``benchmarks/results/step_cost.md``): for a convolutional network,
    channels-last is faster and equal to float rounding, and bf16 autocast on a CPU with native
    bf16 about halves the network's time with PSNR within 0.01 dB of float32. So ``"auto"`` is
    bf16 exactly there (convolutional network, CPU with native bf16) and float32 elsewhere (CUDA
    included, until measured there); ``None`` is channels-last for convolutional networks on
    the CPU.
    """
    device_type = torch.device(device).type
    conv = is_convolutional(network)
    amp = resolve_amp_dtype(amp_dtype)
    if amp == AUTO:
        amp = torch.bfloat16 if device_type == "cpu" and conv and native_bf16_cpu() else None
    layout = (device_type == "cpu" and conv) if channels_last is None else bool(channels_last)
    return amp, layout


def network_input(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Complex ``(B, H, W)`` -> real ``(B, 2, H, W)`` for the network.

    ``channels_last=True`` returns the channels-last *view* of ``x`` (``view_as_real`` permuted:
    strides ``(2HW, 1, 2W, 2)``), so no copy is made; otherwise the contiguous NCHW copy of
    :func:`complex_to_channels`. Both hold the same values.
    """
    if not channels_last:
        return complex_to_channels(x)
    if not torch.is_complex(x) or x.ndim != 3:
        raise ValueError(f"expected a complex tensor (B, H, W), found {x.dtype} {tuple(x.shape)}")
    return torch.view_as_real(x).permute(0, 3, 1, 2)
