"""The postprocessing ``Compose``: scaled complex reconstruction -> magnitude volume on disk.

A volume sample holds ``pred`` (complex ``(S, H, W)``, intensity-scaled), ``std``
(real ``(S, H, W)`` or None), ``scale`` ``(S,)`` and ``meta`` (``name``, ``header``, ``info``,
``record``). :func:`make_postprocessing` chains:

1. :class:`UnscaleIntensityd`: multiply ``pred`` and ``std`` by the slice scales (the
   inverse of :class:`ccdf_mri.transforms.ScaleIntensityByZeroFilledd`);
2. :class:`Magnituded`: ``|pred|``;
3. :class:`CropToReconMatrixd`: centre crop to the header's recon matrix (fastMRI's
   320 x 320 from 320 x 368, ...), float32 numpy;
4. :class:`SaveVolumed`: :meth:`ccdf_mri.app.writer.VolumeWriter.write` (NIfTI, submission
   h5, DICOM, std map, provenance record), when a writer is given.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, Mapping, Optional, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform

from ccdf_mri.transforms.array import ScaleIntensityByZeroFilled


def center_crop(images: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Centre-crop the last two axes of ``images`` to ``shape`` (axes already smaller stay)."""
    rows, cols = images.shape[-2:]
    out_rows, out_cols = min(int(shape[0]), rows), min(int(shape[1]), cols)
    top, left = (rows - out_rows) // 2, (cols - out_cols) // 2
    return images[..., top : top + out_rows, left : left + out_cols]


class UnscaleIntensityd(MapTransform):
    """Multiply ``keys`` by ``d[scale_key]`` (one scale per slice), undoing the preprocessing's scaling."""

    def __init__(self, keys: KeysCollection = ("pred", "std"), scale_key: str = "scale", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scale_key = scale_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key] is not None:
                d[key] = ScaleIntensityByZeroFilled.inverse(d[key], d[self.scale_key])
        return d


class Magnituded(MapTransform):
    """``|x|`` of complex ``keys`` (real ones pass unchanged)."""

    def __init__(self, keys: KeysCollection = "pred", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = torch.as_tensor(d[key])
            d[key] = value.abs() if torch.is_complex(value) else value
        return d


class CropToReconMatrixd(MapTransform):
    """Centre-crop ``keys`` to ``meta["header"].recon_matrix`` and return float32 numpy arrays."""

    def __init__(self, keys: KeysCollection = ("pred", "std"), meta_key: str = "meta", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.meta_key = meta_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        header = d[self.meta_key].get("header")
        for key in self.key_iterator(d):
            if d[key] is None:
                continue
            value = torch.as_tensor(d[key])
            if header is not None:
                value = center_crop(value, header.recon_matrix[:2])
            d[key] = value.detach().float().cpu().numpy()
        return d


class SaveVolumed(MapTransform):
    """Write ``image_key`` (and ``std_key``) with a :class:`ccdf_mri.app.writer.VolumeWriter`.

    ``meta`` supplies ``name``, ``header``, ``info`` and ``record``; the written paths are
    stored under ``outputs_key``.
    """

    def __init__(
        self,
        writer: Any,
        image_key: str = "pred",
        std_key: str = "std",
        meta_key: str = "meta",
        outputs_key: str = "outputs",
        description: str = "CCDF reconstruction",
    ) -> None:
        super().__init__(image_key)
        self.writer = writer
        self.image_key, self.std_key, self.meta_key, self.outputs_key = image_key, std_key, meta_key, outputs_key
        self.description = description

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        meta = d[self.meta_key]
        d[self.outputs_key] = self.writer.write(
            meta["name"], d[self.image_key], meta.get("header"), d.get(self.std_key), meta.get("info"),
            meta.get("record"), self.description,
        )
        return d


def make_postprocessing(writer: Optional[Any] = None) -> Compose:
    """The postprocessing ``Compose`` (see the module docstring); without ``writer``, nothing is written."""
    steps: list = [UnscaleIntensityd(), Magnituded(), CropToReconMatrixd()]
    if writer is not None:
        steps.append(SaveVolumed(writer))
    return Compose(steps)


def as_volume(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-batch arrays ``(B, h, w)`` into ``(S, h, w)`` float32."""
    return np.concatenate(list(images)).astype(np.float32, copy=False)
