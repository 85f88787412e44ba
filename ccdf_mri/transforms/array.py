"""Array transforms on one k-space slice, in MONAI's style (``monai.transforms.Transform``).

Shapes (one slice, no batch axis): k-space and coil maps ``(C, H, W)`` complex
(H = readout rows, W = phase-encode columns), image ``(H, W)`` complex, mask
broadcastable to k-space (``(1, 1, W)`` for 1-D masks, ``(1, H, W)`` for 2-D ones).
Inputs may be numpy arrays or tensors; outputs are torch tensors on the input's device.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch
from monai.transforms import Transform
from monai.utils import TransformBackends

from ccdf_mri.intensity import intensity_scale
from ccdf_mri.physics import (
    estimate_maps_acs,
    estimate_maps_espirit,
    make_mask,
    sense_combine,
)
from ccdf_mri.physics.fft import fft1c, ifft1c

COIL_MAP_METHODS = ("espirit", "acs")


def as_complex_tensor(data: Any, name: str, ndim: Optional[int] = None) -> torch.Tensor:
    """numpy array or tensor -> complex torch tensor, checked.

    Args:
        data: the value.
        name: its key, named in errors.
        ndim: required rank, or None.

    Raises:
        ValueError: real dtype or wrong rank.
    """
    tensor = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    if not tensor.is_complex():
        raise ValueError(f"key '{name}': expected complex data, found dtype {tensor.dtype}")
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"key '{name}': expected {ndim} dimensions, found shape {tuple(tensor.shape)}")
    return tensor


def crop_readout(kspace: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Remove readout oversampling: centre-crop the rows (axis -2) in hybrid space.

    ``fft1c(crop(ifft1c(kspace, -2)), -2)``: the image of the result is exactly the
    centre ``num_rows`` rows of the image of ``kspace`` (same intensities, orthonormal FFTs).

    Args:
        kspace: complex ``(..., H, W)``.
        num_rows: rows to keep, ``<= H`` (fastMRI: 320 of 640).

    Returns:
        complex ``(..., num_rows, W)``.
    """
    rows = kspace.shape[-2]
    if not 0 < num_rows <= rows:
        raise ValueError(f"key 'kspace': expected to keep 1..{rows} readout rows, found num_rows={num_rows}")
    if num_rows == rows:
        return kspace
    start = (rows - num_rows) // 2
    hybrid = ifft1c(kspace, dim=-2)[..., start : start + num_rows, :]
    return fft1c(hybrid, dim=-2)


def fit_mask(mask: Any, kspace: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Reshape a mask to broadcast against one k-space slice ``(C, H, W)``.

    Accepts ``(W,)``, ``(H, W)``, or masks with leading singleton axes such as
    ``(1, 1, 1, W)``; returns float32 ``(1, 1, W)`` or ``(1, H, W)`` on k-space's device.

    Raises:
        ValueError: the mask does not match k-space's rows/columns.
    """
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    mask = mask.to(device=kspace.device, dtype=torch.float32)
    core = mask.reshape(mask.shape[-2:]) if mask.ndim >= 2 else mask.reshape(1, -1)
    if mask.numel() != core.numel() or core.shape[-1] != kspace.shape[-1] or core.shape[0] not in (1, kspace.shape[-2]):
        raise ValueError(
            f"key '{name}': expected a mask broadcastable to k-space {tuple(kspace.shape)} "
            f"((W,) or (H, W) with W={kspace.shape[-1]}, H={kspace.shape[-2]}), found shape {tuple(mask.shape)}"
        )
    return core.reshape((1,) * (kspace.ndim - 2) + tuple(core.shape))


class CropReadoutOversampling(Transform):
    """Centre-crop the readout (rows) of k-space ``(C, H, W)`` in hybrid space; see :func:`crop_readout`.

    Args:
        num_rows: rows to keep (the recon matrix x, e.g. 320).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows

    def __call__(self, kspace: Any) -> torch.Tensor:
        return crop_readout(as_complex_tensor(kspace, "kspace"), self.num_rows)


class UndersampleKspace(Transform):
    """Retrospective undersampling: ``kspace * mask`` with a mask from :func:`ccdf_mri.physics.make_mask`.

    Args:
        kind: mask kind (``equispaced_fraction``, ``random``, ``gaussian1d``, ``poisson2d``).
        acceleration: target acceleration factor.
        center_fraction: fully sampled centre fraction of the columns.
        seed: default seed (int or tuple, e.g. ``mask_seed_from_name(name)``); None draws a
            fresh mask on each call.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, kind: str, acceleration: float, center_fraction: float, seed: Any = None) -> None:
        self.kind = kind
        self.acceleration = acceleration
        self.center_fraction = center_fraction
        self.seed = seed

    def make(self, kspace: torch.Tensor, seed: Any = None, padding: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """The mask for ``kspace`` ``(C, H, W)``, float32 ``(1, 1, W)`` or ``(1, H, W)``."""
        mask = make_mask(
            self.kind,
            tuple(kspace.shape),
            self.acceleration,
            self.center_fraction,
            seed=self.seed if seed is None else seed,
            padding=padding,
        )
        return fit_mask(mask, kspace)

    def __call__(
        self,
        kspace: Any,
        mask: Any = None,
        seed: Any = None,
        padding: Optional[Tuple[int, int]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Undersample ``kspace`` ``(C, H, W)``.

        Args:
            kspace: complex k-space.
            mask: a given mask (e.g. a test-set file's); used as is when not None.
            seed: overrides the default seed for this call.
            padding: ``(left, right)`` acquired columns (``FastMRIHeader.padding_columns``).

        Returns:
            ``(kspace * mask, mask)``.
        """
        kspace = as_complex_tensor(kspace, "kspace")
        mask = self.make(kspace, seed, padding) if mask is None else fit_mask(mask, kspace)
        return kspace * mask, mask


class EstimateCoilMaps(Transform):
    """Coil sensitivity maps ``(C, H, W)`` from (undersampled, zero-filled) k-space ``(C, H, W)``.

    Single-coil k-space (C = 1) gets maps of ones (S = 1).

    Args:
        method: ``"espirit"`` (sigpy ESPIRiT) or ``"acs"`` (low-resolution ACS / RSS).
        calib_width: fully sampled centre lines used for calibration.
        kwargs: further arguments of :func:`ccdf_mri.physics.estimate_maps_espirit`
            (``thresh``, ``kernel_width``, ``crop``, ``device``).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, method: str = "espirit", calib_width: int = 24, **kwargs: Any) -> None:
        if method not in COIL_MAP_METHODS:
            raise ValueError(f"coil map method: expected one of {COIL_MAP_METHODS}, found {method!r}")
        if method == "acs" and kwargs:
            raise ValueError(f"coil map method 'acs': expected no further arguments, found {sorted(kwargs)}")
        self.method = method
        self.calib_width = calib_width
        self.kwargs = kwargs

    def __call__(self, kspace: Any) -> torch.Tensor:
        kspace = as_complex_tensor(kspace, "kspace", ndim=3)
        if kspace.shape[0] == 1:
            return torch.ones_like(kspace)
        if self.method == "acs":
            return estimate_maps_acs(kspace, calib_width=self.calib_width)
        return estimate_maps_espirit(kspace, calib_width=self.calib_width, **self.kwargs)


class SenseCombine(Transform):
    """Zero-filled SENSE image ``sum_c conj(S_c) F^H y_c``: k-space and maps ``(C, H, W)`` -> ``(H, W)``."""

    backend = [TransformBackends.TORCH]

    def __call__(self, kspace: Any, maps: Any) -> torch.Tensor:
        kspace = as_complex_tensor(kspace, "kspace", ndim=3)
        maps = as_complex_tensor(maps, "maps", ndim=3).to(kspace.device)
        if maps.shape != kspace.shape:
            raise ValueError(
                f"key 'maps': expected the k-space shape {tuple(kspace.shape)}, found {tuple(maps.shape)}"
            )
        return sense_combine(kspace[None], maps[None])[0]


class ScaleIntensityByZeroFilled(Transform):
    """Divide by the volume/slice scale of :func:`ccdf_mri.intensity.intensity_scale`.

    ``__call__(image)`` returns ``(image / scale, scale)`` with ``scale`` the 99th percentile
    of ``|image|`` (a 0-d float tensor); ``inverse(x, scale)`` multiplies back.
    """

    backend = [TransformBackends.TORCH]

    def __call__(self, image: Any, scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        image = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
        scale = intensity_scale(image) if scale is None else torch.as_tensor(scale)
        return image / scale.to(image.device), scale

    @staticmethod
    def inverse(data: Any, scale: Any) -> torch.Tensor:
        """``data * scale``: undo :meth:`__call__`."""
        data = torch.as_tensor(data)
        return data * torch.as_tensor(scale).to(data.device)


__all__ = [
    "CropReadoutOversampling",
    "EstimateCoilMaps",
    "ScaleIntensityByZeroFilled",
    "SenseCombine",
    "UndersampleKspace",
    "as_complex_tensor",
    "crop_readout",
    "fit_mask",
]
