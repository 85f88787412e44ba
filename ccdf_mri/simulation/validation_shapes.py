"""Non-brain cross-sections for the validation set: a knee/limb and an abdomen.

Written separately from the training-corpus generators (``ccdf_mri.simulation.phantoms``,
``.compose``, ``.texture``): nothing here is imported from them, so these images test a
prior on shapes it was not fitted to. A slice is painted back to front with soft-edged
blobs (ellipses whose radius is modulated by a few angular harmonics, about one pixel of
anti-aliased edge): ``image = image (1 - a) + a v`` for coverage ``a`` and tissue value
``v`` (a constant times a smooth multiplicative texture). Coordinates are in ``[-1, 1]``
over the field of view, rows = anterior -> posterior, so the shapes fill the matrix at
any size. Values are relative (the brightest tissue about 1); the magnitude is returned.

- :func:`limb_slice`: skin, subcutaneous fat of varying thickness, muscle compartments
  separated by fat septa (nearest-seed cells), one or two bones (dark cortex, textured fatty
  marrow), vessels; contrasts PD, fat-suppressed PD, T1.
- :func:`abdomen_slice`: body wall (skin, fat, muscle), visceral fat, vertebra with spinal
  canal and paraspinal muscles, aorta and cava, liver with vessels, spleen, kidneys (cortex
  and medulla), bowel loops with a wall and fluid, gas or mixed content; contrasts T1, T2,
  fat-suppressed T2.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage

LIMB_CONTRASTS: Dict[str, Dict[str, float]] = {
    "pd": {"skin": 0.6, "fat": 1.0, "muscle": 0.38, "septum": 0.75, "cortex": 0.03, "marrow": 0.9, "vessel": 0.8},
    "pd_fs": {"skin": 0.45, "fat": 0.12, "muscle": 0.45, "septum": 0.2, "cortex": 0.03, "marrow": 0.15, "vessel": 1.0},
    "t1": {"skin": 0.5, "fat": 1.0, "muscle": 0.3, "septum": 0.8, "cortex": 0.02, "marrow": 0.95, "vessel": 0.06},
}
ABDOMEN_CONTRASTS: Dict[str, Dict[str, float]] = {
    "t1": {"skin": 0.5, "fat": 1.0, "muscle": 0.3, "liver": 0.55, "spleen": 0.42, "cortex": 0.5, "medulla": 0.33,
           "marrow": 0.8, "bone": 0.03, "csf": 0.12, "blood": 0.08, "fluid": 0.12, "gas": 0.0, "wall": 0.45},
    "t2": {"skin": 0.45, "fat": 0.8, "muscle": 0.2, "liver": 0.25, "spleen": 0.5, "cortex": 0.6, "medulla": 0.75,
           "marrow": 0.55, "bone": 0.03, "csf": 1.0, "blood": 0.05, "fluid": 1.0, "gas": 0.0, "wall": 0.35},
    "t2_fs": {"skin": 0.35, "fat": 0.1, "muscle": 0.2, "liver": 0.3, "spleen": 0.6, "cortex": 0.65, "medulla": 0.8,
              "marrow": 0.2, "bone": 0.03, "csf": 1.0, "blood": 0.05, "fluid": 1.0, "gas": 0.0, "wall": 0.4},
}


class _Canvas:
    """A square image in ``[-1, 1]^2`` (rows = y, cols = x) with soft-blob painting."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size = int(size)
        self.rng = rng
        axis = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size * 2 - 1
        self.y, self.x = np.meshgrid(axis, axis, indexing="ij")
        self.pixel = 2.0 / self.size
        self.image = np.zeros((self.size, self.size), np.float32)

    def texture(self, scale_px: float, amplitude: float) -> np.ndarray:
        """Multiplicative texture ``max(1 + amplitude z, 0)``, z smooth unit-std noise of ``scale_px`` pixels."""
        field = ndimage.gaussian_filter(self.rng.standard_normal(self.image.shape).astype(np.float32), scale_px)
        field /= field.std() + 1e-12
        return np.maximum(1.0 + amplitude * field, 0.0).astype(np.float32)

    def harmonics(self, strength: float, orders: int = 3) -> np.ndarray:
        """Random ``(orders, 2)`` amplitudes and phases of the radius modulation."""
        amps = self.rng.uniform(0, strength, orders) / np.arange(1, orders + 1)
        return np.stack([amps, self.rng.uniform(0, 2 * np.pi, orders)], axis=1)

    def blob(self, centre, radii, angle: float = 0.0, wobble: Optional[np.ndarray] = None, shrink: float = 0.0) -> np.ndarray:
        """Soft coverage in [0, 1] of an ellipse ``radii`` (shrunk by ``shrink`` on both axes), harmonics ``wobble``."""
        dy, dx = self.y - centre[0], self.x - centre[1]
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * dx + s * dy, -s * dx + c * dy
        a, b = max(radii[0] - shrink, 1e-3), max(radii[1] - shrink, 1e-3)
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        theta = np.arctan2(v, u)
        bound = np.ones_like(rho)
        for order, (amp, phase) in enumerate(wobble if wobble is not None else [], start=2):
            bound += amp * np.cos(order * theta + phase)
        distance = (rho - bound) * np.sqrt(a * b)  # approximate signed distance, [-1, 1] units
        return np.clip(0.5 - distance / self.pixel, 0.0, 1.0).astype(np.float32)

    def paint(self, coverage: np.ndarray, value) -> None:
        """``image = image (1 - a) + a value`` (value: number or ``(H, W)`` field)."""
        self.image = self.image * (1.0 - coverage) + coverage * value


def _septa(canvas: _Canvas, inside: np.ndarray, num_cells: int, width_px: float) -> Tuple[np.ndarray, np.ndarray]:
    """Cells of the nearest of ``num_cells`` seeds inside ``inside``: (cell label map, soft septum lines)."""
    ys, xs = np.nonzero(inside > 0.5)
    picks = canvas.rng.choice(ys.size, size=num_cells, replace=False)
    seeds = np.stack([canvas.y[ys[picks], xs[picks]], canvas.x[ys[picks], xs[picks]]], axis=1)
    # a smooth warp of the coordinates bends the cell borders (fascia are not straight)
    wy, wx = (axis + 0.12 * field / (field.std() + 1e-12) for axis, field in (
        (canvas.y, ndimage.gaussian_filter(canvas.rng.standard_normal(inside.shape), canvas.size / 10)),
        (canvas.x, ndimage.gaussian_filter(canvas.rng.standard_normal(inside.shape), canvas.size / 10))))
    dist = np.sqrt((wy[None] - seeds[:, 0, None, None]) ** 2 + (wx[None] - seeds[:, 1, None, None]) ** 2)
    order = np.sort(dist, axis=0)
    gap = (order[1] - order[0]) / canvas.pixel
    return np.argmin(dist, axis=0), np.clip(1.0 - gap / width_px, 0.0, 1.0).astype(np.float32)


def _finish(canvas: _Canvas, blur_px: float = 0.6) -> np.ndarray:
    image = ndimage.gaussian_filter(canvas.image, blur_px)  # partial volume of the acquisition
    bias = np.exp(0.15 * ndimage.zoom(canvas.rng.standard_normal((3, 3)), canvas.size / 3, order=3, grid_mode=True, mode="nearest"))
    image = np.clip(image * bias[: canvas.size, : canvas.size], 0, None)
    return (image / max(float(np.percentile(image, 99.5)), 1e-6)).astype(np.float32)


def limb_slice(size: int, rng: np.random.Generator, contrast: Optional[str] = None) -> np.ndarray:
    """A knee/thigh/calf-like cross-section, float32 ``(size, size)`` magnitude (99.5th percentile 1).

    Args:
        size: matrix side.
        rng: random generator (every draw comes from it).
        contrast: one of :data:`LIMB_CONTRASTS` (default: drawn).
    """
    cv = _Canvas(size, rng)
    name = contrast or str(rng.choice(sorted(LIMB_CONTRASTS)))
    v = LIMB_CONTRASTS[name]
    centre = rng.uniform(-0.06, 0.06, 2)
    radii = (rng.uniform(0.5, 0.8), rng.uniform(0.45, 0.75))
    angle, wob = rng.uniform(0, np.pi), cv.harmonics(0.06)
    fat_thickness = rng.uniform(0.04, 0.14)
    cv.paint(cv.blob(centre, radii, angle, wob), v["skin"])
    cv.paint(cv.blob(centre, radii, angle, wob, shrink=0.012), v["fat"] * cv.texture(2.0, 0.05))
    muscle = cv.blob(centre, radii, angle, wob, shrink=0.012 + fat_thickness)
    cells, septa = _septa(cv, muscle, int(rng.integers(3, 8)), rng.uniform(1.0, 2.2))
    gains = rng.uniform(0.85, 1.15, cells.max() + 1).astype(np.float32)[cells]
    cv.paint(muscle, v["muscle"] * gains * cv.texture(0.8, 0.05))
    cv.paint(muscle * septa, v["septum"])
    bones = [(centre + rng.uniform(-0.15, 0.15, 2), rng.uniform(0.1, 0.22) * np.array([1.0, rng.uniform(0.75, 1.25)]))]
    if rng.random() < 0.5:  # a second, thinner bone (fibula-like), inside the muscle
        offset = rng.uniform(0.25, 0.4) * np.array([np.sin(t := rng.uniform(0, 2 * np.pi)), np.cos(t)])
        bones.append((bones[0][0] + offset, np.full(2, rng.uniform(0.04, 0.07))))
    for bone_centre, bone_radii in bones:
        tilt, bw = rng.uniform(0, np.pi), cv.harmonics(0.04)
        cv.paint(cv.blob(bone_centre, bone_radii, tilt, bw) * muscle, v["cortex"])
        trabeculae = cv.texture(1.2, 0.15) * cv.texture(3.0, 0.05)
        cv.paint(cv.blob(bone_centre, bone_radii, tilt, bw, shrink=rng.uniform(0.018, 0.045)) * muscle, v["marrow"] * trabeculae)
    for _ in range(int(rng.integers(2, 6))):
        ys, xs = np.nonzero(muscle > 0.99)
        k = rng.integers(ys.size)
        spot = (cv.y[ys[k], xs[k]], cv.x[ys[k], xs[k]])
        cv.paint(cv.blob(spot, np.full(2, rng.uniform(0.012, 0.03))), v["vessel"] * rng.uniform(0.7, 1.0))
    return _finish(cv)


def abdomen_slice(size: int, rng: np.random.Generator, contrast: Optional[str] = None) -> np.ndarray:
    """An axial abdomen-like cross-section, float32 ``(size, size)`` magnitude (99.5th percentile 1).

    Args:
        size: matrix side.
        rng: random generator.
        contrast: one of :data:`ABDOMEN_CONTRASTS` (default: drawn).
    """
    cv = _Canvas(size, rng)
    name = contrast or str(rng.choice(sorted(ABDOMEN_CONTRASTS)))
    v = ABDOMEN_CONTRASTS[name]
    centre = np.array([rng.uniform(-0.04, 0.06), rng.uniform(-0.04, 0.04)])
    radii = (rng.uniform(0.8, 0.93), rng.uniform(0.52, 0.7))  # (x half-width, y half-height)
    wob = cv.harmonics(0.04)
    body = cv.blob(centre, radii, 0.0, wob)
    fat = rng.uniform(0.03, 0.11)
    cv.paint(body, v["skin"])
    cv.paint(cv.blob(centre, radii, 0.0, wob, shrink=0.01), v["fat"] * cv.texture(2.0, 0.05))
    cv.paint(cv.blob(centre, radii, 0.0, wob, shrink=0.01 + fat), v["muscle"] * cv.texture(0.8, 0.05))
    inner = cv.blob(centre, radii, 0.0, wob, shrink=0.01 + fat + rng.uniform(0.02, 0.04))
    cv.paint(inner, v["fat"] * 0.9 * cv.texture(1.5, 0.08))  # visceral fat
    b = radii[1]
    spine = centre + np.array([0.55 * b, 0.0])
    for side in (-1, 1):  # paraspinal muscles
        cv.paint(cv.blob(spine + np.array([0.12, side * 0.17]), (0.14, 0.09), rng.uniform(-0.3, 0.3)) * inner,
                 v["muscle"] * cv.texture(0.8, 0.05))
    vertebra = rng.uniform(0.07, 0.1)
    cv.paint(cv.blob(spine, (vertebra, vertebra * 0.9)), v["bone"])
    cv.paint(cv.blob(spine, (vertebra, vertebra * 0.9), shrink=0.012), v["marrow"] * cv.texture(1.2, 0.12))
    cv.paint(cv.blob(spine + np.array([vertebra + 0.05, 0.0]), (0.03, 0.035)), v["csf"])
    cv.paint(cv.blob(spine + np.array([-vertebra - 0.035, 0.05]), np.full(2, rng.uniform(0.025, 0.04))), v["blood"])
    cv.paint(cv.blob(spine + np.array([-vertebra - 0.03, -0.12]), (0.035, 0.05)), v["blood"] * 2.5)
    organs = []
    if rng.random() < 0.85:  # liver on the patient's right (image left)
        organs.append(("liver", centre + np.array([rng.uniform(-0.25, 0.0), -rng.uniform(0.3, 0.45)]),
                       (rng.uniform(0.3, 0.45), rng.uniform(0.25, 0.38)), 0.06))
    if rng.random() < 0.6:
        organs.append(("spleen", centre + np.array([rng.uniform(0.05, 0.2), rng.uniform(0.45, 0.6)]),
                       (rng.uniform(0.1, 0.18), rng.uniform(0.08, 0.12)), 0.03))
    for organ, where, size_, texture in organs:
        cover = cv.blob(where, size_, rng.uniform(-0.5, 0.5), cv.harmonics(0.08)) * inner
        cv.paint(cover, v[organ] * cv.texture(0.9, texture))
        if organ == "liver":
            for _ in range(int(rng.integers(3, 8))):
                ys, xs = np.nonzero(cover > 0.99)
                if ys.size:
                    k = rng.integers(ys.size)
                    cv.paint(cv.blob((cv.y[ys[k], xs[k]], cv.x[ys[k], xs[k]]), np.full(2, rng.uniform(0.008, 0.02))) * cover,
                             v["blood"] if rng.random() < 0.5 else v["fluid"] * 0.8)
    if rng.random() < 0.7:
        for side in (-1, 1):  # kidneys beside the spine
            where = spine + np.array([-0.05, side * rng.uniform(0.28, 0.36)])
            size_, tilt = (rng.uniform(0.08, 0.11), rng.uniform(0.05, 0.07)), side * rng.uniform(0.3, 0.8)
            cv.paint(cv.blob(where, size_, tilt) * inner, v["cortex"])
            cv.paint(cv.blob(where, size_, tilt, shrink=0.02) * inner, v["medulla"] * cv.texture(1.0, 0.05))
    for _ in range(int(rng.integers(4, 11))):  # bowel loops
        ys, xs = np.nonzero(inner > 0.99)
        k = rng.integers(ys.size)
        where = (cv.y[ys[k], xs[k]], cv.x[ys[k], xs[k]])
        if np.hypot(where[0] - spine[0], where[1] - spine[1]) < 0.25:
            continue
        size_, tilt = (rng.uniform(0.04, 0.1), rng.uniform(0.03, 0.07)), rng.uniform(0, np.pi)
        content = rng.choice(["fluid", "gas", "mixed"])
        cv.paint(cv.blob(where, size_, tilt) * inner, v["wall"])
        fill = cv.blob(where, size_, tilt, shrink=0.012) * inner
        value = v["fluid"] if content == "fluid" else v["gas"] if content == "gas" else v["fluid"] * cv.texture(1.5, 0.6) * 0.6
        cv.paint(fill, value)
    return _finish(cv)


SHAPES = {"limb": limb_slice, "abdomen": abdomen_slice}


def shape_slices(kind: str, num_slices: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``num_slices`` independent draws of ``kind`` (``"limb"`` or ``"abdomen"``), float32 ``(S, size, size)``."""
    if kind not in SHAPES:
        raise ValueError(f"kind: expected one of {sorted(SHAPES)}, found {kind!r}")
    return np.stack([SHAPES[kind](size, rng) for _ in range(num_slices)]).astype(np.float32)
