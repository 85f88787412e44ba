"""Write simulated multi-coil data as fastMRI-format ``.h5`` files.

Besides the fastMRI keys (``kspace``, ``reconstruction_rss``, ``ismrmrd_header``, attrs
``max``, ``norm``, ``acquisition``, ``patient_id``) the file holds ``target_complex``
``(S, H, W)`` complex64: the noise-free complex image whose coil-weighted FFT gave the
k-space (the ideal SENSE-combined target).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import h5py
import numpy as np

from ccdf_mri.io.atomic import atomic_path
from ccdf_mri.io.fastmri import write_fastmri_h5
from ccdf_mri.io.header import make_ismrmrd_header

from .kspace import rss_from_kspace

TARGET_COMPLEX_KEY = "target_complex"


def write_simulated_h5(
    path: Union[str, os.PathLike],
    kspace: np.ndarray,
    target_complex: np.ndarray,
    fov_mm: tuple,
    slice_thickness_mm: float,
    acquisition: str,
    patient_id: str,
    extra_attrs: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write one simulated volume atomically.

    Args:
        path: output ``.h5`` file.
        kspace: complex ``(S, C, H, W)`` fully sampled k-space (H = readout rows).
        target_complex: complex ``(S, H, W)`` noise-free image.
        fov_mm: field of view ``(rows, cols)`` in mm.
        slice_thickness_mm: slice thickness (the header's z field of view).
        acquisition: e.g. ``AXT1``.
        patient_id: identifier stored in the attrs.
        extra_attrs: more attributes (numbers or strings).

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    s, _, h, w = kspace.shape
    if target_complex.shape != (s, h, w):
        raise ValueError(f"{path}: key '{TARGET_COMPLEX_KEY}': expected shape {(s, h, w)}, found {target_complex.shape}")
    rss = rss_from_kspace(kspace)
    fov = (float(fov_mm[0]), float(fov_mm[1]), float(slice_thickness_mm))
    header = make_ismrmrd_header((h, w, 1), (h, w, 1), fov, fov)
    attrs = {
        "max": float(rss.max()),
        "norm": float(np.linalg.norm(rss)),
        "acquisition": acquisition,
        "patient_id": patient_id,
    }
    with atomic_path(path) as tmp:
        write_fastmri_h5(tmp, kspace, header, attrs, targets={"reconstruction_rss": rss}, extra_attrs=extra_attrs)
        with h5py.File(tmp, "a") as handle:
            handle.create_dataset(TARGET_COMPLEX_KEY, data=np.asarray(target_complex, dtype=np.complex64))
    return path
