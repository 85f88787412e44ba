"""Brain tissue fractions for corpus v2: the ICBM template with thick slices, sharper edges,
sulcus- and vessel-like detail and a layered skull and scalp.

Compared with :func:`ccdf_mri.simulation.brain.render_volume` (v1), per volume:

- geometry: the v1 draws (same anatomical split bands) with a wider zoom (0.85-1.2);
- slice thickness 1-5 mm: above 1.5 mm three sub-slices at ``-t/3, 0, t/3`` are averaged
  (through-plane partial volume);
- sharper GM / WM / CSF boundaries (:func:`~ccdf_mri.simulation.texture.sharpen_fractions`,
  temperature 0.5-0.9) moved by a band-pass perturbation of 1-2.5 px scale (fine folding the
  population average washed out);
- sulcus-like thin CSF lines in the cortex (ridges of band-pass noise, 2.5-5 px spacing,
  patchy, only in grey matter within a few pixels of CSF) and short random-walk vessels
  (flow void or bright, 0.4-0.8 px blur, partial volume 0.3-0.7);
- skull and scalp as layers outside the head outline: inner table, diploe (marrow), outer
  table, muscle, subcutaneous fat, skin (each of random thickness, modulated along the
  contour); the gaps between the brain and the head outline (skull base) are a patchwork of
  bone, marrow, muscle, fluid and air.

With ``texture=False`` only the geometry, thickness and layers remain (for ablations).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .brain import CONTRASTS, VolumeParams, draw_volume_params, sample_coordinates
from .fields import elastic_displacement, smooth_field
from .template import BrainTemplate
from .texture import bandpass_noise, random_walks, ridge_lines, sharpen_fractions

Fractions = Dict[str, np.ndarray]
_LAYERS = ("cortex", "marrow", "cortex", "muscle", "fat", "skin")
_LAYER_MM = ((1.0, 2.5), (0.5, 4.0), (0.8, 2.0), (0.5, 4.0), (1.0, 6.0), (1.0, 2.0))
_GAP_TISSUES = ("cortex", "marrow", "muscle", "fluid", "air")


def draw_brain_geometry(
    template: BrainTemplate, split: str, num_slices: int, rng: np.random.Generator,
    orientations: Sequence[str], spacing_mm: float, deform: bool,
) -> Tuple[VolumeParams, float]:
    """v1 geometry draws (split bands, orientation, tilt, shift) with a wider zoom, and a slice thickness.

    Returns:
        ``(params, slice_thickness_mm)``; ``params.contrast``/``tissue`` are v1 leftovers (unused).
    """
    params = draw_volume_params(template, split, num_slices, rng, orientations, CONTRASTS, spacing_mm, deform)
    if deform:
        params = replace(params, zoom=tuple(float(v) for v in rng.uniform(0.85, 1.2, 2)))
    thickness = float(rng.uniform(1.0, 5.0))
    return params, thickness


def _sample(template: BrainTemplate, params: VolumeParams, shape, fov_mm: float, displacement, thickness: float):
    offsets = (0.0,) if thickness <= 1.5 else (-thickness / 3.0, 0.0, thickness / 3.0)
    maps = None
    for offset in offsets:
        shifted = replace(params, positions_mm=tuple(p + offset for p in params.positions_mm))
        coords = sample_coordinates(template, shifted, shape, fov_mm, displacement)
        sampled = np.stack([
            ndimage.map_coordinates(v, coords, order=1, mode="constant", cval=0.0, prefilter=False)
            for v in (template.gm, template.wm, template.mask)
        ])
        maps = sampled if maps is None else maps + sampled
    return maps / len(offsets)


def _head_outline(mask: np.ndarray, pixel_mm: float) -> Tuple[np.ndarray, np.ndarray]:
    """Head outline (brain mask closed with a 15 mm disc, hole-filled) and the distance outside it (pixels)."""
    inside = mask > 0.5
    if not inside.any():
        return np.zeros_like(mask), np.full(mask.shape, 1e6, np.float32)
    radius = 15.0 / pixel_mm
    dilated = ndimage.distance_transform_edt(~inside) <= radius
    head = ndimage.binary_fill_holes(ndimage.distance_transform_edt(dilated) > radius) | inside
    outside = ndimage.distance_transform_edt(~head).astype(np.float32) - 0.5
    soft = ndimage.gaussian_filter(head.astype(np.float32), 0.5)
    return soft, outside


def _shell_edges(thickness_px: np.ndarray, modulation: np.ndarray) -> np.ndarray:
    """Boundaries ``(L + 1, H, W)`` of consecutive shells: ``b_l = sum_{j<l} t_j m_j`` (thickness ``t_j`` px, modulation ``m_j``)."""
    zero = np.zeros((1, *modulation.shape[1:]), np.float32)
    return np.concatenate([zero, np.cumsum(thickness_px[:, None, None] * modulation, axis=0)]).astype(np.float32)


def _layers(distance: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Anti-aliased fractions ``(L, H, W)`` of the shells between ``edges`` outside an outline (no overlaps, no gaps)."""
    return np.stack([
        np.clip(distance - lo + 0.5, 0, 1) * np.clip(hi - distance + 0.5, 0, 1) for lo, hi in zip(edges[:-1], edges[1:])
    ]).astype(np.float32)


def brain_fractions(
    template: BrainTemplate, params: VolumeParams, thickness_mm: float, shape: Tuple[int, int], fov_mm: float,
    rng: np.random.Generator, deform: bool = True, texture: bool = True,
) -> Fractions:
    """Per-tissue fraction maps ``(S, H, W)`` of one brain volume (see the module docstring).

    Args:
        template: the loaded template.
        params: geometry from :func:`draw_brain_geometry`.
        thickness_mm: slice thickness.
        shape: ``(H, W)``.
        fov_mm: field of view along the longer side.
        rng: random generator.
        deform: elastic displacement on/off.
        texture: sharpening, sulci and vessels on/off.

    Returns:
        dict tissue -> float32 ``(S, H, W)`` (gm, wm, csf, cortex, marrow, muscle, fat, skin,
        fluid, air, vessel); the fractions sum to at most 1 per pixel.
    """
    pixel = fov_mm / max(shape)
    texture_rng = np.random.default_rng(int(rng.integers(2**63)))  # texture on/off leaves the other draws unchanged
    displacement = elastic_displacement(shape, rng, 3.0) if deform else np.zeros((2, *shape), np.float32)
    gm, wm, mask = _sample(template, params, shape, fov_mm, displacement, thickness_mm)
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    tissues = np.stack([gm, wm, csf])
    s = gm.shape[0]
    if texture:
        temperature = texture_rng.uniform(0.5, 0.9)
        amplitude = texture_rng.uniform(0.1, 0.4)
        scale = texture_rng.uniform(1.0, 2.5)
        perturbation = amplitude * np.stack([bandpass_noise((s, *shape), scale, texture_rng) for _ in range(3)])
        tissues = sharpen_fractions(tissues, temperature, perturbation)
        lines = ridge_lines(bandpass_noise((s, *shape), texture_rng.uniform(2.5, 5.0), texture_rng), texture_rng.uniform(0.1, 0.2))
        patches = np.clip(smooth_field(shape, 8, texture_rng) + texture_rng.uniform(-0.5, 1.0), 0, 1)
        near_csf = np.clip(4.0 * ndimage.gaussian_filter(tissues[2], (0, 2.0, 2.0)), 0, 1)  # cortex, not deep nuclei
        sulci = lines * patches * texture_rng.uniform(0.4, 0.9) * np.clip(tissues[0] * 1.5, 0, 1) * near_csf
        tissues[2] += sulci * tissues[0]
        tissues[0] -= sulci * tissues[0]
    out: Fractions = {"gm": tissues[0], "wm": tissues[1], "csf": tissues[2]}
    thickness = np.array([rng.uniform(*r) for r in _LAYER_MM], np.float32) / pixel
    modulation = np.clip(1.0 + 0.3 * np.stack([smooth_field(shape, 5, rng) for _ in _LAYERS]), 0.3, 2.0)
    edges = _shell_edges(thickness, modulation)
    logits = rng.uniform(2.0, 5.0) * np.stack([smooth_field(shape, max(4, shape[0] // 16), rng) for _ in _GAP_TISSUES])
    gap_weights = np.exp(logits - logits.max(axis=0))
    gap_weights /= gap_weights.sum(axis=0)
    layered = {name: np.zeros((s, *shape), np.float32) for name in set(_LAYERS) | set(_GAP_TISSUES)}
    for i in range(s):
        head, distance = _head_outline(mask[i], pixel)
        for name, fraction in zip(_LAYERS, _layers(distance, edges)):
            layered[name][i] += fraction
        gap = np.clip(head - mask[i], 0.0, 1.0)
        for name, w in zip(_GAP_TISSUES, gap_weights):
            layered[name][i] += gap * w
    out.update(layered)
    total = sum(out.values())
    excess = np.maximum(total, 1.0)
    out = {k: v / excess for k, v in out.items()}
    if texture:
        count = int(texture_rng.integers(2, 12))
        width = texture_rng.uniform(0.4, 0.8)
        region = (mask > 0.5) | (out["marrow"] + out["muscle"] > 0.5)
        vessels = np.stack([random_walks(shape, count, texture_rng, (5.0, 30.0), 0.06, width, region[i]) for i in range(s)])
        vessels *= texture_rng.uniform(0.3, 0.7)
        for name in out:
            out[name] *= 1.0 - vessels
        out["vessel"] = vessels * np.minimum(total, 1.0)
    return out
