"""Tissue signal for corpus v2: relaxation-based contrasts with continuous random sequence timings.

Each tissue has approximate proton density and relaxation times (1.5-3 T, rounded
literature-typical values; they only need to give plausible orders). A volume draws a
sequence *family* and continuous timings, then every tissue's signal is the spin-echo /
inversion-recovery magnitude

- spin echo: ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``;
- inversion recovery: ``S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``,

with per-volume jitter of every T1, T2 and PD, optional fat suppression, and the result
normalised so the brightest tissue is 1. Families: ``T1``, ``T2``, ``PD``,
``FLAIR`` (CSF nulled), ``STIR`` (fat nulled), ``T1IR`` (MPRAGE-like, strong WM/GM
contrast, CSF dark) and ``MIX`` (every soft tissue an independent uniform value, any order).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, Sequence

import numpy as np

# name: (PD, T1 ms, T2 ms)
TISSUES: Dict[str, tuple] = {
    "gm": (0.82, 1250.0, 95.0),
    "wm": (0.70, 700.0, 75.0),
    "csf": (1.00, 4000.0, 1800.0),
    "fat": (0.95, 300.0, 130.0),
    "muscle": (0.75, 1100.0, 40.0),
    "skin": (0.70, 900.0, 50.0),
    "cortex": (0.08, 1000.0, 2.0),  # cortical bone: almost no signal
    "marrow": (0.90, 350.0, 110.0),  # fatty (yellow) marrow
    "vessel": (0.85, 1500.0, 200.0),  # overridden per volume: flow void or inflow-bright
    "liver": (0.75, 700.0, 40.0),
    "spleen": (0.80, 1200.0, 70.0),
    "kidney_cortex": (0.82, 1100.0, 80.0),
    "kidney_medulla": (0.88, 1500.0, 100.0),
    "fluid": (1.00, 3000.0, 1000.0),
    "bowel": (0.80, 1000.0, 60.0),
    "tendon": (0.60, 1000.0, 8.0),
}
"""Approximate proton density and relaxation times per tissue."""

FAMILIES = ("T1", "T2", "PD", "FLAIR", "STIR", "T1IR", "MIX")
"""Sequence families a volume's contrast is drawn from."""

# family: (probability weight, TR range, TE range, TI range or None)
_TIMINGS = {
    "T1": (0.22, (350.0, 650.0), (8.0, 20.0), None),
    "T2": (0.22, (2500.0, 6000.0), (70.0, 120.0), None),
    "PD": (0.12, (2000.0, 5000.0), (8.0, 30.0), None),
    "FLAIR": (0.14, (7000.0, 10000.0), (80.0, 140.0), (2200.0, 2700.0)),
    "STIR": (0.06, (3000.0, 6000.0), (30.0, 70.0), (140.0, 220.0)),
    "T1IR": (0.08, (1900.0, 2500.0), (3.0, 6.0), (1000.0, 1300.0)),
    "MIX": (0.16, None, None, None),
}
_DARK = ("cortex",)  # keep cortical bone dark in every family (it has no MR signal)


@dataclass
class Contrast:
    """One volume's contrast.

    Attributes:
        family: one of :data:`FAMILIES`.
        tr_ms, te_ms, ti_ms: sequence timings (NaN where unused; all NaN for ``MIX``).
        fat_suppressed: fat and marrow signal scaled by 0.05-0.25.
        values: signal of every tissue of :data:`TISSUES` (brightest 1).
    """

    family: str
    tr_ms: float
    te_ms: float
    ti_ms: float
    fat_suppressed: bool
    values: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable dict."""
        return asdict(self)


def signal(pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, tr: float, te: float, ti: float = float("nan")) -> np.ndarray:
    """Spin-echo (``ti`` NaN) or inversion-recovery magnitude signal (formulas in the module docstring)."""
    recovery = np.exp(-tr / t1)
    if np.isnan(ti):
        longitudinal = 1.0 - recovery
    else:
        longitudinal = np.abs(1.0 - 2.0 * np.exp(-ti / t1) + recovery)
    return pd * longitudinal * np.exp(-te / t2)


def draw_contrast(rng: np.random.Generator, families: Sequence[str] = FAMILIES, jitter: float = 0.08) -> Contrast:
    """Draw a family, its timings and per-tissue jitter; return every tissue's signal.

    Args:
        rng: random generator.
        families: subset of :data:`FAMILIES` to draw from (weights renormalised).
        jitter: relative standard deviation of the per-volume T1, T2, PD perturbation.

    Returns:
        :class:`Contrast`.
    """
    bad = [f for f in families if f not in FAMILIES]
    if bad or not families:
        raise ValueError(f"families {list(families)}: expected a non-empty subset of {FAMILIES}")
    weights = np.array([_TIMINGS[f][0] for f in families])
    family = str(families[int(rng.choice(len(families), p=weights / weights.sum()))])
    names = list(TISSUES)
    pd, t1, t2 = (np.array([TISSUES[n][k] for n in names]) for k in range(3))
    factors = np.exp(jitter * rng.standard_normal((3, len(names))))
    pd, t1, t2 = pd * factors[0], t1 * factors[1], t2 * factors[2]
    _, tr_range, te_range, ti_range = _TIMINGS[family]
    nan = float("nan")
    if family == "MIX":
        tr = te = ti = nan
        values = rng.uniform(0.05, 1.0, len(names))
    else:
        tr, te = float(rng.uniform(*tr_range)), float(rng.uniform(*te_range))
        ti = float(rng.uniform(*ti_range)) if ti_range else nan
        values = signal(pd, t1, t2, tr, te, ti)
    fat_suppressed = bool(family in ("T1", "T2", "PD") and rng.random() < 0.25)
    table = dict(zip(names, values))
    if fat_suppressed:
        scale = float(rng.uniform(0.05, 0.25))
        table["fat"] *= scale
        table["marrow"] *= scale
    for name in _DARK:
        table[name] = float(rng.uniform(0.0, 0.06)) * max(table.values())
    vessel = rng.random()  # flow void, tissue-like or inflow-bright vessels
    table["vessel"] = float(rng.uniform(0.0, 0.1) if vessel < 0.5 else rng.uniform(0.5, 1.0)) * max(table.values())
    top = max(table.values())
    values_out = {n: float(v / top) for n, v in table.items()}
    return Contrast(family, tr, te, ti, fat_suppressed, values_out)
