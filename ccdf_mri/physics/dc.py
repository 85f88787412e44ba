"""Data-consistency maps ``x = A x' + b`` with a non-expansive linear part ``A`` (CCDF eq. 15).

Each map is called as ``dc(x_prime, op, y)``: ``x_prime`` the ``(B, H, W)`` image after a reverse
diffusion step, ``op`` a :class:`~ccdf_mri.physics.sense.SenseOp`, ``y`` the measured
(masked) k-space ``(B, C, H, W)``. ``linear_part(v, op)`` applies ``A`` alone (the map with
``y = 0``), which is what the non-expansiveness tests probe.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from ccdf_mri.physics.cg import conjugate_gradient
from ccdf_mri.physics.fft import fft2c, ifft2c
from ccdf_mri.physics.sense import SenseOp


class AffineDC:
    """Base of the maps: validates inputs, then ``_apply(x, op, y)``; ``y = None`` gives ``A x``.

    Subclasses implement ``_apply`` once, so the map and its linear part cannot drift apart.
    """

    def __call__(self, x_prime: torch.Tensor, op: SenseOp, y: torch.Tensor) -> torch.Tensor:
        """Data-consistent image ``(B, H, W)``."""
        op.check_image(x_prime, "x_prime")
        op.check_kspace(y, "y")
        return self._apply(x_prime, op, y)

    def linear_part(self, v: torch.Tensor, op: SenseOp) -> torch.Tensor:
        """The linear part ``A v`` of the map (the map with ``y = 0``) for ``v`` ``(B, H, W)``."""
        op.check_image(v, "v")
        return self._apply(v, op, None)

    def _apply(self, x_prime: torch.Tensor, op: SenseOp, y: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def bind(self, op: SenseOp, y: torch.Tensor) -> "AffineDC":
        """This map with whatever it derives from a batch's data computed once (the measured
        ``y`` does not change during sampling); maps with nothing to derive return themselves."""
        return self

    def select(self, index: torch.Tensor) -> "AffineDC":
        """The map for the batch rows ``index`` (``(R,)`` long) of a bound map."""
        return self


class ProjectionDC(AffineDC):
    """Projection onto the measurements: ``x = x' + E^+ (y - E x')``.

    Single coil (``op.is_single_coil``: one coil, ``|S| = 1``) this is the exact k-space
    replacement ``conj(S) F^-1((1 - M) F (S x') + M y)`` (``F^-1((1 - M) F x' + M y)`` for maps
    of ones). Multi-coil, ``E^+ r`` is the minimum-norm
    least-squares solution of ``E z = r``, found by CG on ``E^H E z = E^H r`` from ``z = 0``;
    it is exact for consistent ``y`` and still defined for noisy ``y``. The linear part
    ``I - E^+ E`` is the orthogonal projection onto the null space of ``E`` (norm <= 1; CG's
    2-norm error decreases monotonically, so the truncated map keeps that bound).

    Args:
        num_iters: CG iterations (multi-coil).
        tol: CG relative residual at which an item stops.
    """

    def __init__(self, num_iters: int = 20, tol: float = 1e-6) -> None:
        if num_iters < 1:
            raise ValueError(f"ProjectionDC num_iters: expected >= 1, found {num_iters}")
        self.num_iters = num_iters
        self.tol = tol

    def _apply(self, x_prime: torch.Tensor, op: SenseOp, y: Optional[torch.Tensor]) -> torch.Tensor:
        if op.is_single_coil:  # |S| = 1: replace the measured samples of F (S x'), then undo S
            maps = op.maps[:, 0]
            if op.mask is None:  # fully sampled: the measurement fixes the image
                return torch.zeros_like(x_prime) if y is None else maps.conj() * ifft2c(y).squeeze(1)
            kspace = fft2c((maps * x_prime).unsqueeze(1))
            sampled = op.mask.bool()
            kspace = kspace.masked_fill_(sampled, 0) if y is None else torch.where(sampled, y, kspace)
            return maps.conj() * ifft2c(kspace).squeeze(1)
        rhs = -op.normal(x_prime)
        if y is not None:
            rhs.add_(op.adjoint(y))
        return x_prime + conjugate_gradient(op.normal, rhs, None, self.num_iters, self.tol)


class ProximalDC(AffineDC):
    """Proximal step ``x = argmin ||E x - y||^2 + lam ||x - x'||^2``.

    Solves ``(E^H E + lam I) x = E^H y + lam x'`` by ``num_iters`` CG iterations started at
    ``x'``. Linear part ``lam (E^H E + lam I)^-1`` (norm <= 1).

    ``lam = "auto"`` sets the weight per item from the data, as the MAP step of a Gaussian
    model does: with k-space noise of standard deviation ``sigma`` (estimated from the
    measured periphery, :func:`ccdf_mri.physics.noise.estimate_kspace_noise`) and an error of
    ``prior_std`` per pixel in the network's image, ``lam = sigma^2 / prior_std^2``: noisy
    data are trusted less, clean data more. Measured (``benchmarks/results/real_validation/
    dc_probe_val.md``): the best fixed weight differs 20x between data 10 dB apart in SNR,
    which a fixed default cannot follow. ``prior_std = 0.02`` (0.3.2; was 0.0375, fitted with an
    earlier start) is the best of 0.005-0.07 with the L1-wavelet start and K = 2 on 12 val slices
    (``samples_val_{4x,8x}_prior_std*.md``): at 4x mean PSNR 39.62 against 39.38, SSIM 0.918
    against 0.903; at 8x 28.82 against 28.85, SSIM 0.838 against 0.831.

    Args:
        lam: proximal weight ``> 0`` (large = stay near ``x'``), or ``"auto"``.
        num_iters: CG iterations (an item stops earlier once its relative residual is below
            :attr:`tol`).
        prior_std: for ``lam = "auto"``: the network image's error per pixel, in the scaled
            units the inferer works in (the default was fitted on the validation set's val split).
        lam_min: lower bound of the automatic weight (noise-free data would give 0, an
            unregularised least-squares step).
    """

    tol = 1e-6  # CG relative residual at which an item stops

    def __init__(
        self, lam: Union[float, str, torch.Tensor] = 1.0, num_iters: int = 5, prior_std: float = 0.02, lam_min: float = 1e-3
    ) -> None:
        if isinstance(lam, torch.Tensor):  # per-row weights (B,), as :meth:`bind` makes them
            if lam.ndim != 1 or not bool((lam > 0).all()):
                raise ValueError(f"ProximalDC lam: expected a (B,) tensor of weights > 0, found shape {tuple(lam.shape)}")
        elif lam != "auto":
            try:
                lam = float(lam)
            except (TypeError, ValueError):
                raise ValueError(f"ProximalDC lam: expected a number > 0 or 'auto', found {lam!r}") from None
            if not lam > 0:
                raise ValueError(f"ProximalDC lam: expected > 0, found {lam}")
        if num_iters < 1:
            raise ValueError(f"ProximalDC num_iters: expected >= 1, found {num_iters}")
        if not prior_std > 0 or not lam_min > 0:
            raise ValueError(f"ProximalDC prior_std, lam_min: expected > 0, found {prior_std}, {lam_min}")
        self.lam = lam
        self.num_iters = num_iters
        self.prior_std = float(prior_std)
        self.lam_min = float(lam_min)

    def weight(self, op: SenseOp, y: Optional[torch.Tensor]):
        """The proximal weight: the fixed ``lam``, ``(B, 1, 1)`` per-row weights, or ``(B, 1, 1)`` from
        the noise of ``y`` for ``"auto"`` (``lam_min`` for the linear part, where there is no ``y``)."""
        if isinstance(self.lam, torch.Tensor):
            return self.lam.reshape(-1, 1, 1)
        if self.lam != "auto":
            return self.lam
        if y is None:
            return self.lam_min
        from ccdf_mri.physics.noise import estimate_kspace_noise

        sigma = estimate_kspace_noise(y, op.mask)
        return (sigma / self.prior_std).square().clamp_min(self.lam_min).reshape(-1, 1, 1)

    def bind(self, op: SenseOp, y: torch.Tensor) -> "ProximalDC":
        """For ``lam = "auto"``: the map with each row's weight estimated once from ``y`` (the
        estimate reads all of ``y``; sampling calls the map at every reverse step)."""
        if self.lam != "auto":
            return self
        return self._with_lam(self.weight(op, y).reshape(-1))

    def select(self, index: torch.Tensor) -> "ProximalDC":
        if not isinstance(self.lam, torch.Tensor):
            return self
        return self._with_lam(self.lam.index_select(0, index.to(self.lam.device)))

    def _with_lam(self, lam: torch.Tensor) -> "ProximalDC":
        return ProximalDC(lam, self.num_iters, self.prior_std, self.lam_min)

    def _apply(self, x_prime: torch.Tensor, op: SenseOp, y: Optional[torch.Tensor]) -> torch.Tensor:
        lam = self.weight(op, y)
        rhs = x_prime * lam
        if y is not None:
            rhs.add_(op.adjoint(y))

        def shifted_normal(v: torch.Tensor) -> torch.Tensor:
            return op.normal(v).add_(v * lam)

        return conjugate_gradient(shifted_normal, rhs, x_prime, self.num_iters, self.tol)


class GradientDC(AffineDC):
    """One gradient step on ``||E x - y||^2 / 2``: ``x = x' - step E^H (E x' - y)``.

    Linear part ``I - step E^H E``, non-expansive for ``0 < step <= 2 / ||E||^2``; the map
    accepts ``0 < step <= 1 / ||E||^2`` (CCDF's condition), with ``||E||^2`` from
    :meth:`SenseOp.max_eigenvalue` (power iteration, which approaches it from below).

    Args:
        step: step size, or ``None`` for ``1 / ||E||^2`` per batch item.

    Raises:
        ValueError: (on call) ``step`` above ``1 / ||E||^2`` for some batch item.
    """

    def __init__(self, step: Optional[float] = None) -> None:
        if step is not None and not step > 0:
            raise ValueError(f"GradientDC step: expected > 0 or None, found {step}")
        self.step = step

    def step_sizes(self, op: SenseOp) -> torch.Tensor:
        """Per-item step ``(B,)``; raises ValueError when a fixed step exceeds ``1 / ||E||^2``."""
        limit = 1.0 / op.max_eigenvalue()
        if self.step is None:
            return limit
        if bool((self.step > limit).any()):
            raise ValueError(
                f"GradientDC step: expected <= 1/||E||^2 = {float(limit.min()):.6g} "
                f"(non-expansive data consistency), found {self.step}"
            )
        return torch.full_like(limit, self.step)

    def _apply(self, x_prime: torch.Tensor, op: SenseOp, y: Optional[torch.Tensor]) -> torch.Tensor:
        gradient = op.normal(x_prime)
        if y is not None:
            gradient.sub_(op.adjoint(y))
        step = self.step_sizes(op).view(-1, 1, 1)
        return x_prime - step * gradient
