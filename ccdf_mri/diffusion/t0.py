"""Choosing the start ``t0`` of CCDF (``N' = t0 N``): calibration tables and per-item selectors.

A selector is called by :class:`ccdf_mri.inferers.CCDFInferer` for ``t0="auto"`` as
``selector(x0, op, kspace, eps_fn, sub) -> (B,) t0`` (``x0`` the initial estimates, ``op`` the
batch's SENSE operator, ``eps_fn(x, level)`` the epsilon network on the sampling ladder ``sub``).

- :class:`CalibratedT0`: the ``t0`` measured on validation data per acceleration
  (``models/calibration.json``, written by :mod:`ccdf_mri.calibration`), for each item's
  effective acceleration (from its mask); without a table, Theorem 2 (:func:`select_t0`) with
  a prior relative error of the initializer.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ccdf_mri.diffusion.schedules import SubSchedule

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)

# Rough relative squared error ||x0 - x||^2 / ||x||^2 of each initializer at 4x, used only when
# there is no calibration table (then scaled with the acceleration).
PRIOR_NMSE = {"zero_filled": 0.08, "cg_sense": 0.05, "l1_wavelet": 0.03, "unet": 0.015}


def load_t0_table(path: PathLike) -> Optional[Dict[float, float]]:
    """Calibrated ``t0`` per acceleration from a calibration JSON (``{"t0": {"4": 0.1, ...}}``), or
    None when the file does not exist.

    Raises:
        ValueError: the file is not JSON or its ``t0`` table is not ``{acceleration: t0 in [0, 1]}``.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text()).get("t0")
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"{path}: expected a JSON object with key 't0', found text that does not parse ({error})") from None
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: key 't0': expected {{acceleration: t0}}, found {table!r}")
    try:
        out = {float(acc): float(value) for acc, value in table.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{path}: key 't0': expected numbers, found {table!r}") from None
    if any(not 0.0 <= value <= 1.0 for value in out.values()):
        raise ValueError(f"{path}: key 't0': expected values in [0, 1], found {table!r}")
    return out


def nearest_t0(table: Mapping[float, float], acceleration: float) -> float:
    """The calibrated ``t0`` of the acceleration nearest to ``acceleration`` (on a log scale)."""
    nearest = min(table, key=lambda acc: (abs(math.log(acc / float(acceleration))), acc))
    return float(table[nearest])


def item_accelerations(op: Any) -> list[float]:
    """Effective acceleration of each item of a SENSE operator's mask (1 without a mask)."""
    batch = op.image_shape[0]
    mask = op.mask
    if mask is None:
        return [1.0] * batch
    items = list(mask) if mask.shape[0] == batch else [mask[0]] * batch
    return [item.numel() / max(float(item.sum()), 1.0) for item in items]


class CalibratedT0:
    """``t0`` per item from a calibration table, by the item's effective acceleration.

    Args:
        table: path of a calibration JSON (:func:`load_t0_table`) or ``{acceleration: t0}``.
        initializer: the initializer's name, for the Theorem 2 fallback without a table.
        sampler: the sampler, for the fallback's contraction rate.
    """

    def __init__(self, table: Union[PathLike, Mapping[float, float], None] = None, initializer: str = "unet", sampler: str = "ddpm") -> None:
        if isinstance(table, Mapping):
            self.table: Optional[Dict[float, float]] = {float(k): float(v) for k, v in table.items()}
        else:
            self.table = None if table is None else load_t0_table(table)
        self.source = None if table is None or isinstance(table, Mapping) else str(table)
        self.initializer = initializer
        self.sampler = sampler

    def t0_for(self, acceleration: float, sub: SubSchedule) -> float:
        """The ``t0`` at one acceleration (table, else Theorem 2, else 1 = from noise)."""
        if self.table:
            return nearest_t0(self.table, acceleration)
        from ccdf_mri.diffusion.theory import select_t0

        prior = PRIOR_NMSE.get(self.initializer, max(PRIOR_NMSE.values())) * float(acceleration) / 4.0
        try:
            return float(select_t0(prior, sub, self.sampler, 1))
        except ValueError as error:
            logger.warning("t0 'auto': %s; using t0 = 1 (diffusion from noise)", error)
            return 1.0

    def __call__(self, x0: torch.Tensor, op: Any, kspace: torch.Tensor, eps_fn: Any, sub: SubSchedule) -> torch.Tensor:
        """``(B,)`` float64 ``t0`` per item."""
        return torch.tensor([self.t0_for(acc, sub) for acc in item_accelerations(op)], dtype=torch.float64)
