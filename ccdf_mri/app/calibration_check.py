"""Was ``t0 = "auto"``'s calibration fitted for this run's settings?

``python -m ccdf_mri.calibration`` measures, on validation slices, which start (``K``, ``t0``) and
which per-slice factor work best for one set of parts: the preprocessing, the initializer with
its options, the score network's weights, the schedule, sampler and data-consistency map. It
stores their description (:meth:`ccdf_mri.app.reconstructor.Reconstructor.settings`, restricted
by :func:`calibrated_settings`) in ``calibration.json`` under ``"fitted_with"``. A run whose parts
differ (a bundle override of the DC weight, other weights, another initializer) still runs, but
its automatic start is then a guess rather than a measurement: :func:`check_calibration` names
the differences in a warning, so that a stale calibration is never silent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

logger = logging.getLogger(__name__)

FITTED_WITH = "fitted_with"
# settings (flattened Reconstructor.settings keys) that shape the PSNR(K, t0) curves a calibration measures
CALIBRATED_PREFIXES = (
    "preprocessing.", "initializer.", "network.", "inferer.schedule.", "inferer.sub.", "inferer.dc.",
    "inferer.sampler", "inferer.eta", "inferer.dc_target", "inferer.corrector_steps", "inferer.snr",
)
MAX_SHOWN = 6


def calibrated_settings(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """The entries of flattened reconstructor settings that a calibration depends on, as JSON
    gives them back.

    Left out: the mask (the table is per acceleration), ``t0`` and its selector, ``K`` (both
    are what the calibration fits), the seed and speed options (``amp_dtype``, ``compile``, ...).
    """
    masks = {key[: -len(".class")] for key, value in settings.items() if key.endswith(".class") and value == "UndersampleKspaced"}
    kept = {key: value for key, value in settings.items()
            if key.startswith(CALIBRATED_PREFIXES) and not any(key.startswith(mask + ".") for mask in masks)}
    return json.loads(json.dumps(kept, default=str))


def fitted_with(default: str, settings: Mapping[str, Any], initializers: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """What ``calibration.json`` stores under ``"fitted_with"``.

    Args:
        default: the initializer the ``(K, t0)`` table is fitted for (the bundle's).
        settings: flattened settings of the reconstructor the curves were measured with.
        initializers: flattened settings (``"initializer.*"`` keys) of each initializer measured.
    """
    parts = calibrated_settings(settings)
    return {"initializer": default,
            "settings": {k: v for k, v in parts.items() if not k.startswith("initializer.")},
            "initializers": {name: calibrated_settings(values) for name, values in initializers.items()}}


def calibration_differences(stamp: Mapping[str, Any], settings: Mapping[str, Any], any_initializer: bool = False) -> List[str]:
    """``"key: calibrated -> this run"`` for each calibrated setting that differs.

    Args:
        stamp: a calibration's ``"fitted_with"`` (:func:`fitted_with`).
        settings: flattened settings of the run (:meth:`Reconstructor.settings`).
        any_initializer: the run's initializer may be any one measured (a per-initializer factor,
            :class:`ccdf_mri.diffusion.t0.EstimatedT0`), not only the table's.
    """
    now = calibrated_settings(settings)
    start = {k: v for k, v in now.items() if k.startswith("initializer.")}
    rest = {k: v for k, v in now.items() if not k.startswith("initializer.")}
    measured = stamp.get("initializers", {})
    candidates = list(measured.values()) if any_initializer else [measured.get(stamp.get("initializer"), {})]
    nearest = min(candidates or [{}], key=lambda c: len(_differ(c, start)))
    return _differ(stamp.get("settings", {}), rest) + _differ(nearest, start)


def _by_hash(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Arrays described by hash (``x.sha256`` and ``x.shape``) as one entry ``x`` (small arrays are
    described by value, so one side may hold the value and the other the hash)."""
    out: Dict[str, Any] = {}
    for key, value in values.items():
        if key.endswith("sha256"):
            out[key[: -len("sha256")].rstrip("._")] = ("sha256", value)
        elif not (key.endswith(".shape") and key[: -len("shape")] + "sha256" in values):
            out[key] = value
    return out


def _differ(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """Readable differences: a part whose class changed is one entry (``initializer: 'L1Wavelet' ->
    'CGSense'``), an array known by its hash one entry (``inferer.sub.sigmas: changed``), plain
    values as they are (``inferer.dc.prior_std: 0.02 -> 0.05``)."""
    absent = "(absent)"
    old, new = _by_hash(old), _by_hash(new)
    keys = sorted(k for k in set(old) | set(new) if old.get(k, absent) != new.get(k, absent))
    replaced = [k[: -len(".class")] for k in keys if k.endswith(".class")]
    out: Dict[str, str] = {}
    for key in keys:
        part = next((p for p in replaced if key == p + ".class" or key.startswith(p + ".")), None)
        if part is not None:
            out.setdefault(part, f"{part}: {old.get(part + '.class', absent)!r} -> {new.get(part + '.class', absent)!r}")
        elif isinstance(old.get(key), tuple) or isinstance(new.get(key), tuple):
            out[key] = f"{key}: changed"
        else:
            out[key] = f"{key}: {old.get(key, absent)!r} -> {new.get(key, absent)!r}"
    return list(out.values())


def calibration_path(inferer: Any) -> Optional[Path]:
    """The calibration JSON the inferer's ``t0 = "auto"`` reads, or None (a fixed ``t0``, or none)."""
    if getattr(inferer, "t0", None) != "auto":
        return None
    source = getattr(getattr(inferer, "t0_selector", None), "source", None)
    return None if source is None else Path(source)


def check_calibration(inferer: Any, settings: Mapping[str, Any]) -> Optional[List[str]]:
    """Compare the settings a run uses with those its calibration was fitted with; log a warning
    naming the differences. Returns the differences (``[]``: it matches), or None when there is
    nothing to compare (a fixed ``t0``, no calibration file, a file without ``"fitted_with"``).
    """
    path = calibration_path(inferer)
    if path is None or not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text()).get(FITTED_WITH)
    except (json.JSONDecodeError, AttributeError, OSError):
        return None  # the selector reading the same file reports a broken file
    if not isinstance(stamp, dict):
        logger.info("t0 'auto': %s does not say which settings it was fitted with", path)
        return None
    per_slice = hasattr(getattr(inferer, "t0_selector", None), "factor")
    differences = calibration_differences(stamp, settings, any_initializer=per_slice)
    if differences:
        shown = "; ".join(differences[:MAX_SHOWN]) + ("; ..." if len(differences) > MAX_SHOWN else "")
        logger.warning(
            "t0 'auto': %s was fitted with other settings than this run's (%d differ, calibrated -> this run: %s); "
            "the automatic start is not measured for them: refit with python -m ccdf_mri.calibration, or give a fixed t0",
            path, len(differences), shown)
    return differences
