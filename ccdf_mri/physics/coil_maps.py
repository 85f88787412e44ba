"""Coil sensitivity estimation from the fully sampled k-space centre (autocalibration lines).

Both estimators take zero-filled k-space ``(C, H, W)`` or ``(B, C, H, W)`` (complex torch) and
return maps of the same shape, dtype and device. The calibration region is the centred
``calib_width x calib_width`` block (rows from ``H // 2 - calib_width // 2``, same for columns),
which must be fully sampled. ESPIRiT runs in torch (:mod:`ccdf_mri.physics.espirit`) unless
``backend="sigpy"`` is asked for; sigpy is imported only then.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch

from ccdf_mri.physics.checks import check_finite
from ccdf_mri.physics.coils import rss
from ccdf_mri.physics.fft import ifft2c

DeviceLike = Union[None, int, str, torch.device]


def estimate_maps_espirit(
    kspace: torch.Tensor,
    calib_width: Union[int, Sequence[int]] = 24,
    thresh: float = 0.02,
    kernel_width: int = 6,
    crop: float = 0.95,
    device: DeviceLike = None,
    backend: str = "torch",
    num_iters: int = 4,
    phase_ref: Union[int, str, None] = 0,
) -> torch.Tensor:
    """ESPIRiT maps (one set): :func:`ccdf_mri.physics.espirit.espirit_maps` (torch, batched)
    or ``sigpy.mri.app.EspiritCalib`` item by item (``backend="sigpy"``, for parity checks).

    Args:
        kspace: ``(C, H, W)`` or ``(B, C, H, W)`` complex, zero-filled where not sampled.
        calib_width: side of the square calibration block (k-space samples); the torch backend
            also takes ``(rows, cols)``.
        thresh: singular-value threshold of the calibration matrix, relative to the largest.
        kernel_width: side of the k-space kernel.
        crop: eigenvalue threshold at or below which maps are set to zero (background).
        device: where it computes. torch: None (``kspace``'s device) or any torch device.
            sigpy: None/"cpu"/-1 for the CPU, or a CUDA index/device (needs cupy). The result
            is returned on ``kspace``'s device.
        backend: ``"torch"`` (default) or ``"sigpy"`` (imports sigpy).
        num_iters: torch backend: power iterations per pixel (sigpy runs 100 from ones).
        phase_ref: torch backend: coil whose phase is removed (0, as sigpy), ``"acs"`` or None.

    Returns:
        maps with ``kspace``'s shape, dtype and device (phase relative to coil 0 by default).

    Raises:
        ValueError: bad input, or fewer fully sampled centre lines than ``calib_width``.
    """
    if backend == "torch":
        from ccdf_mri.physics.espirit import espirit_maps

        source = kspace if device is None else kspace.to(_torch_device(device))
        maps = espirit_maps(source, calib_width, kernel_width, thresh, crop, num_iters, phase_ref)
        return maps.to(kspace.device)
    if backend != "sigpy":
        raise ValueError(f"backend: expected 'torch' or 'sigpy', found {backend!r}")
    import sigpy
    import sigpy.mri

    batch = _as_batch(kspace, calib_width)
    if not isinstance(calib_width, (int, np.integer)):
        raise ValueError(f"calib_width: the sigpy backend takes one int (a square block), found {calib_width!r}")
    if kernel_width < 1 or kernel_width > calib_width:
        raise ValueError(f"kernel_width: expected 1..calib_width={calib_width}, found {kernel_width}")
    sp_device = _sigpy_device(device)
    maps = []
    for item in batch:
        array = sigpy.to_device(item.detach().cpu().numpy(), sp_device)
        app = sigpy.mri.app.EspiritCalib(
            array,
            calib_width=calib_width,
            thresh=thresh,
            kernel_width=kernel_width,
            crop=crop,
            device=sp_device,
            show_pbar=False,
        )
        maps.append(torch.from_numpy(np.asarray(sigpy.to_device(app.run(), sigpy.cpu_device))))
    result = torch.stack(maps).to(device=kspace.device, dtype=kspace.dtype)
    return result if kspace.ndim == 4 else result[0]


def estimate_maps_acs(kspace: torch.Tensor, calib_width: int = 24) -> torch.Tensor:
    """Fast maps: low-resolution coil images divided by their root-sum-of-squares.

    The k-space is multiplied by a separable ``cos^2`` window centred on the DC sample, zero
    beyond ``(calib_width - 1) // 2`` samples from it in both directions, so only the
    calibration block contributes; the windowed coil images ``I_c`` give ``S_c = I_c / rss(I)``
    (unit root-sum-of-squares; zero where ``rss(I)`` vanishes).

    Args:
        kspace: ``(C, H, W)`` or ``(B, C, H, W)`` complex, zero-filled where not sampled.
        calib_width: side of the calibration block (k-space samples).

    Returns:
        maps with ``kspace``'s shape, dtype and device.

    Raises:
        ValueError: bad input, or fewer fully sampled centre lines than ``calib_width``.
    """
    maps = _acs_maps(_as_batch(kspace, calib_width), calib_width)
    return maps if kspace.ndim == 4 else maps[0]


def _acs_maps(batch: torch.Tensor, calib_width: int) -> torch.Tensor:
    """:func:`estimate_maps_acs` on a validated ``(B, C, H, W)`` batch."""
    height, width = batch.shape[-2:]
    real_dtype = batch.real.dtype
    window = _centred_window(height, calib_width, batch.device, real_dtype)[:, None] * _centred_window(
        width, calib_width, batch.device, real_dtype
    )
    images = ifft2c(batch * window)
    norm = rss(images, dim=1).unsqueeze(1)
    floor = torch.finfo(real_dtype).eps * norm.amax(dim=(-2, -1), keepdim=True)
    return torch.where(norm > floor, images / norm.clamp_min(torch.finfo(real_dtype).tiny), torch.zeros_like(images))


def _centred_window(length: int, calib_width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``cos^2(pi d / (2 (m + 1)))`` for ``|d| <= m = (calib_width - 1) // 2``, d the offset from
    ``length // 2``; zero elsewhere. Symmetric about DC, so it adds no phase to the images."""
    half = (calib_width - 1) // 2
    offset = torch.arange(length, device=device, dtype=dtype) - length // 2
    window = torch.cos(torch.pi * offset / (2 * (half + 1))).square()
    return torch.where(offset.abs() <= half, window, torch.zeros_like(window))


def _calib_shape(calib_width: Union[int, Sequence[int]], height: int, width: int) -> Tuple[int, int]:
    """``(rows, cols)`` of the calibration block from an int (a square) or a pair; validated."""
    if isinstance(calib_width, (int, np.integer)) and not isinstance(calib_width, bool):
        rows = cols = int(calib_width)
        if not 1 <= rows <= min(height, width):
            raise ValueError(f"calib_width: expected 1..min(H, W)={min(height, width)}, found {calib_width}")
        return rows, cols
    pair = tuple(calib_width) if isinstance(calib_width, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"calib_width: expected an int or (rows, cols) ints, found {calib_width!r}")
    rows, cols = int(pair[0]), int(pair[1])
    if not (1 <= rows <= height and 1 <= cols <= width):
        raise ValueError(f"calib_width: expected (1..H={height}, 1..W={width}), found {calib_width!r}")
    return rows, cols


def _as_batch(kspace: torch.Tensor, calib_width: Union[int, Sequence[int]]) -> torch.Tensor:
    """Validate k-space and its calibration block; return it as ``(B, C, H, W)``.

    ``calib_width`` is the side of a centred square block or ``(rows, cols)``; every entry of
    the block must be sampled (non-zero in some coil).
    """
    if not isinstance(kspace, torch.Tensor) or not torch.is_complex(kspace):
        found = kspace.dtype if isinstance(kspace, torch.Tensor) else type(kspace).__name__
        raise ValueError(f"kspace: expected a complex torch tensor (C, H, W) or (B, C, H, W), found {found}")
    if kspace.ndim not in (3, 4):
        raise ValueError(f"kspace: expected (C, H, W) or (B, C, H, W), found shape {tuple(kspace.shape)}")
    check_finite(kspace, "kspace")
    batch = kspace if kspace.ndim == 4 else kspace.unsqueeze(0)
    height, width = batch.shape[-2:]
    calib_rows, calib_cols = _calib_shape(calib_width, height, width)
    row0, col0 = height // 2 - calib_rows // 2, width // 2 - calib_cols // 2
    sampled = (batch[..., row0 : row0 + calib_rows, :] != 0).any(dim=1)  # (B, rows, W)
    rows = sampled.all(dim=1)  # (B, W): column fully sampled over the block's rows
    if not bool(rows[:, col0 : col0 + calib_cols].all()):
        found = min(_centre_run(line, width // 2) for line in rows.cpu())
        raise ValueError(
            f"kspace: coil-map calibration needs calib_width={calib_width} fully sampled centre lines "
            f"(columns {col0}..{col0 + calib_cols - 1} of W={width}, rows {row0}..{row0 + calib_rows - 1} "
            f"of H={height}), found {found}; lower calib_width or sample more centre lines"
        )
    return batch


def _centre_run(line: torch.Tensor, centre: int) -> int:
    """Length of the run of True around index ``centre`` (0 if ``line[centre]`` is False)."""
    if not bool(line[centre]):
        return 0
    left = centre
    while left > 0 and bool(line[left - 1]):
        left -= 1
    right = centre
    while right + 1 < line.numel() and bool(line[right + 1]):
        right += 1
    return right - left + 1


def _torch_device(device: DeviceLike) -> torch.device:
    """torch device from a torch device/string, or an int (-1: CPU, else a CUDA index)."""
    if isinstance(device, int):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    return torch.device(device)


def _sigpy_device(device: DeviceLike):
    """Map None / "cpu" / -1 / CUDA index or torch device to a sigpy Device."""
    import sigpy

    if device is None:
        return sigpy.cpu_device
    if isinstance(device, int):
        index = device
    else:
        torch_device = torch.device(device)
        index = -1 if torch_device.type == "cpu" else (torch_device.index or 0)
        if torch_device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: expected cpu or cuda for sigpy, found {device}")
    if index >= 0 and not sigpy.config.cupy_enabled:
        raise ValueError(f"device: sigpy needs cupy to compute on CUDA device {index}, cupy is not installed")
    return sigpy.Device(index)
