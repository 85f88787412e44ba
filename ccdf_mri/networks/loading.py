"""Loading trained weights (no training dependencies: inference imports this, never ignite).

Two forms, both written by training (``ccdf_mri.engines.checkpoints.ModelExporter``):

- a network built by the caller (e.g. a bundle ``network_def`` ``_target_``) and a plain
  ``state_dict`` ``.pt``: :func:`load_weights`;
- a ``.pt`` with the ``.json`` beside it naming the factory and its keyword arguments:
  :func:`load_exported_network` rebuilds the network from the pair.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

PathLike = Union[str, os.PathLike]


def _state(path: Path, map_location: Any) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling problem is a bad weights file
        raise ValueError(f"{path}: expected a state_dict saved by torch.save, found a file torch cannot load ({error})") from None


def load_weights(network: torch.nn.Module, path: PathLike, device: Union[str, torch.device, None] = "cpu") -> torch.nn.Module:
    """Load the state_dict ``path`` into ``network``; return it on ``device`` in eval mode.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a state_dict, or its keys / shapes do not match ``network``.
    """
    path = Path(path)
    state = _state(path, "cpu")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        raise ValueError(
            f"{path}: weights do not match the {type(network).__name__} the config builds ({detail[:400]}...); "
            "weights trained with another architecture need the config's network_def / initializer_def "
            "arguments of their training record (models/*.json 'kwargs'), e.g. --set network_def#channels=[...]"
        ) from None
    return network.to(device).eval()


def load_exported_network(
    model_path: PathLike, json_path: Optional[PathLike] = None, map_location: Any = "cpu"
) -> torch.nn.Module:
    """Rebuild a network from its exported ``.pt`` + ``.json`` pair and load its weights.

    Args:
        model_path: the ``.pt`` state_dict.
        json_path: its JSON (default: ``model_path`` with suffix ``.json``).
        map_location: ``torch.load`` target.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: the JSON lacks ``factory``/``kwargs`` or the weights do not match.
    """
    model_path = Path(model_path)
    json_path = Path(json_path) if json_path is not None else model_path.with_suffix(".json")
    for path in (model_path, json_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: exported network file not found")
    try:
        record = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path}: expected JSON, found text that does not parse ({error})") from None
    if "factory" not in record or "kwargs" not in record:
        raise ValueError(f"{json_path}: expected keys 'factory' and 'kwargs', found {sorted(record)}")
    module_name, _, function_name = record["factory"].rpartition(".")
    network = getattr(importlib.import_module(module_name), function_name)(**record["kwargs"])
    state = _state(model_path, map_location)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{model_path}: weights do not match {record['factory']}({record['kwargs']}): {error}") from None
    return network


def weights_sha256(network: Optional[torch.nn.Module]) -> Optional[str]:
    """sha256 of a network's parameters and buffers (names, shapes, values): its identity in
    provenance records, whatever file it came from. None for None."""
    if network is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
