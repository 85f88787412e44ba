"""Coil combination and compression: root-sum-of-squares, SENSE combination, SVD coil compression."""

from __future__ import annotations

import torch

from ccdf_mri.physics.checks import check_complex, check_finite
from ccdf_mri.physics.fft import ifft2c


def rss(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root sum of squares ``sqrt(sum |x|^2)`` over ``dim`` (the coil axis of ``(B, C, H, W)``).

    Args:
        x: real or complex tensor.
        dim: axis to combine.

    Returns:
        real tensor with ``dim`` removed.
    """
    magnitude_sq = x.real.square() + x.imag.square() if torch.is_complex(x) else x.square()
    return magnitude_sq.sum(dim=dim).sqrt()


def sense_combine(kspace: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """SENSE coil combination ``sum_c conj(S_c) F^H k_c`` (the SENSE adjoint with no mask).

    Args:
        kspace: ``(B, C, H, W)`` complex k-space (zero-filled where not sampled).
        maps: ``(B, C, H, W)`` complex coil sensitivities.

    Returns:
        ``(B, H, W)`` complex image.
    """
    check_complex(kspace, "kspace", "B,C,H,W")
    check_complex(maps, "maps", "B,C,H,W")
    if kspace.shape != maps.shape:
        raise ValueError(f"kspace: expected the maps' shape {tuple(maps.shape)}, found {tuple(kspace.shape)}")
    check_finite(kspace, "kspace")
    return torch.linalg.vecdot(maps, ifft2c(kspace), dim=1)


def compress_coils(kspace: torch.Tensor, num_virtual: int) -> torch.Tensor:
    """Compress ``C`` coils to ``num_virtual`` virtual coils by SVD, per batch item.

    With ``K`` the ``C x (H W)`` matrix of one item, the virtual coils are ``U_v^H K`` where
    ``U_v`` holds the left singular vectors of the ``num_virtual`` largest singular values
    (eigenvectors of ``K K^H``). The transform is unitary across coils, so it keeps the
    largest share of signal energy a linear combination can keep; with
    ``num_virtual == C`` the root-sum-of-squares image is unchanged. Each vector's phase is
    fixed so that its first entry is real and non-negative (deterministic output).

    Args:
        kspace: ``(B, C, H, W)`` complex k-space.
        num_virtual: number of virtual coils, ``1 <= num_virtual <= C``.

    Returns:
        ``(B, num_virtual, H, W)`` complex k-space, virtual coil 0 the strongest.
    """
    check_complex(kspace, "kspace", "B,C,H,W")
    num_coils = kspace.shape[1]
    if not 1 <= num_virtual <= num_coils:
        raise ValueError(f"num_virtual: expected 1..{num_coils} (the number of coils), found {num_virtual}")
    check_finite(kspace, "kspace")
    matrix = kspace.flatten(2)
    wide = matrix.to(torch.complex128)
    covariance = wide @ wide.mH
    _, vectors = torch.linalg.eigh(covariance)
    vectors = vectors.flip(-1)[..., :num_virtual]
    first = vectors[..., :1, :]
    phase = torch.where(first.abs() > 0, first.conj() / first.abs().clamp_min(1e-300), torch.ones_like(first))
    vectors = (vectors * phase).to(kspace.dtype)
    return (vectors.mH @ matrix).reshape(kspace.shape[0], num_virtual, *kspace.shape[2:])
