"""Batched conjugate gradient for Hermitian positive semi-definite systems ``A x = b``."""

from __future__ import annotations

from typing import Callable, Optional

import torch


def batch_dot_real(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item real part of the inner product, ``Re <a, b> = Re sum conj(a) * b``.

    Computed as a real dot product of the interleaved real/imaginary parts (no temporaries).

    Args:
        a, b: tensors ``(B, ...)`` of the same shape, both complex or both real.

    Returns:
        ``(B,)`` real tensor.
    """
    if torch.is_complex(a):
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    batch = a.shape[0]
    return torch.bmm(a.reshape(batch, 1, -1), b.reshape(batch, -1, 1)).view(batch)


def conjugate_gradient(
    normal_fn: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: Optional[torch.Tensor] = None,
    num_iters: int = 10,
    tol: float = 1e-6,
    stop_early: Optional[bool] = None,
) -> torch.Tensor:
    """Solve ``A x = rhs`` for each batch item by conjugate gradient.

    ``A`` (``normal_fn``) must be Hermitian positive semi-definite and act per batch item.
    Each item stops on its own once ``||rhs - A x|| <= tol * ||rhs||`` (its later updates are
    zero). Started from ``x0 = 0`` on a singular ``A`` with ``rhs`` in its range, the iterates
    stay in that range and approach the minimum-norm solution.

    Args:
        normal_fn: ``x (B, ...) -> A x (B, ...)``.
        rhs: ``(B, ...)`` right-hand side, complex or real.
        x0: start ``(B, ...)``; ``None`` = zeros.
        num_iters: maximum iterations (>= 0).
        tol: relative residual at which an item stops.
        stop_early: leave the loop once every item has stopped. The check reads a flag on the
            host, which on a GPU waits for the device at every iteration; the result is the same
            without it (stopped items get zero updates). None: on the CPU only.

    Returns:
        ``(B, ...)`` approximate solution, same dtype as ``rhs``.
    """
    if num_iters < 0:
        raise ValueError(f"num_iters: expected >= 0, found {num_iters}")
    if x0 is not None and x0.shape != rhs.shape:
        raise ValueError(f"x0: expected the rhs shape {tuple(rhs.shape)}, found {tuple(x0.shape)}")
    view = (-1,) + (1,) * (rhs.ndim - 1)
    if x0 is None:
        x = torch.zeros_like(rhs)
        residual = rhs.clone()
    else:
        x = x0.clone()
        residual = rhs - normal_fn(x)
    direction = residual.clone()
    res_sq = batch_dot_real(residual, residual)
    threshold = (tol**2) * batch_dot_real(rhs, rhs)
    active = res_sq > threshold
    if stop_early is None:
        stop_early = rhs.device.type == "cpu"
    for _ in range(num_iters):
        if stop_early and not bool(active.any()):
            break
        image = normal_fn(direction)
        curvature = batch_dot_real(direction, image)
        step = torch.where(active & (curvature > 0), res_sq / curvature, torch.zeros_like(curvature))
        x.add_(direction * step.view(view))
        residual.sub_(image * step.view(view))
        new_res_sq = batch_dot_real(residual, residual)
        ratio = torch.where(active & (res_sq > 0), new_res_sq / res_sq, torch.zeros_like(res_sq))
        direction.mul_(ratio.view(view)).add_(residual)
        res_sq = new_res_sq
        active = active & (res_sq > threshold) & (curvature > 0)
    return x
