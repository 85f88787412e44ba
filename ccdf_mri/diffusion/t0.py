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
from typing import Any, Dict, Mapping, Optional, Sequence, Union

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


def calibrated_samples(path: PathLike, default: int = 1) -> int:
    """The number ``K`` of posterior samples a calibration JSON was fitted with (``"num_samples"``,
    :mod:`ccdf_mri.calibration` fits it with ``t0``), ``default`` when the file or the key is absent.

    Raises:
        ValueError: the file is not JSON or its ``num_samples`` is not a positive integer.
    """
    path = Path(path)
    if not path.is_file():
        return int(default)
    try:
        value = json.loads(path.read_text()).get("num_samples", default)
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"{path}: expected a JSON object, found text that does not parse ({error})") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path}: key 'num_samples': expected a positive integer, found {value!r}")
    return value


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

    network_evaluations = 0  # a table look-up: no network evaluations

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


REFERENCE_SIGMAS = (0.05, 0.1, 0.2)


@torch.no_grad()
def noise_level(x0: torch.Tensor, eps_fn: Any, sub: SubSchedule, reference: Sequence[float] = REFERENCE_SIGMAS) -> torch.Tensor:
    """The error the score network sees in ``x0``, as a noise level, per item.

    Treating ``x0`` as a sample at ladder level ``i`` (VE noise ``sigma_i``), an epsilon network
    predicts the noise it finds: for ``x0 = x + s z`` (``x`` from its prior, white ``z``) the
    prediction is ``E[z_i | x0]`` with mean power per real dimension ``m_i = s^2 / sigma_i^2``,
    so ``sigma_i sqrt(m_i) = s`` at every level (exactly, for the Gaussian model of
    tests/gaussian_model.py). The estimate is the geometric mean of ``sigma_i sqrt(m_i)`` over
    the ladder levels nearest to ``reference`` (one network evaluation each). Errors a network
    does not take for noise (smooth blur, some aliasing) count less: :class:`EstimatedT0`'s
    factor is calibrated per initializer on validation data for that reason.

    Args:
        x0: initial estimates ``(B, H, W)`` complex, intensity-scaled (VE coordinates).
        eps_fn: ``eps_fn(x, levels (B,)) -> eps`` (:func:`ccdf_mri.diffusion.samplers.make_epsilon_fn`).
        sub: the sampling ladder.
        reference: noise levels probed.

    Returns:
        ``(B,)`` float64 noise levels.
    """
    sigmas = sub.sigmas.double()
    logs = []
    for sigma in reference:
        level = int(torch.searchsorted(sigmas.contiguous(), torch.tensor(float(sigma), dtype=torch.float64)).clamp(1, sub.num_steps))
        eps = eps_fn(x0, torch.full((x0.shape[0],), level, dtype=torch.long))
        power = (eps.abs().pow(2).flatten(1).mean(dim=1) / 2.0).double().cpu().clamp_min(1e-24)
        logs.append(math.log(float(sigmas[level])) + 0.5 * power.log())
    return torch.stack(logs).mean(dim=0).exp()


class EstimatedT0:
    """``t0`` per item from the initial estimate's own error, measured by the score network.

    CCDF's theory ties the best start to the initial error (Theorem 2: the larger ``eps0``, the
    larger ``N'``). Without ground truth, the error of each ``x0`` is estimated as the noise
    level the network assigns to it (:func:`noise_level`); the start is the ladder level whose
    noise is ``factor`` times that (the forward jump must drown the error), clamped to
    ``[t0_min, t0_max]``. ``factor`` is the prior knowledge, measured per initializer on
    validation data (``calibration.json``, key ``"factor"``; :mod:`ccdf_mri.calibration`).

    Args:
        factor: ``sigma_{N'} / sigma_hat``, a number or ``{initializer: number}``.
        initializer: which entry of a ``factor`` table applies.
        t0_min, t0_max: bounds of the result.
        reference: the noise levels :func:`noise_level` probes (one network evaluation each per slice).
        table: a calibration JSON whose ``"factor"`` entry overrides ``factor`` when present
            (an initializer without an entry uses its ``"default"`` entry, with a warning).
        max_nfe: a budget of network evaluations per item, probes included: ``t0`` is at most
            ``floor((max_nfe - len(reference)) / K) / N`` on a ladder of ``N`` levels (None: no budget).
        num_samples: ``K``, the posterior samples the inferer runs per item (the budget's share
            of each).
    """

    def __init__(
        self,
        factor: Union[float, Mapping[str, float]] = 1.0,
        initializer: str = "unet",
        t0_min: float = 0.005,
        t0_max: float = 0.5,
        reference: Sequence[float] = REFERENCE_SIGMAS,
        table: Union[PathLike, None] = None,
        max_nfe: Optional[int] = None,
        num_samples: int = 1,
    ) -> None:
        self.source = None if table is None else str(table)
        if table is not None and Path(table).is_file():
            factor = json.loads(Path(table).read_text()).get("factor", factor)
        elif table is not None:
            logger.warning("t0 'auto': no calibration file %s; using factor %s", table, factor)
        value = factor.get(initializer, factor.get("default")) if isinstance(factor, Mapping) else factor
        if isinstance(factor, Mapping) and initializer not in factor and value is not None:
            logger.warning("t0 'auto': no factor calibrated for initializer %r in %s; using the default entry %s",
                           initializer, table or "the factor table", value)
        if value is not None and not float(value) > 0:
            raise ValueError(f"EstimatedT0 factor: expected a positive number for initializer {initializer!r}, found {factor!r}")
        # no entry at all: an error when a t0 is asked for (a run with a fixed t0 needs none)
        self._missing = None if value is not None else (
            f"EstimatedT0 factor: expected a number for initializer {initializer!r} (or a 'default' entry) in "
            f"{table or 'the factor table'}, found {factor!r}; run python -m ccdf_mri.calibration or give a fixed t0")
        if not 0.0 <= t0_min <= t0_max <= 1.0:
            raise ValueError(f"EstimatedT0: expected 0 <= t0_min <= t0_max <= 1, found {t0_min}, {t0_max}")
        self.factor, self.initializer = (None if value is None else float(value)), initializer
        self.network_evaluations = len(tuple(reference))  # per item, counted in the inferer's NFE
        self.t0_min, self.t0_max, self.reference = float(t0_min), float(t0_max), tuple(float(r) for r in reference)
        if max_nfe is not None and int(max_nfe) <= self.network_evaluations:
            raise ValueError(f"EstimatedT0 max_nfe: expected more than the {self.network_evaluations} probe evaluations, found {max_nfe}")
        self.max_nfe = None if max_nfe is None else int(max_nfe)
        if int(num_samples) < 1:
            raise ValueError(f"EstimatedT0 num_samples: expected a positive integer, found {num_samples}")
        self.num_samples = int(num_samples)

    def bounds(self, sub: SubSchedule) -> tuple[float, float]:
        """``(t0_min, t0_max)`` on the ladder ``sub``, the budget included."""
        upper = self.t0_max
        if self.max_nfe is not None:
            # whole steps per sample: N' = round(t0 N) must not round up past the budget
            upper = min(upper, ((self.max_nfe - self.network_evaluations) // self.num_samples) / sub.num_steps)
        return min(self.t0_min, upper), upper

    def __call__(self, x0: torch.Tensor, op: Any, kspace: torch.Tensor, eps_fn: Any, sub: SubSchedule) -> torch.Tensor:
        """``(B,)`` float64 ``t0`` per item."""
        if self._missing:
            raise ValueError(self._missing)
        return self.t0_from_noise(noise_level(x0, eps_fn, sub, self.reference), sub)

    def t0_from_noise(self, sigma_hat: torch.Tensor, sub: SubSchedule) -> torch.Tensor:
        """``(B,)`` float64 ``t0``: the ladder level whose noise is ``factor x sigma_hat``, within :meth:`bounds`."""
        levels = torch.searchsorted(sub.sigmas.double().contiguous(), sigma_hat.double() * self.factor).clamp(1, sub.num_steps)
        low, high = self.bounds(sub)
        return (levels.double() / sub.num_steps).clamp(low, high)
