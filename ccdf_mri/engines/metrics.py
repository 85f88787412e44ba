"""Validation metrics for the engines: fastMRI PSNR / SSIM of magnitude images, per slice.

Network outputs and labels are ``(B, 2, H, W)`` real/imag channels of intensity-scaled
images; each slice's magnitude is compared with :mod:`ccdf_mri.metrics` (data range = the
slice's reference maximum, as fastMRI does per volume) and the values are averaged over
all validation slices (and over processes under ``torch.distributed``).
"""

from __future__ import annotations

from typing import Any, Sequence, Tuple

import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from ccdf_mri import metrics
from ccdf_mri.engines.losses import channel_magnitude

METRICS = {"psnr": metrics.psnr, "ssim": metrics.ssim, "nmse": metrics.nmse}


def _stack(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.stack(list(value))


class SliceMagnitudeMetric(Metric):
    """Mean over slices of ``psnr``, ``ssim`` or ``nmse`` between ``|pred|`` and ``|label|``.

    Args:
        name: ``"psnr"``, ``"ssim"`` or ``"nmse"``.
        output_transform: maps the engine output to ``(pred, label)``, each ``(B, 2, H, W)``
            or a sequence of ``(2, H, W)``; the default reads MONAI's ``pred``/``label`` keys.
        device: where the running sums live (``torch.distributed`` reduction).
    """

    def __init__(self, name: str = "psnr", output_transform=None, device: Any = "cpu") -> None:
        if name not in METRICS:
            raise ValueError(f"metric: expected one of {tuple(METRICS)}, found '{name}'")
        self.name = name
        super().__init__(output_transform=output_transform or _pred_label, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._count = torch.tensor(0, dtype=torch.long, device=self._device)

    @reinit__is_reduced
    def update(self, output: Tuple[Any, Any]) -> None:
        pred, label = (_stack(v).detach().float() for v in output)
        pred_mag = channel_magnitude(pred)[:, 0].cpu().numpy()
        label_mag = channel_magnitude(label)[:, 0].cpu().numpy()
        fn = METRICS[self.name]
        for p, g in zip(pred_mag, label_mag):
            self._sum += fn(g[None], p[None])
            self._count += 1

    @sync_all_reduce("_sum", "_count")
    def compute(self) -> float:
        if int(self._count) == 0:
            raise ValueError(f"{self.name}: no validation slices were seen")
        return float(self._sum) / int(self._count)


def _pred_label(output: Any) -> Tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]:
    """MONAI engine output (dict, or list of per-item dicts when decollated) -> ``(pred, label)``."""
    if isinstance(output, dict):
        return output["pred"], output["label"]
    return [item["pred"] for item in output], [item["label"] for item in output]
