"""Tissue fractions -> magnitude for corpus v2: per-tissue signal times per-tissue texture.

``|x| = sum_t v_t f_t m_t`` with ``v_t`` the contrast's tissue signal
(:mod:`.tissues`), ``f_t`` the fraction maps (brain or phantom) and ``m_t = max(1 + a_t z_t, 0)``
a multiplicative texture: ``z_t`` is a zero-mean unit-std field of the kind the tissue has
(fine 0.6-1 px or medium 1.5-3 px band-pass noise, or thin dark trabeculae from ridge
lines for marrow) and ``a_t`` its std, drawn per volume within the tissue's range
(a few percent for brain tissue, up to 15 % for marrow and bowel content) times a global
factor 0.6-1.3, capped at 0.15. Maps named ``_<tissue>_gain`` (e.g. muscle bundles of
slightly different signal) multiply that tissue's term.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .texture import bandpass_noise, ridge_lines

# tissue: (amplitude range, field kind)
TEXTURE: Dict[str, Tuple[Tuple[float, float], str]] = {
    "gm": ((0.02, 0.05), "medium"),
    "wm": ((0.015, 0.04), "medium"),
    "csf": ((0.005, 0.02), "medium"),
    "fat": ((0.015, 0.04), "medium"),
    "muscle": ((0.03, 0.08), "fine"),
    "skin": ((0.02, 0.05), "fine"),
    "cortex": ((0.0, 0.0), "fine"),
    "marrow": ((0.08, 0.15), "septa"),
    "vessel": ((0.0, 0.03), "fine"),
    "liver": ((0.03, 0.06), "medium"),
    "spleen": ((0.02, 0.05), "medium"),
    "kidney_cortex": ((0.03, 0.06), "fine"),
    "kidney_medulla": ((0.03, 0.06), "fine"),
    "fluid": ((0.0, 0.02), "medium"),
    "bowel": ((0.05, 0.15), "medium"),
    "tendon": ((0.02, 0.05), "fine"),
    "air": ((0.0, 0.0), "fine"),
}
"""Texture std range and field kind per tissue."""

MAX_TEXTURE = 0.15


def draw_texture_amplitudes(rng: np.random.Generator, enabled: bool = True) -> Dict[str, float]:
    """Per-tissue texture std for one volume (all 0 when not ``enabled``)."""
    scale = rng.uniform(0.6, 1.3)
    amplitudes = {name: float(min(rng.uniform(*r) * scale, MAX_TEXTURE)) for name, (r, _) in TEXTURE.items()}
    return amplitudes if enabled else {name: 0.0 for name in amplitudes}


def _standardise(field: np.ndarray) -> np.ndarray:
    field = field - field.mean(axis=(-2, -1), keepdims=True)
    return field / np.maximum(field.std(axis=(-2, -1), keepdims=True), 1e-12)


def texture_fields(shape: Tuple[int, int, int], rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """The zero-mean unit-std texture fields ``(S, H, W)`` of each kind."""
    fine = bandpass_noise(shape, rng.uniform(0.6, 1.0), rng)
    medium = bandpass_noise(shape, rng.uniform(1.5, 3.0), rng)
    septa = -_standardise(ridge_lines(bandpass_noise(shape, rng.uniform(2.0, 4.0), rng), rng.uniform(0.15, 0.3)))
    return {"fine": fine, "medium": medium, "septa": septa}


def compose_magnitude(
    fractions: Dict[str, np.ndarray], values: Dict[str, float], amplitudes: Dict[str, float], rng: np.random.Generator,
) -> np.ndarray:
    """Magnitude ``(S, H, W)`` float32 of tissue fractions (module docstring).

    Args:
        fractions: tissue -> ``(S, H, W)`` fraction map; ``_<tissue>_gain`` -> gain map.
        values: tissue -> signal (from :class:`~ccdf_mri.simulation.tissues.Contrast`).
        amplitudes: tissue -> texture std (from :func:`draw_texture_amplitudes`).
        rng: random generator (texture fields).

    Returns:
        float32 ``(S, H, W)``, non-negative.
    """
    tissues = {k: v for k, v in fractions.items() if not k.startswith("_")}
    shape = next(iter(tissues.values())).shape
    fields = texture_fields(shape, rng) if any(amplitudes.get(k, 0.0) > 0 for k in tissues) else {}
    out = np.zeros(shape, np.float32)
    for name, fraction in tissues.items():
        if name not in values and name != "air":
            raise KeyError(f"tissue '{name}' has no signal value: expected one of {sorted(values)}")
        value = values.get(name, 0.0)
        if value == 0.0:
            continue
        term = np.float32(value) * fraction
        amplitude = amplitudes.get(name, 0.0)
        if amplitude > 0:
            term = term * np.maximum(1.0 + np.float32(amplitude) * fields[TEXTURE[name][1]], 0.0)
        gain = fractions.get(f"_{name}_gain")
        if gain is not None:
            term = term * gain
        out += term
    return out
