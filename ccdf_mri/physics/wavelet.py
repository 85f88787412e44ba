"""Orthogonal 2-D wavelet transform (periodic boundary) and L1-wavelet compressed sensing, in torch.

:class:`Wavelet2D` is the multi-level separable discrete wavelet transform with periodic
extension (PyWavelets' ``wavedec2(..., mode="periodization")``, the coefficients in the
Mallat layout of one ``(H, W)`` array). Each level is a product with small orthogonal
matrices, ``Y = A_H X A_W^T`` on the current low-pass block, so the transform is orthogonal:
its adjoint is its inverse, on any device, batched, for real or complex images.

:func:`l1_wavelet_recon` solves ``min_x 1/2 ||E x - y||^2 + lam ||Psi x||_1`` (``Psi`` the
wavelet detail coefficients; the coarsest approximation is not penalised) by FISTA, with a
random circular shift of the image before each proximal step (cycle spinning, as BART's
``pics -l1`` does by default): the shifts average the decimated transform's blocking
artefacts away.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Optional, Sequence, Union

import torch


@lru_cache(maxsize=None)
def _filters(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Decomposition low- and high-pass filters of an orthogonal wavelet (PyWavelets' values)."""
    import pywt  # a dependency of sigpy; read once per name

    wavelet = pywt.Wavelet(name)
    if not wavelet.orthogonal:
        raise ValueError(f"wavelet: expected an orthogonal wavelet (haar, db2, db4, sym4, ...), found {name!r}")
    return tuple(wavelet.dec_lo), tuple(wavelet.dec_hi)


def analysis_matrix(length: int, name: str = "db4", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n, n)`` orthogonal matrix of one periodic DWT level along an axis of length ``n``:
    rows ``0..n/2-1`` low-pass, ``n/2..n-1`` high-pass (PyWavelets' ``dwt(mode="periodization")``)."""
    if length < 2 or length % 2:
        raise ValueError(f"wavelet: expected an even axis length >= 2, found {length}")
    low, high = _filters(name)
    taps = len(low)
    matrix = torch.zeros(length, length, dtype=torch.float64)
    half = length // 2
    for i in range(half):
        for j in range(taps):
            column = (2 * i + taps // 2 - j) % length
            matrix[i, column] += low[j]
            matrix[half + i, column] += high[j]
    return matrix.to(dtype)


def max_levels(shape: Sequence[int], levels: int) -> int:
    """The most levels (at most ``levels``) for which every axis stays even at each level."""
    count = 0
    sizes = list(shape)
    while count < levels and all(s % 2 == 0 and s >= 4 for s in sizes):
        sizes = [s // 2 for s in sizes]
        count += 1
    return count


class Wavelet2D:
    """Multi-level orthogonal 2-D DWT over the last two axes (Mallat layout, periodic boundary).

    Args:
        shape: ``(H, W)`` of the images.
        name: an orthogonal PyWavelets wavelet (``"db4"``, ``"db2"``, ``"haar"``, ...).
        levels: the most decomposition levels (fewer when an axis stops being even).
        device: where the level matrices live.
    """

    def __init__(self, shape: Sequence[int], name: str = "db4", levels: int = 4, device: Any = None) -> None:
        height, width = (int(s) for s in shape)
        self.shape, self.name = (height, width), name
        self.levels = max_levels((height, width), levels)
        if self.levels == 0:
            raise ValueError(f"wavelet: expected image sides divisible by 2 (and >= 4), found {shape}")
        self._matrices = [
            (analysis_matrix(height >> j, name).to(device), analysis_matrix(width >> j, name).to(device))
            for j in range(self.levels)
        ]
        detail = torch.ones(height, width, dtype=torch.bool)
        detail[: height >> self.levels, : width >> self.levels] = False
        self.detail = detail.to(device)  # True where a coefficient is a detail (penalised) one
        self._converted: dict = {}  # (dtype, device) -> level matrices converted for it

    def _levels_for(self, x: torch.Tensor) -> list:
        """The level matrices in ``x``'s dtype (complex for complex ``x``) and device, converted
        once per (dtype, device) and kept: the transform runs twice per FISTA iteration."""
        key = (x.dtype, x.device)
        if key not in self._converted:
            real = x.real.dtype if x.is_complex() else x.dtype
            self._converted[key] = [tuple(m.to(device=x.device, dtype=real).to(x.dtype) for m in pair) for pair in self._matrices]
        return self._converted[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(..., H, W)`` -> coefficients ``(..., H, W)``."""
        out = x.clone()
        for j, (a_h, a_w) in enumerate(self._levels_for(x)):
            h, w = self.shape[0] >> j, self.shape[1] >> j
            block = out[..., :h, :w]
            out[..., :h, :w] = a_h @ block @ a_w.transpose(0, 1)
        return out

    def adjoint(self, c: torch.Tensor) -> torch.Tensor:
        """Coefficients ``(..., H, W)`` -> images (the inverse: the transform is orthogonal)."""
        out = c.clone()
        levels = self._levels_for(c)
        for j in reversed(range(self.levels)):
            a_h, a_w = levels[j]
            h, w = self.shape[0] >> j, self.shape[1] >> j
            block = out[..., :h, :w]
            out[..., :h, :w] = a_h.transpose(0, 1) @ block @ a_w
        return out


def soft_threshold(c: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Complex soft thresholding ``c max(0, 1 - t / |c|)`` (the prox of ``t |c|``)."""
    magnitude = c.abs()
    return c * (1 - threshold / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)).clamp_min(0)


def l1_wavelet_recon(
    op: Any,
    kspace: torch.Tensor,
    lam: Union[float, torch.Tensor],
    num_iters: int = 100,
    wavelet: str = "db4",
    levels: int = 4,
    shift: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """``argmin_x 1/2 ||E x - y||^2 + lam ||Psi x||_1`` by FISTA with random shifts (module docstring).

    Args:
        op: the batch's :class:`ccdf_mri.physics.SenseOp` ``E``.
        kspace: measured k-space ``y`` ``(B, C, H, W)``.
        lam: the l1 weight, in the k-space's (intensity-scaled) units: one for the batch, or
            one per item ``(B,)``.
        num_iters: FISTA iterations.
        wavelet, levels: the transform (:class:`Wavelet2D`).
        shift: cycle spinning: shift the image by a random ``(dy, dx)`` in ``[0, 2^levels)``
            before each proximal step (one draw per iteration for the whole batch, from
            ``seed``). Shifts, step sizes (the power iteration starts every item from the same
            vector) and weights are per item, so an item's result depends on its batch only
            through the rounding of batched transforms.
        seed: seed of the shifts.

    Returns:
        ``(B, H, W)`` images.
    """
    rhs = op.adjoint(kspace)
    lam = torch.as_tensor(lam, dtype=rhs.real.dtype).to(rhs.device)
    if bool((lam < 0).any()) or num_iters < 1 or lam.ndim > 1 or lam.numel() not in (1, rhs.shape[0]):
        raise ValueError(f"l1_wavelet: expected lam >= 0 (one, or one per item of {rhs.shape[0]}) and num_iters >= 1, "
                         f"found {lam.tolist()}, {num_iters}")
    transform = Wavelet2D(rhs.shape[-2:], wavelet, levels, rhs.device)
    step = 1.0 / op.max_eigenvalue(num_iters=20).clamp_min(1e-12).reshape(-1, 1, 1)  # 1 / ||E||^2 per item
    # power iteration approaches ||E||^2 from below: a 1 % margin keeps the step stable
    step = step / 1.01
    threshold = lam.reshape(-1, 1, 1) * step
    period = 1 << transform.levels
    generator = torch.Generator().manual_seed(int(seed))
    support = (op.maps.abs().square().sum(dim=1) > 0).to(rhs.real.dtype)  # no data constrain x outside the maps
    x = torch.zeros_like(rhs)
    z, momentum = x, 1.0
    for _ in range(num_iters):
        v = z - step * (op.normal(z) - rhs)
        dy, dx = (torch.randint(period, (2,), generator=generator).tolist() if shift else (0, 0))
        v = torch.roll(v, (dy, dx), dims=(-2, -1))
        coeffs = transform.forward(v)
        coeffs = torch.where(transform.detail, soft_threshold(coeffs, threshold), coeffs)
        x_new = torch.roll(transform.adjoint(coeffs), (-dy, -dx), dims=(-2, -1)) * support
        next_momentum = (1 + math.sqrt(1 + 4 * momentum**2)) / 2
        z = x_new + ((momentum - 1) / next_momentum) * (x_new - x)
        x, momentum = x_new, next_momentum
    return x


def l1_objective(op: Any, kspace: torch.Tensor, x: torch.Tensor, lam: float, wavelet: Optional[Wavelet2D] = None) -> torch.Tensor:
    """``1/2 ||E x - y||^2 + lam ||Psi x||_1`` per item ``(B,)`` (unshifted transform)."""
    transform = wavelet or Wavelet2D(x.shape[-2:], device=x.device)
    residual = (op.forward(x) - kspace).abs().square().flatten(1).sum(1) / 2
    coeffs = transform.forward(x)
    return residual + lam * (coeffs.abs() * transform.detail).flatten(1).sum(1)
