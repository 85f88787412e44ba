"""Procedural non-brain anatomy for corpus v2: limb and abdomen cross-sections.

A phantom is a list of *blobs* (ellipses whose radius is modulated by a few angular
harmonics) painted in order onto per-tissue fraction maps: painting tissue ``t`` with
anti-aliased coverage ``a`` scales every fraction by ``1 - a`` and adds ``a`` to ``t``, so
the fractions always sum to at most 1 (the rest is air). Layers (skin, subcutaneous fat,
muscle wall, bone cortex) are offsets of one blob's approximate signed distance.

- :func:`limb_fractions`: skin, subcutaneous fat of varying thickness, muscle split into
  bundles by thin fat septa (Voronoi cells of smoothly warped coordinates), one or two bones (cortex
  ring and marrow), neurovascular bundles, tendons, superficial veins;
- :func:`abdomen_fractions`: body wall (skin, fat, muscle), visceral fat, spine (vertebral
  body, canal, paraspinal muscles), aorta / cava, optional liver, spleen, kidneys (cortex,
  medulla, sinus fat), bowel loops (wall + fluid / gas / mixed content) and random extra
  organ-like ellipses.

Slices of one volume share the draws; blob centres and sizes drift linearly with the slice
coordinate ``z`` in [-0.5, 0.5], like a short stack through the same body part.
Sizes are in pixels, relative to the image size, so a phantom fills the field of view
whatever the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

Fractions = Dict[str, np.ndarray]


@dataclass
class Blob:
    """Ellipse with a harmonically modulated radius, drifting with the slice coordinate ``z``.

    Attributes:
        centre: ``(row, col)`` in pixels at ``z = 0``; drift: ``(row, col)`` pixels per unit ``z``.
        axes: semi-axes ``(a, b)`` in pixels along the rotated row / column directions.
        angle: rotation (radians). grow: relative size change per unit ``z``.
        amps, phases: harmonic amplitudes and phases for orders 2, 3, ...
    """

    centre: Tuple[float, float]
    axes: Tuple[float, float]
    angle: float = 0.0
    amps: Tuple[float, ...] = ()
    phases: Tuple[float, ...] = ()
    drift: Tuple[float, float] = (0.0, 0.0)
    grow: float = 0.0

    def at(self, z: float) -> "Blob":
        """The blob in the slice at coordinate ``z``."""
        scale = max(1.0 + self.grow * z, 0.2)
        centre = (self.centre[0] + self.drift[0] * z, self.centre[1] + self.drift[1] * z)
        return Blob(centre, (self.axes[0] * scale, self.axes[1] * scale), self.angle, self.amps, self.phases)

    def window(self, shape: Tuple[int, int], margin: float = 2.0) -> Tuple[slice, slice]:
        """Bounding box (slices) of the blob plus ``margin`` pixels, clipped to the image."""
        reach = max(self.axes) * (1.0 + float(np.sum(np.abs(self.amps)))) + margin
        r0, c0 = self.centre
        rows = slice(int(np.clip(np.floor(r0 - reach), 0, shape[0])), int(np.clip(np.ceil(r0 + reach) + 1, 0, shape[0])))
        cols = slice(int(np.clip(np.floor(c0 - reach), 0, shape[1])), int(np.clip(np.ceil(c0 + reach) + 1, 0, shape[1])))
        return rows, cols

    def distance(self, rows: np.ndarray, cols: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Approximate signed distance in pixels (negative inside) and polar angle of the points."""
        dy, dx = rows - self.centre[0], cols - self.centre[1]
        c, s = np.cos(self.angle), np.sin(self.angle)
        u, v = c * dy + s * dx, -s * dy + c * dx
        a, b = self.axes
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-6
        theta = np.arctan2(v / b, u / a)
        modulation = np.ones_like(rho)
        for order, (amp, phase) in enumerate(zip(self.amps, self.phases), start=2):
            modulation = modulation + amp * np.cos(order * theta + phase)
        gradient = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / rho
        return ((rho / modulation - 1.0) / (gradient / modulation + 1e-6)).astype(np.float32), theta.astype(np.float32)


def coverage(distance: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Anti-aliased inside fraction of the shape shrunk by ``offset`` pixels: ``clip(0.5 - d - offset, 0, 1)``."""
    return np.clip(0.5 - distance - offset, 0.0, 1.0).astype(np.float32)


class Canvas:
    """Per-tissue fraction maps of one slice, painted in order (see the module docstring)."""

    def __init__(self, shape: Tuple[int, int]):
        self.shape = shape
        self.fractions: Fractions = {}
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
        self.rows, self.cols = rows, cols

    def paint(self, tissue: str, alpha: np.ndarray, window: Tuple[slice, slice] = (slice(None), slice(None))) -> None:
        """Cover ``window`` with ``tissue`` at fraction ``alpha`` (array of the window's shape)."""
        for values in self.fractions.values():
            values[window] *= 1.0 - alpha
        if tissue not in self.fractions:
            self.fractions[tissue] = np.zeros(self.shape, np.float32)
        self.fractions[tissue][window] += alpha

    def blob(self, tissue: str, blob: Blob, offset: float = 0.0, within: Optional[np.ndarray] = None) -> None:
        """Paint the blob shrunk by ``offset`` pixels, optionally restricted to the fraction map ``within``."""
        window = blob.window(self.shape)
        distance, _ = blob.distance(self.rows[window], self.cols[window])
        alpha = coverage(distance, offset)
        if within is not None:
            alpha = alpha * within[window]
        self.paint(tissue, alpha, window)


def _harmonics(rng: np.random.Generator, count: int, scale: float) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    amps = tuple(float(rng.uniform(0, scale) / (k + 1)) for k in range(count))
    return amps, tuple(float(p) for p in rng.uniform(0, 2 * np.pi, count))


def _random_blob(rng: np.random.Generator, centre, axes, wobble: float = 0.05, drift: float = 2.0, grow: float = 0.15, angle=None) -> Blob:
    amps, phases = _harmonics(rng, 3, wobble)
    return Blob(
        (float(centre[0]), float(centre[1])), (float(axes[0]), float(axes[1])),
        float(rng.uniform(0, np.pi) if angle is None else angle), amps, phases,
        tuple(float(v) for v in rng.uniform(-drift, drift, 2)), float(rng.uniform(-grow, grow)),
    )


def _angular(theta: np.ndarray, base: float, amps: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Thickness ``base * (1 + sum_k a_k cos(k theta + p_k))`` varying around a contour (>= 0.2 base)."""
    out = np.ones_like(theta)
    for order, (amp, phase) in enumerate(zip(amps, phases), start=1):
        out = out + amp * np.cos(order * theta + phase)
    return base * np.maximum(out, 0.2)


def _body_layers(canvas: Canvas, body: Blob, skin: float, fat: float, fat_amps, fat_phases, wall: float = 0.0) -> np.ndarray:
    """Paint skin, subcutaneous fat (angle-dependent thickness) and an optional muscle wall; return the inner region's coverage."""
    distance, theta = body.distance(canvas.rows, canvas.cols)
    fat_thickness = _angular(theta, fat, fat_amps, fat_phases)
    canvas.paint("skin", coverage(distance))
    canvas.paint("fat", coverage(distance, skin))
    inner = coverage(distance, skin + fat_thickness)
    canvas.paint("muscle", inner)
    if wall > 0:
        inner = coverage(distance, skin + fat_thickness + wall)
    return inner


def _bone(canvas: Canvas, blob: Blob, cortex: float, within: Optional[np.ndarray] = None) -> None:
    canvas.blob("cortex", blob, within=within)
    canvas.blob("marrow", blob, offset=cortex, within=within)


def _ring_of(canvas: Canvas, tissue: str, wall_tissue: str, blob: Blob, wall: float, within: Optional[np.ndarray] = None) -> None:
    canvas.blob(wall_tissue, blob, within=within)
    canvas.blob(tissue, blob, offset=wall, within=within)


def _voronoi_septa(canvas: Canvas, seeds: np.ndarray, width: float, warp: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Thin septa between Voronoi cells of warped coordinates (curved boundaries) and the cell of every pixel.

    Args:
        canvas: the slice (for its pixel coordinates).
        seeds: ``(K, 2)`` cell centres (pixels).
        width: septum width (pixels).
        warp: ``(2, H, W)`` smooth displacement of the coordinates (pixels).
    """
    rows, cols = canvas.rows + warp[0], canvas.cols + warp[1]
    d = np.sqrt((rows[None] - seeds[:, 0, None, None]) ** 2 + (cols[None] - seeds[:, 1, None, None]) ** 2)
    order = np.argsort(d, axis=0)[:2]
    nearest = np.take_along_axis(d, order, axis=0)
    gap = (nearest[1] - nearest[0]) / 2.0  # ~ distance to the cell boundary
    return np.clip(width / 2.0 + 0.5 - gap, 0.0, 1.0).astype(np.float32), order[0]


def limb_fractions(shape: Tuple[int, int], num_slices: int, rng: np.random.Generator, smooth: np.ndarray) -> Tuple[List[Fractions], dict]:
    """Tissue fractions of a limb cross-section stack (see the module docstring).

    Args:
        shape: ``(H, W)``.
        num_slices: S.
        rng: random generator.
        smooth: float32 ``(2, H, W)`` smooth unit-std fields (warp the muscle bundle boundaries).

    Returns:
        ``(list of S per-tissue fraction dicts of (H, W) maps, summary dict of the draws)``.
    """
    n = float(min(shape))
    centre = np.array(shape, float) / 2.0 + rng.uniform(-0.06, 0.06, 2) * n
    a = rng.uniform(0.22, 0.42) * n
    b = a * rng.uniform(0.7, 1.0)
    body = _random_blob(rng, centre, (a, b), wobble=0.12, drift=1.0, grow=0.08)
    skin, fat = rng.uniform(0.004, 0.01) * n, rng.uniform(0.01, 0.06) * n
    fat_amps, fat_phases = rng.uniform(0, 0.5, 3), rng.uniform(0, 2 * np.pi, 3)
    num_bones = 1 if rng.random() < 0.6 else 2
    r1 = rng.uniform(0.14, 0.28) * b
    heading = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(0, 0.3) * b * np.array([np.cos(heading), np.sin(heading)])
    bones = [_random_blob(rng, centre + offset, (r1, r1 * rng.uniform(0.8, 1.0)), wobble=0.25, drift=1.0, grow=0.05)]
    if num_bones == 2:
        r2 = r1 * rng.uniform(0.45, 0.8)
        direction = rng.uniform(0, 2 * np.pi)
        c2 = centre + offset + (r1 + r2 + rng.uniform(0.02, 0.08) * n) * np.array([np.cos(direction), np.sin(direction)])
        bones.append(_random_blob(rng, c2, (r2, r2 * rng.uniform(0.75, 1.0)), wobble=0.2, drift=1.0, grow=0.05))
    cortex = [bone.axes[1] * rng.uniform(0.15, 0.4) for bone in bones]
    periosteal = [-rng.uniform(0.5, 1.5) for _ in bones]  # thin fat around each bone
    num_bundles = int(rng.integers(4, 13))
    seeds = centre + rng.uniform(-1, 1, (num_bundles, 2)) * np.array([a, b]) * 0.8
    septum = rng.uniform(0.6, 1.6)
    warp = smooth * rng.uniform(0.03, 0.08) * n
    bundle_gain = 1.0 + 0.06 * rng.standard_normal(num_bundles)
    extras = []  # (tissue, blob): neurovascular bundles, tendons, superficial veins
    for _ in range(int(rng.integers(2, 6))):
        near = bones[int(rng.integers(len(bones)))]
        angle = rng.uniform(0, 2 * np.pi)
        dist = near.axes[0] * rng.uniform(1.3, 2.2)
        radius = rng.uniform(0.006, 0.02) * n
        where = np.asarray(near.centre) + dist * np.array([np.cos(angle), np.sin(angle)])
        extras.append(("vessel", _random_blob(rng, where, (radius, radius * rng.uniform(0.6, 1.0)), wobble=0.05, drift=1.0)))
    for _ in range(int(rng.integers(0, 5))):
        angle, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 0.8)
        where = centre + rad * np.array([a * np.cos(angle), b * np.sin(angle)])
        size = rng.uniform(0.008, 0.03) * n
        extras.append(("tendon", _random_blob(rng, where, (size, size * rng.uniform(0.3, 0.9)), wobble=0.1, drift=1.0)))
    for _ in range(int(rng.integers(0, 4))):
        angle = rng.uniform(0, 2 * np.pi)
        where = centre + (1.0 - (skin + fat * 0.5) / a) * np.array([a * np.cos(angle), b * np.sin(angle)])
        radius = rng.uniform(0.004, 0.012) * n
        extras.append(("vessel", _random_blob(rng, where, (radius, radius), wobble=0.0, drift=1.0)))
    slices = []
    for z in _slice_coordinates(num_slices):
        canvas = Canvas(shape)
        body_z = body.at(z)
        inner = _body_layers(canvas, body_z, skin, fat, fat_amps, fat_phases)
        septa, cell = _voronoi_septa(canvas, seeds + z * 1.5, septum, warp)
        canvas.paint("fat", septa * inner)
        for bone, thickness, halo in zip(bones, cortex, periosteal):
            bone_z = bone.at(z)
            canvas.blob("fat", bone_z, offset=halo)
            _bone(canvas, bone_z, thickness)
        for tissue, blob in extras:
            canvas.blob(tissue, blob.at(z), within=inner if tissue == "tendon" else None)
        fractions = canvas.fractions
        fractions["_muscle_gain"] = bundle_gain[cell].astype(np.float32)
        slices.append(fractions)
    summary = {"kind": "limb", "bones": num_bones, "bundles": num_bundles, "body_axes_px": [float(a), float(b)]}
    return slices, summary


def _slice_coordinates(num_slices: int) -> np.ndarray:
    return (np.arange(num_slices) - (num_slices - 1) / 2.0) / max(num_slices - 1, 1)


def abdomen_fractions(shape: Tuple[int, int], num_slices: int, rng: np.random.Generator) -> Tuple[List[Fractions], dict]:
    """Tissue fractions of an abdomen-like cross-section stack (see the module docstring).

    Args:
        shape: ``(H, W)`` (rows: anterior -> posterior).
        num_slices: S.
        rng: random generator.

    Returns:
        ``(list of S per-tissue fraction dicts of (H, W) maps, summary dict of the draws)``.
    """
    n = float(min(shape))
    cy, cx = np.array(shape, float) / 2.0 + rng.uniform(-0.04, 0.04, 2) * n
    a = rng.uniform(0.34, 0.46) * n  # half-width (columns)
    b = a * rng.uniform(0.6, 0.85)  # half-height (rows)
    body = Blob((cy, cx), (b, a), float(rng.uniform(-0.08, 0.08)), *_harmonics(rng, 3, 0.12))
    skin, fat = rng.uniform(0.004, 0.01) * n, rng.uniform(0.01, 0.09) * n
    fat_amps, fat_phases = rng.uniform(0, 0.5, 3), rng.uniform(0, 2 * np.pi, 3)
    wall = rng.uniform(0.01, 0.035) * n
    rv = rng.uniform(0.13, 0.18) * b  # vertebral body radius
    vy = cy + b * rng.uniform(0.45, 0.58)
    spine = [
        ("muscle", _random_blob(rng, (vy + 1.5 * rv, cx - 1.7 * rv), (1.0 * rv, 1.3 * rv), 0.1, 1.0, 0.05, angle=0.0)),
        ("muscle", _random_blob(rng, (vy + 1.5 * rv, cx + 1.7 * rv), (1.0 * rv, 1.3 * rv), 0.1, 1.0, 0.05, angle=0.0)),
    ]
    if rng.random() < 0.5:  # psoas muscles
        for side in (-1, 1):
            spine.append(("muscle", _random_blob(rng, (vy - 0.1 * rv, cx + side * 1.6 * rv), (0.8 * rv, 0.6 * rv), 0.1, 1.0, 0.3)))
    organs = []  # (tissue, wall tissue or None, wall px, blob)
    if rng.random() < 0.6:
        organs.append(("liver", None, 0.0, _random_blob(rng, (cy - 0.1 * b, cx - 0.4 * a), (0.6 * b, 0.45 * a), 0.25, 4.0, 0.25)))
    if rng.random() < 0.5:
        organs.append(("spleen", None, 0.0, _random_blob(rng, (cy + 0.25 * b, cx + 0.6 * a), (0.3 * b, 0.18 * a), 0.2, 3.0, 0.3)))
    if rng.random() < 0.7:
        for side in (-1, 1):
            k = _random_blob(rng, (vy - 0.2 * rv, cx + side * rng.uniform(0.35, 0.5) * a), (0.3 * b, 0.16 * a), 0.08, 2.0, 0.3)
            organs.append(("kidney_cortex", "kidney_medulla", float(k.axes[1] * rng.uniform(0.25, 0.4)), k))
    aorta = rv * rng.uniform(0.35, 0.55)
    organs.append(("vessel", None, 0.0, _random_blob(rng, (vy - 1.5 * rv, cx + 0.5 * rv), (aorta, aorta), 0.02, 1.0, 0.05)))
    organs.append(("vessel", None, 0.0, _random_blob(rng, (vy - 1.4 * rv, cx - 1.0 * rv), (0.7 * aorta, 1.2 * aorta), 0.1, 1.0, 0.1)))
    for _ in range(int(rng.integers(5, 26))):  # bowel loops
        size = rng.uniform(0.04, 0.1) * a
        where = (cy + rng.uniform(-0.8, 0.3) * b, cx + rng.uniform(-0.7, 0.7) * a)
        content = str(rng.choice(["fluid", "air", "bowel"], p=[0.35, 0.25, 0.4]))
        organs.append((content, "bowel", float(rng.uniform(0.8, 2.5)), _random_blob(rng, where, (size, size * rng.uniform(0.5, 1.0)), 0.2, 4.0, 0.4)))
    for _ in range(int(rng.integers(0, 4))):  # extra organ-like ellipses
        tissue = str(rng.choice(["liver", "spleen", "kidney_cortex", "muscle", "fluid"]))
        size = rng.uniform(0.08, 0.25) * a
        where = (cy + rng.uniform(-0.6, 0.4) * b, cx + rng.uniform(-0.6, 0.6) * a)
        organs.append((tissue, None, 0.0, _random_blob(rng, where, (size, size * rng.uniform(0.5, 1.0)), 0.2, 3.0, 0.3)))
    order = rng.permutation(len(organs))
    cortex = rv * rng.uniform(0.1, 0.2)
    slices = []
    for z in _slice_coordinates(num_slices):
        canvas = Canvas(shape)
        inner = _body_layers(canvas, body, skin, fat, fat_amps, fat_phases, wall)
        canvas.paint("fat", inner)  # visceral fat fills the cavity
        for tissue, blob in spine:
            canvas.blob(tissue, blob.at(z))
        for i in order:
            tissue, wall_tissue, wall_px, blob = organs[i]
            if wall_tissue is None:
                canvas.blob(tissue, blob.at(z), within=inner)
            else:
                _ring_of(canvas, tissue, wall_tissue, blob.at(z), wall_px, within=inner)
        vertebra = Blob((vy + z, cx), (rv, rv * 1.1))
        _bone(canvas, vertebra, cortex)
        arch = Blob((vy + 1.35 * rv, cx), (0.6 * rv, 0.5 * rv))
        _bone(canvas, arch, cortex)
        canvas.blob("fluid", Blob((vy + 1.3 * rv, cx), (0.4 * rv, 0.35 * rv)))  # spinal canal
        slices.append(canvas.fractions)
    summary = {"kind": "abdomen", "organs": len(organs), "body_axes_px": [float(a), float(b)]}
    return slices, summary
