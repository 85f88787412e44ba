"""One full pass over a fastMRI volume before reconstructing it.

A reconstruction reads a volume a batch of slices at a time; a NaN in a late slice, a
misspelled ``--target-key`` or a target of the wrong shape would otherwise be found only
after the earlier slices were reconstructed. :func:`scan_volume` (also
:meth:`FastMRIVolume.scan`) reads every slice once, checks it, and on the way finds the
k-space columns that hold data, so already-undersampled data are recognised
(:class:`ccdf_mri.physics.masks.SampledColumns`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ccdf_mri.io.fastmri import KSPACE_KEY, FastMRIVolume


@dataclass(frozen=True)
class VolumeScan:
    """What one full read of a volume found (:func:`scan_volume`).

    Attributes:
        path: the file.
        kspace_shape: ``(S, C, H, W)``.
        sampled: boolean ``(W,)``, the k-space columns holding any non-zero value.
        detected_mask: float32 ``(1, 1, 1, W)`` mask of the sampled columns when the
            k-space is already undersampled (zero columns between sampled ones, see
            :meth:`ccdf_mri.physics.masks.SampledColumns.mask`), else None (fully sampled).
        target_key: the target dataset checked (the one asked for, else the file's
            fastMRI target), or None when there is none.
        image_shape: ``(S, h, w)`` of the reconstruction (:attr:`FastMRIVolume.image_shape`).
    """

    path: Path
    kspace_shape: Tuple[int, int, int, int]
    sampled: np.ndarray
    detected_mask: Optional[torch.Tensor]
    target_key: Optional[str]
    image_shape: Tuple[int, int, int]

    @property
    def is_undersampled(self) -> bool:
        """True when the k-space itself is undersampled (:attr:`detected_mask` is not None)."""
        return self.detected_mask is not None

    @property
    def detected_acceleration(self) -> Optional[float]:
        """``W / sampled columns`` of the detected mask, or None for fully sampled data."""
        if self.detected_mask is None:
            return None
        return float(self.sampled.size / self.sampled.sum())


def scan_volume(volume: FastMRIVolume, target_key: Optional[str] = None, check_target_shape: bool = True) -> VolumeScan:
    """Read every slice of ``volume`` once and check the whole volume.

    Checks, each error naming the file, key and slice: every k-space slice is readable,
    finite and not all zero; the target ``target_key`` (default: the file's fastMRI
    target, if any) exists, is ``(S, h, w)`` with finite values and, with
    ``check_target_shape``, has the reconstruction's shape ``volume.image_shape``.

    Args:
        volume: the open volume.
        target_key: the dataset the reconstruction will be scored against (a
            ``--target-key``); None = ``volume.target_key``.
        check_target_shape: require the target to have the reconstruction's shape.

    Returns:
        the :class:`VolumeScan`.

    Raises:
        ValueError: the first problem found.
    """
    from ccdf_mri.physics.masks import SampledColumns

    columns = SampledColumns()
    for index in range(volume.num_slices):
        data = volume.kspace_slice(index)  # raises on unreadable or non-finite slices
        if not data.any():
            raise volume._error(KSPACE_KEY, f"expected k-space data, found slice {index} all zero")
        columns.update(data)
    detected = columns.mask(volume.header.padding_columns(volume.kspace_shape[-1]))
    key = _check_target(volume, target_key or volume.target_key, check_target_shape)
    return VolumeScan(volume.path, volume.kspace_shape, columns.sampled, detected, key, volume.image_shape)


def _check_target(volume: FastMRIVolume, key: Optional[str], check_shape: bool) -> Optional[str]:
    if key is None:
        return None
    target = volume._dataset(key)  # raises naming the keys found when absent
    expected = volume.image_shape if check_shape else (volume.num_slices, "h", "w")
    if target.ndim != 3 or target.shape[0] != volume.num_slices or (check_shape and target.shape != expected):
        raise volume._error(key, f"expected a target of the reconstruction's shape {expected}, found shape {target.shape}")
    if target.dtype.kind not in "biufc":
        raise volume._error(key, f"expected a numeric image, found dtype {target.dtype}")
    for index in range(volume.num_slices):
        try:
            values = np.asarray(target[index])
        except OSError as error:
            raise volume._error(key, f"slice {index} cannot be read ({error})") from None
        if not np.isfinite(values).all():
            bad = int(values.size - np.isfinite(values).sum())
            raise volume._error(key, f"expected finite values, found {bad} NaN/Inf in slice {index}")
    return key
