"""Cartesian undersampling masks.

1-D masks select phase-encode columns (the last k-space axis) and are returned as
``(1, 1, 1, W)`` float32 0/1 tensors; ``poisson2d`` selects k-space points and is returned as
``(1, 1, H, W)``.

``equispaced_fraction`` and ``random`` reproduce fastMRI's ``EquispacedMaskFractionFunc`` and
``RandomMaskFunc`` bit for bit for a single (centre fraction, acceleration) pair: a
``numpy.random.RandomState`` seeded with ``seed`` first draws the pair index
(``randint(1)``), then the equispaced offset (``randint(0, round(adjusted_acceleration))``)
or the column uniforms (``uniform(size=W)``). fastMRI's validation convention seeds with
``tuple(map(ord, file_name))`` (:func:`mask_seed_from_name`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ccdf_mri.choices import MASK_KINDS

Seed = Union[int, Sequence[int], None]

# Standard deviation of the gaussian1d column density, as a fraction of the width W.
GAUSSIAN_STD_FRACTION = 0.25


def mask_seed_from_name(file_name: str) -> tuple[int, ...]:
    """fastMRI's per-file seed: the code points of the file name, ``tuple(map(ord, name))``."""
    return tuple(ord(char) for char in file_name)


def make_mask(
    kind: str,
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    seed: Seed = None,
    padding: Optional[tuple[int, int]] = None,
) -> torch.Tensor:
    """Sampling mask for k-space of ``shape``.

    Args:
        kind: one of :data:`MASK_KINDS`.
        shape: k-space shape ``(..., H, W)``; W is the phase-encode axis.
        acceleration: nominal acceleration ``>= 1`` (``> 1`` for ``poisson2d``).
        center_fraction: fraction of W (for ``poisson2d``: of H and of W) fully sampled at the
            centre, ``0 <= center_fraction < 1``.
        seed: int, sequence of ints (numpy ``RandomState`` seed) or None (fresh entropy).
        padding: ``(left, right)`` column limits of the encoded k-space, as fastMRI's
            ``padding_left``/``padding_right``: columns ``< left`` and ``>= right`` are zeroed.

    Returns:
        float32 0/1 mask, ``(1, 1, 1, W)`` or ``(1, 1, H, W)`` for ``poisson2d``.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"kind: expected one of {MASK_KINDS}, found {kind!r}")
    if len(shape) < 2:
        raise ValueError(f"shape: expected k-space shape (..., H, W), found {tuple(shape)}")
    height, width = int(shape[-2]), int(shape[-1])
    if not acceleration >= 1:
        raise ValueError(f"acceleration: expected >= 1, found {acceleration}")
    if not 0 <= center_fraction < 1:
        raise ValueError(f"center_fraction: expected in [0, 1), found {center_fraction}")
    if kind == "poisson2d":
        mask = _poisson2d(height, width, acceleration, center_fraction, seed)[None, None]
    else:
        columns = {"equispaced_fraction": _equispaced_fraction, "random": _random, "gaussian1d": _gaussian1d}
        mask = columns[kind](width, acceleration, center_fraction, seed).reshape(1, 1, 1, width)
    if padding is not None:
        left, right = (int(p) for p in padding)
        if not 0 <= left < right <= width:
            raise ValueError(f"padding: expected (left, right) with 0 <= left < right <= W={width}, found {padding}")
        mask[..., :left] = 0
        mask[..., right:] = 0
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


def effective_acceleration(mask: torch.Tensor) -> float:
    """Acceleration actually achieved: number of mask entries over number sampled.

    For a ``(1, 1, 1, W)`` mask this is ``W / sampled columns``; for ``(1, 1, H, W)`` it is
    ``H W / sampled points``.
    """
    sampled = float(mask.sum())
    if sampled <= 0:
        raise ValueError(f"mask: expected at least one sampled entry, found none in shape {tuple(mask.shape)}")
    return mask.numel() / sampled


def _num_low_frequencies(width: int, center_fraction: float) -> int:
    return round(width * center_fraction)


def _center_columns(width: int, num_low: int) -> np.ndarray:
    """fastMRI's centre block: ``num_low`` ones from ``(W - num_low + 1) // 2``."""
    mask = np.zeros(width, dtype=np.float32)
    start = (width - num_low + 1) // 2
    mask[start : start + num_low] = 1
    return mask


def _rng(seed: Seed) -> np.random.RandomState:
    rng = np.random.RandomState(seed)
    rng.randint(1)  # fastMRI draws the (centre fraction, acceleration) pair index first
    return rng


def _equispaced_fraction(width: int, acceleration: float, center_fraction: float, seed: Seed) -> np.ndarray:
    num_low = _num_low_frequencies(width, center_fraction)
    if num_low * acceleration >= width:
        raise ValueError(
            f"center_fraction, acceleration: expected round(W * center_fraction) * acceleration < W={width}, "
            f"found {num_low} * {acceleration}"
        )
    rng = _rng(seed)
    # spacing of the outer lines so that the centre plus outer lines total about W / acceleration
    spacing = acceleration * (num_low - width) / (num_low * acceleration - width)
    offset = rng.randint(0, high=round(spacing))
    positions = np.around(np.arange(offset, width - 1, spacing)).astype(np.uint)
    mask = _center_columns(width, num_low)
    mask[positions] = 1
    return mask


def _random(width: int, acceleration: float, center_fraction: float, seed: Seed) -> np.ndarray:
    num_low = _num_low_frequencies(width, center_fraction)
    if num_low >= width:
        raise ValueError(f"center_fraction: expected round(W * center_fraction) < W={width}, found {num_low}")
    rng = _rng(seed)
    probability = (width / acceleration - num_low) / (width - num_low)
    mask = _center_columns(width, num_low)
    mask[rng.uniform(size=width) < probability] = 1
    return mask


def _gaussian1d(width: int, acceleration: float, center_fraction: float, seed: Seed) -> np.ndarray:
    """Centre block plus ``round(W / acceleration) - num_low`` outer columns drawn without
    replacement with probability proportional to ``exp(-(k - W // 2)^2 / (2 (0.25 W)^2))``."""
    num_low = _num_low_frequencies(width, center_fraction)
    num_outer = round(width / acceleration) - num_low
    if num_outer < 0:
        raise ValueError(
            f"center_fraction: expected round(W * center_fraction) <= round(W / acceleration) = "
            f"{round(width / acceleration)}, found {num_low}"
        )
    mask = _center_columns(width, num_low)
    candidates = np.flatnonzero(mask == 0)
    distance = candidates - width // 2
    density = np.exp(-0.5 * (distance / (GAUSSIAN_STD_FRACTION * width)) ** 2)
    chosen = np.random.RandomState(seed).choice(candidates, size=num_outer, replace=False, p=density / density.sum())
    mask[chosen] = 1
    return mask


def _poisson2d(height: int, width: int, acceleration: float, center_fraction: float, seed: Seed) -> np.ndarray:
    """sigpy's variable-density Poisson-disc mask with a fully sampled centre of
    ``round(H * center_fraction) x round(W * center_fraction)``."""
    import sigpy.mri

    if not acceleration > 1:
        raise ValueError(f"acceleration: expected > 1 for poisson2d, found {acceleration}")
    calib = (round(height * center_fraction), round(width * center_fraction))
    # sigpy seeds numba's global generator with an int; a sequence seed is folded into one
    int_seed = seed
    if seed is not None and not isinstance(seed, (int, np.integer)):
        int_seed = int(np.random.RandomState(seed).randint(2**31 - 1))
    try:
        mask = sigpy.mri.poisson((height, width), acceleration, calib=calib, dtype=np.float32, seed=int_seed)
    except ValueError as error:
        raise ValueError(
            f"acceleration: sigpy.mri.poisson cannot reach {acceleration} for shape ({height}, {width}) "
            f"with calibration {calib}: {error}"
        ) from error
    return np.asarray(mask, dtype=np.float32)


def calibration_width(mask: Union[torch.Tensor, np.ndarray]) -> int:
    """Side of the largest fully sampled calibration block at the k-space centre.

    The block is the one the coil-map estimators read: columns ``W // 2 - w // 2`` onwards
    (and, for 2-D masks, the same rows around ``H // 2``), where fastMRI places its
    ``round(W * center_fraction)`` centre lines. For a 1-D mask this is the symmetric part of
    the fully sampled centre columns, for a 2-D mask the centred square; either is a valid
    ``calib_width`` for the coil-map estimators.

    Args:
        mask: 0/1 mask ``(W,)``, ``(..., 1, W)`` or ``(..., H, W)`` with singleton leading axes
            (torch or numpy).

    Returns:
        ``w`` (0 when the centre is not sampled).
    """
    mask = torch.as_tensor(mask)
    grid = mask.reshape((1,) + tuple(mask.shape[-1:]) if mask.ndim < 2 else mask.shape[-2:]) > 0
    rows, cols = grid.shape
    for side in range(cols if rows == 1 else min(rows, cols), 0, -1):
        top, left = rows // 2 - side // 2, cols // 2 - side // 2
        block = grid[:, left : left + side] if rows == 1 else grid[top : top + side, left : left + side]
        if bool(block.all()):
            return side
    return 0


# ----------------------------------------------------------------------------- masks from data
class SampledColumns:
    """Which k-space columns hold data, accumulated over slices (for lazily read volumes).

    A column is *sampled* when any of its values, in any coil, row or slice seen so far, is
    non-zero; columns exactly zero everywhere were not acquired. Feed every slice with
    :meth:`update`, then ask :meth:`mask`.

    Example::

        columns = SampledColumns()
        for kspace in volume:            # (C, H, W) per slice
            columns.update(kspace)
        mask = columns.mask(volume.header.padding_columns(volume.kspace_shape[-1]))
    """

    def __init__(self) -> None:
        self._sampled: Optional[np.ndarray] = None

    def update(self, kspace: Union[torch.Tensor, np.ndarray]) -> "SampledColumns":
        """Add k-space ``(..., H, W)`` (one slice ``(C, H, W)`` or a volume ``(S, C, H, W)``).

        Raises:
            ValueError: fewer than 2 axes, or a width different from earlier updates.
        """
        if isinstance(kspace, torch.Tensor):
            nonzero = (kspace != 0).reshape(-1, kspace.shape[-1]).any(dim=0).cpu().numpy() if kspace.ndim >= 2 else None
        else:
            kspace = np.asarray(kspace)
            nonzero = (kspace != 0).reshape(-1, kspace.shape[-1]).any(axis=0) if kspace.ndim >= 2 else None
        if nonzero is None:
            raise ValueError(f"kspace: expected shape (..., H, W), found {tuple(kspace.shape)}")
        if self._sampled is None:
            self._sampled = nonzero.copy()
        elif nonzero.shape != self._sampled.shape:
            raise ValueError(f"kspace: expected width W={self._sampled.shape[0]} as before, found shape {tuple(kspace.shape)}")
        else:
            self._sampled |= nonzero
        return self

    @property
    def sampled(self) -> np.ndarray:
        """Boolean ``(W,)``: columns with any non-zero value so far."""
        if self._sampled is None:
            raise ValueError("SampledColumns: no k-space seen yet (call update first)")
        return self._sampled.copy()

    def mask(self, padding: Optional[tuple[int, int]] = None) -> Optional[torch.Tensor]:
        """The sampling mask of already-undersampled data, or None for fully sampled data.

        The data are *undersampled* when, between the first and the last sampled column of
        the encoded range ``padding`` (``FastMRIHeader.padding_columns(W)``; all columns when
        None), some column is unsampled. Runs of zero columns at the edges are zero padding
        or partial Fourier, as in fastMRI's fully sampled files, and do not count.

        Returns:
            float32 0/1 ``(1, 1, 1, W)`` of the sampled columns when undersampled, else None.

        Raises:
            ValueError: no k-space seen, every column is zero, or ``padding`` out of range.
        """
        sampled = self.sampled
        width = sampled.shape[0]
        left, right = (0, width) if padding is None else (int(p) for p in padding)
        if not 0 <= left < right <= width:
            raise ValueError(f"padding: expected (left, right) with 0 <= left < right <= W={width}, found {padding}")
        inside = np.flatnonzero(sampled[left:right])
        if inside.size == 0:
            raise ValueError(f"kspace: expected sampled (non-zero) columns in [{left}, {right}), found none: the k-space is zero")
        if sampled[left + inside[0] : left + inside[-1] + 1].all():
            return None
        return torch.from_numpy(sampled.astype(np.float32)).reshape(1, 1, 1, width)


def detect_sampled_columns(
    kspace: Union[torch.Tensor, np.ndarray], padding: Optional[tuple[int, int]] = None
) -> Optional[torch.Tensor]:
    """Mask of already-undersampled k-space ``(S, C, H, W)`` (any ``(..., H, W)``), or None.

    One pass of :class:`SampledColumns` over the whole array: columns exactly zero across
    all coils, rows and slices are unsampled; None when no such column lies between sampled
    ones in ``padding`` (fully sampled), else the ``(1, 1, 1, W)`` float32 0/1 mask.
    """
    return SampledColumns().update(kspace).mask(padding)


def load_mask_file(
    path: Union[str, os.PathLike],
    width: int,
    height: Optional[int] = None,
    key: str = "mask",
) -> torch.Tensor:
    """A user's sampling mask from a ``.npy`` file or a ``.h5`` file (dataset ``key``).

    Accepted shapes: ``(W,)`` or any shape with leading singleton axes ending in ``W``
    (``(1, 1, 1, W)``), a 1-D column mask; ``(H, W)`` (or with leading singleton axes), a
    2-D mask, when ``height`` is given. Values: 0/1 (bool or numbers), at least one 1.

    Args:
        path: ``.npy`` or ``.h5`` / ``.hdf5`` (suffix in any letter case).
        width: k-space columns ``W`` (phase encode, the last axis).
        height: k-space rows ``H`` after removing readout oversampling (the rows the mask
            is applied to); None refuses 2-D masks.
        key: the dataset of an ``.h5`` file.

    Returns:
        float32 0/1 ``(1, 1, 1, W)`` or ``(1, 1, H, W)``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown suffix, unreadable file, missing key, wrong shape, values other
            than 0/1, or nothing sampled; the message names the file, key and expected vs
            found value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        where = f"{path}"
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ValueError(f"{path}: expected a .npy array, found a file numpy cannot read ({error})") from None
    elif suffix in (".h5", ".hdf5"):
        import h5py

        where = f"{path}: key '{key}'"
        try:
            with h5py.File(path, "r") as handle:
                if not isinstance(handle.get(key), h5py.Dataset):
                    raise ValueError(f"{where}: expected a dataset '{key}', found keys {sorted(handle.keys())}")
                values = np.asarray(handle[key][()])
        except OSError as error:
            raise ValueError(f"{path}: expected an HDF5 file, found one h5py cannot open ({error})") from None
    else:
        raise ValueError(f"{path}: expected a mask file ending in .npy or .h5, found suffix '{path.suffix}'")
    return _check_mask_array(values, where, int(width), None if height is None else int(height))


def _check_mask_array(values: np.ndarray, where: str, width: int, height: Optional[int]) -> torch.Tensor:
    expected = f"({width},) or (1, 1, 1, {width})" + (f" or ({height}, {width})" if height is not None else "")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{where}: expected a 0/1 mask of numbers or booleans, found dtype {values.dtype}")
    shape = values.shape
    core = values
    while core.ndim > 1 and core.shape[0] == 1:
        core = core[0]
    if core.ndim == 1 and core.shape == (width,):
        out_shape = (1, 1, 1, width)
    elif core.ndim == 2 and height is not None and core.shape == (height, width):
        out_shape = (1, 1, height, width)
    else:
        raise ValueError(f"{where}: expected mask shape {expected}, found {shape}")
    core = core.astype(np.float64)
    if not np.isin(core, (0.0, 1.0)).all():
        bad = core[~np.isin(core, (0.0, 1.0))]
        raise ValueError(f"{where}: expected 0/1 values, found {bad.size} others (e.g. {bad.flat[0]!r})")
    if not core.any():
        raise ValueError(f"{where}: expected at least one sampled entry, found none")
    return torch.from_numpy(np.ascontiguousarray(core, dtype=np.float32)).reshape(out_shape)
