"""CCDF reconstruction as a MONAI inferer: forward jump, then N' data-consistent reverse steps.

Scale of the data-consistency step. Samples are kept in VE coordinates ``x = image + sigma z``
(image scale), so the DC map ``dc(x, op, kspace)`` compares each sample with the measured
k-space at the right amplitude. For a VP sampler this is the paper's DC applied to
``x_vp / sqrt(abar_{i-1})``, or equivalently DC on ``x_vp`` against the k-space scaled by
``sqrt(abar_{i-1})`` (the DC maps are affine in ``(x', y)``); applying DC to ``x_vp`` against the
unscaled k-space would pull noisy samples towards an image ``1 / sqrt(abar)`` too bright.
The linear part of the map is unchanged, so eq. 15's non-expansiveness holds in both
coordinate systems.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from monai.inferers import Inferer

from ccdf_mri.diffusion.samplers import (
    DC_TARGETS,
    SAMPLERS,
    ComplexNoise,
    GeneratorArg,
    item_generators,
    make_epsilon_fn,
    reverse_diffusion,
)
from ccdf_mri.diffusion.schedules import VESchedule, VPSchedule
from ccdf_mri.physics.dc import ProximalDC
from ccdf_mri.physics.sense import SenseOp

DCMap = Callable[[torch.Tensor, SenseOp, torch.Tensor], torch.Tensor]


class CCDFInferer(Inferer):
    """Come-Closer-Diffuse-Faster reconstruction (CCDF paper, eq. 12-14).

    Args:
        schedule: the training schedule of the network (:class:`VPSchedule` or :class:`VESchedule`).
        sampler: ``"ddpm"``, ``"ddim"`` or ``"ve"`` (all driven by the same epsilon network).
        t0: fraction of the ladder to diffuse back from; ``N' = round(t0 * N)`` network
            evaluations. ``t0 = 0`` returns ``x0`` unchanged; ``t0 = 1`` ignores ``x0`` and starts
            from pure noise ``sigma_N z`` (conditional diffusion from noise, the baseline).
        num_steps: ``N``, evenly spaced training timesteps (``None`` = all of them).
        dc: data-consistency map ``dc(x, op, kspace) -> x`` (``ProjectionDC``, ``ProximalDC``,
            ``GradientDC``); default ``ProximalDC()``.
        eta: DDIM stochasticity (``sampler="ddim"`` only; 0 = deterministic).
        num_samples: ``K`` posterior samples per item, run in one batch; the call returns their
            mean and stores the pixel-wise standard deviation in :attr:`last_std`.
        dc_target: ``"sample"`` (the paper: DC after each reverse step) or ``"x0"`` (DC on the
            denoised estimate before re-noising, DDS-style).
        progress: tqdm bar over the reverse steps.
        corrector_steps: Langevin corrector steps per level (predictor-corrector, as in score
            SDE / score-MRI); each is one more network evaluation.
        snr: corrector signal-to-noise ratio.
        amp_dtype: on CUDA, run the network under autocast with this dtype (e.g.
            ``torch.bfloat16``); DC and sampler arithmetic stay float32.

    Attributes:
        last_nfe: network evaluations of the last call (per sample batch), i.e.
            ``N' * (1 + corrector_steps)``.
        last_std: ``(B, H, W)`` float pixel standard deviation over the ``K`` samples of the
            last call (``None`` when ``K = 1``).
    """

    def __init__(
        self,
        schedule: VPSchedule | VESchedule,
        sampler: str = "ddpm",
        t0: float = 0.2,
        num_steps: Optional[int] = None,
        dc: Optional[DCMap] = None,
        eta: float = 0.0,
        num_samples: int = 1,
        dc_target: str = "sample",
        progress: bool = False,
        *,
        corrector_steps: int = 0,
        snr: float = 0.16,
        amp_dtype: Optional[torch.dtype] = None,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, found {sampler!r}")
        if dc_target not in DC_TARGETS:
            raise ValueError(f"dc_target must be one of {DC_TARGETS}, found {dc_target!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, found {num_samples}")
        if eta < 0.0 or corrector_steps < 0:
            raise ValueError(f"eta and corrector_steps must be >= 0, found {eta}, {corrector_steps}")
        self.schedule = schedule
        self.sub = schedule.sub_schedule(num_steps)
        self.start = self.sub.start_level(t0)
        self.sampler, self.t0, self.eta, self.dc_target = sampler, float(t0), float(eta), dc_target
        self.dc: DCMap = ProximalDC() if dc is None else dc
        self.num_samples, self.progress = int(num_samples), bool(progress)
        self.corrector_steps, self.snr, self.amp_dtype = int(corrector_steps), float(snr), amp_dtype
        self.last_nfe = 0
        self.last_std: Optional[torch.Tensor] = None

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        op: SenseOp,
        kspace: torch.Tensor,
        generator: GeneratorArg = None,
    ) -> torch.Tensor:
        """Reconstruct from the initial estimate.

        Args:
            inputs: initial estimate ``x0``, complex ``(B, H, W)``, intensity-scaled.
            network: ``network(x (B,2,H,W), t (B,) long) -> eps (B,2,H,W)``.
            op: SENSE operator of the batch (maps ``(B, C, H, W)``, mask).
            kspace: measured (masked) k-space ``(B, C, H, W)``, same scaling as ``inputs``.
            generator: a ``torch.Generator`` (item noise streams seeded from it) or a sequence
                of ``B`` generators, one per item (item ``b``'s result then does not depend on
                the rest of the batch).

        Returns:
            complex ``(B, H, W)``: the reconstruction (mean of the ``K`` samples).
        """
        op.check_image(inputs, "inputs")
        op.check_kspace(kspace, "kspace")
        self.last_std = None
        self.last_nfe = 0
        if self.start == 0:
            return inputs
        batch, height, width = inputs.shape
        k = self.num_samples
        gens = item_generators(generator, batch)
        noise = ComplexNoise(gens, batch, (k, height, width), inputs.device)
        op_k, kspace_k = (op, kspace) if k == 1 else (_repeat_op(op, k), kspace.repeat_interleave(k, dim=0))

        def dc(x: torch.Tensor) -> torch.Tensor:
            return self.dc(x, op_k, kspace_k)

        with torch.no_grad():
            sigma = float(self.sub.sigmas[self.start])
            clean = torch.zeros_like(inputs) if self.t0 == 1.0 else inputs
            x = clean.repeat_interleave(k, dim=0) + sigma * noise()
            x, self.last_nfe = reverse_diffusion(
                x, self.start, self.sub, make_epsilon_fn(network, self.sub, self.amp_dtype), noise,
                self.sampler, self.eta, dc, self.dc_target, self.corrector_steps, self.snr, self.progress,
            )
            x = x.reshape(batch, k, height, width)
            if k > 1:
                self.last_std = x.std(dim=1)
            return x.mean(dim=1)


def _repeat_op(op: SenseOp, k: int) -> SenseOp:
    """The operator of a batch whose every item is repeated ``k`` times (item-major)."""
    mask = op.mask
    if mask is not None and mask.shape[0] > 1:
        mask = mask.repeat_interleave(k, dim=0)
    return SenseOp(op.maps.repeat_interleave(k, dim=0), mask)
