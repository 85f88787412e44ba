"""Dictionary transforms (MONAI ``MapTransform``, suffix ``d``) on one k-space slice.

Keys of a sample (defaults; every transform lets you rename them):

- ``"kspace"``: complex ``(C, H, W)`` (C = 1 for single coil);
- ``"mask"``: float32 broadcastable to k-space (``(1, 1, W)`` for 1-D masks); present
  in test-set samples, added by :class:`UndersampleKspaced` otherwise;
- ``"maps"``: complex coil sensitivities ``(C, H, W)``;
- ``"image"``: complex zero-filled SENSE image ``(H, W)``;
- ``"target"``: magnitude ``(h, w)`` (untouched here);
- ``"scale"``: 0-d float tensor of :class:`ScaleIntensityByZeroFilledd`;
- ``"meta"``: dict with ``"filename"`` (seeds retrospective masks as fastMRI's validation
  does), ``"header"`` (a :class:`ccdf_mri.io.FastMRIHeader` or its ISMRMRD XML: readout
  crop, k-space padding) and ``"slice"``; :meth:`ccdf_mri.io.FastMRIVolume.sample` builds
  such samples (header as XML, so a ``DataLoader`` can collate them).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Hashable, Mapping, Optional, Union

import torch
from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform

from ccdf_mri.io.header import FastMRIHeader, parse_ismrmrd_header
from ccdf_mri.physics import mask_seed_from_name
from ccdf_mri.transforms.array import (
    EstimateCoilMaps,
    ScaleIntensityByZeroFilled,
    SenseCombine,
    UndersampleKspace,
    as_complex_tensor,
    crop_readout,
)


@lru_cache(maxsize=64)
def _parse(xml: Union[str, bytes]) -> FastMRIHeader:
    return parse_ismrmrd_header(xml)


def _header(data: Mapping[Hashable, Any], meta_key: str) -> Optional[FastMRIHeader]:
    """``meta["header"]`` as a :class:`FastMRIHeader` (given as one, or as ISMRMRD XML), or None."""
    meta = data.get(meta_key)
    header = meta.get("header") if isinstance(meta, Mapping) else None
    return _parse(header) if isinstance(header, (str, bytes)) else header


class CropReadoutOversamplingd(MapTransform):
    """Remove readout oversampling from k-space keys (hybrid-space centre crop of the rows).

    Args:
        keys: k-space keys (``(C, H, W)``); never coil maps or images.
        num_rows: rows to keep; None reads ``meta["header"]`` and crops to the recon
            matrix x only when the k-space has the encoded rows and the recon x is smaller
            (fastMRI 640 -> 320); without such a header nothing changes.
        meta_key: key of the metadata dict.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "kspace",
        num_rows: Optional[int] = None,
        meta_key: str = "meta",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_rows = num_rows
        self.meta_key = meta_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        header = _header(d, self.meta_key)
        for key in self.key_iterator(d):
            kspace = as_complex_tensor(d[key], str(key))
            rows = self.num_rows
            if rows is None and header is not None:
                rows = header.readout_crop_rows(kspace.shape[-2])
            d[key] = kspace if rows is None else crop_readout(kspace, rows)
        return d


class UndersampleKspaced(MapTransform):
    """Undersample k-space keys with one mask per sample, stored under ``mask_key``.

    A mask already in the sample (test-set files) is used as is. Otherwise the mask is
    made with ``seed`` when given, else seeded from ``meta["filename"]`` with
    :func:`ccdf_mri.physics.mask_seed_from_name` (fastMRI's validation convention: one file,
    always the same mask); columns outside the header's acquired limits stay zero.

    Args:
        keys: k-space keys ``(C, H, W)`` to multiply by the mask.
        kind, acceleration, center_fraction: see :func:`ccdf_mri.physics.make_mask`.
        mask_key: where the mask is read from / written to.
        meta_key: key of the metadata dict.
        seed: fixed seed for every sample (None: from the file name).
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: no mask, no ``seed`` and no ``meta["filename"]`` to seed from.
    """

    def __init__(
        self,
        keys: KeysCollection = "kspace",
        kind: str = "equispaced_fraction",
        acceleration: float = 4,
        center_fraction: float = 0.08,
        mask_key: str = "mask",
        meta_key: str = "meta",
        seed: Any = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.undersample = UndersampleKspace(kind, acceleration, center_fraction)
        self.mask_key = mask_key
        self.meta_key = meta_key
        self.seed = seed

    def _seed(self, d: Mapping[Hashable, Any]) -> Any:
        if self.seed is not None:
            return self.seed
        meta = d.get(self.meta_key)
        if not isinstance(meta, Mapping) or not meta.get("filename"):
            raise ValueError(
                f"key '{self.meta_key}': expected a dict with 'filename' to seed the mask "
                f"(or a '{self.mask_key}' in the sample, or seed=...), found {type(meta).__name__}"
            )
        return mask_seed_from_name(str(meta["filename"]))

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        mask = d.get(self.mask_key)
        for key in self.key_iterator(d):
            kspace = as_complex_tensor(d[key], str(key))
            if mask is None:
                header = _header(d, self.meta_key)
                padding = header.padding_columns(kspace.shape[-1]) if header is not None else None
                mask = self.undersample.make(kspace, seed=self._seed(d), padding=padding)
            d[key], mask = self.undersample(kspace, mask=mask)
        if mask is not None:
            d[self.mask_key] = mask
        return d


class EstimateCoilMapsd(MapTransform):
    """Estimate coil maps from the k-space key and store them under ``maps_key``.

    Args:
        keys: the (undersampled) k-space key ``(C, H, W)``.
        maps_key: output key, complex ``(C, H, W)``.
        method, calib_width, kwargs: see :class:`ccdf_mri.transforms.EstimateCoilMaps`.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "kspace",
        maps_key: str = "maps",
        method: str = "espirit",
        calib_width: int = 24,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.estimate = EstimateCoilMaps(method, calib_width, **kwargs)
        self.maps_key = maps_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.maps_key] = self.estimate(d[key])
        return d


class SenseCombined(MapTransform):
    """Zero-filled SENSE image of the k-space key with ``maps_key``, stored as ``image_key`` ``(H, W)``."""

    def __init__(
        self,
        keys: KeysCollection = "kspace",
        maps_key: str = "maps",
        image_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.combine = SenseCombine()
        self.maps_key = maps_key
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.maps_key not in d:
                raise ValueError(f"key '{self.maps_key}': expected coil maps in the sample, found keys {sorted(map(str, d))}")
            d[self.image_key] = self.combine(d[key], d[self.maps_key])
        return d


class ScaleIntensityByZeroFilledd(MapTransform, InvertibleTransform):
    """Divide ``keys`` by the scale of the zero-filled image; store it under ``scale_key``.

    ``scale = intensity_scale(d[image_key])`` (99th percentile of the magnitude); every key
    in ``keys`` (default image and k-space) is divided by it. :meth:`inverse` multiplies
    them back using the stored scale, so it also works inside ``Compose.inverse``.

    Args:
        keys: keys to scale.
        image_key: the zero-filled image the scale is computed from.
        scale_key: where the 0-d scale tensor is stored.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "kspace"),
        image_key: str = "image",
        scale_key: str = "scale",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.scaler = ScaleIntensityByZeroFilled()
        self.image_key = image_key
        self.scale_key = scale_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        if self.image_key not in d:
            raise ValueError(f"key '{self.image_key}': expected the zero-filled image, found keys {sorted(map(str, d))}")
        _, scale = self.scaler(d[self.image_key])
        for key in self.key_iterator(d):
            d[key], _ = self.scaler(d[key], scale)
        d[self.scale_key] = scale
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        """Multiply ``keys`` by ``data[scale_key]`` (0-d, or ``(B,)`` for a collated batch)."""
        d = dict(data)
        scale = torch.as_tensor(d[self.scale_key])
        for key in self.key_iterator(d):
            value = torch.as_tensor(d[key])
            d[key] = value * scale.to(value.device).reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
        return d


__all__ = [
    "CropReadoutOversamplingd",
    "EstimateCoilMapsd",
    "ScaleIntensityByZeroFilledd",
    "SenseCombined",
    "UndersampleKspaced",
]
