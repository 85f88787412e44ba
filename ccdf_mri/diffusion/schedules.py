"""Noise schedules (VP / DDPM and VE / SMLD) and strided sampling sub-schedules.

Two coordinate systems describe the same noisy image (CCDF paper, eq. 5 and 10):

* VP (variance preserving, DDPM): ``x_vp = sqrt(abar) x + sqrt(1 - abar) z``;
* VE (variance exploding, SMLD):  ``x_ve = x + sigma z``.

They are one rescaling apart: ``x_ve = x_vp / sqrt(abar)`` and
``sigma = sqrt((1 - abar) / abar)``. Every schedule therefore exposes both ``alphas_cumprod``
and ``sigmas`` over its training timesteps, and the samplers work in VE coordinates (image
scale, like EDM / k-diffusion), converting to the network's own coordinates with
``input_scales`` (``sqrt(abar)`` for a VP-trained network, ``1`` for a VE-trained one). So one
epsilon network trained with :class:`VPSchedule` drives the ``ddpm``, ``ddim`` and ``ve``
samplers alike.

All coefficients are float64. Timesteps ``t`` are 0-based training indices ``0..T-1``
(the ``(B,)`` integers a ``DiffusionModelUNet`` receives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULE_KINDS = ("vp", "ve")


@dataclass(frozen=True)
class SubSchedule:
    """A sampling ladder of ``N`` noise levels taken from a training schedule.

    Level ``i = 1..N`` uses training timestep ``timesteps[i]``; level ``0`` is the clean image
    (``sigmas[0] = 0``, ``timesteps[0] = -1``, never passed to a network). The reverse
    diffusion goes from level ``N'`` down to level ``0`` in ``N'`` network evaluations.

    Attributes:
        timesteps: ``(N + 1,)`` int64 training timesteps, strictly increasing from level 1.
        sigmas: ``(N + 1,)`` float64 VE noise levels, ``sigmas[0] = 0``.
        input_scales: ``(N + 1,)`` float64 factor turning a VE-coordinate sample into the
            network's input (``sqrt(abar)`` for VP networks, ``1`` for VE networks).
        kind: ``"vp"`` or ``"ve"``, the coordinates of the parent schedule (eq. 5 or eq. 10).
    """

    timesteps: torch.Tensor
    sigmas: torch.Tensor
    input_scales: torch.Tensor
    kind: str

    @property
    def num_steps(self) -> int:
        """``N``, the number of noisy levels."""
        return int(self.sigmas.numel()) - 1

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``(N + 1,)`` float64 ``abar_i = 1 / (1 + sigma_i^2)`` (``abar_0 = 1``)."""
        return 1.0 / (1.0 + self.sigmas**2)

    def start_level(self, t0: float) -> int:
        """``N' = round(t0 * N)``, the level the forward jump lands on (``0 <= t0 <= 1``)."""
        if not 0.0 <= t0 <= 1.0:
            raise ValueError(f"t0 must lie in [0, 1], found {t0}")
        return int(round(t0 * self.num_steps))

    def forward_coefficients(self, level: int) -> tuple[float, float]:
        """``(a, b)`` of the forward jump ``x_level = a x0 + b z`` in the parent's coordinates.

        VP (eq. 5): ``a = sqrt(abar)``, ``b = sqrt(1 - abar)``; VE (eq. 10): ``a = 1``, ``b = sigma``.
        """
        sigma = float(self.sigmas[level])
        if self.kind == "ve":
            return 1.0, sigma
        abar = 1.0 / (1.0 + sigma**2)
        return math.sqrt(abar), math.sqrt(1.0 - abar)


class _Schedule:
    """Shared behaviour of the training schedules (see :class:`VPSchedule`, :class:`VESchedule`)."""

    kind: str
    alphas_cumprod: torch.Tensor  # (T,) float64
    sigmas: torch.Tensor  # (T,) float64

    @property
    def num_train_steps(self) -> int:
        """``T``, the number of training timesteps."""
        return int(self.alphas_cumprod.numel())

    @property
    def input_scales(self) -> torch.Tensor:
        """``(T,)`` float64 factor from a VE-coordinate sample to the network input."""
        if self.kind == "ve":
            return torch.ones_like(self.sigmas)
        return self.alphas_cumprod.sqrt()

    def forward_coefficients(self, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a, b)`` float64 tensors shaped like ``timesteps`` (eq. 5 for VP, eq. 10 for VE)."""
        t = self._check_timesteps(timesteps)
        if self.kind == "ve":
            return torch.ones_like(self.sigmas[t]), self.sigmas[t]
        abar = self.alphas_cumprod[t]
        return abar.sqrt(), (1.0 - abar).sqrt()

    def add_noise(self, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Noisy network input ``a_t clean + b_t noise`` in the schedule's own coordinates.

        Args:
            clean: real ``(B, ...)`` images (e.g. ``(B, 2, H, W)``).
            noise: standard normal tensor shaped like ``clean``.
            timesteps: ``(B,)`` integer training timesteps.

        Returns:
            tensor shaped and typed like ``clean``.
        """
        a, b = self.forward_coefficients(timesteps.cpu())
        shape = (-1,) + (1,) * (clean.ndim - 1)
        a = a.to(device=clean.device, dtype=clean.dtype).reshape(shape)
        b = b.to(device=clean.device, dtype=clean.dtype).reshape(shape)
        return a * clean + b * noise

    def sub_schedule(self, num_steps: int | None = None) -> SubSchedule:
        """``N`` evenly spaced training timesteps ``tau_i = round(i T / N) - 1``, ``i = 1..N``.

        The top level is always ``T - 1`` (so ``t0 = 1`` starts at the noisiest step) and
        ``num_steps = None`` or ``T`` keeps every training step. DDPM on a strided ladder uses
        the exact posterior between consecutive kept timesteps (see ``samplers``).
        """
        total = self.num_train_steps
        n = total if num_steps is None else int(num_steps)
        if not 1 <= n <= total:
            raise ValueError(f"num_steps must lie in [1, {total}] (num_train_steps), found {num_steps}")
        levels = torch.arange(1, n + 1, dtype=torch.float64)
        kept = torch.round(levels * total / n).long() - 1
        timesteps = torch.cat([torch.tensor([-1]), kept])
        zero = torch.zeros(1, dtype=torch.float64)
        return SubSchedule(
            timesteps=timesteps,
            sigmas=torch.cat([zero, self.sigmas[kept]]),
            input_scales=torch.cat([zero + 1.0, self.input_scales[kept]]),
            kind=self.kind,
        )

    def _check_timesteps(self, timesteps: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(timesteps).long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_train_steps):
            raise ValueError(
                f"timesteps must lie in [0, {self.num_train_steps - 1}], found range "
                f"[{int(t.min())}, {int(t.max())}]"
            )
        return t


class VPSchedule(_Schedule):
    """DDPM / variance-preserving schedule (eq. 5).

    Args:
        num_train_steps: ``T``.
        beta_start, beta_end: first and last ``beta`` of the linear schedule (DDPM defaults).
        kind: ``"linear"`` (betas linear in t) or ``"cosine"`` (Nichol & Dhariwal, offset
            ``s = 0.008``, betas clipped at 0.999; ``beta_start``/``beta_end`` unused).
    """

    kind = "vp"

    def __init__(
        self, num_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, kind: str = "linear"
    ) -> None:
        if num_train_steps < 1:
            raise ValueError(f"num_train_steps must be >= 1, found {num_train_steps}")
        if kind == "linear":
            if not 0.0 < beta_start <= beta_end < 1.0:
                raise ValueError(f"need 0 < beta_start <= beta_end < 1, found {beta_start}, {beta_end}")
            betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
        elif kind == "cosine":
            s = 0.008
            steps = torch.arange(num_train_steps + 1, dtype=torch.float64) / num_train_steps
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1.0 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise ValueError(f"VPSchedule kind must be 'linear' or 'cosine', found {kind!r}")
        self.schedule_kind = kind
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.sigmas = ((1.0 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def __repr__(self) -> str:
        return f"VPSchedule(num_train_steps={self.num_train_steps}, kind={self.schedule_kind!r})"


class VESchedule(_Schedule):
    """SMLD / variance-exploding schedule (eq. 10): geometric ``sigma_min .. sigma_max``.

    ``sigma_t = sigma_min (sigma_max / sigma_min)^(t / (T - 1))``. A network trained with it
    sees ``x + sigma_t z`` and predicts ``z``. Pick ``sigma_max`` about the largest distance
    between two training images (intensity-scaled), as Song & Ermon recommend.
    """

    kind = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, num_train_steps: int = 1000) -> None:
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, found {sigma_min}, {sigma_max}")
        if num_train_steps < 2:
            raise ValueError(f"num_train_steps must be >= 2, found {num_train_steps}")
        ratio = torch.arange(num_train_steps, dtype=torch.float64) / (num_train_steps - 1)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sigmas = sigma_min * (sigma_max / sigma_min) ** ratio
        self.alphas_cumprod = 1.0 / (1.0 + self.sigmas**2)

    def __repr__(self) -> str:
        return (
            f"VESchedule(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, "
            f"num_train_steps={self.num_train_steps})"
        )
