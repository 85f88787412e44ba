"""The bundle's evaluator: a MONAI engine that runs :class:`ccdf_mri.app.Reconstructor` per volume.

:class:`ReconstructionEvaluator` is a ``monai.engines.Evaluator`` whose data are this rank's
input files (one iteration = one volume: :meth:`Reconstructor.compute` and ``complete``, the
same code the ``ccdf-mri recon`` loop runs, so both give identical outputs; with background
writes a volume is written while the next iteration reconstructs, and an iteration's output
lists the volumes it finished). Handlers:

- :class:`VolumeLogHandler`: one log line per volume (status, slices, seconds, t0, NFE, metrics);
- :class:`RunReportHandler`: at the end, gathers all ranks' results, merges ``metrics.csv``,
  puts the mean NMSE / PSNR / SSIM into ``engine.state.metrics`` (so MONAI's ``StatsHandler``
  logs them when targets exist) and keeps the :class:`~ccdf_mri.app.report.RunReport` on
  ``engine.report``.

This module needs pytorch-ignite (through ``monai.engines``); the CLI never imports it.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from ignite.engine import Engine, Events
from monai.engines import Evaluator

from ccdf_mri.app.report import METRIC_NAMES, RunReport

logger = logging.getLogger(__name__)


class ReconstructionEvaluator(Evaluator):
    """Reconstruct every input volume as one engine iteration.

    Args:
        reconstructor: the :class:`ccdf_mri.app.reconstructor.Reconstructor` (the bundle's parts).
        dataset: this rank's volumes, ``[(input index, file, output name)]``
            (:meth:`Reconstructor.plan` of the inputs: expanded, named and checked before any work).
        device: the reconstructor's device (for the engine's record).
        val_handlers: MONAI / ignite handlers.
    """

    def __init__(self, reconstructor: Any, dataset: Sequence[Any], device: Any = None, val_handlers: Optional[Sequence[Any]] = None) -> None:
        self.reconstructor = reconstructor
        self.plan = list(dataset)
        self.report: Optional[RunReport] = None
        self._writing: Optional[Tuple[int, Any]] = None  # (input index, future) of the volume being written
        self._pool: Optional[ThreadPoolExecutor] = None
        super().__init__(
            device=device if device is not None else reconstructor.device,
            val_data_loader=self.plan,
            epoch_length=max(len(self.plan), 1),
            val_handlers=val_handlers,
            decollate=False,
        )

    def _iteration(self, engine: Engine, batchdata: Any) -> dict:
        """Reconstruct one volume. Output ``{"results": [(input index, VolumeResult), ...]}``: the
        volumes finished in this iteration. Without background writes that is this volume; with
        them (:attr:`Reconstructor.background_writes`) it is the previous one, written while this
        one was reconstructed, and in the last iteration this one too."""
        index, path, name = batchdata
        recon = self.reconstructor
        if not recon.background_writes:
            return {"results": [(index, recon.process(path, name))]}
        job = recon.compute(path, name)
        finished = []
        if self._writing is not None:
            finished.append((self._writing[0], self._writing[1].result()))
        self._writing = (index, self._pool.submit(recon.complete, job))
        if engine.state.iteration >= engine.state.epoch_length:
            finished.append((index, self._writing[1].result()))
            self._writing = None
        return {"results": finished}

    def run(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Run over this rank's volumes (a rank with none still joins the end-of-run gather).
        A volume being written when the run stops (an error, Ctrl-C) is finished first."""
        if not self.plan:
            self.state.results = []  # type: ignore[attr-defined]
            self.fire_event(Events.COMPLETED)
            return
        self._writing = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccdf-writer") as self._pool:
            super().run(*args, **kwargs)


class VolumeLogHandler:
    """Log one line per reconstructed volume."""

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        position = {entry[0]: number for number, entry in enumerate(getattr(engine, "plan", []), start=1)}
        for index, result in engine.state.output["results"]:
            metrics = " ".join(f"{k}={result.metrics[k]:.4g}" for k in METRIC_NAMES if k in result.metrics)
            logger.info(
                "volume %d/%d %s: %s, %d slices, %.1f s, t0 %s, NFE %.1f %s%s",
                position.get(index, index + 1), engine.state.epoch_length, result.name, result.status, result.slices,
                result.seconds, "-" if result.t0 is None else f"{result.t0:.3f}", result.nfe, metrics,
                f" ({result.error})" if result.error else "",
            )


class RunReportHandler:
    """Collect the volumes' results; at the end gather ranks, merge ``metrics.csv``, set mean metrics."""

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        engine.state.results = []

    def collect(self, engine: Engine) -> None:
        engine.state.results.extend(engine.state.output["results"])

    def completed(self, engine: Engine) -> None:
        report = engine.reconstructor.finish(getattr(engine.state, "results", []))
        engine.report = report
        scored = [r.metrics for r in report.results if r.metrics]
        if scored:
            engine.state.metrics.update({k: float(np.mean([m[k] for m in scored])) for k in METRIC_NAMES})
