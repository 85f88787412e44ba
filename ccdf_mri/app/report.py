"""Results of a reconstruction run: one :class:`VolumeResult` per input, the :class:`RunReport`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

METRIC_NAMES = ("nmse", "psnr", "ssim")
STATUSES = ("done", "skipped", "failed", "not started")


@dataclass
class VolumeResult:
    """What happened to one input file.

    Attributes:
        name: output name of the volume (see :func:`ccdf_mri.io.output_names`).
        path: the input file.
        status: ``"done"``, ``"skipped"`` (outputs made with the same input and settings
            exist), ``"failed"`` or ``"not started"`` (the run was interrupted before it).
        slices: number of slices.
        seconds: wall time of the reconstruction.
        nfe: mean network evaluations per slice, all its posterior samples together; 0 for ``t0 = 0``.
        t0: mean ``t0`` of the slices (``None`` when not reconstructed in this run).
        metrics: ``{"nmse", "psnr", "ssim"}`` when the file has a target.
        error: the message when failed.
        outputs: written files.
        notes: what the run decided for this volume (e.g. the mask it used and why).
    """

    name: str
    path: str
    status: str
    slices: int = 0
    seconds: float = 0.0
    nfe: float = 0.0
    t0: Optional[float] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    error: str = ""
    outputs: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def fail(self, path: Any, error: BaseException) -> None:
        """Mark failed with a message that names the file, and log it. For MONAI's
        ``RuntimeError("applying transform ...")`` wrapper the wrapped error's message is used
        (it names the file, key and expected vs found)."""
        while isinstance(error, RuntimeError) and str(error).startswith("applying transform") and error.__cause__:
            error = error.__cause__
        message = str(error)
        self.status = "failed"
        self.error = message if str(path) in message else f"{path}: {message}"
        logger.error(self.error)


@dataclass
class ComputedVolume:
    """One volume between :meth:`Reconstructor.compute <ccdf_mri.app.reconstructor.Reconstructor.compute>`
    and ``complete``: its result so far, the reconstruction to write, and the target to score."""

    result: VolumeResult
    out: Optional[Dict[str, Any]] = None  # the reconstruction (None: skipped or failed)
    meta: Optional[Dict[str, Any]] = None
    image: Optional[Any] = None  # the stored outputs' image (numpy) of a skipped volume
    target: Optional[Any] = None  # numpy (S, H, W)
    target_key: Optional[str] = None


@dataclass
class RunReport:
    """Results of :meth:`ccdf_mri.app.Reconstructor.run` over all inputs (all ranks).

    Attributes:
        results: one :class:`VolumeResult` per input, in input order.
        metrics_path: ``metrics.csv`` when written.
        interrupted: the run was stopped (Ctrl-C) before every input was processed.
    """

    results: List[VolumeResult]
    metrics_path: Optional[Path] = None
    interrupted: bool = False

    @property
    def failed(self) -> List[VolumeResult]:
        """The failed volumes."""
        return [result for result in self.results if result.status == "failed"]

    def table(self) -> str:
        """Plain-text summary: one line per volume and the metric means."""
        return format_table(self.results)

    def raise_if_failed(self) -> "RunReport":
        """Raise RuntimeError listing the failed files (after all were processed); else return self."""
        if self.failed:
            lines = "\n".join(f"  {result.error}" for result in self.failed)
            raise RuntimeError(f"{len(self.failed)} of {len(self.results)} input(s) failed:\n{lines}")
        return self

    def require_metrics(self) -> "RunReport":
        """Raise ValueError naming the volumes without a target (evaluation needs one); else return self."""
        missing = [result.path for result in self.results if not result.metrics]
        if missing or not self.results:
            raise ValueError(f"evaluation: expected files with targets, found none in {missing or 'an empty input list'}")
        return self

    def interruption_line(self) -> str:
        """One line for an interrupted run: what finished, what did not, how to resume."""
        finished = [r for r in self.results if r.status in ("done", "skipped")]
        left = [r for r in self.results if r.status not in ("done", "skipped", "failed")]
        failed = len(self.results) - len(finished) - len(left)

        def names(results: Sequence[VolumeResult]) -> str:
            shown = ", ".join(r.name for r in results[:5])
            return f" ({shown}{', ...' if len(results) > 5 else ''})" if results else ""

        return (
            f"interrupted: {len(finished)} of {len(self.results)} volume(s) finished{names(finished)}, "
            f"{len(left)} not{names(left)}{f', {failed} failed' if failed else ''}; nothing half-written; "
            "rerun the same command to resume (finished volumes are skipped)"
        )


def format_table(results: Sequence[VolumeResult]) -> str:
    """Summary table: volume, status, slices, seconds, s/slice, NFE, t0, NMSE, PSNR, SSIM."""
    header = f"{'volume':<28} {'status':<11} {'slices':>6} {'time_s':>8} {'s/slice':>8} {'NFE':>6} {'t0':>5} {'NMSE':>8} {'PSNR':>7} {'SSIM':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        per_slice = r.seconds / r.slices if r.slices else 0.0
        t0 = f"{r.t0:.2f}" if r.t0 is not None else "-"
        metrics = (
            f"{r.metrics['nmse']:>8.4f} {r.metrics['psnr']:>7.2f} {r.metrics['ssim']:>6.4f}"
            if r.metrics
            else f"{'-':>8} {'-':>7} {'-':>6}"
        )
        lines.append(
            f"{r.name[:28]:<28} {r.status:<11} {r.slices:>6} {r.seconds:>8.2f} {per_slice:>8.3f} {r.nfe:>6.1f} {t0:>5} {metrics}"
        )
    scored = [r.metrics for r in results if r.metrics]
    if scored:
        means = {key: float(np.mean([m[key] for m in scored])) for key in METRIC_NAMES}
        lines.append(
            f"{'mean':<28} {'':<11} {'':>6} {'':>8} {'':>8} {'':>6} {'':>5} "
            f"{means['nmse']:>8.4f} {means['psnr']:>7.2f} {means['ssim']:>6.4f}"
        )
    for r in results:
        if r.status == "failed":
            lines.append(f"FAILED {r.error}")
    return "\n".join(lines)
