"""Smooth random 2-D fields: bias field, image phase and elastic displacement.

Each field is white Gaussian noise on a coarse grid, upsampled with cubic splines
(``scipy.ndimage.zoom``) to the image size, so its smoothness is set by the grid size.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import ndimage


def smooth_field(shape: Tuple[int, int], grid: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field with unit-variance coarse-grid values.

    Args:
        shape: output ``(H, W)``.
        grid: coarse grid size along each axis (>= 2); smaller is smoother.
        rng: numpy random generator.

    Returns:
        float32 ``(H, W)``.
    """
    coarse = rng.standard_normal((grid, grid))
    zoom = (shape[0] / grid, shape[1] / grid)
    field = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
    return field[: shape[0], : shape[1]].astype(np.float32)


def bias_field(shape: Tuple[int, int], rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    """Multiplicative receive/transmit bias field ``exp(a * f)`` normalised to mean 1.

    Args:
        shape: ``(H, W)``.
        rng: random generator.
        strength: upper bound of the log-amplitude ``a`` (drawn uniformly in [0.05, strength]).

    Returns:
        float32 ``(H, W)``, positive, mean 1.
    """
    amplitude = rng.uniform(0.05, strength)
    field = np.exp(amplitude * smooth_field(shape, 4, rng))
    return (field / field.mean()).astype(np.float32)


def smooth_phase(shape: Tuple[int, int], rng: np.random.Generator, max_radians: float = np.pi) -> np.ndarray:
    """Smooth random image phase: constant offset + linear ramp + smooth field (radians).

    Args:
        shape: ``(H, W)``.
        rng: random generator.
        max_radians: scale of the ramp across the image and of the smooth part.

    Returns:
        float32 ``(H, W)`` phase in radians.
    """
    h, w = shape
    rows = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    cols = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    offset = rng.uniform(-np.pi, np.pi)
    ramp = rng.uniform(-1.0, 1.0, size=2) * max_radians
    smooth = rng.uniform(0.2, 1.0) * max_radians / 2.0 * smooth_field(shape, 3, rng)
    return (offset + ramp[0] * rows + ramp[1] * cols + smooth).astype(np.float32)


def elastic_displacement(shape: Tuple[int, int], rng: np.random.Generator, max_mm: float, grid: int = 6) -> np.ndarray:
    """Smooth random in-plane displacement field in mm.

    Args:
        shape: ``(H, W)``.
        rng: random generator.
        max_mm: standard deviation of the coarse-grid displacements is drawn in [0, max_mm].
        grid: coarse grid size.

    Returns:
        float32 ``(2, H, W)``: displacement along rows and along columns (mm).
    """
    sigma = rng.uniform(0.0, max_mm)
    return np.stack([sigma * smooth_field(shape, grid, rng) for _ in range(2)])
