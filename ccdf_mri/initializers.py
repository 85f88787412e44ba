"""Initial estimates x0 for CCDF: where the reverse diffusion starts from.

CCDF jumps forward from an initial image ``x0`` to the step ``N' = t0 N`` and runs only
``N'`` reverse steps; the better ``x0``, the smaller ``t0`` may be. Four initialisers, one
interface::

    initializer(op: SenseOp, kspace: (B, C, H, W) complex) -> x0: (B, H, W) complex

``kspace`` is the measured, already masked k-space and ``op = M F S`` the SENSE operator
of the same batch. Both are in intensity-scaled units (the pipeline divides the k-space by
the volume's scale first), so ``x0`` is too.

- ``zero_filled``: ``E^H y`` (the SENSE-combined zero-filled image);
- ``cg_sense``: a few conjugate-gradient iterations on ``(E^H E + lam I) x = E^H y``;
- ``l1_wavelet``: compressed sensing with Haar wavelets (FISTA with random shifts, in torch);
- ``unet``: a trained image-to-image network (``ccdf_mri.networks.initializer``) applied to
  the zero-filled image, real/imaginary channels in and out.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ccdf_mri.networks.complex import channels_to_complex, complex_to_channels
from ccdf_mri.physics import SenseOp, conjugate_gradient

Initializer = Callable[[SenseOp, torch.Tensor], torch.Tensor]
from ccdf_mri.choices import INITIALIZERS


class ZeroFilled:
    """``x0 = E^H y``: the zero-filled, coil-combined image."""

    def __call__(self, op: SenseOp, kspace: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` k-space -> ``(B, H, W)`` image."""
        return op.adjoint(kspace)


class CGSense:
    """CG-SENSE: conjugate-gradient iterations on ``(E^H E + lam I) x = E^H y`` from zero.

    Early stopping is the regulariser. With ``discrepancy`` each slice stops at
    the first iterate that explains the data down to its noise (Morozov's discrepancy
    principle): ``||E x - y||^2 <= tau^2 m sigma^2``, ``m`` the measured samples and ``sigma``
    the k-space noise estimated from the data (:func:`ccdf_mri.physics.noise.estimate_kspace_noise`);
    so noisy data stop early, near the (scaled) zero-filled image, and clean data go on to the
    SENSE solution, at most ``num_iters`` iterations. Without it (the default), exactly
    ``num_iters``: on the real-image validation set (SNR 40 dB, 30 slices) the principle stopped
    too early (median 28.7 dB vs 31.6 dB at 4x), as it is known to for CG.

    Args:
        num_iters: CG iterations (the most, with ``discrepancy``).
        lam: Tikhonov weight (>= 0), in the scaled intensity units.
        discrepancy: stop each slice by the discrepancy principle.
        tau: the principle's safety factor (>= 1 stops no later than the noise level).
    """

    def __init__(self, num_iters: int = 10, lam: float = 0.0, discrepancy: bool = False, tau: float = 1.0) -> None:
        if num_iters < 1:
            raise ValueError(f"cg_sense: expected num_iters >= 1, found {num_iters}")
        if lam < 0 or tau <= 0:
            raise ValueError(f"cg_sense: expected lam >= 0 and tau > 0, found {lam}, {tau}")
        self.num_iters = int(num_iters)
        self.lam = float(lam)
        self.discrepancy = bool(discrepancy)
        self.tau = float(tau)

    def __call__(self, op: SenseOp, kspace: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` k-space -> ``(B, H, W)`` image."""
        rhs = op.adjoint(kspace)
        lam = self.lam

        def normal(x: torch.Tensor) -> torch.Tensor:
            return op.normal(x) + lam * x if lam else op.normal(x)

        if not self.discrepancy:
            return conjugate_gradient(normal, rhs, x0=torch.zeros_like(rhs), num_iters=self.num_iters, tol=0.0)
        return self._stopped(op, kspace, rhs, normal)

    def _stopped(self, op: SenseOp, kspace: torch.Tensor, rhs: torch.Tensor, normal) -> torch.Tensor:
        from ccdf_mri.physics.cg import batch_dot_real
        from ccdf_mri.physics.noise import estimate_kspace_noise

        view = (-1, 1, 1)
        mask = torch.ones_like(kspace.real) if op.mask is None else torch.broadcast_to(op.mask, kspace.shape)
        measured = mask.flatten(1).sum(dim=1)
        limit = self.tau**2 * measured * estimate_kspace_noise(kspace, op.mask).square()
        y_norm = batch_dot_real(kspace, kspace)
        x = torch.zeros_like(rhs)
        gram_x = torch.zeros_like(rhs)  # E^H E x, kept to track ||E x - y||^2 without a forward pass
        residual, direction = rhs.clone(), rhs.clone()
        res_sq = batch_dot_real(residual, residual)
        active = y_norm > limit
        for _ in range(self.num_iters):
            if not bool(active.any()):
                break
            image = normal(direction)
            curvature = batch_dot_real(direction, image)
            step = torch.where(active & (curvature > 0), res_sq / curvature.clamp_min(1e-30), torch.zeros_like(curvature))
            x = x + direction * step.view(view)
            gram_x = gram_x + op.normal(direction) * step.view(view) if self.lam else gram_x + image * step.view(view)
            residual = residual - image * step.view(view)
            new_res_sq = batch_dot_real(residual, residual)
            direction = residual + direction * torch.where(res_sq > 0, new_res_sq / res_sq.clamp_min(1e-30), torch.zeros_like(res_sq)).view(view)
            res_sq = new_res_sq
            data_sq = y_norm - 2 * batch_dot_real(x, rhs) + batch_dot_real(x, gram_x)  # ||E x - y||^2
            active = active & (data_sq > limit) & (curvature > 0)
        return x


class L1Wavelet:
    """Compressed sensing: ``min_x 1/2 ||E x - y||^2 + lam ||Psi x||_1``, ``Psi`` an orthogonal
    wavelet transform (Haar, 5 levels), by FISTA with random shifts, zero outside the coil
    maps' support, in torch on the k-space's device, slice by slice
    (:func:`ccdf_mri.physics.wavelet.l1_wavelet_recon`).

    Defaults tuned on 12 slices of the real-image validation set's val split (100 iterations;
    ``benchmarks/results/real_validation/l1_val_{4x,8x}.md``): Haar beat Daubechies-2/4 by 0.5-0.7 dB
    at 8x; ``lam`` 0.0005 was best at 4x (37.3 dB), 0.0015 at 8x (28.2 dB); 0.001 is within
    0.4 / 0.03 dB of both.

    Args:
        lam: l1 weight, in the scaled intensity units (images of magnitude about 1).
        max_iter: FISTA iterations.
        wavelet, levels: the transform.
        seed: seed of the random shifts (fixed: the same input gives the same ``x0``).
    """

    def __init__(self, lam: float = 0.001, max_iter: int = 100, wavelet: str = "haar", levels: int = 5, seed: int = 0) -> None:
        if lam < 0 or max_iter < 1:
            raise ValueError(f"l1_wavelet: expected lam >= 0 and max_iter >= 1, found {lam}, {max_iter}")
        self.lam, self.max_iter = float(lam), int(max_iter)
        self.wavelet, self.levels, self.seed = wavelet, int(levels), int(seed)

    def __call__(self, op: SenseOp, kspace: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` k-space -> ``(B, H, W)`` image, item by item (so that an item's
        ``x0`` does not depend on the batch it came in, to the bit)."""
        from ccdf_mri.physics.wavelet import l1_wavelet_recon

        images = [l1_wavelet_recon(op.select([b]), kspace[b : b + 1], self.lam, self.max_iter, self.wavelet, self.levels, seed=self.seed)
                  for b in range(kspace.shape[0])]
        return torch.cat(images)


class UNetInitializer:
    """A trained initializer network applied to the zero-filled image.

    Args:
        network: module mapping ``(B, 2, H, W)`` real/imaginary channels of the scaled
            zero-filled image to ``(B, 2, H, W)`` channels of the estimate
            (``ccdf_mri.networks.initializer.make_initializer_network``).
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    @torch.no_grad()
    def __call__(self, op: SenseOp, kspace: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` k-space -> ``(B, H, W)`` image."""
        zero_filled = op.adjoint(kspace)
        return channels_to_complex(self.network(complex_to_channels(zero_filled)))


def make_initializer(
    name: str,
    network: Optional[torch.nn.Module] = None,
    cg_iters: int = 10,
    cg_lam: float = 0.0,
    l1_lam: float = 0.001,
    l1_iters: int = 100,
) -> Initializer:
    """Build an initialiser by name.

    Args:
        name: one of :data:`INITIALIZERS`.
        network: the trained initializer network; required for ``"unet"``.
        cg_iters, cg_lam: options of :class:`CGSense`.
        l1_lam, l1_iters: options of :class:`L1Wavelet`.

    Raises:
        ValueError: unknown name, or ``"unet"`` without a network.
    """
    if name == "zero_filled":
        return ZeroFilled()
    if name == "cg_sense":
        return CGSense(cg_iters, cg_lam)
    if name == "l1_wavelet":
        return L1Wavelet(l1_lam, l1_iters)
    if name == "unet":
        if network is None:
            raise ValueError("initializer 'unet': expected a trained initializer network, found none")
        return UNetInitializer(network)
    raise ValueError(f"initializer: expected one of {INITIALIZERS}, found {name!r}")
