"""Centred orthonormal 2-D FFTs: the one place the project's Fourier convention lives.

Convention (fastMRI and sigpy alike): ``fftshift(fftn(ifftshift(x), norm="ortho"))``
over the last two axes, so the k-space centre (DC) sits at index ``(H // 2, W // 2)``
and the transform is unitary (``||fft2c(x)|| == ||x||``).
"""

from __future__ import annotations

import torch

_AXES = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two axes.

    Args:
        image: complex tensor ``(..., H, W)`` in image space.

    Returns:
        complex tensor ``(..., H, W)`` in k-space, same dtype and device.
    """
    shifted = torch.fft.ifftshift(image, dim=_AXES)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_AXES, norm="ortho"), dim=_AXES)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2-D FFT over the last two axes (the adjoint of :func:`fft2c`).

    Args:
        kspace: complex tensor ``(..., H, W)`` in k-space.

    Returns:
        complex tensor ``(..., H, W)`` in image space.
    """
    shifted = torch.fft.ifftshift(kspace, dim=_AXES)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_AXES, norm="ortho"), dim=_AXES)


def ifft1c(kspace: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal inverse 1-D FFT along ``dim`` (used to go to hybrid space)."""
    shifted = torch.fft.ifftshift(kspace, dim=dim)
    return torch.fft.fftshift(torch.fft.ifft(shifted, dim=dim, norm="ortho"), dim=dim)


def fft1c(image: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1-D FFT along ``dim``."""
    shifted = torch.fft.ifftshift(image, dim=dim)
    return torch.fft.fftshift(torch.fft.fft(shifted, dim=dim, norm="ortho"), dim=dim)
