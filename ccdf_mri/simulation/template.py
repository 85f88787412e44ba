"""The MNI ICBM152 2009a brain template that the demo corpus is simulated from.

The ``nilearn`` wheel ships three volumes of the ICBM 2009a nonlinear symmetric template
(1 mm isotropic, 197 x 233 x 189 voxels, skull-stripped) in ``nilearn/datasets/data/``:

- ``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``: T1-weighted average; its non-zero
  voxels give the head (brain) mask;
- ``mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz``: grey-matter probability;
- ``mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz``: white-matter probability.

They are read from the installed package (no fetcher, no network) or from any folder that
holds the three files (``template_dir``), e.g. on a machine without nilearn.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
from scipy import ndimage

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

TEMPLATE_NOTICE = (
    "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
    "Institute, McGill University. Permission to use, copy, modify, and distribute this software and "
    "its documentation for any purpose and without fee is hereby granted, provided that the above "
    "copyright notice appear in all copies. The authors and McGill University make no representations "
    "about the suitability of this software for any purpose. It is provided \"as is\" without express "
    "or implied warranty. The authors are not responsible for any data loss, equipment damage, "
    "property loss, or injury to subjects or patients resulting from the use or misuse of this "
    "software package."
)
"""The notice of the ICBM 2009a template; its licence asks that it appear in all copies."""


@dataclass(frozen=True)
class BrainTemplate:
    """Tissue maps of the template, cropped to the brain with a margin, in voxel space (1 mm).

    Attributes:
        gm: grey-matter probability ``(X, Y, Z)`` float32 in [0, 1].
        wm: white-matter probability ``(X, Y, Z)`` float32 in [0, 1].
        mask: head mask ``(X, Y, Z)`` float32 in {0, 1} (filled non-zero T1 voxels).
        brain_lo: first voxel index of the brain along (x, y, z).
        brain_hi: last voxel index of the brain along (x, y, z).
        voxel_mm: voxel size in mm (1.0 for the shipped files).
        source: folder the files were read from.
    """

    gm: np.ndarray
    wm: np.ndarray
    mask: np.ndarray
    brain_lo: Tuple[int, int, int]
    brain_hi: Tuple[int, int, int]
    voxel_mm: float
    source: str

    @property
    def centre(self) -> np.ndarray:
        """Centre of the brain bounding box in voxel coordinates ``(3,)``."""
        return (np.asarray(self.brain_lo, float) + np.asarray(self.brain_hi, float)) / 2.0


def default_template_dir() -> Optional[Path]:
    """Folder of the installed ``nilearn`` package's bundled data, or None without nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def template_paths(template_dir: Union[str, os.PathLike, None] = None) -> dict:
    """Paths of the three template files.

    Args:
        template_dir: folder holding the three files; None -> the installed nilearn package.

    Returns:
        ``{"t1": Path, "gm": Path, "wm": Path}``.

    Raises:
        FileNotFoundError: nilearn is missing and no folder was given, or a file is missing
            (the message names the file and the folder).
    """
    folder = Path(template_dir) if template_dir is not None else default_template_dir()
    if folder is None:
        raise FileNotFoundError(
            "the MNI ICBM152 2009a template ships with nilearn, which is not installed: "
            "install nilearn or pass a template folder holding " + ", ".join(TEMPLATE_FILES.values())
        )
    paths = {key: folder / name for key, name in TEMPLATE_FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: template file not found (expected the three files {', '.join(TEMPLATE_FILES.values())} in {folder})")
    return paths


def _read(path: Path) -> np.ndarray:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises several types for broken files
        raise ValueError(f"{path}: cannot read the NIfTI template file ({error})") from error
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D template volume, found shape {data.shape}")
    return data


@functools.lru_cache(maxsize=4)
def _load(folder: str, blur_mm: float) -> BrainTemplate:
    paths = template_paths(folder)
    t1, gm, wm = (_read(paths[key]) for key in ("t1", "gm", "wm"))
    if not (t1.shape == gm.shape == wm.shape):
        raise ValueError(f"{folder}: template volumes differ in shape: t1 {t1.shape}, gm {gm.shape}, wm {wm.shape}")
    scale = max(float(gm.max()), float(wm.max()), 1.0)  # uint8 files hold 0..255 probabilities
    gm, wm = gm / scale, wm / scale
    mask = ndimage.binary_fill_holes(t1 > 0)
    if not mask.any():
        raise ValueError(f"{paths['t1']}: the T1 template has no non-zero voxel")
    lo = np.array([np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)])
    hi = np.array([np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[-1] for ax in range(3)])
    margin = 4
    start = np.maximum(lo - margin, 0)
    stop = np.minimum(hi + margin + 1, mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(start, stop))
    maps = [np.ascontiguousarray(v[crop], dtype=np.float32) for v in (gm, wm, mask.astype(np.float32))]
    if blur_mm > 0:
        maps = [ndimage.gaussian_filter(v, blur_mm) for v in maps]
    return BrainTemplate(
        gm=maps[0], wm=maps[1], mask=maps[2],
        brain_lo=tuple(int(v) for v in lo - start), brain_hi=tuple(int(v) for v in hi - start),
        voxel_mm=1.0, source=folder,
    )


def load_template(template_dir: Union[str, os.PathLike, None] = None, pixel_mm: float = 1.0) -> BrainTemplate:
    """Load (once per process and folder) the template's tissue maps.

    Args:
        template_dir: folder with the three files; None -> the installed nilearn package.
        pixel_mm: pixel size of the images to be sampled from it; above 1.5 mm the maps are
            low-pass filtered (Gaussian, sigma = 0.4 * pixel_mm) against aliasing.

    Returns:
        the cached :class:`BrainTemplate`.
    """
    folder = str(Path(template_dir) if template_dir is not None else default_template_dir() or "")
    if not folder:
        template_paths(None)  # raises the explanatory FileNotFoundError
    blur = round(0.4 * pixel_mm, 1) if pixel_mm > 1.5 else 0.0
    return _load(folder, blur)
