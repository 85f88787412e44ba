"""Provenance records: which input and which settings made an output, to resume safely.

Each reconstructed volume ``<name>`` gets a JSON sidecar ``<name>.provenance.json`` in the
output folder (:func:`record_path`), written atomically AFTER all of the volume's outputs,
so its presence also marks the volume as complete. A JSON sidecar (not attributes in the
``.h5``) because it exists whatever output formats were asked for (NIfTI only, DICOM only)
and can be read by a person.

A record (:func:`make_record`)::

    {"format": 1,
     "input": {"path": "/abs/x.h5", "size": 123, "mtime_ns": 169..., "hash": "sha256-head-tail:..."},
     "settings": {"acceleration": 4.0, "t0": 0.2, ...},   # whatever the caller passes, JSON
     "models": {"score_net.pt": "<sha256>", ...},
     "version": "0.3.0",
     "created": "2024-05-01T10:11:12+00:00"}

:func:`differences` compares two records and names each difference ("acceleration: 4 -> 8");
an empty list means the output can be reused. What counts:

- the input's size, content hash and modification time (``mtime_ns``); NOT its path, so
  moving or renaming the data folder does not force a recomputation (copying without
  preserving times does: the safe direction);
- every setting (a setting present on one side only counts, shown as ``(absent)``);
- every model hash, the package version and the record format.

The content hash (:func:`fast_hash`) is sha256 over the file size and its first and last
MiB (the whole file when it is at most 2 MiB): it reads 2 MiB whatever the file size and
catches appended, truncated or rewritten files; an edit confined to the middle of a file
that keeps its size and modification time is not seen (``full_hash=True`` hashes it all).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ccdf_mri.io.atomic import atomic_path

PathLike = Union[str, os.PathLike]
RECORD_FORMAT = 1
RECORD_SUFFIX = ".provenance.json"
HEAD_TAIL_BYTES = 1 << 20
MODEL_PATTERNS = ("*.pt", "*.json")
_CHUNK = 1 << 20
_ABSENT = "(absent)"


def record_path(output_dir: PathLike, name: str) -> Path:
    """``<output_dir>/<name>.provenance.json``: the record of output volume ``name``."""
    return Path(output_dir) / f"{name}{RECORD_SUFFIX}"


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a whole file (read in 1 MiB chunks), e.g. of a model's weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fast_hash(path: PathLike) -> str:
    """Hex sha256 of (size as 8 little-endian bytes, first MiB, last MiB) of a file.

    Files of at most 2 MiB are hashed whole (after the size). Cost: two 1 MiB reads.
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256(size.to_bytes(8, "little"))
    with open(path, "rb") as handle:
        if size <= 2 * HEAD_TAIL_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(HEAD_TAIL_BYTES))
            handle.seek(size - HEAD_TAIL_BYTES)
            digest.update(handle.read(HEAD_TAIL_BYTES))
    return digest.hexdigest()


def array_sha256(array) -> str:
    """Hex sha256 of an array's dtype, shape and bytes (numpy or torch), e.g. of a mask.

    Lets a setting that is an array (a user's mask, a detected mask) enter a record as text.
    """
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def model_hashes(models_dir: PathLike, patterns: Sequence[str] = MODEL_PATTERNS) -> Dict[str, str]:
    """``{file name: sha256}`` of the model files (``*.pt``, ``*.json``) of a folder, sorted by name."""
    folder = Path(models_dir)
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    return {p.name: file_sha256(p) for p in files}


def input_identity(path: PathLike, full_hash: bool = False) -> Dict[str, Any]:
    """Who an input file is: ``{"path", "size", "mtime_ns", "hash"}``.

    Args:
        path: the input file.
        full_hash: hash the whole file (``"sha256:<hex>"``) instead of its head and tail
            (``"sha256-head-tail:<hex>"``, :func:`fast_hash`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    stat = path.stat()
    digest = f"sha256:{file_sha256(path)}" if full_hash else f"sha256-head-tail:{fast_hash(path)}"
    return {"path": str(path.resolve()), "size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns), "hash": digest}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (os.PathLike,)):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if type(value).__name__ == "device":  # torch.device
        return str(value)
    raise TypeError(
        f"provenance: expected JSON-serialisable settings (numbers, text, lists, dicts, paths), "
        f"found {type(value).__name__}: {value!r}; pass e.g. array_sha256(...) for arrays"
    )


def _plain(value: Any) -> Any:
    """The value as it reads back from JSON (tuples -> lists, numpy -> Python, paths -> str)."""
    return json.loads(json.dumps(value, default=_json_default, allow_nan=True))


def make_record(
    input_path: PathLike,
    settings: Mapping[str, Any],
    model_hashes: Mapping[str, str],
    version: str,
    full_hash: bool = False,
) -> Dict[str, Any]:
    """The provenance record of an output made from ``input_path`` with ``settings``.

    Args:
        input_path: the input file (:func:`input_identity`).
        settings: everything that changes the output, e.g. mask kind / file hash,
            acceleration, centre fraction, t0, steps, sampler, samples, seed, maps method,
            initializer; JSON-serialisable (numpy scalars and paths are converted).
        model_hashes: ``{model file: sha256}`` (:func:`model_hashes`, :func:`file_sha256`).
        version: the package version.
        full_hash: hash the whole input instead of its head and tail.

    Returns:
        the record (a JSON-ready dict; see the module docstring).
    """
    return {
        "format": RECORD_FORMAT,
        "input": input_identity(input_path, full_hash),
        "settings": _plain(dict(settings)),
        "models": _plain(dict(model_hashes)),
        "version": str(version),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(path: PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``record`` as indented JSON at ``path``, atomically (write it after the outputs)."""
    path = Path(path)
    text = json.dumps(_plain(dict(record)), indent=2, sort_keys=True, allow_nan=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def read_record(path: PathLike) -> Optional[Dict[str, Any]]:
    """The record at ``path``, or None when there is none.

    Raises:
        ValueError: the file is not a JSON object with a ``format`` (e.g. edited by hand);
            the message names the file. Treat the outputs as not reusable.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: expected a JSON provenance record, found unreadable text ({error})") from None
    if not isinstance(record, dict) or "format" not in record:
        raise ValueError(f"{path}: expected a JSON object with key 'format', found {type(record).__name__}")
    return record


def _show(value: Any) -> str:
    if value is _ABSENT:
        return _ABSENT
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True)


def _compare(label: str, old: Mapping[str, Any], new: Mapping[str, Any], keys: Sequence[str], short: bool = False) -> List[str]:
    lines = []
    for key in keys:
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if before != after:
            shown = [_show(v) for v in (before, after)]
            if short:  # hashes: enough characters to tell them apart
                shown = [text if len(text) <= 40 else text[:32] + "..." for text in shown]
            lines.append(f"{label}{key}: {shown[0]} -> {shown[1]}")
    return lines


def differences(old: Optional[Mapping[str, Any]], new: Mapping[str, Any]) -> List[str]:
    """What differs between an output's record ``old`` and the record ``new`` of a rerun.

    Args:
        old: the stored record (:func:`read_record`); None counts as "no record".
        new: the record the rerun would write (:func:`make_record`).

    Returns:
        one line per difference, e.g. ``"acceleration: 4 -> 8"``, ``"input size: 10 -> 12"``,
        ``"model score_net.pt: 1a2b... -> 9f8e..."``, ``"version: 0.2 -> 0.3"``; settings
        first, then input, models, version. Empty when the output can be reused.
    """
    if old is None:
        return ["no provenance record"]
    old, new = _plain(dict(old)), _plain(dict(new))
    lines: List[str] = []
    if old.get("format") != new.get("format"):
        lines.append(f"record format: {_show(old.get('format', _ABSENT))} -> {_show(new.get('format', _ABSENT))}")
    old_settings, new_settings = old.get("settings", {}), new.get("settings", {})
    lines += _compare("", old_settings, new_settings, sorted(set(old_settings) | set(new_settings)))
    old_input, new_input = old.get("input", {}), new.get("input", {})
    lines += _compare("input ", old_input, new_input, ("size", "hash", "mtime_ns"), short=True)
    old_models, new_models = old.get("models", {}), new.get("models", {})
    lines += _compare("model ", old_models, new_models, sorted(set(old_models) | set(new_models)), short=True)
    lines += _compare("", old, new, ("version",))
    return lines
