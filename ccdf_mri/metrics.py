"""Image-quality metrics as fastMRI's evaluation defines them, per volume.

All functions take magnitude volumes ``(S, H, W)`` (numpy arrays or tensors):

- ``nmse = ||gt - pred||^2 / ||gt||^2`` over the whole volume;
- ``psnr = 10 log10(maxval^2 / mean((gt - pred)^2))`` with ``maxval = gt.max()``;
- ``ssim``: mean over slices of the SSIM of each slice (Wang et al. 2004) with a 7x7
  uniform window, ``K1 = 0.01``, ``K2 = 0.03``, sample (N-1) covariances, the data range
  ``maxval = gt.max()`` of the whole volume, averaged over the interior pixels whose
  window lies inside the image (3-pixel border excluded), as scikit-image computes it.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from scipy.ndimage import uniform_filter

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _volumes(gt, pred) -> tuple:
    arrays = []
    for name, value in (("gt", gt), ("pred", pred)):
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        if np.iscomplexobj(value):
            raise ValueError(f"metrics: '{name}' expected a real magnitude volume, found dtype {value.dtype}")
        arrays.append(value.astype(np.float64, copy=False))
    gt, pred = arrays
    if gt.ndim != 3 or gt.shape != pred.shape:
        raise ValueError(f"metrics: expected gt and pred of one shape (S, H, W), found {gt.shape} and {pred.shape}")
    return gt, pred


def nmse(gt, pred) -> float:
    """Normalised mean squared error ``||gt - pred||^2 / ||gt||^2`` of a volume ``(S, H, W)``."""
    gt, pred = _volumes(gt, pred)
    return float(np.sum((gt - pred) ** 2) / np.sum(gt**2))


def psnr(gt, pred, maxval: Optional[float] = None) -> float:
    """Peak signal-to-noise ratio in dB of a volume ``(S, H, W)``; ``maxval`` defaults to ``gt.max()``."""
    gt, pred = _volumes(gt, pred)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    return float(10.0 * np.log10(maxval**2 / np.mean((gt - pred) ** 2)))


def ssim_slice(gt: np.ndarray, pred: np.ndarray, data_range: float) -> float:
    """SSIM of one 2-D slice ``(H, W)`` with the fastMRI/scikit-image defaults.

    Args:
        gt: reference slice, float64.
        pred: compared slice, float64.
        data_range: dynamic range L in ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``.
    """
    if min(gt.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: expected slices of at least {SSIM_WINDOW}x{SSIM_WINDOW}, found {gt.shape}")
    count = SSIM_WINDOW**2
    unbias = count / (count - 1.0)

    def mean(x: np.ndarray) -> np.ndarray:
        return uniform_filter(x, size=SSIM_WINDOW)

    mu_x, mu_y = mean(gt), mean(pred)
    var_x = unbias * (mean(gt * gt) - mu_x * mu_x)
    var_y = unbias * (mean(pred * pred) - mu_y * mu_y)
    cov_xy = unbias * (mean(gt * pred) - mu_x * mu_y)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    pad = (SSIM_WINDOW - 1) // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean())


def ssim(gt, pred, maxval: Optional[float] = None) -> float:
    """Mean over slices of the per-slice SSIM; data range ``maxval`` defaults to ``gt.max()`` of the volume."""
    gt, pred = _volumes(gt, pred)
    maxval = float(gt.max()) if maxval is None else float(maxval)
    return float(np.mean([ssim_slice(g, p, maxval) for g, p in zip(gt, pred)]))


def volume_metrics(gt, pred) -> Dict[str, float]:
    """``{"nmse", "psnr", "ssim"}`` of one volume ``(S, H, W)``, fastMRI's definitions."""
    return {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred), "ssim": ssim(gt, pred)}
