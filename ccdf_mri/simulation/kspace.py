"""Multi-coil k-space from complex images: coil weighting, centred FFT, white noise.

SNR convention: ``SNR_dB = 10 log10(P / sigma^2)`` where ``P`` is the mean of ``|x|^2``
over the object support of the noise-free complex image ``x`` and ``sigma^2 = E|n|^2`` is
the variance of the complex white k-space noise of every coil (each of its real and
imaginary parts has variance ``sigma^2 / 2``). The FFT is orthonormal, so each coil image
carries the same noise variance ``sigma^2`` per pixel; with ``sum_c |S_c|^2 = 1`` the
SENSE-combined image ``sum_c conj(S_c) y_c`` has noise variance ``sigma^2`` too.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from ccdf_mri.physics.fft import fft2c, ifft2c


def noise_std_for_snr(images: np.ndarray, snr_db: float, support: Optional[np.ndarray] = None) -> float:
    """Noise standard deviation ``sigma`` that gives ``snr_db`` for these images.

    Args:
        images: complex ``(..., H, W)`` noise-free images.
        snr_db: requested SNR in dB (see the module docstring).
        support: bool mask broadcastable to ``images``; default ``|x| > 0``.

    Returns:
        sigma (float, same units as the images).
    """
    power = np.abs(images) ** 2
    support = power > 0 if support is None else np.broadcast_to(support, power.shape)
    if not support.any():
        raise ValueError("cannot set the noise level: the image is zero everywhere")
    mean_power = float(power[support].mean())
    return float(np.sqrt(mean_power / 10.0 ** (snr_db / 10.0)))


def coil_kspace(images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Noise-free multi-coil k-space ``F (S_c x)``.

    Args:
        images: complex ``(S, H, W)``.
        maps: complex ``(C, H, W)`` (shared by the slices) or ``(S, C, H, W)``.

    Returns:
        complex64 ``(S, C, H, W)``.
    """
    coil_images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.complex64))[:, None] * torch.from_numpy(
        np.ascontiguousarray(maps, dtype=np.complex64)
    )
    return fft2c(coil_images).numpy()


def complex_noise(shape: Tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """White circular complex Gaussian noise with ``E|n|^2 = sigma^2``, complex64."""
    parts = rng.standard_normal((*shape, 2), dtype=np.float32)
    return (parts.view(np.complex64)[..., 0] * np.float32(sigma / np.sqrt(2.0))).astype(np.complex64)


def simulate_kspace(
    images: np.ndarray, maps: np.ndarray, snr_db: Optional[float], rng: np.random.Generator,
    support: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, float]:
    """Noisy multi-coil k-space of complex images.

    Args:
        images: complex ``(S, H, W)`` noise-free images.
        maps: complex ``(C, H, W)`` or ``(S, C, H, W)`` normalised coil maps.
        snr_db: SNR in dB (module docstring); None -> no noise.
        rng: random generator for the noise.
        support: object support for the SNR (default ``|x| > 0``).

    Returns:
        ``(kspace complex64 (S, C, H, W), sigma)``.
    """
    kspace = coil_kspace(images, maps)
    if snr_db is None:
        return kspace, 0.0
    sigma = noise_std_for_snr(images, snr_db, support)
    return kspace + complex_noise(kspace.shape, sigma, rng), sigma


def rss_from_kspace(kspace: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares image of fully sampled k-space ``(S, C, H, W)`` -> float32 ``(S, H, W)``."""
    coil_images = ifft2c(torch.from_numpy(np.ascontiguousarray(kspace, dtype=np.complex64)))
    return torch.sqrt((coil_images.abs() ** 2).sum(dim=1)).numpy().astype(np.float32)
