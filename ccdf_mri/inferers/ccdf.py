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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from monai.inferers import Inferer

from ccdf_mri.diffusion.samplers import (
    DC_TARGETS,
    SAMPLERS,
    ComplexNoise,
    GeneratorArg,
    item_generators,
    jump_and_reverse,
    make_epsilon_fn,
)
from ccdf_mri.diffusion.schedules import SubSchedule, VESchedule, VPSchedule
from ccdf_mri.diffusion.speed_options import resolve_amp_dtype
from ccdf_mri.physics.dc import ProximalDC
from ccdf_mri.physics.sense import SenseOp, select_rows

DCMap = Callable[[torch.Tensor, SenseOp, torch.Tensor], torch.Tensor]
T0 = Union[float, str, Sequence[float], torch.Tensor]


@dataclass
class CCDFResult:
    """What one call of :class:`CCDFInferer` produced.

    Attributes:
        mean: complex ``(B, H, W)``: the reconstruction (mean of the ``K`` samples).
        std: real ``(B, H, W)`` pixel standard deviation over the ``K`` samples, or None (``K = 1``).
        nfe: ``(B,)`` int64 network evaluations per item, all its ``K`` samples together:
            ``K N'_b (1 + corrector_steps)``, plus for ``t0 = "auto"`` the selector's probes
            (spent once per item, on ``x0``).
        t0: ``(B,)`` float64, the ``t0`` each item started from.
    """

    mean: torch.Tensor
    std: Optional[torch.Tensor]
    nfe: torch.Tensor
    t0: torch.Tensor


class CCDFInferer(Inferer):
    """Come-Closer-Diffuse-Faster reconstruction (CCDF paper, eq. 12-14).

    Args:
        schedule: the training schedule of the network (:class:`VPSchedule` or :class:`VESchedule`).
        sampler: ``"ddpm"``, ``"ddim"`` or ``"ve"`` (all driven by the same epsilon network).
        t0: fraction of the ladder to diffuse back from; ``N' = round(t0 * N)`` network
            evaluations. ``t0 = 0`` returns ``x0`` unchanged; ``t0 = 1`` ignores ``x0`` and starts
            from pure noise ``sigma_N z`` (conditional diffusion from noise, the baseline).
            ``"auto"``: ``t0_selector`` chooses per item.
        num_steps: ``N``, evenly spaced training timesteps (``None`` = all of them).
        dc: data-consistency map ``dc(x, op, kspace) -> x`` (``ProjectionDC``, ``ProximalDC``,
            ``GradientDC``); default ``ProximalDC()``.
        eta: DDIM stochasticity (``sampler="ddim"`` only; 0 = deterministic).
        num_samples: ``K`` posterior samples per item, run in one batch; the result holds
            their mean and pixel-wise standard deviation.
        dc_target: ``"sample"`` (the paper: DC after each reverse step) or ``"x0"`` (DC on the
            denoised estimate before re-noising, DDS-style).
        progress: tqdm bar over the reverse steps.
        t0_selector: for ``t0="auto"``: ``selector(x0, op, kspace, eps_fn, sub) -> (B,) t0``
            (e.g. :class:`ccdf_mri.diffusion.t0.CalibratedT0`).
        corrector_steps: Langevin corrector steps per level (predictor-corrector, as in score
            SDE / score-MRI); each is one more network evaluation.
        snr: corrector signal-to-noise ratio.
        amp_dtype: run the network under autocast with this dtype (``torch.bfloat16`` or its
            name ``"bfloat16"``), on CUDA or the CPU; DC and sampler arithmetic stay float32.
            ``"auto"``: bf16 for a convolutional network on a CPU with native bf16 (AVX512-BF16 /
            AMX), where it about halves the network's time at PSNR within 0.01 dB
            (``benchmarks/results/step_cost.md``), float32 elsewhere. None (default): float32.
            Not the default: bf16 rounding makes outputs depend on the batch size (5e-4
            relative, float32: 1e-6) and moves them by ~0.3 % under input changes at float32
            rounding (``tests/test_app.py`` checks both to 1e-4 / 2e-3).
        channels_last: run the network in channels-last layout (no complex <-> channels copies,
            faster oneDNN convolutions on the CPU); equal to float32 rounding
            (:func:`ccdf_mri.diffusion.samplers.make_epsilon_fn`). Converts a module's weights'
            layout in place. None (default): on for convolutional networks on the CPU, where it
            measured 1.1-1.2x faster per step (:func:`ccdf_mri.diffusion.speed_options.speed_options`);
            its outputs stay as independent of the batch size as the NCHW path's (1e-6).
        compile: ``torch.compile`` the network once per network object (inductor; the first
            call compiles, on the CPU for a minute or more); equal to float32 rounding.
    """

    def __init__(
        self,
        schedule: VPSchedule | VESchedule,
        sampler: str = "ddpm",
        t0: Union[float, str] = 0.2,
        num_steps: Optional[int] = None,
        dc: Optional[DCMap] = None,
        eta: float = 0.0,
        num_samples: int = 1,
        dc_target: str = "sample",
        progress: bool = False,
        t0_selector: Optional[Callable[..., torch.Tensor]] = None,
        *,
        corrector_steps: int = 0,
        snr: float = 0.16,
        amp_dtype: Union[torch.dtype, str, None] = None,
        channels_last: Optional[bool] = None,
        compile: bool = False,
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
        self.sub: SubSchedule = schedule.sub_schedule(num_steps)
        self.t0 = check_t0(t0)
        if self.t0 == "auto" and t0_selector is None:
            raise ValueError("t0 'auto': expected a t0_selector (e.g. ccdf_mri.diffusion.t0.CalibratedT0), found None")
        self.t0_selector = t0_selector
        self.sampler, self.eta, self.dc_target = sampler, float(eta), dc_target
        self.dc: DCMap = ProximalDC() if dc is None else dc
        self.num_samples, self.progress = int(num_samples), bool(progress)
        self.corrector_steps, self.snr = int(corrector_steps), float(snr)
        self.amp_dtype = resolve_amp_dtype(amp_dtype)
        self.channels_last = None if channels_last is None else bool(channels_last)
        self.compile = bool(compile)
        self._compiled: dict[int, tuple[torch.nn.Module, Callable]] = {}

    @property
    def num_steps(self) -> int:
        """``N``, the levels of the sampling ladder."""
        return self.sub.num_steps

    def epsilon_fn(self, network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
        """``eps_fn(x, level)`` of ``network`` with this inferer's speed options (autocast,
        channels-last, compiled network)."""
        if self.compile and isinstance(network, torch.nn.Module):
            if self.channels_last:  # before compiling, so the graph sees the final layout
                network.to(memory_format=torch.channels_last)
            key = id(network)
            if key not in self._compiled or self._compiled[key][0] is not network:
                self._compiled[key] = (network, torch.compile(network))
            network = self._compiled[key][1]
        return make_epsilon_fn(network, self.sub, self.amp_dtype, self.channels_last)

    def start_levels(self, t0: torch.Tensor) -> list[int]:
        """``N'_b = round(t0_b N)`` per item."""
        return [self.sub.start_level(float(value)) for value in t0.tolist()]

    def resolve_t0(self, inputs: torch.Tensor, network, op: SenseOp, kspace: torch.Tensor, t0: Optional[T0] = None) -> torch.Tensor:
        """``(B,)`` float64 ``t0`` per item: ``t0`` given here, else the inferer's (``"auto"`` asks the selector)."""
        value = self.t0 if t0 is None else t0
        batch = inputs.shape[0]
        if isinstance(value, str):
            check_t0(value)
            if self.t0_selector is None:
                raise ValueError("t0 'auto': expected a t0_selector, found None")
            value = self.t0_selector(inputs, op, kspace, self.epsilon_fn(network), self.sub)
        values = torch.as_tensor(value, dtype=torch.float64).reshape(-1).cpu()
        if values.numel() == 1:
            values = values.expand(batch).clone()
        if values.numel() != batch:
            raise ValueError(f"t0: expected one value or {batch} (one per item), found {values.numel()}")
        for item in values.tolist():
            check_t0(item)
        return values

    def selector_evaluations(self, t0: Optional[T0] = None) -> int:
        """Network evaluations per item spent choosing ``t0`` (the selector's probes; 0 for a number)."""
        value = self.t0 if t0 is None else t0
        if not isinstance(value, str):
            return 0
        return int(getattr(self.t0_selector, "network_evaluations", 0))

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        op: SenseOp,
        kspace: torch.Tensor,
        generator: GeneratorArg = None,
        t0: Optional[T0] = None,
    ) -> CCDFResult:
        """Reconstruct from the initial estimate.

        Args:
            inputs: initial estimate ``x0``, complex ``(B, H, W)``, intensity-scaled.
            network: ``network(x (B,2,H,W), t (B,) long) -> eps (B,2,H,W)``.
            op: SENSE operator of the batch (maps ``(B, C, H, W)``, mask).
            kspace: measured (masked) k-space ``(B, C, H, W)``, same scaling as ``inputs``.
            generator: a ``torch.Generator`` (item noise streams seeded from it) or a sequence
                of ``B`` generators, one per item (item ``b``'s result then does not depend on
                the rest of the batch).
            t0: override of the inferer's ``t0`` for this call: a number, ``"auto"`` or one per item.

        Returns:
            :class:`CCDFResult` (mean, std, NFE and ``t0`` per item; NFE counts the reverse steps,
            their correctors and, for ``"auto"``, the selector's probes of the network).
        """
        op.check_image(inputs, "inputs")
        op.check_kspace(kspace, "kspace")
        with torch.no_grad():
            t0_items = self.resolve_t0(inputs, network, op, kspace, t0)
            starts = self.start_levels(t0_items)
            nfe = torch.tensor(starts, dtype=torch.long) * (1 + self.corrector_steps) * self.num_samples + self.selector_evaluations(t0)
            if max(starts, default=0) == 0:
                return CCDFResult(inputs, None, nfe, t0_items)
            batch, height, width = inputs.shape
            k = self.num_samples
            gens = item_generators(generator, batch)
            noise = ComplexNoise(gens, batch, (k, height, width), inputs.device)
            from_noise = (t0_items == 1.0).to(inputs.device)
            clean = torch.where(from_noise.reshape(-1, 1, 1), torch.zeros_like(inputs), inputs)
            bound = self.dc.bind(op, kspace) if hasattr(self.dc, "bind") else self.dc  # data-derived settings, once
            ops: dict[tuple[int, ...], tuple[Any, SenseOp, torch.Tensor]] = {}

            def dc(x: torch.Tensor, items: Sequence[int]) -> torch.Tensor:
                key = tuple(items)
                if len(key) == batch and k == 1:
                    return bound(x, op, kspace)
                if key not in ops:
                    index = torch.tensor(key).repeat_interleave(k)
                    item_dc = bound.select(index) if hasattr(bound, "select") else bound
                    ops[key] = (item_dc, op.select(items, k), select_rows(kspace, items, k))
                item_dc, item_op, item_kspace = ops[key]
                return item_dc(x, item_op, item_kspace)

            x = jump_and_reverse(
                clean.repeat_interleave(k, dim=0), starts, self.sub, self.epsilon_fn(network),
                noise, self.sampler, self.eta, dc, self.dc_target, self.corrector_steps, self.snr, self.progress,
            )
            x = x.reshape(batch, k, height, width)
            std = x.std(dim=1) if k > 1 else None
            return CCDFResult(x.mean(dim=1), std, nfe, t0_items)


def check_t0(t0: Union[float, str, None]) -> Union[float, str, None]:
    """Validate ``t0``: a number in ``[0, 1]``, ``"auto"`` or ``None``; numbers come back as float."""
    if t0 is None or t0 == "auto":
        return t0
    try:
        value = float(t0)
    except (TypeError, ValueError):
        raise ValueError(f"t0: expected a number in [0, 1] or 'auto', found {t0!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"t0: expected a number in [0, 1] or 'auto', found {t0!r}")
    return value
