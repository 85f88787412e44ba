"""Magnitude image volumes (DICOM series, NIfTI files) -> simulated multi-coil k-space.

Readers return :class:`ImageVolume` (magnitude ``(S, H, W)`` float32 and geometry) or
raise ``ValueError`` naming the file; :func:`simulate_from_magnitude` adds a smooth random
phase, randomised birdcage coil maps and white noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from scipy import ndimage

from .coils import random_birdcage_maps
from .fields import smooth_phase
from .kspace import simulate_kspace

PathLike = Union[str, os.PathLike]
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class ImageVolume:
    """A stack of magnitude slices.

    Attributes:
        name: output name stem.
        magnitude: float32 ``(S, H, W)``, non-negative.
        pixel_mm: spacing ``(rows, cols)`` in mm.
        slice_mm: slice thickness in mm.
        source: the file or folder it came from.
    """

    name: str
    magnitude: np.ndarray
    pixel_mm: Tuple[float, float]
    slice_mm: float
    source: str


def is_nifti(path: PathLike) -> bool:
    """True for ``.nii`` / ``.nii.gz`` names."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_nifti(path: PathLike) -> ImageVolume:
    """Read a 2-D or 3-D NIfTI magnitude volume; slices along the third (RAS: z) axis.

    The image is reoriented to the closest canonical (RAS) orientation; slice k is shown
    with anterior at the top and the left-right axis along the columns.

    Raises:
        ValueError: unreadable file, a time (4th) axis longer than 1, or fewer than 2 dimensions.
    """
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises several types for broken files
        raise ValueError(f"{path}: cannot read as NIfTI ({type(error).__name__}: {error})") from None
    zooms = tuple(float(z) for z in image.header.get_zooms())
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise ValueError(
            f"{path}: NIfTI with a time axis: expected a 3-D magnitude volume (X, Y, Z), "
            f"found shape {data.shape} ({data.shape[3]} time points)"
        )
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 2-D or 3-D NIfTI volume, found shape {data.shape}")
    magnitude = np.abs(data.astype(np.complex64 if np.iscomplexobj(data) else np.float32))
    slices = np.ascontiguousarray(np.transpose(magnitude[:, ::-1, :], (2, 1, 0)), dtype=np.float32)
    return ImageVolume(_stem(path), slices, (zooms[1], zooms[0]), zooms[2] if len(zooms) > 2 else 1.0, str(path))


def read_dicom_series(files: List[Path], name: str) -> Tuple[Optional[ImageVolume], Dict[str, str]]:
    """Stack the DICOM files of one series, sorted along the slice normal.

    Files without pixel data or whose image size differs from the majority are left out
    and reported.

    Args:
        files: the series' files.
        name: output name stem.

    Returns:
        ``(volume or None when no file had usable pixels, {file: error message})``.
    """
    import pydicom

    errors: Dict[str, str] = {}
    slices = []
    for path in files:
        try:
            ds = pydicom.dcmread(str(path))
        except Exception as error:
            errors[str(path)] = f"{path}: cannot read as DICOM ({type(error).__name__}: {error})"
            continue
        if "PixelData" not in ds:
            errors[str(path)] = f"{path}: DICOM file without pixel data (no PixelData element)"
            continue
        try:
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as error:
            errors[str(path)] = f"{path}: cannot decode the DICOM pixel data ({type(error).__name__}: {error})"
            continue
        if pixels.ndim != 2:
            errors[str(path)] = f"{path}: expected a single 2-D DICOM image, found pixel array shape {pixels.shape}"
            continue
        pixels = pixels * float(getattr(ds, "RescaleSlope", 1.0) or 1.0) + float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        position = 0.0
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            orientation = np.asarray(ds.ImageOrientationPatient, float)
            position = float(np.dot(np.cross(orientation[:3], orientation[3:]), np.asarray(ds.ImagePositionPatient, float)))
        elif "InstanceNumber" in ds:
            position = float(ds.InstanceNumber)
        spacing = tuple(float(v) for v in getattr(ds, "PixelSpacing", (1.0, 1.0)))
        thickness = float(getattr(ds, "SliceThickness", 1.0) or 1.0)
        slices.append((position, str(path), np.abs(pixels), spacing, thickness))
    if not slices:
        return None, errors
    shapes = [s[2].shape for s in slices]
    common = max(set(shapes), key=shapes.count)
    for s in slices:
        if s[2].shape != common:
            errors[s[1]] = f"{s[1]}: image size {s[2].shape} differs from the series' {common}; left out"
    slices = sorted((s for s in slices if s[2].shape == common), key=lambda s: s[0])
    magnitude = np.stack([s[2] for s in slices]).astype(np.float32)
    return ImageVolume(name, magnitude, slices[0][3][:2], slices[0][4], str(files[0].parent)), errors


def resample_square(magnitude: np.ndarray, pixel_mm: Tuple[float, float], size: int) -> Tuple[np.ndarray, Tuple[float, float]]:
    """Resample slices ``(S, H, W)`` to ``(S, size, size)`` (cubic), keeping the field of view.

    Returns:
        ``(resampled float32, new pixel spacing (rows, cols) mm)``.
    """
    s, h, w = magnitude.shape
    zoom = (1.0, size / h, size / w)
    out = ndimage.zoom(magnitude, zoom, order=3, grid_mode=True, mode="nearest")
    return np.clip(out, 0, None).astype(np.float32), (pixel_mm[0] * h / size, pixel_mm[1] * w / size)


def simulate_from_magnitude(
    magnitude: np.ndarray, num_coils: int, snr_db: Optional[float], rng: np.random.Generator,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complex image and noisy multi-coil k-space from magnitude slices.

    The magnitude is scaled so its 99.5th percentile is 1; one smooth random phase map
    and one coil set are shared by the slices; support = pixels above 5 % of that level.

    Args:
        magnitude: float ``(S, H, W)``.
        num_coils: C.
        snr_db: noise level (see :mod:`ccdf_mri.simulation.kspace`); None: no noise.
        rng: random generator.

    Returns:
        ``(kspace complex64 (S, C, H, W), target complex64 (S, H, W), maps complex64 (C, H, W))``.
    """
    level = float(np.percentile(magnitude, 99.5))
    if not np.isfinite(level) or level <= 0:
        raise ValueError("the images are empty (99.5th percentile of the magnitude is not positive)")
    magnitude = magnitude / level
    shape = magnitude.shape[1:]
    target = (magnitude * np.exp(1j * smooth_phase(shape, rng))).astype(np.complex64)
    maps = random_birdcage_maps(num_coils, shape, rng)
    kspace, _ = simulate_kspace(target, maps, snr_db, rng, support=magnitude > 0.05)
    return kspace, target, maps
