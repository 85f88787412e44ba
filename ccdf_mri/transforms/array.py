"""Array transforms on k-space, in MONAI's style (``monai.transforms.Transform``).

Shapes: k-space and coil maps ``(C, H, W)`` complex for one slice, or ``(B, C, H, W)`` for a
batch of slices (H = readout rows, W = phase-encode columns); images ``(H, W)`` or
``(B, H, W)``; masks broadcastable to k-space (``(1, 1, W)`` / ``(B or 1, 1, 1, W)`` for 1-D
masks, ``(1, H, W)`` / ``(B or 1, 1, H, W)`` for 2-D ones). Inputs may be numpy arrays or
tensors; outputs are torch tensors on the input's device. Batched inputs are how training,
inference and the benchmarks use them (:mod:`ccdf_mri.preprocessing`): on the device, one
call per batch.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from monai.transforms import Transform
from monai.utils import TransformBackends

from ccdf_mri.intensity import intensity_scale
from ccdf_mri.physics import estimate_maps_acs, estimate_maps_espirit, make_mask, sense_combine
from ccdf_mri.physics.fft import fft1c, ifft1c
from ccdf_mri.physics.masks import calibration_width

from ccdf_mri.choices import MAP_METHODS
MIN_CALIB_WIDTH = 4  # fewer fully sampled centre lines cannot calibrate coil maps
ESPIRIT_KERNEL_WIDTH = 6  # ESPIRiT's largest kernel side
# ESPIRiT's eigenvalue crop by the fully sampled centre lines (below SHORT_CALIBRATION: the lower crop)
ESPIRIT_CROP, ESPIRIT_CROP_SHORT, SHORT_CALIBRATION = 0.95, 0.9, 16


def espirit_crop(num_lines: int) -> float:
    """The eigenvalue crop of ESPIRiT maps calibrated on ``num_lines`` fully sampled centre lines.

    Below the crop a pixel's map is set to zero: no data constrain it. With few calibration
    lines the leading eigenvalue drops inside the object on some scans: at 8x (10 lines of
    256) the usual 0.95 zeroed parts of the object on 2 of 12 real-image validation slices
    (CG-SENSE 20.3-20.6 dB where 0.9 gives 22.7-23.9); 0.9 raised the 12 slices' mean by
    0.7 dB and beat BART's ``ecalib`` maps (crop 0.8) in median; at 4x (20 lines) 0.95 stays
    0.4 dB better than 0.9 (``benchmarks/results/real_validation/maps_val_{8x,4x}.md``).
    """
    return ESPIRIT_CROP if int(num_lines) >= SHORT_CALIBRATION else ESPIRIT_CROP_SHORT


def espirit_calibration(num_lines: int, height: int, two_d: bool = False, max_kernel: int = ESPIRIT_KERNEL_WIDTH) -> tuple:
    """ESPIRiT's calibration region and kernel from the fully sampled centre: ``((rows, cols), kernel)``.

    The calibration matrix has one row per kernel position, ``(rows - k + 1)(cols - k + 1)``,
    and ``k^2 C`` columns. ``ecalib``'s default 24 x 24 region cut to a 10-line centre (8x at
    256 columns) with a 6 x 6 kernel leaves 95 positions for 288 unknowns (8 coils) and the maps
    fail on some scans; a 4 x 4 kernel is stable but blurs the maps (1.5 dB lower median with
    CG-SENSE, ``benchmarks/results/bart_ecalib_rule.md``). The rule: a 1-D (column) mask
    samples every read-out row of its centre lines, so the region is all ``height`` rows by the
    ``num_lines`` columns, with the 6 x 6 kernel while 5 positions fit across the lines
    (``k = clamp(num_lines - 4, 3, 6)``); a 2-D mask has only the centred square of side
    ``num_lines``, with ``k = clamp(num_lines // 2 - 1, 3, 6)``. The benchmarks give BART the same
    rule (``benchmarks.bart.fair_calibration``).
    """
    if num_lines < MIN_CALIB_WIDTH:
        raise ValueError(f"coil maps: expected at least {MIN_CALIB_WIDTH} fully sampled centre lines, found {num_lines}")
    if two_d:
        return (num_lines, num_lines), max(3, min(max_kernel, num_lines // 2 - 1))
    return (height, num_lines), max(3, min(max_kernel, num_lines - 4))


def as_complex_tensor(data: Any, name: str, ndim: Union[int, Sequence[int], None] = None) -> torch.Tensor:
    """numpy array or tensor -> complex torch tensor, checked.

    Args:
        data: the value.
        name: its key, named in errors.
        ndim: required rank (or ranks), or None.

    Raises:
        ValueError: real dtype or wrong rank.
    """
    tensor = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    if not tensor.is_complex():
        raise ValueError(f"key '{name}': expected complex data, found dtype {tensor.dtype}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if ranks is not None and tensor.ndim not in tuple(ranks):
        raise ValueError(f"key '{name}': expected {' or '.join(map(str, ranks))} dimensions, found shape {tuple(tensor.shape)}")
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
    """A mask as float32 of k-space's rank on k-space's device, checked to broadcast.

    Accepts ``(W,)``, ``(H, W)``, masks with leading singleton axes such as ``(1, 1, 1, W)``,
    and, for batched k-space ``(B, C, H, W)``, per-item masks ``(B, 1, 1, W)`` / ``(B, 1, H, W)``.
    Returns ``(1, 1, W)`` / ``(1, H, W)`` for one slice, ``(B or 1, 1, 1 or H, W)`` for a batch.

    Raises:
        ValueError: the mask does not match k-space's batch, rows or columns.
    """
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    mask = mask.to(device=kspace.device, dtype=torch.float32)
    batch = kspace.shape[0] if kspace.ndim == 4 else 1
    height, width = kspace.shape[-2:]
    lead = mask.shape[0] if (kspace.ndim == 4 and mask.ndim == 4) else 1
    core = mask.reshape((lead, -1, width)) if mask.numel() % max(width * lead, 1) == 0 and mask.numel() else None
    if core is None or core.shape[1] not in (1, height) or lead not in (1, batch) or mask.shape[-1] != width:
        raise ValueError(
            f"key '{name}': expected a mask broadcastable to k-space {tuple(kspace.shape)} "
            f"((W,), (H, W) or (B, 1, 1|H, W) with W={width}, H={height}, B={batch}), found shape {tuple(mask.shape)}"
        )
    if kspace.ndim == 4:
        return core.reshape(lead, 1, core.shape[1], width)
    return core.reshape((1,) * (kspace.ndim - 2) + tuple(core.shape[1:]))


def mask_items(mask: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """The mask of each of ``batch`` items (a shared mask repeated)."""
    if mask.ndim == 4 and mask.shape[0] == batch:
        return list(mask)
    return [mask.reshape(mask.shape[-3:]) if mask.ndim >= 3 else mask] * batch


class CropReadoutOversampling(Transform):
    """Centre-crop the readout (rows) of k-space ``(..., H, W)`` in hybrid space; see :func:`crop_readout`.

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
        from ccdf_mri.choices import MASK_KINDS

        if kind not in MASK_KINDS:  # checked here so a bad option fails before any data is read
            raise ValueError(f"mask: expected one of {MASK_KINDS}, found {kind!r}")
        self.kind = kind
        self.acceleration = acceleration
        self.center_fraction = center_fraction
        self.seed = seed

    def make(self, kspace: torch.Tensor, seed: Any = None, padding: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """The mask for ``kspace`` ``(..., C, H, W)``, float32 of k-space's rank (shared by a batch)."""
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
        """Undersample ``kspace`` ``(C, H, W)`` or ``(B, C, H, W)``.

        Args:
            kspace: complex k-space.
            mask: a given mask (e.g. a test-set file's, or one per item); used as is when not None.
            seed: overrides the default seed for this call.
            padding: ``(left, right)`` acquired columns (``FastMRIHeader.padding_columns``).

        Returns:
            ``(kspace * mask, mask)``.
        """
        kspace = as_complex_tensor(kspace, "kspace", (3, 4))
        mask = self.make(kspace, seed, padding) if mask is None else fit_mask(mask, kspace)
        return kspace * mask, mask


class EstimateCoilMaps(Transform):
    """Coil sensitivity maps from (undersampled, zero-filled) k-space ``(C, H, W)`` or ``(B, C, H, W)``.

    Single-coil k-space (C = 1) gets phase-only maps ``S = exp(i angle(I))``, ``I`` the
    low-resolution image of the calibration region (:func:`ccdf_mri.physics.estimate_maps_acs`
    with one coil; ``S = 1`` where ``I`` vanishes), whatever ``method``: ``|S| = 1``, so the
    zero-filled image ``conj(S) F^-1 y`` has the magnitude of the plain inverse FFT, and, like a
    multi-coil SENSE image (whose maps carry the object's low-resolution phase), it is nearly
    real, as the networks saw in training. (Maps of ones left single-coil images with their
    phase: on six single-coil validation slices at 4x the shipped U-Net gave 18.1 dB and CCDF
    23.9 dB against 24.8 dB zero-filled; with phase-only maps 25.2 and 28.6 dB.) The calibration width of each item
    is ``min(calib_width, calibration_width(mask))`` when a mask is given (the side of its fully
    sampled centre block), and ESPIRiT's kernel is ``min(kernel_width, width // 2)`` wide, so
    4 % and 8 % centres and 2-D masks all calibrate. Without a ``crop`` argument ESPIRiT's
    eigenvalue crop follows the calibration width (:func:`espirit_crop`).

    Args:
        method: ``"espirit"`` or ``"acs"`` (low-resolution ACS / RSS).
        calib_width: largest calibration width.
        kwargs: further arguments of :func:`ccdf_mri.physics.estimate_maps_espirit`
            (``thresh``, ``kernel_width``, ``crop``).

    Raises:
        ValueError: (on call) an item with fewer than :data:`MIN_CALIB_WIDTH` fully sampled
            centre lines.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, method: str = "acs", calib_width: int = 24, **kwargs: Any) -> None:
        if method not in MAP_METHODS:
            raise ValueError(f"maps (coil-map method): expected one of {MAP_METHODS}, found {method!r}")
        if method == "acs" and kwargs:
            raise ValueError(f"coil map method 'acs': expected no further arguments, found {sorted(kwargs)}")
        self.method = method
        self.calib_width = int(calib_width)
        self.kwargs = kwargs

    def widths(self, kspace: torch.Tensor, mask: Optional[torch.Tensor]) -> list[int]:
        """Calibration width of each item of ``kspace`` ``(B, C, H, W)``."""
        batch = kspace.shape[0]
        if mask is None:
            return [self.calib_width] * batch
        found = [calibration_width(item) for item in mask_items(mask, batch)]
        if min(found) < MIN_CALIB_WIDTH:
            raise ValueError(
                f"coil maps: expected at least {MIN_CALIB_WIDTH} fully sampled centre lines, found {min(found)}"
            )
        return [min(self.calib_width, width) for width in found]

    def __call__(self, kspace: Any, mask: Any = None) -> torch.Tensor:
        kspace = as_complex_tensor(kspace, "kspace", (3, 4))
        batch = kspace if kspace.ndim == 4 else kspace[None]
        mask = None if mask is None else fit_mask(mask, batch)
        widths = self.widths(batch, mask)
        two_d = mask is not None and mask.shape[-2] > 1
        maps = torch.empty_like(batch)
        for width in sorted(set(widths)):  # items with one width are estimated in one batched call
            index = torch.tensor([b for b, w in enumerate(widths) if w == width], device=batch.device)
            items = batch.index_select(0, index)
            if batch.shape[1] == 1:
                maps[index] = phase_only(estimate_maps_acs(items, calib_width=width))
            elif self.method == "acs":
                maps[index] = estimate_maps_acs(items, calib_width=width)
            else:
                region, kernel = espirit_calibration(width, batch.shape[-2], two_d)
                kwargs = {"kernel_width": kernel, "phase_ref": "acs", "crop": espirit_crop(width), **self.kwargs}
                maps[index] = estimate_maps_espirit(items, calib_width=region, **kwargs).to(batch.dtype)
        return maps if kspace.ndim == 4 else maps[0]


def phase_only(maps: torch.Tensor) -> torch.Tensor:
    """``maps / |maps|`` where ``maps`` is non-zero, 1 elsewhere: unit-modulus maps."""
    magnitude = maps.abs()
    unit = maps / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)
    return torch.where(magnitude > 0, unit, torch.ones_like(maps))


class SenseCombine(Transform):
    """Zero-filled SENSE image ``sum_c conj(S_c) F^H y_c``: ``(..., C, H, W)`` -> ``(..., H, W)``."""

    backend = [TransformBackends.TORCH]

    def __call__(self, kspace: Any, maps: Any) -> torch.Tensor:
        kspace = as_complex_tensor(kspace, "kspace", (3, 4))
        maps = as_complex_tensor(maps, "maps", kspace.ndim).to(kspace.device)
        if maps.shape != kspace.shape:
            raise ValueError(
                f"key 'maps': expected the k-space shape {tuple(kspace.shape)}, found {tuple(maps.shape)}"
            )
        if kspace.ndim == 3:
            return sense_combine(kspace[None], maps[None])[0]
        return sense_combine(kspace, maps)


class ScaleIntensityByZeroFilled(Transform):
    """Divide by the slice scale of :func:`ccdf_mri.intensity.intensity_scale`.

    ``__call__(image)`` returns ``(image / scale, scale)``: for one image ``(H, W)`` a 0-d
    scale, for a batch ``(B, H, W)`` one scale per item ``(B,)`` (each the 99th percentile of
    its ``|image|``); ``inverse(x, scale)`` multiplies back.
    """

    backend = [TransformBackends.TORCH]

    @staticmethod
    def scales(image: torch.Tensor) -> torch.Tensor:
        """0-d scale of an ``(H, W)`` image, ``(B,)`` scales of a ``(B, H, W)`` batch (float32)."""
        if image.ndim == 3:
            return torch.stack([intensity_scale(item) for item in image]).to(torch.float32)
        return intensity_scale(image)

    def __call__(self, image: Any, scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        image = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
        scale = self.scales(image) if scale is None else torch.as_tensor(scale)
        return self.divide(image, scale), scale

    @staticmethod
    def divide(data: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``data / scale`` with ``scale`` 0-d or ``(B,)`` broadcast over ``data``'s trailing axes."""
        scale = torch.as_tensor(scale).to(data.device)
        return data / scale.reshape(scale.shape + (1,) * (data.ndim - scale.ndim))

    @staticmethod
    def inverse(data: Any, scale: Any) -> torch.Tensor:
        """``data * scale``: undo :meth:`__call__`."""
        data = torch.as_tensor(data)
        scale = torch.as_tensor(scale).to(data.device)
        return data * scale.reshape(scale.shape + (1,) * (data.ndim - scale.ndim))


__all__ = [
    "CropReadoutOversampling",
    "EstimateCoilMaps",
    "ScaleIntensityByZeroFilled",
    "SenseCombine",
    "UndersampleKspace",
    "as_complex_tensor",
    "crop_readout",
    "fit_mask",
    "mask_items",
]
