"""Training batches through the one preprocessing path (:mod:`ccdf_mri.preprocessing`).

A collated :class:`ccdf_mri.data.datasets.FastMRISliceDataset` batch (fully sampled k-space,
a mask per item, the ISMRMRD header in ``meta``) goes through exactly the ``Compose`` that
reconstruction runs (readout crop, mask, coil maps, SENSE, per-slice scale), on the training
device; the fully sampled k-space is kept alongside for the target. So the networks see in
training what they see in reconstruction (``tests/test_preprocessing.py`` checks it bit for
bit on a fastMRI-geometry file).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Mapping, Union

import torch

from ccdf_mri.physics import sense_combine
from ccdf_mri.preprocessing import FULL_KEY, make_preprocessing
from ccdf_mri.transforms.array import ScaleIntensityByZeroFilled

TARGET_SOURCES = ("file", "sense")

Device = Union[str, torch.device, None]


@lru_cache(maxsize=8)
def _preprocessing(map_method: str, calib_width: int):
    return make_preprocessing(maps=map_method, calib_width=calib_width, keep_fully_sampled=True)


def undersample_batch(
    batch: Mapping[str, Any],
    device: Device = None,
    map_method: str = "acs",
    calib_width: int = 24,
    target_source: str = "sense",
    non_blocking: bool = False,
) -> Dict[str, torch.Tensor]:
    """Prepare a collated dataset batch on ``device`` (the reconstruction's preprocessing) and its target.

    Args:
        batch: collated items of :class:`~ccdf_mri.data.datasets.FastMRISliceDataset`:
            ``kspace`` ``(B, C, H, W)`` fully sampled, ``mask`` ``(B, 1, 1|H, W)``, ``meta``
            (``filename``, ``header``); optional cached ``maps`` and ``target_complex`` ``(B, H, W)``
            (both at the readout-cropped geometry).
        device: where to compute.
        map_method: ``"acs"`` or ``"espirit"`` when the batch has no cached maps.
        calib_width: largest calibration width for map estimation.
        target_source: ``"sense"``: the target is ``E_full^H kspace`` (fully sampled SENSE
            image with the same maps, so input and target share one phase reference);
            ``"file"``: the stored ``target_complex`` (e.g. the demo corpus' noise-free
            image), falling back to ``"sense"`` when the batch has none.
        non_blocking: passed to ``Tensor.to``.

    Returns:
        the preprocessing output (``kspace`` measured and scaled, ``mask``, ``maps``, ``image``
        scaled zero-filled SENSE image ``(B, H, W)``, ``scale`` ``(B,)``) plus ``target``
        ``(B, H, W)`` complex, scaled by the same ``scale``.
    """
    if target_source not in TARGET_SOURCES:
        raise ValueError(f"target_source: expected one of {TARGET_SOURCES}, found '{target_source}'")
    sample: Dict[str, Any] = {
        key: (value.to(device=device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value)
        for key, value in batch.items()
        if key in ("kspace", "mask", "maps", "meta")
    }
    sample["mask"] = sample["mask"].to(torch.float32)
    if sample["mask"].ndim == 3:
        sample["mask"] = sample["mask"].unsqueeze(1)
    out = dict(_preprocessing(map_method, int(calib_width))(sample))
    if target_source == "file" and "target_complex" in batch:
        target = batch["target_complex"].to(device=device, non_blocking=non_blocking)
    else:
        target = sense_combine(out.pop(FULL_KEY), out["maps"])
    out.pop(FULL_KEY, None)
    out["target"] = ScaleIntensityByZeroFilled.divide(target, out["scale"])
    return out
