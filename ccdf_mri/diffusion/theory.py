"""CCDF's contraction theory (Lemma 1, eq. 16-18, Theorem 2) and an empirical t0 calibration.

Distances are squared Euclidean norms over all ``n`` real degrees of freedom of an image
(``n = 2 H W`` for a complex ``H x W`` image, whose noise has N(0, 1) real and imaginary parts).
Lemma 1 and eq. 18 are stated in each sampler's own coordinates: VP (``sqrt(abar)`` scaled)
for ``ddpm`` and, for ``ve`` and ``ddim``, the VE sigmas of the ladder.

The closed-form bound treats the network output as independent of the sample, so it is
loose; :func:`calibrate_t0` picks t0 from measured reconstructions instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ccdf_mri.diffusion.samplers import SAMPLERS
from ccdf_mri.diffusion.schedules import SubSchedule


def forward_jump_distance(a: float, b: float, initial_error: float, num_dims: int) -> float:
    """Lemma 1 (eq. 16): ``E||x_N' - x~_N'||^2 = a^2 eps0 + 2 b^2 n``.

    Expected squared distance after forward-jumping ``x0`` and the truth with independent noise.

    Args:
        a, b: forward-jump coefficients (``SubSchedule.forward_coefficients``).
        initial_error: ``eps0 = ||x0 - x~0||^2``.
        num_dims: ``n``, real degrees of freedom.
    """
    return a**2 * initial_error + 2.0 * b**2 * num_dims


def contraction_rates(sub: SubSchedule, sampler: str) -> torch.Tensor:
    """Per-level factors of eq. 18, float64 ``(N + 1,)`` (entry 0 unused, set to 0).

    * ``ddpm``: ``sqrt(alpha_i) (1 - abar_{i-1}) / (1 - abar_i)``;
    * ``ve``: ``(sigma_{i-1}^2 - sigma_0^2) / (sigma_i^2 - sigma_0^2)``;
    * ``ddim``: ``sigma_{i-1} / sigma_i``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, found {sampler!r}")
    sig, abar = sub.sigmas, sub.alphas_cumprod
    if sampler == "ddpm":
        rates = (abar[1:] / abar[:-1]).sqrt() * (1.0 - abar[:-1]) / (1.0 - abar[1:])
    elif sampler == "ve":
        var = sig**2 - sig[0] ** 2
        rates = var[:-1] / var[1:]
    else:
        rates = sig[:-1] / sig[1:]
    return torch.cat([torch.zeros(1, dtype=torch.float64), rates])


def contraction_rate(sub: SubSchedule, sampler: str, start: int) -> float:
    """``lambda = max_{1 <= i <= N'} lambda_i`` (eq. 18) for ``N' = start``."""
    if not 1 <= start <= sub.num_steps:
        raise ValueError(f"start must lie in [1, {sub.num_steps}], found {start}")
    return float(contraction_rates(sub, sampler)[1 : start + 1].max())


def error_bound(rate: float, start: int, start_error: float, noise_constant: float = 0.0, tau: float = 1.0) -> float:
    """Eq. 17: ``2 C tau / (1 - lambda^2) + lambda^(2 N') eps_N'``.

    Args:
        rate: ``lambda < 1``.
        start: ``N'``.
        start_error: ``eps_N'`` (e.g. from :func:`forward_jump_distance`).
        noise_constant: ``C``, the per-step stochastic error constant of Theorem 1.
        tau: ``Tr(A^T A) / n`` of the data-consistency map's linear part (``<= 1``).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"contraction rate must lie in [0, 1), found {rate}")
    return 2.0 * noise_constant * tau / (1.0 - rate**2) + rate ** (2 * start) * start_error


def select_t0(
    initial_error: float,
    sub: SubSchedule,
    sampler: str,
    num_dims: int,
    target: float = 0.5,
    noise_constant: float = 0.0,
    tau: float = 1.0,
) -> float:
    """Smallest ``t0 = N' / N`` whose eq. 17 bound is ``<= target * eps0`` (Theorem 2).

    ``lambda`` is the ladder-wide rate ``max_{i <= N} lambda_i`` (so the bound's
    ``lambda^(2N')`` factor decays with ``N'``, as in the proof of Theorem 2) and ``eps_N'``
    comes from Lemma 1 with the ladder's forward-jump coefficients.

    Args:
        initial_error: estimated ``eps0 = ||x0 - x~0||^2`` of the initializer.
        sub: sampling ladder; ``sampler``: ``"ddpm"``, ``"ddim"`` or ``"ve"``.
        num_dims: ``n``; ``target``: Theorem 2's ``mu`` in ``(0, 1]``.
        noise_constant, tau: ``C`` and ``tau`` of :func:`error_bound`.

    Raises:
        ValueError: no ``N' <= N`` reaches the target (the message gives the best ratio).
    """
    if not 0.0 < target <= 1.0 or not initial_error > 0.0:
        raise ValueError(f"need 0 < target <= 1 and initial_error > 0, found {target}, {initial_error}")
    rate = contraction_rate(sub, sampler, sub.num_steps)
    best = float("inf")
    for start in range(1, sub.num_steps + 1):
        a, b = sub.forward_coefficients(start)
        start_error = forward_jump_distance(a, b, initial_error, num_dims)
        ratio = error_bound(rate, start, start_error, noise_constant, tau) / initial_error
        if ratio <= target:
            return start / sub.num_steps
        best = min(best, ratio)
    raise ValueError(f"no t0 reaches bound/eps0 <= {target}; the smallest ratio on this ladder is {best:.4g}")


def calibrate_t0(
    evaluate: Callable[[float], float], candidates: Iterable[float], tolerance: float = 0.0
) -> tuple[float, dict[float, float]]:
    """Sweep t0 on validation data and keep the cheapest near-best value.

    Args:
        evaluate: ``evaluate(t0) -> error`` (reconstructs a few validation slices with that t0
            and returns a mean error such as NMSE; lower is better). Run once per acceleration.
        candidates: t0 values to try.
        tolerance: relative slack; the smallest t0 with ``error <= (1 + tolerance) * best`` wins.

    Returns:
        ``(best_t0, {t0: error})``.
    """
    errors = {float(t0): float(evaluate(float(t0))) for t0 in candidates}
    if not errors:
        raise ValueError("calibrate_t0: expected at least one candidate t0, found none")
    best = min(errors.values())
    return min(t0 for t0, err in errors.items() if err <= (1.0 + tolerance) * best), errors
