"""Fine structure for corpus v2: band-pass texture, thin curvilinear lines, random-walk vessels.

All fields are built from white Gaussian noise filtered in the Fourier domain, so their
spatial scale is set explicitly (in pixels) and they are not white: the score network must
learn tissue texture, not noise.

- :func:`bandpass_noise`: difference-of-Gaussians filtered noise at scale ``sigma`` pixels
  (optionally elongated along a direction, e.g. muscle striation), unit std per slice;
- :func:`ridge_lines`: ``exp(-(n / w)^2)`` of a band-pass field ``n``: thin lines along its
  zero crossings (a maze of sulcus- or septum-like curves whose spacing is set by the field's
  scale and whose width by ``w``);
- :func:`random_walks`: smooth random-walk curves (vessel-like), anti-aliased;
- :func:`sharpen_fractions`: tempered soft-max of tissue fractions with a perturbation of the
  log-fractions (sharper, finer-detailed tissue boundaries than a population average).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from scipy import ndimage


def _frequencies(shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    return fy, fx


def bandpass_noise(
    shape: Tuple[int, ...],
    sigma: float,
    rng: np.random.Generator,
    elongation: float = 1.0,
    angle: float = 0.0,
) -> np.ndarray:
    """Band-pass Gaussian noise with features of about ``sigma`` pixels.

    The spectrum of white noise is multiplied by ``G(sigma) - G(2 sigma)`` (``G(s)`` the
    transfer function of a Gaussian blur of std ``s`` pixels); with ``elongation > 1`` the
    blur is ``elongation`` times wider along the direction ``angle`` (radians from the
    row axis), giving streaks along that direction.

    Args:
        shape: ``(H, W)`` or ``(S, H, W)`` (independent fields per slice).
        sigma: feature scale in pixels (> 0).
        rng: random generator.
        elongation: anisotropy factor (>= 1).
        angle: direction of the elongation.

    Returns:
        float32 array of ``shape``, zero mean and unit standard deviation per slice.
    """
    h, w = shape[-2:]
    white = rng.standard_normal(shape, dtype=np.float32)
    fy, fx = _frequencies((h, w))
    c, s = np.cos(angle), np.sin(angle)
    along = c * fy + s * fx
    across = -s * fy + c * fx
    radius2 = (along * elongation) ** 2 + across**2
    two_pi2 = np.float32(2.0 * np.pi**2)
    transfer = np.exp(-two_pi2 * sigma**2 * radius2) - np.exp(-two_pi2 * (2.0 * sigma) ** 2 * radius2)
    field = np.fft.irfft2(np.fft.rfft2(white) * transfer, s=(h, w)).astype(np.float32)
    field -= field.mean(axis=(-2, -1), keepdims=True)
    std = field.std(axis=(-2, -1), keepdims=True)
    return field / np.maximum(std, 1e-12)


def ridge_lines(field: np.ndarray, width: float) -> np.ndarray:
    """Thin lines along the zero crossings of a (unit-std) field: ``exp(-(field / width)^2)``.

    Args:
        field: band-pass field (e.g. from :func:`bandpass_noise`).
        width: half-width in units of the field's std; the line width in pixels is about
            ``width / |grad field|`` (a few tenths of the field's scale for width 0.1-0.3).

    Returns:
        float32 in [0, 1] (1 on the lines).
    """
    return np.exp(-((field / np.float32(width)) ** 2)).astype(np.float32)


def random_walks(
    shape: Tuple[int, int],
    count: int,
    rng: np.random.Generator,
    length: Tuple[float, float] = (20.0, 120.0),
    curvature: float = 0.12,
    width: float = 0.8,
    region: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Smooth random curves (vessel-like), as partial-volume fractions.

    Each curve starts at a random pixel (of ``region`` when given), walks with unit steps
    and a heading that diffuses with ``curvature`` radians per step (smoothed), and is
    splatted bilinearly with a per-curve strength in [0.3, 1] (partial volume of thin
    vessels) and blurred with a Gaussian of ``width`` pixels.

    Args:
        shape: ``(H, W)``.
        count: number of curves.
        rng: random generator.
        length: range of curve lengths (pixels).
        curvature: std of the heading change per step (radians).
        width: Gaussian blur of the curves (pixels), i.e. their half-width.
        region: optional bool ``(H, W)`` of allowed start points.

    Returns:
        float32 ``(H, W)`` in [0, 1] (about the curve's strength on its centre line).
    """
    h, w = shape
    out = np.zeros(shape, np.float32)
    if count <= 0:
        return out
    steps = int(max(length))
    if region is not None and region.any():
        candidates = np.flatnonzero(region)
        starts = np.unravel_index(rng.choice(candidates, size=count), shape)
        start = np.stack(starts, axis=1).astype(np.float32)
    else:
        start = rng.uniform(0, 1, (count, 2)).astype(np.float32) * np.array([h - 1, w - 1], np.float32)
    turns = ndimage.gaussian_filter1d(rng.standard_normal((count, steps)).astype(np.float32), 3.0, axis=1) * curvature * 3.0
    heading = rng.uniform(0, 2 * np.pi, (count, 1)).astype(np.float32) + np.cumsum(turns, axis=1)
    path = start[:, None, :] + np.cumsum(np.stack([np.cos(heading), np.sin(heading)], axis=-1), axis=1)
    lengths = rng.uniform(*length, size=count)
    strength = np.broadcast_to(rng.uniform(0.3, 1.0, (count, 1)).astype(np.float32), (count, steps))
    keep = np.arange(steps)[None, :] < lengths[:, None]
    points, strength = path[keep], strength[keep]
    inside = (points[:, 0] >= 0) & (points[:, 0] < h - 1) & (points[:, 1] >= 0) & (points[:, 1] < w - 1)
    points, strength = points[inside], strength[inside]
    base = np.floor(points).astype(np.int64)
    frac = points - base
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        weight = strength * (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
        np.add.at(out, (base[:, 0] + dr, base[:, 1] + dc), weight)
    np.minimum(out, 1.0, out=out)
    out = ndimage.gaussian_filter(out, width) * np.float32(np.sqrt(2.0 * np.pi) * width)  # peak ~ strength
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def sharpen_fractions(fractions: np.ndarray, temperature: float, perturbation: Optional[np.ndarray] = None, eps: float = 0.02) -> np.ndarray:
    """Sharper tissue boundaries: tempered soft-max of the log-fractions.

    ``q_k = softmax_k((log(p_k + eps) + d_k) / T) * sum_k p_k``: ``T < 1`` steepens every
    boundary (``T = 0.5`` gives ``q ~ p^2``), and a band-pass perturbation ``d_k`` moves
    the boundaries by a few pixels with fine-scale wiggles. The total (the head mask)
    is kept.

    Args:
        fractions: ``(K, ...)`` non-negative tissue fractions.
        temperature: ``T`` in (0, 1].
        perturbation: optional ``(K, ...)`` added to the log-fractions.
        eps: floor inside the logarithm.

    Returns:
        float32 ``(K, ...)``.
    """
    total = fractions.sum(axis=0)
    logits = np.log(np.clip(fractions, 0.0, None) + np.float32(eps))
    if perturbation is not None:
        logits = logits + perturbation
    logits = logits / np.float32(temperature)
    logits -= logits.max(axis=0, keepdims=True)
    weights = np.exp(logits)
    return (weights / weights.sum(axis=0, keepdims=True) * total).astype(np.float32)
