"""Fitting the calibration table from per-slice curves (:mod:`ccdf_mri.calibration` measures them).

A record is one validation slice of one initializer at one acceleration: ``{"initializer",
"slice", "acceleration", "sigma_hat", "x0", "grid": {t0: scores}, "samples": {K: {t0: scores}}}``
(scores: fastMRI ``nmse`` / ``psnr`` / ``ssim``; ``grid`` one sample, ``samples`` the mean of ``K``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

FACTORS = tuple(round(2 ** (k / 4), 4) for k in range(-8, 17))  # 0.25 .. 16


def within_budget(grid: Sequence[float], k: int, num_steps: int, max_nfe: Optional[int]) -> List[float]:
    """The ``t0`` of ``grid`` whose ``K`` samples cost at most ``max_nfe`` network evaluations
    (``K round(t0 N)``; all of them without a budget)."""
    return [float(t0) for t0 in grid if max_nfe is None or k * round(float(t0) * num_steps) <= max_nfe]


def curve(row: dict, k: int) -> dict:
    """A record's scores per ``t0`` for the mean of ``k`` samples (``{}`` where not measured)."""
    return row["grid"] if k == 1 else row.get("samples", {}).get(str(k), {})


def best_t0(errors: Dict[float, float], tolerance: float) -> float:
    """The cheapest ``t0`` whose error is within ``tolerance`` (relative) of the lowest."""
    best = min(errors.values())
    return min(t0 for t0, err in errors.items() if err <= (1.0 + tolerance) * best)


def fit_samples(rows: Sequence[dict], samples: Sequence[int], num_steps: int, max_nfe: Optional[int], tolerance: float = 0.01) -> dict:
    """The pair (``K``, ``t0`` per acceleration) of lowest error under the budget, from
    :func:`curves` rows of one initializer (with their ``"acceleration"``).

    For each ``K``: per acceleration the best affordable ``t0`` (:func:`best_t0` on the mean
    NMSE); the ``K`` whose mean over accelerations of ``10 log10(mean NMSE)`` is lowest, the
    smallest within ``tolerance`` (relative NMSE) of it.

    Returns:
        ``{"num_samples": K, "t0": {acc: t0}, "nmse": {K: {acc: {t0: err}}}}`` (keys as strings).
    """
    accelerations = sorted({float(r["acceleration"]) for r in rows})
    table, score = {}, {}
    for k in sorted({int(k) for k in samples} | {1}):
        per_acc, chosen = {}, {}
        for acc in accelerations:
            mine = [r for r in rows if float(r["acceleration"]) == acc]
            affordable = [t0 for t0 in within_budget([float(t) for t in mine[0]["grid"]], k, num_steps, max_nfe)
                          if all(f"{t0:g}" in curve(r, k) for r in mine)]
            if not affordable:
                break
            errors = {t0: float(np.mean([curve(r, k)[f"{t0:g}"]["nmse"] for r in mine])) for t0 in affordable}
            chosen[f"{acc:g}"] = best_t0(errors, tolerance)
            per_acc[f"{acc:g}"] = {f"{t0:g}": err for t0, err in errors.items()}
        else:
            table[k] = (chosen, per_acc)
            score[k] = float(np.mean([10 * math.log10(per_acc[a][f"{chosen[a]:g}"]) for a in chosen]))
    if not score:
        raise ValueError(f"calibration: no t0 of the grid fits the budget of {max_nfe} network evaluations")
    best = min(score.values())
    k = min(k for k, v in score.items() if v <= best + 10 * math.log10(1.0 + tolerance))
    return {"num_samples": k, "t0": table[k][0], "nmse": {str(kk): v[1] for kk, v in table.items()},
            "nmse_db": {str(kk): v for kk, v in score.items()}}


def psnr_at(row: dict, t0: float) -> float:
    """A slice's PSNR at ``t0``: its grid curve interpolated linearly in log t0 (constant beyond the grid)."""
    grid = sorted((float(k), v["psnr"]) for k, v in row["grid"].items())
    return float(np.interp(math.log(max(t0, 1e-6)), np.log([g for g, _ in grid]), [p for _, p in grid]))


def fit_factor(rows: Sequence[dict], sub: Any, candidates: Sequence[float] = FACTORS, max_nfe: Optional[int] = None,
               num_samples: int = 1) -> tuple:
    """The factor whose per-slice start (``factor x sigma_hat``, clamped as :class:`EstimatedT0`
    with the budget ``max_nfe`` shared by ``num_samples``) maximises the mean interpolated PSNR
    over ``rows``: ``(factor, {factor: mean PSNR})``."""
    from ccdf_mri.diffusion.t0 import EstimatedT0

    sigma_hat = torch.tensor([row["sigma_hat"] for row in rows], dtype=torch.float64)
    means = {}
    for factor in candidates:
        t0s = EstimatedT0(factor=factor, max_nfe=max_nfe, num_samples=num_samples).t0_from_noise(sigma_hat, sub)
        means[float(factor)] = float(np.mean([psnr_at(row, float(t0)) for row, t0 in zip(rows, t0s)]))
    return max(means, key=means.get), means


def fit_records(records: Sequence[dict], default_init: Optional[str], sub: Any, samples: Sequence[int] = (1,),
                max_nfe: Optional[int] = None, tolerance: float = 0.01, log=print) -> Dict[str, Any]:
    """The calibration table from :func:`curves` rows (with their ``"acceleration"``): the pair
    (``num_samples``, ``t0`` per acceleration) of ``default_init`` (:func:`fit_samples`) and the
    factor per initializer (:func:`fit_factor`; for ``default_init`` on the curves of the chosen
    ``K``, its budget shared by the ``K`` samples as :class:`EstimatedT0` does)."""
    result: Dict[str, Any] = {"t0": {}, "nmse": {}, "factor": {}, "fit": {}}
    initializers = list(dict.fromkeys(r["initializer"] for r in records))
    k = 1
    if default_init in initializers:
        pair = fit_samples([r for r in records if r["initializer"] == default_init], samples, sub.num_steps, max_nfe, tolerance)
        k = pair["num_samples"]
        result.update(t0=pair["t0"], num_samples=k, nmse=pair["nmse"], nmse_db=pair["nmse_db"])
        log(f"{default_init}: K = {k}, t0 {pair['t0']} (mean NMSE in dB per K: {pair['nmse_db']})")
    for init in initializers:
        rows = [r for r in records if r["initializer"] == init]
        mine = k if init == default_init else 1
        if mine > 1:
            rows = [{"sigma_hat": r["sigma_hat"], "grid": curve(r, mine)} for r in rows]
        factor, means = fit_factor(rows, sub, max_nfe=max_nfe, num_samples=mine)
        result["factor"][init] = factor
        result["fit"][init] = {"slices": len(rows), "num_samples": mine, "mean_psnr": {f"{f:g}": v for f, v in means.items()},
                               "on_grid_edge": factor in (FACTORS[0], FACTORS[-1])}
        log(f"{init}: factor {factor:g} (mean PSNR {means[factor]:.2f} dB over {len(rows)} slices)")
    if default_init in result["factor"]:  # for initializers not calibrated (EstimatedT0 warns when it uses it)
        result["factor"]["default"] = result["factor"][default_init]
    return result


RECORD_KEYS = ("initializer", "slice", "acceleration", "sigma_hat", "grid")


def load_records(paths: Sequence[Path]) -> List[dict]:
    """The per-slice curves of ``--records`` files (``{"fitted_with": ..., "records": [...]}``,
    or a bare list from before 0.3.3), concatenated.

    Raises:
        ValueError: a file that is not a JSON list of records with :data:`RECORD_KEYS`, or
            two files with the same (initializer, acceleration, slice).
    """
    records, seen = [], {}
    for path in paths:
        rows = _read_records_file(path)
        rows = rows.get("records") if isinstance(rows, dict) else rows
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"{path}: expected a non-empty JSON list of records, found {type(rows).__name__}")
        for row in rows:
            missing = [key for key in RECORD_KEYS if not isinstance(row, dict) or key not in row]
            if missing:
                raise ValueError(f"{path}: expected records with keys {list(RECORD_KEYS)}, found one without {missing}")
            key = (row["initializer"], float(row["acceleration"]), row["slice"])
            if key in seen:
                raise ValueError(f"{path}: record {key} is also in {seen[key]}")
            seen[key] = path
            records.append(row)
    return records


def _read_records_file(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: expected a calibration records JSON (--records), found an unreadable file ({error})") from None


def records_fitted_with(paths: Sequence[Path]) -> Optional[dict]:
    """The settings the runs of ``--records`` files measured with (their ``"fitted_with"``), or
    None when no file says.

    Raises:
        ValueError: files that say different things (runs with other parts cannot be fitted
            together), or some say and some do not.
    """
    stamps = {}
    for path in paths:
        data = _read_records_file(path)
        stamps[str(path)] = data.get("fitted_with") if isinstance(data, dict) else None
    said = {k: v for k, v in stamps.items() if v is not None}
    if not said:
        return None
    silent = [k for k, v in stamps.items() if v is None]
    if silent:
        raise ValueError(f"{silent[0]}: expected records that say which settings made them ('fitted_with'), as "
                         f"{next(iter(said))} does, found none: rerun it with this version")
    first_path, first = next(iter(said.items()))
    for path, stamp in said.items():
        if stamp.get("settings") != first.get("settings") or stamp.get("initializer") != first.get("initializer"):
            keys = sorted(k for k in set(stamp.get("settings", {})) | set(first.get("settings", {}))
                          if stamp.get("settings", {}).get(k) != first.get("settings", {}).get(k))
            raise ValueError(f"{path}: expected records made with the settings of {first_path}, found other ones "
                             f"({keys[:4] or 'the initializer'}): runs with other parts cannot be fitted together")
    merged = dict(first)
    merged["initializers"] = {name: values for stamp in said.values() for name, values in stamp.get("initializers", {}).items()}
    return merged
