"""Dictionary transforms (MONAI ``MapTransform``, suffix ``d``) on k-space samples.

A sample holds one slice or a batch of slices (a leading batch axis on every array; this is
how :mod:`ccdf_mri.preprocessing` runs them, on the device). Keys (defaults; every transform
lets you rename them):

- ``"kspace"``: complex ``(C, H, W)`` or ``(B, C, H, W)`` (C = 1 for single coil);
- ``"mask"``: float32 broadcastable to k-space (``(1, 1, W)`` / ``(B or 1, 1, 1, W)`` for
  1-D masks); present in test-set samples and training batches, added by
  :class:`UndersampleKspaced` otherwise;
- ``"maps"``: complex coil sensitivities, k-space's shape;
- ``"image"``: complex zero-filled SENSE image ``(H, W)`` or ``(B, H, W)``;
- ``"scale"``: 0-d (one slice) or ``(B,)`` float scale of :class:`ScaleIntensityByZeroFilledd`;
- ``"meta"``: dict with ``"filename"`` (seeds retrospective masks as fastMRI's validation
  does; a list in a collated batch), ``"header"`` (a :class:`ccdf_mri.io.FastMRIHeader` or its
  ISMRMRD XML, or a list of them: readout crop, k-space padding) and ``"slice"``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Hashable, List, Mapping, Optional, Union

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
    fit_mask,
)


@lru_cache(maxsize=64)
def _parse(xml: Union[str, bytes]) -> FastMRIHeader:
    return parse_ismrmrd_header(xml)


def _as_list(value: Any) -> List[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _headers(data: Mapping[Hashable, Any], meta_key: str) -> List[Optional[FastMRIHeader]]:
    """``meta["header"]`` as :class:`FastMRIHeader` objects (given as such or as ISMRMRD XML): one,
    or one per item of a collated batch; ``[None]`` without a header."""
    meta = data.get(meta_key)
    headers = _as_list(meta.get("header")) if isinstance(meta, Mapping) else [None]
    return [_parse(h) if isinstance(h, (str, bytes)) else h for h in headers] or [None]


def _filenames(data: Mapping[Hashable, Any], meta_key: str) -> List[str]:
    meta = data.get(meta_key)
    names = _as_list(meta.get("filename")) if isinstance(meta, Mapping) else []
    return [str(name) for name in names if name]


class CropReadoutOversamplingd(MapTransform):
    """Remove readout oversampling from k-space keys (hybrid-space centre crop of the rows).

    Args:
        keys: k-space keys (``(..., C, H, W)``); never coil maps or images.
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
        headers = _headers(d, self.meta_key)
        for key in self.key_iterator(d):
            kspace = as_complex_tensor(d[key], str(key))
            rows = self.num_rows
            if rows is None:
                crops = {None if h is None else h.readout_crop_rows(kspace.shape[-2]) for h in headers}
                if len(crops) > 1:
                    raise ValueError(
                        f"key '{self.meta_key}': expected one readout crop for the batch, found {sorted(crops, key=str)} "
                        "(items of one batch must have one geometry)"
                    )
                rows = crops.pop()
            d[key] = kspace if rows is None else crop_readout(kspace, rows)
        return d


class UndersampleKspaced(MapTransform):
    """Undersample k-space keys with the sample's mask, made under ``mask_key`` when absent.

    A mask already in the sample (test-set files, training batches, a mask detected in or
    given for already-undersampled data) is used as is. Otherwise the mask is made with
    ``seed`` when given, else seeded from ``meta["filename"]`` with
    :func:`ccdf_mri.physics.mask_seed_from_name` (fastMRI's validation convention: one file,
    always the same mask; in a batch, one mask per item's file); columns outside the
    header's acquired limits stay zero.

    Args:
        keys: k-space keys to multiply by the mask.
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

    def _make(self, d: Mapping[Hashable, Any], kspace: torch.Tensor) -> torch.Tensor:
        batch = kspace.shape[0] if kspace.ndim == 4 else 1
        width = kspace.shape[-1]
        paddings = [None if h is None else h.padding_columns(width) for h in _headers(d, self.meta_key)]
        if self.seed is not None:
            seeds: List[Any] = [self.seed]
        else:
            seeds = [mask_seed_from_name(name) for name in _filenames(d, self.meta_key)]
            if len(seeds) not in (1, batch):
                raise ValueError(
                    f"key '{self.meta_key}': expected 'filename' (one per item) to seed the mask "
                    f"(or a '{self.mask_key}' in the sample, or seed=...), found {len(seeds)} names for {batch} items"
                )
        if len(paddings) not in (1, batch):
            raise ValueError(f"key '{self.meta_key}': expected one header or one per item, found {len(paddings)} for {batch} items")
        seeds = seeds * batch if len(seeds) == 1 else seeds
        paddings = paddings * batch if len(paddings) == 1 else paddings
        masks: Dict[Any, torch.Tensor] = {}
        keys = []
        for seed, padding in zip(seeds, paddings):
            key = (tuple(seed) if isinstance(seed, (list, tuple)) else seed, padding)
            if key not in masks:
                masks[key] = self.undersample.make(kspace, seed=seed, padding=padding)
            keys.append(key)
        if len(masks) == 1:
            return masks[keys[0]]
        return torch.cat([masks[key] for key in keys])  # (B, 1, 1|H, W): one mask per item

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        mask = d.get(self.mask_key)
        for key in self.key_iterator(d):
            kspace = as_complex_tensor(d[key], str(key), (3, 4))
            mask = self._make(d, kspace) if mask is None else fit_mask(mask, kspace, self.mask_key)
            d[key], mask = self.undersample(kspace, mask=mask)
        if mask is not None:
            d[self.mask_key] = mask
        return d


class EstimateCoilMapsd(MapTransform):
    """Estimate coil maps from the k-space key and store them under ``maps_key``.

    Maps already in the sample (cached by ``ccdf_mri.data_prep.prepare_fastmri``) are kept.

    Args:
        keys: the (undersampled) k-space key.
        maps_key: output key, complex, k-space's shape.
        method, calib_width, kwargs: see :class:`ccdf_mri.transforms.EstimateCoilMaps`.
        mask_key: the mask whose fully sampled centre bounds the calibration width.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "kspace",
        maps_key: str = "maps",
        method: str = "acs",
        calib_width: int = 24,
        mask_key: str = "mask",
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.estimate = EstimateCoilMaps(method, calib_width, **kwargs)
        self.maps_key = maps_key
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        d = dict(data)
        if self.maps_key in d:
            return d
        for key in self.key_iterator(d):
            d[self.maps_key] = self.estimate(d[key], d.get(self.mask_key))
        return d


class SenseCombined(MapTransform):
    """Zero-filled SENSE image of the k-space key with ``maps_key``, stored as ``image_key``."""

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

    ``scale = intensity_scale(d[image_key])`` (99th percentile of the magnitude; one per item
    of a batch); every key in ``keys`` (default image and k-space) is divided by it.
    :meth:`inverse` multiplies them back using the stored scale, so it also works inside
    ``Compose.inverse``.

    Args:
        keys: keys to scale.
        image_key: the zero-filled image the scale is computed from.
        scale_key: where the scale is stored (0-d, or ``(B,)`` for a batch).
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
        scale = self.scaler.scales(torch.as_tensor(d[self.image_key]))
        for key in self.key_iterator(d):
            d[key] = self.scaler.divide(torch.as_tensor(d[key]), scale)
        d[self.scale_key] = scale
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> Dict[Hashable, Any]:
        """Multiply ``keys`` by ``data[scale_key]`` (0-d, or ``(B,)`` for a batch)."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler.inverse(d[key], d[self.scale_key])
        return d


__all__ = [
    "CropReadoutOversamplingd",
    "EstimateCoilMapsd",
    "ScaleIntensityByZeroFilledd",
    "SenseCombined",
    "UndersampleKspaced",
]
