"""Batched, on-device preparation of training samples: undersample, coil maps, SENSE, scale.

These are the steps inference runs on a measured slice, applied to a batch from
:class:`ccdf_mri.data.datasets.FastMRISliceDataset` (fully sampled k-space + a mask per
item), so that the networks see in training exactly what they see in reconstruction:

1. ``y = M * kspace`` (the per-item mask);
2. coil maps: cached ``maps`` when the batch has them, ones for single coil, else
   estimated from ``y``'s fully sampled centre (``"acs"``: fast, the default for training;
   ``"espirit"``: sigpy ESPIRiT, slow on CPUs), calibration width
   ``min(calib_width, num_low_frequency)`` per item;
3. ``image = E^H y`` (zero-filled SENSE image, ``E = M F S``);
4. ``scale = intensity_scale(image)`` per slice (99th percentile of ``|image|``, see
   :mod:`ccdf_mri.intensity`); networks see ``image / scale`` and ``target / scale``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Union

import torch

from ccdf_mri.intensity import intensity_scale
from ccdf_mri.physics import SenseOp, estimate_maps_acs, estimate_maps_espirit, sense_combine

MAP_METHODS = ("acs", "espirit")
TARGET_SOURCES = ("file", "sense")
MIN_CALIB_WIDTH = 4

Device = Union[str, torch.device, None]


def estimate_batch_maps(
    y: torch.Tensor, num_low_frequency: torch.Tensor, method: str = "acs", calib_width: int = 24
) -> torch.Tensor:
    """Coil maps of each item of an undersampled batch.

    Args:
        y: masked k-space ``(B, C, H, W)`` complex.
        num_low_frequency: ``(B,)`` ints, fully sampled centre columns of each item's mask.
        method: ``"acs"`` or ``"espirit"``.
        calib_width: largest calibration width to use.

    Returns:
        maps ``(B, C, H, W)`` complex (ones when ``C == 1``).

    Raises:
        ValueError: unknown method, or an item with fewer than 4 centre columns.
    """
    if method not in MAP_METHODS:
        raise ValueError(f"map method: expected one of {MAP_METHODS}, found '{method}'")
    if y.shape[1] == 1:
        return torch.ones_like(y)
    maps = []
    for item, low in zip(y, num_low_frequency.tolist()):
        width = min(int(calib_width), int(low))
        if width < MIN_CALIB_WIDTH:
            raise ValueError(
                f"coil maps: expected at least {MIN_CALIB_WIDTH} fully sampled centre columns, found {low}"
            )
        if method == "acs":
            maps.append(estimate_maps_acs(item, calib_width=width))
        else:
            maps.append(estimate_maps_espirit(item, calib_width=width, device=y.device))
    return torch.stack(maps).to(device=y.device, dtype=y.dtype)


def undersample_batch(
    batch: Mapping[str, Any],
    device: Device = None,
    map_method: str = "acs",
    calib_width: int = 24,
    target_source: str = "sense",
    non_blocking: bool = False,
) -> Dict[str, torch.Tensor]:
    """Undersample a collated dataset batch on ``device`` and SENSE-combine it.

    Args:
        batch: collated items of :class:`~ccdf_mri.data.datasets.FastMRISliceDataset`:
            ``kspace`` ``(B, C, H, W)``, ``mask`` broadcastable to it, ``num_low_frequency``
            ``(B,)``; optional ``maps`` ``(B, C, H, W)`` and ``target_complex`` ``(B, H, W)``.
        device: where to compute.
        map_method: ``"acs"`` or ``"espirit"`` when the batch has no cached maps.
        calib_width: largest calibration width for map estimation.
        target_source: ``"sense"``: the target is ``E_full^H kspace`` (fully sampled SENSE
            image with the same maps, so input and target share one phase reference);
            ``"file"``: the stored ``target_complex`` (e.g. the demo corpus' noise-free
            image), falling back to ``"sense"`` when the batch has none.
        non_blocking: passed to ``Tensor.to``.

    Returns:
        dict with ``y`` ``(B, C, H, W)`` measured k-space, ``mask``, ``maps``,
        ``image`` ``(B, H, W)`` zero-filled SENSE image, ``target`` ``(B, H, W)`` complex
        target and ``scale`` ``(B,)`` float32 (all unscaled; divide by ``scale``).
    """
    if target_source not in TARGET_SOURCES:
        raise ValueError(f"target_source: expected one of {TARGET_SOURCES}, found '{target_source}'")
    kspace = batch["kspace"].to(device=device, non_blocking=non_blocking)
    mask = batch["mask"].to(device=device, dtype=torch.float32, non_blocking=non_blocking)
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    y = kspace * mask
    if "maps" in batch:
        maps = batch["maps"].to(device=device, non_blocking=non_blocking)
    else:
        maps = estimate_batch_maps(y, torch.as_tensor(batch["num_low_frequency"]), map_method, calib_width)
    image = SenseOp(maps, mask).adjoint(y)
    scale = torch.stack([intensity_scale(item) for item in image]).to(torch.float32)
    if target_source == "file" and "target_complex" in batch:
        target = batch["target_complex"].to(device=device, non_blocking=non_blocking)
    else:
        target = sense_combine(kspace, maps)
    return {"y": y, "mask": mask, "maps": maps, "image": image, "target": target, "scale": scale}


def scaled(image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``image / scale`` per item: ``(B, H, W)`` complex by ``(B,)`` real."""
    return image / scale.to(image.device).reshape(-1, 1, 1)
