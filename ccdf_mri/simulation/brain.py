"""Varied complex brain slices from the ICBM152 template.

One call of :func:`render_volume` draws one simulated "volume": a stack of parallel,
equally spaced slices with one orientation, one tissue contrast, one deformation, one
bias field and one phase map, like the slices of one acquisition.

Anatomical split (train / val / test): along the normal of each orientation the brain's
extent is mapped to a split coordinate ``q`` in [0, 1] (axial: inferior -> superior;
coronal: posterior -> anterior; sagittal: ``|x - midline|`` / half-width, because the
template is left-right symmetric). Every slice of a volume lies inside one band of
:data:`SPLIT_BANDS`; bands of different splits are disjoint and separated by gaps of
0.04 (6 mm axially, 7 mm coronally, 3 mm sagittally). The bands hold the slice centres;
the through-plane tilt (up to 3 degrees) and the elastic displacement move anatomy
near the image edges by a few mm, so neighbouring bands may touch there. Slices of *different*
orientations necessarily cross (an axial test slice and a coronal train slice share one
line of voxels); to keep the splits anatomically disjoint in full, build all splits with
one orientation (``orientations=("axial",)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .fields import bias_field, elastic_displacement, smooth_field, smooth_phase
from .template import BrainTemplate

ORIENTATIONS = ("axial", "coronal", "sagittal")
CONTRASTS = ("T1", "T2", "PD")
SPLITS = ("train", "val", "test")

SPLIT_BANDS: Dict[str, Tuple[Tuple[float, float], ...]] = {
    "train": ((0.08, 0.28), (0.70, 0.92)),
    "val": ((0.32, 0.44),),
    "test": ((0.48, 0.66),),
}
"""Bands of the split coordinate ``q`` each split draws its slice positions from."""

# Voxel-space directions (x: left->right, y: posterior->anterior, z: inferior->superior)
# of image rows (pointing down the image), image columns and the slice normal.
_AXES = {
    "axial": ((0.0, -1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0), (1.0, 0.0, 0.0)),
}
_NORMAL_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}

# Relative tissue signal ranges (GM, WM, CSF, scalp) per contrast.
_TISSUE_RANGES = {
    "T1": ((0.45, 0.62), (0.80, 1.00), (0.08, 0.22), (0.75, 1.00)),
    "T2": ((0.50, 0.65), (0.30, 0.45), (0.85, 1.00), (0.40, 0.75)),
    "PD": ((0.75, 0.88), (0.60, 0.74), (0.80, 0.95), (0.65, 0.90)),
}
_ACQUISITION_PREFIX = {"axial": "AX", "coronal": "COR", "sagittal": "SAG"}


@dataclass
class VolumeParams:
    """The random draws that define one simulated volume (stored with the file).

    Attributes:
        orientation: one of :data:`ORIENTATIONS`.
        contrast: one of :data:`CONTRASTS`.
        tissue: signal of (GM, WM, CSF, scalp).
        split_q: split coordinate of each slice centre.
        positions_mm: slice positions along the normal, voxel units (mm) of the template.
        spacing_mm: distance between adjacent slices.
        rotation_deg: in-plane rotation; tilt_deg: through-plane tilts about the two in-plane axes.
        zoom: anatomical scale along rows, columns; shear; shift_mm: in-plane translation.
        skull_mm, scalp_mm: gap between head outline and scalp, and scalp thickness.
        skull_signal: (low) signal of the skull / skull-base region inside the head outline.
    """

    orientation: str
    contrast: str
    tissue: Tuple[float, float, float, float]
    split_q: Tuple[float, ...]
    positions_mm: Tuple[float, ...]
    spacing_mm: float
    rotation_deg: float
    tilt_deg: Tuple[float, float]
    zoom: Tuple[float, float]
    shear: float
    shift_mm: Tuple[float, float]
    skull_mm: float
    scalp_mm: float
    skull_signal: float

    @property
    def acquisition(self) -> str:
        """fastMRI-style acquisition name, e.g. ``AXT1``."""
        return _ACQUISITION_PREFIX[self.orientation] + self.contrast

    def to_dict(self) -> dict:
        """JSON-serialisable dict of the parameters."""
        return asdict(self)


def _q_to_position(template: BrainTemplate, orientation: str, q: float, side: int) -> float:
    axis = _NORMAL_AXIS[orientation]
    lo, hi = template.brain_lo[axis], template.brain_hi[axis]
    if orientation == "sagittal":
        mid = (lo + hi) / 2.0
        return mid + side * q * (hi - mid)
    return lo + q * (hi - lo)


def _band_width_mm(template: BrainTemplate, orientation: str, band: Tuple[float, float]) -> float:
    axis = _NORMAL_AXIS[orientation]
    extent = template.brain_hi[axis] - template.brain_lo[axis]
    if orientation == "sagittal":
        extent = extent / 2.0
    return (band[1] - band[0]) * extent


def draw_volume_params(
    template: BrainTemplate,
    split: str,
    num_slices: int,
    rng: np.random.Generator,
    orientations: Sequence[str] = ORIENTATIONS,
    contrasts: Sequence[str] = CONTRASTS,
    spacing_mm: float = 3.0,
    deform: bool = True,
) -> VolumeParams:
    """Draw the parameters of one volume of ``split``.

    Args:
        template: the loaded template.
        split: "train", "val" or "test".
        num_slices: S.
        rng: random generator.
        orientations: orientations to choose from (uniformly).
        contrasts: contrasts to choose from (uniformly).
        spacing_mm: slice distance; reduced so that the S slices fit in the chosen band.
        deform: False -> identity geometry (no rotation, zoom, shear, tilt, shift).

    Returns:
        :class:`VolumeParams`.
    """
    if split not in SPLIT_BANDS:
        raise ValueError(f"unknown split '{split}': expected one of {SPLITS}")
    for name, allowed, given in (("orientation", ORIENTATIONS, orientations), ("contrast", CONTRASTS, contrasts)):
        bad = [v for v in given if v not in allowed]
        if bad or not given:
            raise ValueError(f"{name}s {list(given)}: expected a non-empty subset of {allowed}")
    orientation = str(orientations[rng.integers(len(orientations))])
    contrast = str(contrasts[rng.integers(len(contrasts))])
    bands = SPLIT_BANDS[split]
    widths = np.array([_band_width_mm(template, orientation, b) for b in bands])
    band = bands[int(rng.choice(len(bands), p=widths / widths.sum()))]
    width_mm = _band_width_mm(template, orientation, band)
    spacing = min(spacing_mm, width_mm / max(num_slices - 1, 1)) if num_slices > 1 else spacing_mm
    span_q = spacing * (num_slices - 1) / width_mm * (band[1] - band[0])
    start_q = band[0] + rng.random() * max(band[1] - band[0] - span_q, 0.0)
    qs = start_q + np.arange(num_slices) * spacing / width_mm * (band[1] - band[0])
    side = 1 if rng.random() < 0.5 else -1
    positions = [_q_to_position(template, orientation, float(q), side) for q in qs]
    tissue = tuple(float(rng.uniform(*r)) for r in _TISSUE_RANGES[contrast])
    if deform:
        rotation = float(rng.uniform(-15, 15))
        tilt = tuple(float(v) for v in rng.uniform(-3, 3, size=2))
        zoom = tuple(float(v) for v in rng.uniform(0.9, 1.1, size=2))
        shear = float(rng.uniform(-0.05, 0.05))
        shift = tuple(float(v) for v in rng.uniform(-8, 8, size=2))
    else:
        rotation, tilt, zoom, shear, shift = 0.0, (0.0, 0.0), (1.0, 1.0), 0.0, (0.0, 0.0)
    return VolumeParams(
        orientation=orientation, contrast=contrast, tissue=tissue,
        split_q=tuple(float(q) for q in qs), positions_mm=tuple(float(p) for p in positions),
        spacing_mm=float(spacing), rotation_deg=rotation, tilt_deg=tilt, zoom=zoom, shear=shear,
        shift_mm=shift, skull_mm=float(rng.uniform(2.0, 5.0)), scalp_mm=float(rng.uniform(3.0, 7.0)),
        skull_signal=float(rng.uniform(0.02, 0.12)),
    )


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def sample_coordinates(
    template: BrainTemplate, params: VolumeParams, size: Tuple[int, int], fov_mm: float,
    displacement: np.ndarray,
) -> np.ndarray:
    """Template voxel coordinates of every pixel of every slice.

    Args:
        template: the template.
        params: volume parameters.
        size: image ``(H, W)``.
        fov_mm: field of view along the longer image side (square pixels).
        displacement: elastic field ``(2, H, W)`` in mm (rows, columns).

    Returns:
        float32 ``(3, S, H, W)`` voxel coordinates (x, y, z).
    """
    h, w = size
    pixel = fov_mm / max(h, w)
    rows = (np.arange(h, dtype=np.float64) - (h - 1) / 2.0) * pixel
    cols = (np.arange(w, dtype=np.float64) - (w - 1) / 2.0) * pixel
    u, v = np.meshgrid(rows, cols, indexing="ij")
    a = np.deg2rad(params.rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    affine = rot @ np.array([[1.0, params.shear], [0.0, 1.0]]) @ np.diag(1.0 / np.asarray(params.zoom))
    uv = np.einsum("ij,jhw->ihw", affine, np.stack([u, v])) + displacement + np.asarray(params.shift_mm)[:, None, None]
    row_dir, col_dir, normal = (np.asarray(d) for d in _AXES[params.orientation])
    tilt = _rotation(row_dir, params.tilt_deg[0]) @ _rotation(col_dir, params.tilt_deg[1])
    axis = _NORMAL_AXIS[params.orientation]
    centre = template.centre.copy()
    in_plane = uv[0][None] * row_dir[:, None, None] + uv[1][None] * col_dir[:, None, None]  # (3, H, W)
    coords = []
    for position in params.positions_mm:
        offset = (position - centre[axis]) * normal
        points = np.einsum("ij,jhw->ihw", tilt, in_plane + offset[:, None, None])
        coords.append(points + centre[:, None, None])
    return np.stack(coords, axis=1).astype(np.float32) / template.voxel_mm


def _head_layers(mask: np.ndarray, pixel_mm: float, params: VolumeParams) -> Tuple[np.ndarray, np.ndarray]:
    """Skull region and soft scalp shell of one slice (values in [0, 1]).

    The head outline is the brain mask closed with a 15 mm disc (two distance
    transforms) and hole-filled, so gaps between lobes at the skull base become skull
    rather than getting their own scalp; the scalp is a shell at ``skull_mm`` to
    ``skull_mm + scalp_mm`` outside that outline.
    """
    inside = mask > 0.5
    if not inside.any():
        return np.zeros_like(mask), np.zeros_like(mask)
    radius = 15.0 / pixel_mm
    dilated = ndimage.distance_transform_edt(~inside) <= radius
    head = ndimage.binary_fill_holes(ndimage.distance_transform_edt(dilated) > radius) | inside
    distance = ndimage.distance_transform_edt(~head) * pixel_mm
    inner, outer = params.skull_mm, params.skull_mm + params.scalp_mm
    shell = np.clip(distance - inner + 0.5, 0, 1) * np.clip(outer - distance + 0.5, 0, 1)
    skull = np.clip(ndimage.gaussian_filter(head.astype(np.float32), 0.7) - mask, 0.0, 1.0)
    return skull, shell.astype(np.float32)


def render_volume(
    template: BrainTemplate,
    params: VolumeParams,
    size: Tuple[int, int],
    fov_mm: float,
    rng: np.random.Generator,
    deform: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Complex noise-free images of one volume.

    Signal = bias * (c_GM GM + c_WM WM + c_CSF CSF + c_scalp scalp + c_skull skull) * (1 + texture)
    * exp(i phase), CSF = clip(mask - GM - WM, 0, 1) inside the head mask.

    Args:
        template: the template.
        params: from :func:`draw_volume_params`.
        size: ``(H, W)``.
        fov_mm: field of view (mm) along the longer side.
        rng: random generator for the fields (elastic, bias, texture, phase).
        deform: False -> no elastic displacement.

    Returns:
        ``(images complex64 (S, H, W), support bool (S, H, W))``, support = head + scalp.
    """
    shape = tuple(int(s) for s in size)
    pixel = fov_mm / max(shape)
    displacement = elastic_displacement(shape, rng, 3.0) if deform else np.zeros((2, *shape), np.float32)
    coords = sample_coordinates(template, params, shape, fov_mm, displacement)
    gm, wm, mask = (
        ndimage.map_coordinates(vol, coords, order=1, mode="constant", cval=0.0, prefilter=False)
        for vol in (template.gm, template.wm, template.mask)
    )
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    skull, scalp = (np.stack(v) for v in zip(*(_head_layers(m, pixel, params) for m in mask)))
    c_gm, c_wm, c_csf, c_scalp = params.tissue
    magnitude = c_gm * gm + c_wm * wm + c_csf * csf + c_scalp * scalp + params.skull_signal * skull
    texture = 1.0 + rng.uniform(0.0, 0.05) * smooth_field(shape, max(4, shape[0] // 6), rng)
    magnitude = magnitude * bias_field(shape, rng) * texture
    phase = smooth_phase(shape, rng)
    images = (magnitude * np.exp(1j * phase)).astype(np.complex64)
    support = (mask > 0.01) | (scalp > 0) | (skull > 0.01)
    return images, support
