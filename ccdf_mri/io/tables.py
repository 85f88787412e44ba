"""``metrics.csv`` of an output folder, merged across runs.

Layout (as written before this module): a header ``volume,nmse,psnr,ssim``, one row per
output volume, and a last row ``mean`` with the column means; numbers with 6 significant
digits. :func:`merge_metrics_csv` keeps the rows of earlier runs, replaces the rows of the
volumes this run scored (in place: the row order stays), appends new ones, recomputes the
``mean`` row over all volume rows and writes the file atomically. So a rerun that skips
finished volumes, or redoes some of them, leaves one row per output.

Not safe for two processes merging into the same file at the same time (the last writer
wins); one run per output folder, or rank 0 only under ``torch.distributed``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ccdf_mri.io.atomic import atomic_path

PathLike = Union[str, os.PathLike]
METRIC_NAMES = ("nmse", "psnr", "ssim")
NAME_COLUMN = "volume"
MEAN_ROW = "mean"
Rows = Union[Mapping[str, Mapping[str, float]], Sequence[Tuple[str, Mapping[str, float]]]]


def _number(text: str, path: Path, name: str, column: str) -> Optional[float]:
    if text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: row '{name}', column '{column}': expected a number, found {text!r}") from None


def read_metrics_csv(path: PathLike) -> Tuple[List[str], Dict[str, Dict[str, float]]]:
    """The metric columns and the volume rows of a ``metrics.csv`` (the ``mean`` row dropped).

    Returns:
        ``(columns, {volume: {column: value}})``; empty cells are left out of a row's dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the header does not start with ``volume``, a volume appears twice, or a
            cell is not a number; the message names the file, row and column.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        table = [row for row in csv.reader(handle) if row]
    if not table or table[0][0] != NAME_COLUMN:
        found = table[0] if table else "an empty file"
        raise ValueError(f"{path}: expected a header starting with '{NAME_COLUMN}', found {found}")
    columns = table[0][1:]
    rows: Dict[str, Dict[str, float]] = {}
    for line in table[1:]:
        name = line[0]
        if name == MEAN_ROW:
            continue
        if name in rows:
            raise ValueError(f"{path}: expected one row per volume, found '{name}' twice")
        values = {column: _number(text, path, name, column) for column, text in zip(columns, line[1:])}
        rows[name] = {column: value for column, value in values.items() if value is not None}
    return columns, rows


def _as_dict(rows: Rows) -> Dict[str, Dict[str, float]]:
    items = list(rows.items()) if isinstance(rows, Mapping) else list(rows)
    merged: Dict[str, Dict[str, float]] = {}
    for name, metrics in items:
        if name == MEAN_ROW:
            raise ValueError(f"metrics: volume name '{MEAN_ROW}' is reserved for the mean row of metrics.csv")
        if name in merged:
            raise ValueError(f"metrics: expected one row per volume, found '{name}' twice")
        # stored as written (6 significant digits), so the mean row is the mean of the rows
        # shown whether a row was scored in this run or read back from an earlier one
        merged[name] = {key: float(_format(float(value))) for key, value in metrics.items()}
    return merged


def _format(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.6g}"


def merge_metrics_csv(path: PathLike, rows: Rows, columns: Sequence[str] = METRIC_NAMES) -> Path:
    """Update ``metrics.csv`` with this run's rows, keep the others, recompute ``mean``; atomic.

    Args:
        path: the csv (created when missing).
        rows: ``{volume: {"nmse": ..., "psnr": ..., "ssim": ...}}`` or a sequence of
            ``(volume, metrics)`` pairs, e.g. of the volumes scored in this run (done or
            skipped). A volume already in the file has its row replaced where it is.
        columns: the metric columns, in order; columns found only in the existing file are
            kept after them.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: a volume named ``mean`` or given twice, or an existing file that
            :func:`read_metrics_csv` rejects (it is then left as it is).
    """
    path = Path(path)
    new_rows = _as_dict(rows)
    old_columns, table = read_metrics_csv(path) if path.exists() else ([], {})
    all_columns = list(columns) + [c for c in old_columns if c not in columns]
    all_columns += [c for metrics in new_rows.values() for c in metrics if c not in all_columns]
    for name, metrics in new_rows.items():
        table[name] = metrics  # replaces in place (dict order kept) or appends
    means: Dict[str, Optional[float]] = {}
    for column in all_columns:
        values = [m[column] for m in table.values() if column in m]  # a NaN stays visible in the mean
        means[column] = sum(values) / len(values) if values else None
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([NAME_COLUMN] + all_columns)
        for name, metrics in table.items():
            writer.writerow([name] + [_format(metrics.get(column)) for column in all_columns])
        writer.writerow([MEAN_ROW] + [_format(means[column]) for column in all_columns])
    return path
