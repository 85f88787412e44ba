"""fastMRI metrics of submission files against the targets of fastMRI files (``ccdf-mri evaluate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from ccdf_mri.app.report import RunReport, VolumeResult

PathLike = Union[str, os.PathLike]


def evaluate_folders(pred_dir: PathLike, target_dir: PathLike) -> RunReport:
    """fastMRI metrics of the submission files in ``pred_dir`` against the targets in ``target_dir``.

    Each ``target_dir/<name>.h5`` with a target is compared with ``pred_dir/<name>.h5``
    (dataset ``reconstruction``); a missing or mismatched prediction is a failed entry.

    Raises:
        ccdf_mri.io.NoInputsError: ``target_dir`` holds no ``.h5`` file.
    """
    import h5py

    from ccdf_mri.io import FastMRIVolume, find_inputs, volume_name
    from ccdf_mri.metrics import volume_metrics

    results = []
    for path in find_inputs(target_dir):
        name = volume_name(path)
        result = VolumeResult(name=name, path=str(path), status="failed")
        pred_path = Path(pred_dir) / f"{name}.h5"
        try:
            with FastMRIVolume(path) as volume:
                if volume.target_key is None:
                    raise ValueError(f"{path}: expected a target (reconstruction_rss/esc), found none")
                target = np.stack([volume.target_slice(i) for i in range(volume.num_slices)])
            if not pred_path.is_file():
                raise FileNotFoundError(f"{pred_path}: prediction for {path} not found")
            with h5py.File(pred_path, "r") as handle:
                if "reconstruction" not in handle:
                    raise ValueError(f"{pred_path}: key 'reconstruction': expected a dataset, found keys {sorted(handle)}")
                pred = np.asarray(handle["reconstruction"], dtype=np.float32)
            if pred.shape != target.shape:
                raise ValueError(f"{pred_path}: key 'reconstruction': expected shape {target.shape}, found {pred.shape}")
            result.metrics, result.slices, result.status = volume_metrics(target, pred), len(target), "done"
        except (ValueError, OSError, KeyError) as error:
            result.error = str(error)
        results.append(result)
    return RunReport(results)
