"""Simulated receive-coil sensitivity maps (sigpy birdcage model, randomised)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from scipy import ndimage


def normalize_maps(maps: np.ndarray, support: Optional[np.ndarray] = None, eps: float = 1e-12) -> np.ndarray:
    """Scale maps so that ``sum_c |S_c|^2 = 1`` at every pixel (of ``support`` when given).

    Args:
        maps: complex ``(C, H, W)``.
        support: optional bool ``(H, W)``; outside it the maps are set to 0.
        eps: floor of the root-sum-of-squares.

    Returns:
        complex64 ``(C, H, W)``.
    """
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    out = maps / np.maximum(rss, eps)
    if support is not None:
        out = out * support[None]
    return out.astype(np.complex64)


def random_birdcage_maps(
    num_coils: int,
    shape: Tuple[int, int],
    rng: np.random.Generator,
    radius_range: Tuple[float, float] = (1.2, 1.8),
) -> np.ndarray:
    """Birdcage coil maps with a random radius, rotation, per-coil gain and phase.

    ``sigpy.mri.birdcage_maps`` places ``num_coils`` coils on a circle of relative radius
    ``r`` (1 = half the field of view); the set is rotated in-plane by a random angle,
    each coil gets a random gain in [0.8, 1.2] and a random phase, and the result is
    normalised so that ``sum_c |S_c|^2 = 1`` at every pixel.

    Args:
        num_coils: C.
        shape: ``(H, W)``.
        rng: random generator.
        radius_range: range of the relative coil radius ``r``.

    Returns:
        complex64 ``(C, H, W)`` with ``sum_c |S_c|^2 = 1``.
    """
    import sigpy.mri

    radius = rng.uniform(*radius_range)
    angle = rng.uniform(0.0, 360.0)
    gains = rng.uniform(0.8, 1.2, size=num_coils)
    phases = rng.uniform(-np.pi, np.pi, size=num_coils)
    maps = sigpy.mri.birdcage_maps((num_coils, *shape), r=radius, dtype=np.complex64)
    parts = np.stack([maps.real, maps.imag])  # (2, C, H, W)
    parts = ndimage.rotate(parts, angle, axes=(2, 3), reshape=False, order=1, mode="nearest")
    maps = (parts[0] + 1j * parts[1]) * (gains * np.exp(1j * phases))[:, None, None]
    return normalize_maps(maps)
