"""Real MR volumes for the validation set: loading, oblique slicing, degradations.

Sources (Debian packages; nothing is downloaded):

- ``mricron-data``: ``/usr/share/mricron/templates/ch2.nii.gz`` (the Colin27 head, 1 mm:
  27 averaged T1 scans of one individual, with scalp and skull), ``ch2bet.nii.gz`` (its brain
  mask after extraction) and ``ch2better.nii.gz`` (skull-stripped, 0.5 mm);
- ``insighttoolkit5-examples``: ``/usr/share/doc/insighttoolkit5-examples/examples/Data``:
  ``KmeansTest_T1UCharRaw.nii.gz`` (a T1 head of another individual, 2 x 2 x 3 mm),
  ``FatMRISlice.png`` (an abdominal MR slice) and ``RatLungSlice{1,2}.mha`` (rat thorax MR).

Geometry: a volume is a float32 ``(X, Y, Z)`` array in RAS order (``nibabel``'s closest
canonical orientation) with voxel spacing in mm; a point ``p`` (mm) is voxel ``p / spacing``.
A slice is sampled on a plane through ``centre`` spanned by unit vectors ``row`` (down the
image) and ``col`` (along the columns = the phase-encode axis W), over a square field of view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
from scipy import ndimage

PathLike = Union[str, os.PathLike]
MRICRON_DIR = Path("/usr/share/mricron/templates")
ITK_DATA_DIR = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
COLIN_HEAD, COLIN_BRAIN_MASK, COLIN_BETTER = "ch2.nii.gz", "ch2bet.nii.gz", "ch2better.nii.gz"
ITK_T1, ITK_ABDOMEN, ITK_RAT_LUNGS = "KmeansTest_T1UCharRaw.nii.gz", "FatMRISlice.png", ("RatLungSlice1.mha", "RatLungSlice2.mha")
MRICRON_HINT = "install the Debian package mricron-data (`apt-get install mricron-data`)"
ITK_HINT = "install the Debian package insighttoolkit5-examples (`apt-get install insighttoolkit5-examples`)"

#: base frames (normal, row, col) in RAS: axial rows anterior -> posterior, columns right -> left
#: of the array (RAS x increasing), as :func:`ccdf_mri.simulation.images.read_nifti` shows slices.
ORIENTATIONS: Dict[str, Tuple[Tuple[float, ...], ...]] = {
    "axial": ((0, 0, 1), (0, -1, 0), (1, 0, 0)),
    "coronal": ((0, 1, 0), (0, 0, -1), (1, 0, 0)),
    "sagittal": ((1, 0, 0), (0, 0, -1), (0, -1, 0)),
}


@dataclass
class Volume:
    """A 3-D magnitude volume in RAS voxel order.

    Attributes:
        data: float32 ``(X, Y, Z)``.
        spacing: voxel size ``(x, y, z)`` in mm.
        name: short label.
        source: the file it came from.
    """

    data: np.ndarray
    spacing: Tuple[float, float, float]
    name: str
    source: str

    def level(self) -> float:
        """Robust bright level: the 99.5th percentile of the voxels above zero (computed once)."""
        if "_level" not in self.__dict__:
            values = self.data[self.data > 0]
            self.__dict__["_level"] = float(np.percentile(values, 99.5)) if values.size else 1.0
        return self.__dict__["_level"]

    def centre_mm(self) -> np.ndarray:
        """Centre of mass (mm) of the voxels above 10 % of :meth:`level` (computed once)."""
        if "_centre" not in self.__dict__:
            mass = ndimage.center_of_mass(self.data > 0.1 * self.level())
            self.__dict__["_centre"] = np.asarray(mass, float) * np.asarray(self.spacing)
        return self.__dict__["_centre"].copy()

    def extent_mm(self) -> np.ndarray:
        """Size of the volume along x, y, z in mm."""
        return np.asarray(self.data.shape, float) * np.asarray(self.spacing)


def load_nifti_volume(path: PathLike, name: str, hint: str = "") -> Volume:
    """Read a 3-D NIfTI file into a RAS :class:`Volume`.

    Raises:
        FileNotFoundError: the file is missing (the message adds ``hint``, e.g. how to install it).
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" + (f"; {hint}" if hint else ""))
    image = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume, found shape {data.shape}")
    return Volume(np.clip(data, 0, None), tuple(float(z) for z in image.header.get_zooms()[:3]), name, str(path))


def read_image_2d(path: PathLike, hint: str = "") -> np.ndarray:
    """A 2-D grey image (PNG, or MetaImage ``.mha`` with raw ``ElementDataFile``) as float32 ``(H, W)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" + (f"; {hint}" if hint else ""))
    if path.suffix.lower() == ".png":
        from PIL import Image

        return np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    fields = dict(line.split(" = ", 1) for line in path.read_text().splitlines() if " = " in line)
    width, height = (int(v) for v in fields["DimSize"].split())
    dtype = {"MET_UCHAR": np.uint8, "MET_USHORT": np.uint16, "MET_SHORT": np.int16, "MET_FLOAT": np.float32}[fields["ElementType"]]
    raw = np.fromfile(path.parent / fields["ElementDataFile"].strip(), dtype=dtype)
    if raw.size != width * height:
        raise ValueError(f"{path}: expected {width * height} pixels ({fields['DimSize']}), found {raw.size}")
    return raw.reshape(height, width).astype(np.float32)


def inferior_taper(volume: Volume, taper_mm: float = 15.0) -> Volume:
    """Fade the lowest ``taper_mm`` of the volume (z) to 0, as a receive coil's fall-off.

    The head volumes end abruptly at the neck; a coronal or sagittal slice of a real scan
    fades there instead of showing a cut edge.
    """
    z = (np.arange(volume.data.shape[2]) + 0.5) * volume.spacing[2]
    ramp = np.sin(0.5 * np.pi * np.clip(z / taper_mm, 0, 1)) ** 2
    return Volume(volume.data * ramp[None, None, :].astype(np.float32), volume.spacing, volume.name, volume.source)


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """3x3 rotation by ``degrees`` about the unit ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def plane_frame(orientation: str, tilt_deg: float = 0.0, tilt_dir_deg: float = 0.0, inplane_deg: float = 0.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit ``(normal, row, col)`` of an orientation, rotated in-plane then tilted.

    Args:
        orientation: ``axial``, ``coronal`` or ``sagittal``.
        tilt_deg: angle between the normal and the base orientation's normal (oblique slices).
        tilt_dir_deg: direction, in the plane, of the tilt axis.
        inplane_deg: rotation about the normal before the tilt.
    """
    normal, row, col = (np.asarray(v, float) for v in ORIENTATIONS[orientation])
    spin = rotation(normal, inplane_deg)
    row, col = spin @ row, spin @ col
    axis = np.cos(np.deg2rad(tilt_dir_deg)) * row + np.sin(np.deg2rad(tilt_dir_deg)) * col
    tilt = rotation(axis, tilt_deg)
    return tilt @ normal, tilt @ row, tilt @ col


def sample_plane(
    volume: Volume, centre: np.ndarray, row: np.ndarray, col: np.ndarray, fov_mm: float, size: int,
    supersample: int = 2, thickness_mm: float = 0.0, normal: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Magnitude on a square plane, float32 ``(size, size)``, zero outside the volume.

    Each pixel averages ``supersample^2`` trilinear samples (a box filter against aliasing);
    with ``thickness_mm > 0`` it also averages sub-slices 1 mm apart along ``normal`` (a thick
    slice, as a 2-D acquisition's slice profile).
    """
    pixel = fov_mm / size
    offsets = (np.arange(size * supersample) + 0.5) / supersample - size / 2
    r, c = np.meshgrid(offsets * pixel, offsets * pixel, indexing="ij")
    depths = [0.0]
    if thickness_mm > 0:
        count = max(1, int(round(thickness_mm)))
        depths = list((np.arange(count) + 0.5) / count * thickness_mm - thickness_mm / 2)
    out = np.zeros((size, size), np.float32)
    spacing = np.asarray(volume.spacing, float)
    for depth in depths:
        base = np.asarray(centre, float) + (depth * np.asarray(normal, float) if depth else 0.0)
        points = base[:, None, None] + row[:, None, None] * r[None] + col[:, None, None] * c[None]
        voxels = points / spacing[:, None, None] - 0.5  # voxel k covers [k, k + 1) * spacing
        values = ndimage.map_coordinates(volume.data, voxels.reshape(3, -1), order=1, mode="constant", cval=0.0)
        out += values.reshape(size, supersample, size, supersample).mean(axis=(1, 3)).astype(np.float32)
    return out / len(depths)


def tissue_fraction(volume: Volume, centre: np.ndarray, row: np.ndarray, col: np.ndarray, fov_mm: float) -> float:
    """Fraction of a coarse 48x48 grid of the plane above 10 % of the volume's level."""
    image = sample_plane(volume, centre, row, col, fov_mm, 48, supersample=1)
    return float(np.mean(image > 0.1 * volume.level()))


def upsample(image: np.ndarray, size: int) -> np.ndarray:
    """Cubic-spline interpolation of ``(h, w)`` to ``(size, size)``, clipped at 0 (resampled DICOM look)."""
    zoom = (size / image.shape[0], size / image.shape[1])
    out = ndimage.zoom(image, zoom, order=3, grid_mode=True, mode="nearest")
    return np.clip(out[:size, :size], 0, None).astype(np.float32)


def epi_like(image: np.ndarray, rng: np.random.Generator, decay: Tuple[float, float] = (1.0, 2.5),
             shift_px: Tuple[float, float] = (1.0, 3.0)) -> Tuple[np.ndarray, Dict[str, float]]:
    """EPI-like blur and distortion along the phase-encode axis (columns, W).

    Blur: T2* decay during the echo train weights the phase-encode lines by
    ``exp(-T_echo_train / T2* |k| / k_max)`` with ``T_echo_train / T2*`` drawn from ``decay``
    (a Lorentzian-like point spread along W only). Distortion: a smooth off-resonance field
    displaces pixels along W by up to ``shift_px`` pixels, with the Jacobian's intensity
    pile-up and stretching.

    Returns:
        ``(float32 (H, W) image, the drawn parameters)``.
    """
    h, w = image.shape
    ratio = rng.uniform(*decay)
    k = np.abs(np.fft.fftfreq(w)) / 0.5
    blurred = np.real(np.fft.ifft(np.fft.fft(image, axis=1) * np.exp(-ratio * k)[None], axis=1))
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), w / 8)
    amplitude = rng.uniform(*shift_px)
    field *= amplitude / (np.abs(field).max() + 1e-12)
    rows, cols = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    warped = ndimage.map_coordinates(blurred, [rows, cols - field], order=3, mode="constant", cval=0.0)
    jacobian = np.clip(1.0 - np.gradient(field, axis=1), 0.5, 2.0)
    out = np.clip(warped * jacobian, 0, None).astype(np.float32)
    return out, {"echo_train_over_t2star": float(ratio), "max_shift_px": float(amplitude)}


def t2_like(head: Volume, brain_mask: Volume, flair: bool) -> Volume:
    """A T2- or FLAIR-like contrast made from the T1 head by an intensity mapping.

    With ``u`` = T1 intensity over the white-matter level: inside the brain mask (smoothed)
    T2: ``1 - 0.65 clip((u - 0.15) / 0.85)`` (CSF bright, grey above white matter); FLAIR:
    CSF nulled (``u < 0.3`` dark), grey matter 0.75, white matter 0.55. Outside: fat and scalp
    (bright in T1) stay moderately bright, muscle mid, skull and air dark.
    """
    data = head.data
    brain = ndimage.gaussian_filter((brain_mask.data > 0).astype(np.float32), 1.0)
    wm_level = float(np.percentile(data[brain_mask.data > 0], 90))
    u = data / max(wm_level, 1e-6)
    if flair:
        inside = np.interp(u, [0.0, 0.3, 0.45, 0.7, 1.0, 1.5], [0.0, 0.08, 0.55, 0.75, 0.55, 0.5])
    else:
        inside = 1.0 - 0.65 * np.clip((u - 0.15) / 0.85, 0, 1)
        inside *= np.clip(u / 0.08, 0, 1)  # air inside the mask stays dark
    outside = 0.8 * np.clip((u - 0.2) / 1.0, 0, 1)
    mapped = (brain * inside + (1 - brain) * outside).astype(np.float32)
    return Volume(mapped, head.spacing, head.name + ("_flair" if flair else "_t2"), head.source)
