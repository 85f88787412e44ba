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

from typing import Callable, Optional, Union

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
    maps' support, in torch on the k-space's device, the batch at once
    (:func:`ccdf_mri.physics.wavelet.l1_wavelet_recon`).

    ``lam = "auto"`` (the bundle's default) sets the weight per slice from the data::

        lam = clamp(noise_weight * (R / 4) ** acceleration_power * sigma ** noise_power, lam_min, lam_max)

    ``sigma`` the k-space noise estimated from the outer k-space
    (:func:`ccdf_mri.physics.noise.estimate_kspace_noise`), ``R = 1 / mean(mask)``. The MAP
    weight under Gaussian noise and a Laplace prior on the wavelet details would be
    ``sigma^2 / b``; the aliasing of undersampling is extra "noise" that does not scale with
    ``sigma`` and grows with ``R``. The constants (1.0, 2.0, 1.5) are fitted to the weight that
    gave the best **CCDF** result from the start (not the best start: CCDF prefers a smoother
    start at 8x and a sharper one on noisy data) on 12 val slices of the real-image validation
    set at 4x and 8x and the 8 demo test slices at 4x
    (``benchmarks/results/real_validation/l1_weight_summary.md``); fitted for ``R`` in [4, 8] and
    ``sigma`` in [0.005, 0.03] (the weights there: 0.0004-0.0047). Outside, the rule is clamped to
    ``[lam_min, lam_max]``: with much noisier data (small generated cases of ``tests/test_default_start.py``
    at 30 dB, where it would give 0.2) a large weight made a texture worse than zero-filling.
    A fixed weight cannot serve both sets: the best was about 0.0005 (val, 4x) and 0.0046
    (demo, 4x noisier k-space).

    Args:
        lam: l1 weight in the scaled intensity units (images of magnitude about 1), or ``"auto"``.
        max_iter: FISTA iterations.
        wavelet, levels: the transform.
        seed: seed of the random shifts (fixed: the same input gives the same ``x0``).
        noise_weight, acceleration_power, noise_power, lam_min, lam_max: the ``"auto"`` rule above.
        items_per_call: slices per FISTA run; None: the whole batch on CUDA (item by item was
            launch-bound there: 174 ms per slice at batch 8, fastMRI geometry, H200;
            ``benchmarks/results/gpu/README.md``), one at a time on the CPU (batched was 1.5x
            slower there in a one-off timing: 2.6 s against 1.8 s for 4 demo slices, 2 cores).
    """

    def __init__(self, lam: Union[float, str] = "auto", max_iter: int = 100, wavelet: str = "haar", levels: int = 5, seed: int = 0,
                 noise_weight: float = 1.0, acceleration_power: float = 2.0, noise_power: float = 1.5,
                 lam_min: float = 0.00025, lam_max: float = 0.005, items_per_call: Optional[int] = None) -> None:
        if lam != "auto" and (isinstance(lam, str) or lam < 0):
            raise ValueError(f"l1_wavelet: expected lam >= 0 or 'auto', found {lam!r}")
        if max_iter < 1 or noise_weight <= 0 or not 0 <= lam_min <= lam_max:
            raise ValueError(f"l1_wavelet: expected max_iter >= 1, noise_weight > 0, 0 <= lam_min <= lam_max, "
                             f"found {max_iter}, {noise_weight}, {lam_min}, {lam_max}")
        self.lam = lam if lam == "auto" else float(lam)
        self.max_iter = int(max_iter)
        self.wavelet, self.levels, self.seed = wavelet, int(levels), int(seed)
        self.noise_weight, self.acceleration_power, self.lam_min = float(noise_weight), float(acceleration_power), float(lam_min)
        self.noise_power, self.lam_max = float(noise_power), float(lam_max)
        if items_per_call is not None and items_per_call < 1:
            raise ValueError(f"l1_wavelet: expected items_per_call >= 1 or None, found {items_per_call}")
        self.items_per_call = items_per_call

    def weights(self, op: SenseOp, kspace: torch.Tensor) -> torch.Tensor:
        """The l1 weight of each item ``(B,)``: ``lam``, or the ``"auto"`` rule."""
        batch = kspace.shape[0]
        if self.lam != "auto":
            return torch.full((batch,), self.lam, dtype=kspace.real.dtype)
        from ccdf_mri.physics.noise import estimate_kspace_noise

        sigma = estimate_kspace_noise(kspace, op.mask).cpu()
        if op.mask is None:
            fraction = torch.ones(batch, dtype=sigma.dtype)
        else:
            mask = torch.broadcast_to(op.mask != 0, (batch, *op.mask.shape[1:])).flatten(1)
            fraction = mask.to(sigma.dtype).mean(dim=1).cpu().clamp_min(1e-6)
        lam = self.noise_weight * (1.0 / (4.0 * fraction)) ** self.acceleration_power * sigma**self.noise_power
        return lam.clamp(self.lam_min, self.lam_max)

    def __call__(self, op: SenseOp, kspace: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` k-space -> ``(B, H, W)`` image, ``items_per_call`` items at a time.
        Weights, step sizes and shifts are per item, so an item's ``x0`` depends on how the
        batch is split only through rounding (about 1e-5 relative)."""
        from ccdf_mri.physics.wavelet import l1_wavelet_recon

        lam = self.weights(op, kspace).to(kspace.device)
        chunk = self.items_per_call or (kspace.shape[0] if kspace.device.type == "cuda" else 1)
        images = []
        for start in range(0, kspace.shape[0], chunk):
            items = list(range(start, min(start + chunk, kspace.shape[0])))
            part = op if len(items) == kspace.shape[0] else op.select(items)
            images.append(l1_wavelet_recon(part, kspace[items[0] : items[-1] + 1], lam[items[0] : items[-1] + 1],
                                           self.max_iter, self.wavelet, self.levels, seed=self.seed))
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
    l1_lam: Union[float, str] = "auto",
    l1_iters: int = 100,
) -> Initializer:
    """Build an initialiser by name.

    Args:
        name: one of :data:`INITIALIZERS`.
        network: the trained initializer network; required for ``"unet"``.
        cg_iters, cg_lam: options of :class:`CGSense`.
        l1_lam, l1_iters: options of :class:`L1Wavelet` (``l1_lam`` a number or ``"auto"``).

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
