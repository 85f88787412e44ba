"""The one preprocessing path: fastMRI slices -> what the networks and the inferer see.

Training (:mod:`ccdf_mri.engines.batch`), reconstruction (:mod:`ccdf_mri.app`), t0
calibration, the benchmarks, ``ccdf_mri.data_prep.prepare_fastmri`` and the bundle's
``preprocessing`` all run :func:`make_preprocessing`, a MONAI ``Compose`` of the package's
dictionary transforms, on a batch of slices on the device:

1. :class:`~ccdf_mri.transforms.CropReadoutOversamplingd`: remove readout oversampling
   (fastMRI's 640 -> 320 rows) as the header declares;
2. :class:`~ccdf_mri.transforms.UndersampleKspaced`: multiply by the sample's mask (a test
   file's, a training batch's, a detected or user-given one), or make one seeded from the
   file name (fastMRI's validation convention);
3. :class:`~ccdf_mri.transforms.EstimateCoilMapsd`: coil maps from the fully sampled centre
   (calibration width ``min(calib_width, centre block of the mask)``);
4. :class:`~ccdf_mri.transforms.SenseCombined`: zero-filled SENSE image ``E^H y``;
5. :class:`~ccdf_mri.transforms.ScaleIntensityByZeroFilledd`: divide image and k-space by
   the per-slice scale (:func:`ccdf_mri.intensity.intensity_scale`).

Output keys: ``kspace`` (measured, scaled, ``(B, C, H, W)``), ``mask``, ``maps``, ``image``
(scaled zero-filled SENSE image ``(B, H, W)``), ``scale`` ``(B,)``; with
``keep_fully_sampled`` also ``kspace_full`` (the readout-cropped, unscaled fully sampled
k-space that training targets are made from).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
from monai.transforms import Compose, CopyItemsd

from ccdf_mri.physics.masks import MASK_KINDS
from ccdf_mri.transforms.array import MAP_METHODS
from ccdf_mri.transforms.dictionary import (
    CropReadoutOversamplingd,
    EstimateCoilMapsd,
    ScaleIntensityByZeroFilledd,
    SenseCombined,
    UndersampleKspaced,
)

FULL_KEY = "kspace_full"
MAX_CALIB_WIDTH = 24


def check_mask_options(mask: str, acceleration: float, center_fraction: float) -> None:
    """Validate retrospective-mask options (before any work)."""
    if mask not in MASK_KINDS:
        raise ValueError(f"mask: expected one of {MASK_KINDS}, found {mask!r}")
    if not float(acceleration) >= 1:
        raise ValueError(f"acceleration: expected a number >= 1, found {acceleration!r}")
    if not 0 < float(center_fraction) < 1:
        raise ValueError(f"center_fraction: expected a number in (0, 1), found {center_fraction!r}")


def make_preprocessing(
    mask: str = "equispaced_fraction",
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    maps: str = "acs",
    calib_width: int = MAX_CALIB_WIDTH,
    keep_fully_sampled: bool = False,
    **maps_kwargs: Any,
) -> Compose:
    """The preprocessing ``Compose`` (see the module docstring).

    Args:
        mask: retrospective mask kind for samples without a mask.
        acceleration: retrospective acceleration.
        center_fraction: fully sampled centre fraction of the retrospective mask.
        maps: coil-map method, ``"acs"`` or ``"espirit"``.
        calib_width: largest calibration width of the coil maps.
        keep_fully_sampled: also keep the fully sampled k-space under ``kspace_full`` (training).
        maps_kwargs: further ESPIRiT options (``thresh``, ``kernel_width``, ``crop``).
    """
    check_mask_options(mask, acceleration, center_fraction)
    if maps not in MAP_METHODS:
        raise ValueError(f"maps: expected one of {MAP_METHODS}, found {maps!r}")
    steps = [CopyItemsd("kspace", names=FULL_KEY)] if keep_fully_sampled else []
    steps += [
        CropReadoutOversamplingd(("kspace", FULL_KEY), allow_missing_keys=True),
        UndersampleKspaced("kspace", mask, float(acceleration), float(center_fraction)),
        EstimateCoilMapsd("kspace", method=maps, calib_width=int(calib_width), **maps_kwargs),
        SenseCombined("kspace"),
        ScaleIntensityByZeroFilledd(("image", "kspace")),
    ]
    return Compose(steps)


def volume_batch(
    volume: Any,
    indices: Sequence[int],
    mask: Optional[Union[np.ndarray, torch.Tensor]] = None,
    device: Union[str, torch.device, None] = None,
) -> Dict[str, Any]:
    """Slices ``indices`` of an open :class:`ccdf_mri.io.FastMRIVolume` as a preprocessing sample.

    Each slice is read once and moved to ``device``. ``mask`` (``(1, 1, 1, W)`` or
    ``(1, 1, H, W)``) is the volume's mask when it has one (test files, detected or user
    masks); without it the preprocessing makes the retrospective mask from the file name.

    Returns:
        ``{"kspace": (B, C, H, W) complex64, "meta": {"filename", "header", "slice"}}`` (+ ``"mask"``).
    """
    raw = torch.from_numpy(np.stack([volume.kspace_slice(index) for index in indices]))
    if device is not None and torch.device(device).type == "cuda":
        raw = raw.pin_memory().to(device, non_blocking=True)  # the copy overlaps the GPU's work
    else:
        raw = raw.to(device)
    sample: Dict[str, Any] = {
        "kspace": raw,
        "meta": {"filename": volume.path.name, "header": volume.header, "slice": list(indices)},
    }
    if mask is not None:
        sample["mask"] = torch.as_tensor(mask, dtype=torch.float32).to(device)
    return sample
