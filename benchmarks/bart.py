"""BART (Berkeley Advanced Reconstruction Toolbox) as the classical peer of the benchmarks.

BART is Debian's package ``bart`` (``apt-get install bart``; command ``bart``). This module
talks to the command line through files in BART's own format, read and written here:

- ``<stem>.hdr``: text, the line ``# Dimensions`` then the dimensions separated by spaces
  (BART pads to 16 with 1s; shorter lists are accepted on reading);
- ``<stem>.cfl``: the raw complex64 samples (little-endian float32 real/imaginary pairs) in
  column-major (Fortran) order: the first dimension varies fastest.

Axis order. BART's dimensions 0, 1, 2 are x, y, z (read-out, phase encode, partition), 3 the
coils. Our k-space ``(C, H, W)`` (H = read-out rows, W = phase-encode columns) is BART's
``(H, W, 1, C)`` (:func:`to_bart`, :func:`from_bart`).

FFT convention. ``bart fft -u`` is the centred unitary DFT, the same as
:func:`ccdf_mri.physics.fft.fft2c` for even sizes (DC at ``H // 2, W // 2``, no scale
factor); ``tests/test_bart.py`` checks it against ``bart fft -u -i 3`` on a random array.

Scaling of ``bart pics``. BART multiplies the k-space by ``1 / s`` before solving, where
``s`` is a robust maximum of a low-resolution image made from the fully sampled calibration
region (``pics -d5`` prints it: "Scaling: s! (max = .../p90 = .../median = ...)"): the 90th
percentile of its magnitude, or its maximum when ``max - p90 >= 2 (p90 - median)``. Lambda
(``-r``) is therefore a weight relative to an image whose bright tissue is about 1,
independent of the file's intensity units, but it does depend on the image content through
``s`` (a bright spot raises ``s``). Without ``-S`` the output stays in those normalised
units; with ``-S`` (always used here) it is multiplied back by ``s``, so the image is in the
k-space's units and directly comparable to the target. ``tests/test_bart.py`` checks that
scaling the k-space by any factor scales the ``-S`` output by the same factor at a fixed lambda.

A fair setup (:func:`fair_calibration`): ``ecalib``'s defaults (6x6 kernel, 24x24 region)
fail on some scans with a 10-line centre (8x at 256 columns): on 25 val slices of the
validation set they lost up to 6.2 dB to the best variant (4 slices > 1 dB); ``-k 4`` is
stable but 1.5 dB worse in median. The rule here keeps the 6x6 kernel and calibrates on
every (fully sampled) read-out row of the centre lines: median 25.50 dB against 24.87 dB for
the defaults at 8x, never more than 0.33 dB below the best variant (0.16 dB at 4x, where it
equals the defaults in median); ``benchmarks/results/bart_ecalib_rule.md``.

Tuning and the calibration study: :mod:`benchmarks.bart_study`::

    python -m benchmarks.bart_study tune --data VALIDATION_SET --out benchmarks/results
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

PathLike = Union[str, os.PathLike]
BART_DIMS = 16
INSTALL_HINT = "install it with `apt-get install bart` (Debian/Ubuntu package 'bart')"
REGULARIZERS = ("l1", "l2")
DEFAULT_ITERS = {"l1": 100, "l2": 50}
LAMBDA_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


class BartError(RuntimeError):
    """A ``bart`` command failed or BART is not installed; the message names the command."""


# --------------------------------------------------------------------------- .cfl / .hdr


def _stem(path: PathLike) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".cfl", ".hdr") else path


def write_cfl(path: PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as BART's ``<stem>.hdr`` + ``<stem>.cfl``.

    Args:
        path: file stem (a ``.cfl`` or ``.hdr`` suffix is dropped).
        array: up to 16-D, any numeric dtype (stored as complex64); its axes are BART's
            dimensions in order (axis 0 = BART dimension 0).

    Returns:
        the stem.
    """
    stem = _stem(path)
    data = np.asarray(array)
    if data.ndim > BART_DIMS:
        raise ValueError(f"{stem}: BART files have at most {BART_DIMS} dimensions, found shape {data.shape}")
    dims = list(data.shape) + [1] * (BART_DIMS - data.ndim)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + " \n")
    data.astype("<c8").ravel(order="F").tofile(stem.with_suffix(".cfl"))
    return stem


def read_cfl(path: PathLike, ndim: Optional[int] = None) -> np.ndarray:
    """Read BART's ``<stem>.hdr`` + ``<stem>.cfl`` into a complex64 array.

    Args:
        path: file stem (a ``.cfl`` or ``.hdr`` suffix is dropped).
        ndim: number of leading BART dimensions to keep (the rest must be 1); default: up to
            the last dimension that is not 1.

    Returns:
        complex64 array whose axis ``k`` is BART dimension ``k``.

    Raises:
        ValueError: malformed header, or a ``.cfl`` whose size disagrees with it.
    """
    stem = _stem(path)
    header = stem.with_suffix(".hdr")
    lines = [line.strip() for line in header.read_text().splitlines()]
    try:
        dims = [int(v) for v in lines[lines.index("# Dimensions") + 1].split()]
    except (ValueError, IndexError):
        raise ValueError(f"{header}: expected '# Dimensions' followed by a line of integers, found {lines[:3]}") from None
    count = int(np.prod(dims))
    data = np.fromfile(stem.with_suffix(".cfl"), dtype="<c8")
    if data.size != count:
        raise ValueError(f"{stem.with_suffix('.cfl')}: expected {count} complex64 values for dims {dims}, found {data.size}")
    keep = max([k + 1 for k, d in enumerate(dims) if d != 1] or [1]) if ndim is None else ndim
    if any(d != 1 for d in dims[keep:]):
        raise ValueError(f"{header}: expected dimensions {keep}.. to be 1 (ndim={keep}), found {dims}")
    return data.reshape(dims[:keep], order="F").astype(np.complex64, copy=False)


def to_bart(kspace: np.ndarray) -> np.ndarray:
    """Our ``(C, H, W)`` (coils, read-out, phase encode) -> BART's ``(H, W, 1, C)``."""
    if kspace.ndim != 3:
        raise ValueError(f"to_bart: expected (C, H, W), found shape {kspace.shape}")
    return np.transpose(kspace, (1, 2, 0))[:, :, None, :]


def from_bart(array: np.ndarray) -> np.ndarray:
    """BART's ``(H, W, 1, C)`` (or ``(H, W)``) -> our ``(C, H, W)`` (or ``(H, W)``)."""
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        array = array[:, :, None]
    if array.ndim != 4 or array.shape[2] != 1:
        raise ValueError(f"from_bart: expected (H, W, 1, C), found shape {array.shape}")
    return np.ascontiguousarray(np.transpose(array[:, :, 0, :], (2, 0, 1)))


# --------------------------------------------------------------------------- running bart


def bart_binary() -> str:
    """The ``bart`` command (override with the environment variable ``BART``)."""
    return os.environ.get("BART", "bart")


def bart_available() -> bool:
    """True when the ``bart`` command exists and answers ``bart version``."""
    if shutil.which(bart_binary()) is None:
        return False
    try:
        return subprocess.run([bart_binary(), "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bart_version() -> Optional[str]:
    """``bart version`` (e.g. ``v0.8.00``) or None when BART is absent."""
    try:
        done = subprocess.run([bart_binary(), "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_bart(args: Sequence[Any], workdir: PathLike, timeout: Optional[float] = None) -> str:
    """Run ``bart <args>`` in ``workdir``; returns its standard output.

    Raises:
        BartError: BART is not installed, the command timed out or exited non-zero; the
            message gives the command line, the exit status and BART's standard error.
    """
    command = [bart_binary()] + [str(a) for a in args]
    text = " ".join(command)
    try:
        done = subprocess.run(command, cwd=str(workdir), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise BartError(f"`{text}`: the command '{command[0]}' was not found; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise BartError(f"`{text}` (in {workdir}): no answer after {timeout} s") from None
    if done.returncode != 0:
        raise BartError(
            f"`{text}` (in {workdir}) failed with exit status {done.returncode}; stderr: {done.stderr.strip() or '(empty)'}"
        )
    return done.stdout


def _workdir() -> tempfile.TemporaryDirectory:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.TemporaryDirectory(prefix="ccdf_bart_", dir=base)


# --------------------------------------------------------------------------- ecalib and pics


def fair_calibration(num_lines: int, height: int, two_d: bool = False, max_kernel: int = 6) -> tuple[tuple[int, int], int]:
    """Calibration region and kernel width for ``bart ecalib`` from the fully sampled centre.

    ESPIRiT's calibration matrix has one row per kernel position in the region,
    ``(rows - k + 1) (lines - k + 1)``, and ``k^2 C`` columns. ``ecalib``'s default region
    (24 x 24, cut to the fully sampled block: 24 x 10 for a 10-line centre) with its 6x6
    kernel gives 19 x 5 = 95 positions for 288 unknowns (8 coils): the null space is
    underdetermined and the maps fail on some scans (up to 6.2 dB lost on val slices at 8x,
    ``benchmarks/results/bart_ecalib_rule.md``); a 4x4 kernel is stable but blurs the maps
    (1.5 dB lower median). The rule, for 1-D masks (whose read-out is fully sampled): the
    region spans every read-out row and the ``lines`` centre columns, with BART's 6x6 kernel
    while at least 5 kernel positions fit across the lines: ``k = clamp(lines - 4, 3, 6)``.
    For 2-D masks only the centred square of side ``lines`` is fully sampled:
    ``k = clamp(lines // 2 - 1, 3, 6)`` on that square (untested beyond the unit tests).

    Args:
        num_lines: fully sampled centre columns, or the side of the fully sampled centre square
            (:func:`ccdf_mri.physics.masks.calibration_width`).
        height: read-out rows H.
        two_d: the mask is 2-D (only a centre square fully sampled).
        max_kernel: largest kernel (BART's default 6).

    Returns:
        ``((rows, lines), kernel)`` for ``ecalib -r rows:lines -k kernel:kernel``.
    """
    from ccdf_mri.transforms.array import espirit_calibration  # one rule for BART and ccdf-mri's ESPIRiT

    try:
        region, kernel = espirit_calibration(int(num_lines), int(height), two_d, max_kernel)
    except ValueError as error:
        raise ValueError(f"ecalib: {error}") from None
    return (int(region[0]), int(region[1])), int(kernel)


def bart_ecalib(
    kspace: np.ndarray,
    calib_width: Union[int, Sequence[int], None],
    kernel_width: Optional[int],
    extra_args: Sequence[str] = (),
    timeout: Optional[float] = 600,
) -> np.ndarray:
    """ESPIRiT coil maps with ``bart ecalib -m1`` (one set).

    Args:
        kspace: complex ``(C, H, W)``, undersampled or not (unsampled entries 0).
        calib_width: size of the calibration region (``-r``): one int (a square) or
            ``(rows, cols)``; BART uses the fully sampled centre block inside it. None: BART's
            default (24).
        kernel_width: ``-k`` kernel side; None: BART's default (6).
        extra_args: more ``ecalib`` options, e.g. ``("-c", "0")`` for no crop.

    Returns:
        complex64 maps ``(C, H, W)``; BART sets maps to 0 where the eigenvalue is below the crop
        threshold (default 0.8) and normalises ``sum_c |S_c|^2 = 1`` elsewhere.
    """
    options = []
    if calib_width is not None:
        calib = (int(calib_width),) * 2 if np.isscalar(calib_width) else tuple(int(c) for c in calib_width)
        options += ["-r", f"{calib[0]}:{calib[1]}"]
    if kernel_width is not None:
        options += ["-k", f"{kernel_width}:{kernel_width}"]
    with _workdir() as tmp:
        write_cfl(Path(tmp) / "ksp", to_bart(np.asarray(kspace)))
        run_bart(["ecalib", "-m1", *options, *extra_args, "ksp", "maps"], tmp, timeout)
        return from_bart(read_cfl(Path(tmp) / "maps", ndim=4))


def _mask_2d(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.float32)
    mask = mask.reshape(mask.shape[-2:]) if mask.ndim >= 2 else mask.reshape(1, -1)
    return np.broadcast_to(mask, shape).astype(np.float32)


def bart_pics(
    kspace: np.ndarray,
    maps: np.ndarray,
    mask: np.ndarray,
    reg: str = "l1",
    lam: float = 0.01,
    iters: Optional[int] = None,
    extra_args: Sequence[str] = (),
    with_seconds: bool = False,
    timeout: Optional[float] = 600,
) -> Union[np.ndarray, tuple[np.ndarray, float]]:
    """``bart pics -S`` reconstruction of one slice.

    ``reg="l1"``: ``-l1 -r lam``, L1 on a (randomly shifted) Daubechies wavelet transform
    (FISTA); ``reg="l2"``: ``-l2 -r lam``, Tikhonov-regularised SENSE (conjugate gradients).
    ``lam`` is relative to BART's data normalisation (module docstring); ``-S`` returns the
    image in the k-space's units. The mask is passed as the sampling pattern (``-p``).

    Args:
        kspace: complex ``(C, H, W)``; it is multiplied by the mask.
        maps: complex ``(C, H, W)``.
        mask: 0/1 ``(W,)``, ``(H, W)`` or anything broadcastable to ``(H, W)`` (e.g. ``(1, 1, 1, W)``).
        reg: ``"l1"`` or ``"l2"``.
        lam: regularisation weight ``-r``.
        iters: ``-i`` (default 100 for l1, 50 for l2).
        extra_args: more ``pics`` options.
        with_seconds: also return the wall time of the ``bart pics`` process (seconds).

    Returns:
        complex64 image ``(H, W)``, or ``(image, seconds)``.
    """
    if reg not in REGULARIZERS:
        raise ValueError(f"reg: expected one of {REGULARIZERS}, found {reg!r}")
    kspace = np.asarray(kspace)
    c, h, w = kspace.shape
    if np.asarray(maps).shape != (c, h, w):
        raise ValueError(f"bart_pics: maps expected shape {(c, h, w)} like the k-space, found {np.asarray(maps).shape}")
    pattern = _mask_2d(mask, (h, w))
    iters = DEFAULT_ITERS[reg] if iters is None else int(iters)
    with _workdir() as tmp:
        write_cfl(Path(tmp) / "ksp", to_bart(kspace * pattern[None]))
        write_cfl(Path(tmp) / "sens", to_bart(np.asarray(maps)))
        write_cfl(Path(tmp) / "pat", pattern[:, :, None, None])
        start = time.perf_counter()
        run_bart(["pics", "-S", f"-{reg}", "-r", f"{lam:g}", "-i", iters, "-p", "pat", *extra_args,
                  "ksp", "sens", "img"], tmp, timeout)
        seconds = time.perf_counter() - start
        image = read_cfl(Path(tmp) / "img", ndim=2)
    return (image, seconds) if with_seconds else image


def mask_calibration(mask: np.ndarray, height: int) -> tuple[tuple[int, int], int]:
    """:func:`fair_calibration` for a sampling mask: 1-D ``(..., W)`` or 2-D ``(..., H, W)``.

    A mask whose rows are all equal (a 1-D mask broadcast to ``(H, W)``) counts as 1-D. For a
    2-D mask (e.g. Poisson disc) the fully sampled block is a centred square.
    """
    from ccdf_mri.physics.masks import calibration_width

    mask = np.array(mask, dtype=np.float32)  # a copy: broadcast views are read-only
    grid = mask.reshape(mask.shape[-2:]) if mask.ndim >= 2 else mask.reshape(1, -1)
    two_d = bool(grid.shape[0] > 1 and not (grid == grid[:1]).all())
    lines = calibration_width(grid if two_d else grid[:1])
    return fair_calibration(lines, height, two_d)


# --------------------------------------------------------------------------- cases and tuning


@dataclasses.dataclass
class BartCase:
    """One slice for BART: k-space, mask, noise-free magnitude target, optional maps.

    Attributes:
        kspace: complex ``(C, H, W)`` (fully sampled or already masked).
        mask: 0/1, broadcastable to ``(H, W)``.
        target: float ``(H, W)`` magnitude ground truth (e.g. ``|target_complex|``).
        name: label for logs (file and slice).
        maps: ``(C, H, W)`` coil maps; None -> :func:`bart_ecalib` with :func:`mask_calibration`
            (computed once, then cached here).
        ecalib: ``(region, kernel)`` for ``ecalib`` instead of the fair rule (None entries: BART's defaults).
    """

    kspace: np.ndarray
    mask: np.ndarray
    target: np.ndarray
    name: str = ""
    maps: Optional[np.ndarray] = None
    ecalib: Optional[tuple] = None
    ecalib_seconds: float = float("nan")

    def coil_maps(self) -> np.ndarray:
        """The case's maps, estimated by ``bart ecalib`` from the masked k-space on first use."""
        if self.maps is None:
            height = self.kspace.shape[-2]
            region, kernel = self.ecalib if self.ecalib is not None else mask_calibration(self.mask, height)
            start = time.perf_counter()
            self.maps = bart_ecalib(self.kspace * _mask_2d(self.mask, self.kspace.shape[-2:])[None], region, kernel)
            self.ecalib_seconds = time.perf_counter() - start
        return self.maps


def reconstruct(case: BartCase, reg: str, lam: float, iters: Optional[int] = None) -> tuple[np.ndarray, float]:
    """``bart pics`` of one case with its (ecalib) maps: ``(complex image (H, W), pics seconds)``."""
    return bart_pics(case.kspace, case.coil_maps(), case.mask, reg, lam, iters, with_seconds=True)


def slice_psnr(target: np.ndarray, image: np.ndarray) -> float:
    """fastMRI PSNR (:func:`ccdf_mri.metrics.psnr`) of one slice's magnitude against ``target``."""
    from ccdf_mri.metrics import psnr

    return psnr(np.asarray(target, dtype=np.float32)[None], np.abs(image).astype(np.float32)[None])


def tune_lambda(
    cases: Sequence[BartCase],
    reg: str,
    grid: Sequence[float] = LAMBDA_GRID,
    iters: Optional[int] = None,
    record: Optional[dict[str, Any]] = None,
    log: Callable[[str], None] = print,
) -> float:
    """The lambda of ``grid`` with the highest median PSNR over ``cases`` (validation slices).

    Args:
        cases: validation slices with noise-free targets.
        reg: ``"l1"`` or ``"l2"``.
        grid: candidate lambdas.
        iters: ``pics -i`` (default per regulariser).
        record: filled with ``{"median_psnr": {lam: dB}, "seconds": [pics seconds ...]}``.

    Returns:
        the best lambda (a warning is logged when it lies on the edge of the grid).
    """
    if not cases:
        raise ValueError("tune_lambda: expected at least one validation case, found none")
    scores: dict[str, float] = {}
    seconds: list[float] = []
    for lam in grid:
        values = []
        for case in cases:
            image, sec = reconstruct(case, reg, lam, iters)
            values.append(slice_psnr(case.target, image))
            seconds.append(sec)
        scores[f"{lam:g}"] = float(np.median(values))
        log(f"  bart pics -{reg} -r {lam:g}: median PSNR {scores[f'{lam:g}']:.2f} dB on {len(cases)} slice(s)")
    best = max(grid, key=lambda lam: scores[f"{lam:g}"])
    if len(grid) > 1 and best in (min(grid), max(grid)):
        log(f"  warning: the best lambda {best:g} is on the edge of the grid {list(grid)}")
    if record is not None:
        record.update({"median_psnr": scores, "seconds": seconds})
    return float(best)
