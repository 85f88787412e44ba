"""Acquisition-like image degradations for corpus v2 (applied to the complex image).

All of them act on the noise-free complex image *before* the coil weighting, so the
stored ``target_complex`` is the degraded image and the k-space stays exactly its coil
FFT (plus noise): the prior sees what clinical images look like, and target and k-space
remain consistent. Axis convention: rows (H) = readout, columns (W) = phase encode.

- lower resolution: ``resolution_mm`` per axis (log-uniform in 1-3 mm, the same on both axes
  in 60 % of the cases); ``"fourier"`` keeps the central
  ``pixel / resolution`` of k-space with a Tukey taper of width ``taper`` (0: sharp
  truncation with Gibbs ringing, i.e. zero-filled interpolation as on the scanner) or
  ``"spline"`` averages onto the coarse grid and interpolates back with cubic splines
  (image-domain upsampling as in resampled DICOMs / EPI);
- partial-Fourier-like blur: along one axis the k-space lines beyond
  ``(fraction - 0.5) N`` on one side of the centre are zeroed (zero-filled partial Fourier);
- motion-like ghosting along the phase-encode axis: every phase-encode line ``j`` gets a
  displacement ``delta_j`` along the readout (pixels) and a phase ``psi_j``, both periodic
  (``sin(2 pi j / P + phi)``, discrete ghosts at N / P with a peak of about 3-15 % of the
  object) or independent Gaussian per line (unit std; ghosts smeared along W, a fraction of
  a percent of the energy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage


@dataclass
class Degradations:
    """The degradations of one volume (None: off).

    Attributes:
        resolution_mm: ``(rows, cols)`` acquired resolution, or None (native).
        resolution_method: ``"fourier"`` or ``"spline"``.
        taper: Tukey taper width (fraction of the kept half-width) for ``"fourier"``.
        partial_fourier: ``(axis -2 or -1, fraction in [0.55, 0.8], side +1/-1)`` or None.
        ghost: ``(kind "periodic"/"random", displacement px, phase rad, period lines, phase offset)`` or None.
    """

    resolution_mm: Optional[Tuple[float, float]] = None
    resolution_method: str = "fourier"
    taper: float = 0.0
    partial_fourier: Optional[Tuple[int, float, int]] = None
    ghost: Optional[Tuple[str, float, float, float, float]] = None

    def to_dict(self) -> dict:
        """JSON-serialisable dict."""
        return asdict(self)


def draw_degradations(
    rng: np.random.Generator, pixel_mm: float, resolution_mm: Tuple[float, float] = (1.0, 3.0),
    native_fraction: float = 0.5, partial_fourier_fraction: float = 0.2, ghost_fraction: float = 0.2,
) -> Degradations:
    """Draw one volume's degradations.

    Args:
        rng: random generator.
        pixel_mm: pixel size of the matrix.
        resolution_mm: range of the acquired resolution; resolutions at or below the pixel
            size mean native.
        native_fraction: probability of native resolution.
        partial_fourier_fraction: probability of partial-Fourier blur.
        ghost_fraction: probability of ghosting.

    Returns:
        :class:`Degradations`.
    """
    out = Degradations()
    if rng.random() >= native_fraction:
        lo, hi = max(resolution_mm[0], pixel_mm), max(resolution_mm[1], pixel_mm)
        first = float(lo * (hi / lo) ** rng.random())  # log-uniform: finer resolutions more often
        second = first if rng.random() < 0.6 else float(lo * (hi / lo) ** rng.random())
        if second != first and rng.random() < 0.5:
            first, second = second, first
        if max(first, second) > pixel_mm * 1.05:
            out.resolution_mm = (first, second)
            out.resolution_method = "fourier" if rng.random() < 0.6 else "spline"
            out.taper = float(rng.uniform(0.0, 0.6))
    if rng.random() < partial_fourier_fraction:
        out.partial_fourier = (int(rng.choice([-2, -1])), float(rng.uniform(0.55, 0.8)), int(rng.choice([-1, 1])))
    if rng.random() < ghost_fraction:
        kind = "periodic" if rng.random() < 0.5 else "random"
        out.ghost = (kind, float(rng.uniform(0.1, 0.6)), float(rng.uniform(0.02, 0.1)),
                     float(rng.uniform(3.0, 12.0)), float(rng.uniform(0, 2 * np.pi)))
    return out


def _fft(x: np.ndarray, axes) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _ifft(k: np.ndarray, axes) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _centred_index(n: int) -> np.ndarray:
    return np.arange(n) - n // 2


def tukey_window(n: int, keep: float, taper: float) -> np.ndarray:
    """Centred low-pass window over ``n`` k-space samples: 1 up to ``(1 - taper) keep``, cosine to 0 at ``keep``.

    Args:
        n: samples.
        keep: half-width in samples.
        taper: fraction of ``keep`` used by the cosine roll-off (0: box).
    """
    k = np.abs(_centred_index(n)).astype(np.float64)
    flat = keep * (1.0 - taper)
    window = np.where(k <= flat, 1.0, 0.0)
    if taper > 0:
        ramp = (k > flat) & (k < keep)
        window[ramp] = 0.5 * (1.0 + np.cos(np.pi * (k[ramp] - flat) / (keep - flat)))
    return window.astype(np.float32)


def lower_resolution(images: np.ndarray, pixel_mm: float, resolution_mm: Tuple[float, float], method: str, taper: float) -> np.ndarray:
    """Images ``(S, H, W)`` as acquired at ``resolution_mm`` and interpolated back to the matrix (module docstring)."""
    s, h, w = images.shape
    factors = [max(r / pixel_mm, 1.0) for r in resolution_mm]
    if method == "fourier":
        k = _fft(images, (-2, -1))
        window = tukey_window(h, h / (2 * factors[0]), taper)[:, None] * tukey_window(w, w / (2 * factors[1]), taper)[None, :]
        return _ifft(k * window, (-2, -1)).astype(np.complex64)
    if method != "spline":
        raise ValueError(f"resolution method '{method}': expected 'fourier' or 'spline'")
    out = np.empty_like(images)
    coarse_shape = (max(int(round(h / factors[0])), 4), max(int(round(w / factors[1])), 4))
    for i in range(s):
        parts = []
        for part in (images[i].real, images[i].imag):
            blurred = ndimage.gaussian_filter(part, (0.4 * factors[0], 0.4 * factors[1]))
            coarse = ndimage.zoom(blurred, (coarse_shape[0] / h, coarse_shape[1] / w), order=1, grid_mode=True, mode="nearest")
            parts.append(ndimage.zoom(coarse, (h / coarse.shape[0], w / coarse.shape[1]), order=3, grid_mode=True, mode="nearest")[:h, :w])
        out[i] = parts[0] + 1j * parts[1]
    return out


def partial_fourier(images: np.ndarray, axis: int, fraction: float, side: int) -> np.ndarray:
    """Zero the k-space of ``images`` ``(S, H, W)`` beyond ``(fraction - 0.5) N`` on one ``side`` of the centre along ``axis``."""
    n = images.shape[axis]
    index = _centred_index(n) * side
    keep = (index <= (fraction - 0.5) * n).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = n
    return _ifft(_fft(images, (axis,)) * keep.reshape(shape), (axis,)).astype(np.complex64)


def ghosting(images: np.ndarray, kind: str, displacement: float, phase: float, period: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    """Motion-like ghosts along the phase-encode axis (W) of ``images`` ``(S, H, W)`` (module docstring)."""
    s, h, w = images.shape
    lines = np.arange(w)
    if kind == "periodic":
        profile = np.sin(2 * np.pi * lines / period + offset)
    elif kind == "random":
        profile = rng.standard_normal(w)  # independent errors per line: ghosts smeared along W
    else:
        raise ValueError(f"ghost kind '{kind}': expected 'periodic' or 'random'")
    ky = (_centred_index(h) / h)[:, None]
    error = np.exp(-2j * np.pi * ky * displacement * profile[None, :] + 1j * phase * profile[None, :])
    return _ifft(_fft(images, (-2, -1)) * error[None], (-2, -1)).astype(np.complex64)


def apply_degradations(images: np.ndarray, pixel_mm: float, degradations: Degradations, rng: np.random.Generator) -> np.ndarray:
    """Apply resolution loss, partial Fourier and ghosting (in that order) to complex ``(S, H, W)`` images."""
    out = np.asarray(images, np.complex64)
    if degradations.resolution_mm is not None:
        out = lower_resolution(out, pixel_mm, degradations.resolution_mm, degradations.resolution_method, degradations.taper)
    if degradations.partial_fourier is not None:
        out = partial_fourier(out, *degradations.partial_fourier)
    if degradations.ghost is not None:
        out = ghosting(out, *degradations.ghost, rng=rng)
    return out
