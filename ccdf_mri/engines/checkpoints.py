"""Checkpoints that make a killed training run resume, and the final model export.

- :class:`TrainerCheckpointSaver`: MONAI ``CheckpointSaver`` of the given objects *plus the
  trainer* (so epoch and iteration counts are saved) every ``save_interval`` iterations and
  at the end (``checkpoint_final.pt``, also written when the run raises). Attach it on
  every rank under ``torch.distributed``: ignite saves on rank 0 only, and its set-up is a
  collective call.
- :class:`ResumeFromCheckpoint`: if ``ckpt_dir`` holds a checkpoint, attaches MONAI's
  ``CheckpointLoader`` on the newest one (objects + trainer state), so the run continues
  from that iteration; otherwise does nothing.
- :class:`ModelExporter`: when training completes, writes the plain ``state_dict`` of the
  (unwrapped) network to ``model_path`` and a JSON beside it naming the factory and its
  keyword arguments, with a short training record; :func:`load_exported_network` rebuilds
  the network from the pair.
- :class:`WallClockLimit`: stops training cleanly after a time budget (the final checkpoint
  and the export still run; a rerun resumes).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from ignite.engine import Engine, Events
from ignite.handlers import TimeLimit
from monai.handlers import CheckpointLoader, CheckpointSaver

from ccdf_mri.io.atomic import atomic_path
from ccdf_mri.networks.loading import load_exported_network  # noqa: F401  (re-exported: training writes, inference reads)

PathLike = Union[str, os.PathLike]
FINAL_CHECKPOINT = "checkpoint_final.pt"

logger = logging.getLogger(__name__)


def latest_checkpoint(ckpt_dir: PathLike) -> Optional[Path]:
    """The most recently written ``*.pt`` in ``ckpt_dir``, or None (missing or empty folder)."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob("*.pt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``DistributedDataParallel`` / ``DataParallel`` wrappers."""
    while isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        network = network.module
    return network


class TrainerCheckpointSaver:
    """Interval + final checkpoints of ``save_dict`` and the trainer it is attached to.

    Args:
        save_dir: checkpoint folder.
        save_dict: e.g. ``{"network": net, "optimizer": opt}``; ``"trainer"`` is added.
        save_interval: iterations between checkpoints.
        n_saved: interval checkpoints kept.
    """

    def __init__(self, save_dir: PathLike, save_dict: Mapping[str, Any], save_interval: int, n_saved: int = 1) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval: expected >= 1 iterations, found {save_interval}")
        self.save_dir = str(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = int(save_interval)
        self.n_saved = int(n_saved)

    def attach(self, engine: Engine) -> None:
        os.makedirs(self.save_dir, exist_ok=True)
        CheckpointSaver(
            save_dir=self.save_dir,
            save_dict={**self.save_dict, "trainer": engine},
            save_final=True,
            final_filename=FINAL_CHECKPOINT,
            epoch_level=False,
            save_interval=self.save_interval,
            n_saved=self.n_saved,
        ).attach(engine)


class ResumeFromCheckpoint:
    """Resume ``load_dict`` and the trainer from the newest checkpoint in ``ckpt_dir``, if any.

    Args:
        ckpt_dir: folder written by :class:`TrainerCheckpointSaver`.
        load_dict: the same objects as the saver's ``save_dict`` (``"trainer"`` is added).
        map_location: passed to ``torch.load`` (e.g. the training device).
    """

    def __init__(self, ckpt_dir: PathLike, load_dict: Mapping[str, Any], map_location: Any = None) -> None:
        self.ckpt_dir = ckpt_dir
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.path: Optional[Path] = None

    def attach(self, engine: Engine) -> None:
        self.path = latest_checkpoint(self.ckpt_dir)
        if self.path is None:
            logger.info("no checkpoint in %s: training starts from scratch", self.ckpt_dir)
            return
        logger.info("resuming from %s", self.path)
        CheckpointLoader(
            load_path=str(self.path), load_dict={**self.load_dict, "trainer": engine}, map_location=self.map_location
        ).attach(engine)


class WallClockLimit:
    """Terminate the engine after ``limit_s`` whole seconds of running (checked every iteration).

    ``COMPLETED`` still fires, so :class:`TrainerCheckpointSaver` writes its final checkpoint
    and :class:`ModelExporter` exports. Single-process runs only: under
    ``torch.distributed`` ranks could stop at different iterations.
    """

    def __init__(self, limit_s: int) -> None:
        if int(limit_s) <= 0:
            raise ValueError(f"limit_s: expected >= 1 second, found {limit_s}")
        self.limit_s = int(limit_s)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(self.limit_s))


class ModelExporter:
    """Write the final weights as a plain ``state_dict`` and the hyper-parameters as JSON.

    Under ``torch.distributed`` only rank 0 writes (attach it on every rank).

    Args:
        network: the trained network (DDP / DataParallel wrappers are removed).
        model_path: ``.pt`` output; the JSON goes to the same path with suffix ``.json``.
        factory: dotted name of the function that builds the network, e.g.
            ``"ccdf_mri.networks.score.make_score_network"``.
        network_kwargs: its keyword arguments (JSON-serialisable).
        extra: more JSON fields (schedule, intensity rule, data, recipe).
        evaluator: optional engine whose final ``state.metrics`` are recorded.
        ema: optional :class:`ccdf_mri.engines.ema.EMA`; its averaged weights are exported.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        model_path: PathLike,
        factory: str,
        network_kwargs: Mapping[str, Any],
        extra: Optional[Mapping[str, Any]] = None,
        evaluator: Optional[Engine] = None,
        ema: Optional[torch.nn.Module] = None,
    ) -> None:
        self.network = network
        self.ema = ema
        self.model_path = Path(model_path)
        self.factory = factory
        self.network_kwargs = _plain(dict(network_kwargs))
        self.extra = _plain(dict(extra or {}))
        self.evaluator = evaluator
        self._start = time.monotonic()
        self._first_iteration = 0

    def attach(self, engine: Engine) -> None:
        """Attach after :class:`ResumeFromCheckpoint` so the resumed iteration is recorded."""
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self)

    def _started(self, engine: Engine) -> None:
        self._start = time.monotonic()
        self._first_iteration = int(engine.state.iteration)

    def __call__(self, engine: Engine) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            return  # one writer under torch.distributed
        self.model_path.parent.mkdir(parents=True, exist_ok=True)
        source = unwrap(self.network) if self.ema is None else self.ema.module
        state = {k: v.detach().cpu() for k, v in source.state_dict().items()}
        with atomic_path(self.model_path) as tmp:
            torch.save(state, tmp)
        metrics = {} if self.evaluator is None else {k: float(v) for k, v in self.evaluator.state.metrics.items()}
        record = {
            "factory": self.factory,
            "kwargs": self.network_kwargs,
            "weights": self.model_path.name,
            "num_parameters": int(sum(p.numel() for p in unwrap(self.network).parameters())),
            "training": {
                "weights": "exponential moving average" if self.ema is not None else "last iteration",
                "iterations": int(engine.state.iteration),
                "epochs": int(engine.state.epoch),
                "resumed_from_iteration": self._first_iteration,
                "wall_time_s_last_run": round(time.monotonic() - self._start, 1),
                "device": str(engine.state.device) if hasattr(engine.state, "device") else None,
                "machine": platform.node(),
                "torch": torch.__version__,
                "validation": metrics,
            },
            **self.extra,
        }
        json_path = self.model_path.with_suffix(".json")
        with atomic_path(json_path) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
        logger.info("exported %s and %s", self.model_path, json_path)


def _plain(value: Any) -> Any:
    """Config values (tuples, tensors, numbers) -> JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def export_from_checkpoint(checkpoint: PathLike, model_path: PathLike, key: str = "ema") -> Path:
    """Write the weights of a training checkpoint as a plain ``state_dict`` (what inference loads).

    For a run stopped by hand (its final export never ran): ``key="ema"`` takes the
    :class:`ccdf_mri.engines.ema.EMA` weights the exporter would have written, ``"network"``
    the last iterate.

    Raises:
        KeyError: the checkpoint has no ``key`` (the message lists what it has).
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if key not in state:
        raise KeyError(f"{checkpoint}: expected key {key!r}, found {sorted(state)}")
    weights = state[key]
    if key == "ema":
        prefix = "average.module."
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(model_path) as tmp:
        torch.save({k: v.detach().cpu() for k, v in weights.items()}, tmp)
    return model_path


if __name__ == "__main__":  # python -m ccdf_mri.engines.checkpoints CHECKPOINT OUT.pt [ema|network]
    import sys

    print(export_from_checkpoint(sys.argv[1], sys.argv[2], *(sys.argv[3:4] or ["ema"])))
