"""``describe(part)``: a JSON-ready description of a pipeline part, for provenance records.

Every setting that changes an output lives on some part (the preprocessing's transforms, the
initializer, the inferer and its DC map and t0 selector, the networks), so the record is
derived from the parts themselves: a bundle override such as ``--inferer#dc#lam 0.5`` changes
it without anyone listing the option. Rules: numbers, strings, bools and None as they are;
sequences and mappings element-wise; a ``torch.nn.Module`` by its class and the sha256 of its
weights; a tensor or array by its sha256 (small ones by value); a MONAI ``Compose`` by its
transforms; any other object by its class and public attributes (depth-limited). Attributes
that never change the output (progress bars, devices) are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

IGNORED = {"progress", "device", "backend", "allow_missing_keys", "map_items", "unpack_items", "log_stats",
           "lazy", "overrides", "keys"}
MAX_DEPTH = 5


def describe(part: Any, depth: int = 0) -> Any:
    """JSON-ready description of ``part`` (see the module docstring)."""
    from monai.transforms import Compose

    from ccdf_mri.io.provenance import array_sha256
    from ccdf_mri.networks.loading import weights_sha256

    if part is None or isinstance(part, (bool, int, float, str)):
        return part
    if depth > MAX_DEPTH:
        return type(part).__name__
    if isinstance(part, torch.nn.Module):
        return {"class": type(part).__name__, "weights_sha256": weights_sha256(part)}
    if isinstance(part, (torch.Tensor, np.ndarray)):
        array = part.detach().cpu().numpy() if isinstance(part, torch.Tensor) else part
        return array.tolist() if array.size <= 16 else {"sha256": array_sha256(array), "shape": list(array.shape)}
    if isinstance(part, torch.dtype):
        return str(part)
    if isinstance(part, dict):
        return {str(k): describe(v, depth + 1) for k, v in part.items() if str(k) not in IGNORED}
    if isinstance(part, (list, tuple)):
        return [describe(v, depth + 1) for v in part]
    if isinstance(part, Compose):
        return {"class": "Compose", "transforms": [describe(t, depth + 1) for t in part.transforms]}
    if callable(part) and not hasattr(part, "__dict__"):
        return getattr(part, "__qualname__", type(part).__name__)
    fields = {k: v for k, v in vars(part).items() if not k.startswith("_") and k not in IGNORED} if hasattr(part, "__dict__") else {}
    return {"class": type(part).__name__, **{k: describe(v, depth + 1) for k, v in fields.items()}}


def flatten(value: Any, prefix: str = "") -> dict:
    """Nested descriptions -> ``{"inferer.dc.lam": 1.0, ...}`` (list items by index), so that a
    provenance difference reads ``inferer.t0: 0.02 -> 0.1``."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {prefix: value}
    out: dict = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out
