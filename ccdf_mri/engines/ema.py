"""Exponential moving average of a network's weights during training (a diffusion-training staple).

:class:`EMA` keeps ``torch.optim.swa_utils.AveragedModel`` with an EMA update
(``w_ema <- decay w_ema + (1 - decay) w``) after every iteration, with the decay warmed up as
``min(decay, (1 + n) / (10 + n))`` over the first iterations so early weights fade quickly. It
is a ``torch.nn.Module`` (checkpointed and resumed with the trainer) and
:class:`ccdf_mri.engines.checkpoints.ModelExporter` exports its weights when given it.
"""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events


class EMA(torch.nn.Module):
    """EMA copy of ``network`` (``self.module``), updated by :meth:`attach`-ed handlers.

    Args:
        network: the trained network (unwrapped from DDP by the caller when needed).
        decay: the EMA decay after warm-up (e.g. 0.999).
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay: expected in (0, 1), found {decay}")
        self.decay = float(decay)
        self.source = [network]  # a list: not registered as a submodule (no double weights in checkpoints)
        self.average = torch.optim.swa_utils.AveragedModel(network, multi_avg_fn=self._multi_avg)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @property
    def module(self) -> torch.nn.Module:
        """The averaged network."""
        return self.average.module

    def _multi_avg(self, averaged, current, num_averaged) -> None:
        n = int(self.updates)
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - decay)

    @torch.no_grad()
    def update(self, engine: Engine = None) -> None:
        """One EMA step from the source network's current weights."""
        self.average.update_parameters(self.source[0])
        self.updates += 1

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
