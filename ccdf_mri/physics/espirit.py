"""ESPIRiT coil sensitivities (Uecker et al., MRM 71:990-1001, 2014) in pure torch, batched.

Steps, for every batch item at once:

1. The centred ``rows x cols`` calibration block (validated as fully sampled) is cut into all
   ``k x k x C`` patches: the calibration matrix ``A`` (one row per kernel position,
   ``C k^2`` columns, ordered coil, kernel row, kernel column).
2. Its right singular vectors with singular value ``>= thresh * max`` span the signal
   subspace; the rows ``w_j`` of ``V^H`` that are kept are the k-space kernels. They come
   from the eigen-decomposition of the smaller of the two Gram matrices ``A^H A`` /
   ``A A^H`` (``sigma^2`` = eigenvalue), which is the SVD without the long side's vectors.
   (BART's ``ecalib -t`` thresholds ``sigma^2``: ``-t thresh**2`` is this ``thresh``.)
3. The ESPIRiT operator ``W = k^-2 sum_r R_r^H P R_r`` (``R_r``: patch extraction,
   ``P = sum_j w_j w_j^H``) is a convolution in k-space, so in image space it is a ``C x C``
   matrix per pixel: ``G_ab(r) = k^-2 sum_e g_ab[e] exp(2 pi i e.(r - N//2) / N)`` with the
   kernel correlations ``g_ab[e] = sum_j sum_u w_j[a, u + e] conj(w_j[b, u])`` (``a, b``
   coils, ``u, e`` 2-D kernel offsets; support ``(2k-1)^2``; computed by a small FFT). This
   equals sigpy's sum over kernels of ``v v^H`` with ``v = IFFT(zero-padded kernel)`` scaled
   by ``N / k^2``, without forming one full-size image per kernel. ``G`` is evaluated by two small DFT matrix products, in row
   tiles so that the per-pixel matrices stay in cache on the CPU.
4. The leading eigenvector of ``G(r)`` (eigenvalue ``<= 1``; about 1 where the object is)
   by ``num_iters`` power iterations started from the direction of the ACS maps
   (:func:`ccdf_mri.physics.coil_maps.estimate_maps_acs`: the ``cos^2``-windowed low-resolution
   coil images), which is already close to it (cosine about 0.999 inside the object), so a
   few iterations reach what sigpy's 100 from a constant vector reach.
5. Phase referenced to coil ``phase_ref`` (default 0, as sigpy), or to the ACS maps
   (``phase_ref="acs"``: the maps then carry the low-resolution object phase, like ACS maps,
   so SENSE images are nearly real); maps are set to zero where the eigenvalue is
   ``<= crop`` (sigpy keeps ``> crop``). Maps have unit norm over coils where kept.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch

from ccdf_mri.physics.coil_maps import _as_batch, _calib_shape, _centred_window

CalibWidth = Union[int, Sequence[int]]
PhaseRef = Union[int, str, None]

#: bytes of per-pixel ``C x C`` matrices evaluated at once on the CPU (measured: 1-8 MiB are
#: alike on a 2-core EPYC, 32 MiB is slower; small tiles stay in cache through the iterations).
CPU_TILE_BYTES = 4 << 20
#: the same on other devices (GPU): large tiles, few kernel launches.
DEVICE_TILE_BYTES = 256 << 20


def espirit_maps(
    kspace: torch.Tensor,
    calib_width: CalibWidth = 24,
    kernel_width: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    num_iters: int = 4,
    phase_ref: PhaseRef = 0,
) -> torch.Tensor:
    """ESPIRiT maps (one set) from zero-filled k-space; see the module docstring.

    Args:
        kspace: ``(C, H, W)`` or ``(B, C, H, W)`` complex64/complex128 on any device,
            zero where not sampled.
        calib_width: side of the centred square calibration block, or ``(rows, cols)``
            (rows along H, the read-out; cols along W, the phase encode); it must be fully
            sampled. Its start is ``H // 2 - rows // 2`` (the same for columns), as sigpy.
        kernel_width: side ``k`` of the k-space kernel (``1 <= k <= min(rows, cols)``).
        thresh: keep singular vectors of the calibration matrix with singular value
            ``>= thresh * max``.
        crop: maps are zero where the leading eigenvalue is ``<= crop`` (``0``: keep all).
        num_iters: power iterations per pixel, started from the ACS maps' direction (0: that
            direction itself, with its Rayleigh quotient as the eigenvalue).
        phase_ref: coil index whose phase is removed (default 0, as sigpy), ``"acs"`` (the
            phase of the ACS maps) or ``None`` (the phase the iteration leaves, which is
            close to the ACS maps' as well).

    Returns:
        maps with ``kspace``'s shape, dtype and device.

    Raises:
        ValueError: bad input or options, or a calibration block that is not fully sampled.
    """
    return espirit_maps_and_eigenvalues(kspace, calib_width, kernel_width, thresh, crop, num_iters, phase_ref)[0]


def espirit_maps_and_eigenvalues(
    kspace: torch.Tensor,
    calib_width: CalibWidth = 24,
    kernel_width: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    num_iters: int = 4,
    phase_ref: PhaseRef = 0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`espirit_maps` and the per-pixel leading eigenvalue of the ESPIRiT operator.

    Returns:
        ``(maps, eigenvalues)``: maps as :func:`espirit_maps`; eigenvalues real
        ``(H, W)`` or ``(B, H, W)`` (before the crop; in ``[0, 1]`` up to rounding).
    """
    batch = _as_batch(kspace, calib_width)
    height, width = batch.shape[-2:]
    rows, cols = _calib_shape(calib_width, height, width)
    _check_options(kernel_width, rows, cols, thresh, crop, num_iters, phase_ref, batch.shape[1])
    row0, col0 = height // 2 - rows // 2, width // 2 - cols // 2
    calib = batch[..., row0 : row0 + rows, col0 : col0 + cols]
    kernels = calibration_kernels(calib, kernel_width, thresh)
    corr = kernel_correlations(kernels)
    low_res = _low_resolution_images(calib, (row0, col0), (height, width), min(rows, cols))
    maps, eig = _image_space_maps(corr, kernel_width, low_res, num_iters, phase_ref, crop)
    if kspace.ndim == 3:
        return maps[0], eig[0]
    return maps, eig


def calibration_kernels(calib: torch.Tensor, kernel_width: int, thresh: float) -> torch.Tensor:
    """Signal-subspace kernels of the calibration matrix.

    Args:
        calib: ``(B, C, rows, cols)`` fully sampled calibration block.
        kernel_width: ``k``.
        thresh: relative singular-value threshold.

    Returns:
        ``(B, n, C, k, k)``: the rows of ``V^H`` (``A = U S V^H``) of the ``n`` largest singular
        values, ``n`` the largest number kept by any item; in items that keep fewer, the rows
        whose singular value is below ``thresh * max`` are zero.
    """
    num_batch, coils = calib.shape[:2]
    k = kernel_width
    patches = calib.unfold(2, k, 1).unfold(3, k, 1)  # (B, C, pr, pc, k, k)
    mat = patches.permute(0, 2, 3, 1, 4, 5).reshape(num_batch, -1, coils * k * k)  # (B, P, C k^2)
    if mat.shape[1] >= mat.shape[2]:
        # A^H A = V S^2 V^H: eigenvectors are the columns of V, i.e. conj of the rows of V^H
        evals, evecs = torch.linalg.eigh(mat.mH @ mat)
        rows_vh = evecs.mH  # (B, C k^2, C k^2), ascending eigenvalues
    else:
        # A A^H = U S^2 U^H, and V^H = S^-1 U^H A
        evals, evecs = torch.linalg.eigh(mat @ mat.mH)
        sigma = evals.clamp_min(0).sqrt()
        inv = torch.where(sigma > 0, sigma.reciprocal(), torch.zeros_like(sigma))
        rows_vh = (evecs.mH @ mat) * inv.unsqueeze(-1).to(mat.dtype)
    sigma = evals.clamp_min(0).sqrt()  # ascending
    keep = sigma >= thresh * sigma.amax(dim=-1, keepdim=True)
    count = max(1, int(keep.sum(dim=-1).amax()))  # the most kept by any item; the rest are dropped
    rows_vh = (rows_vh * keep.unsqueeze(-1).to(rows_vh.dtype))[:, -count:]
    return rows_vh.reshape(num_batch, count, coils, k, k)


def kernel_correlations(kernels: torch.Tensor) -> torch.Tensor:
    """``g_ab[e] = sum_j sum_u w_j[a, u + e] conj(w_j[b, u])`` for offsets ``|e| < k`` (per axis).

    Args:
        kernels: ``(B, n, C, k, k)``.

    Returns:
        ``(B, C, C, m, m)`` with ``m = 2k - 1``; offset ``e`` (per axis, ``-(k-1)..k-1``) is at
        index ``e mod m``. Computed as a circular correlation on the ``m x m`` grid, which has
        no wrap-around at this size.
    """
    k = kernels.shape[-1]
    size = 2 * k - 1
    spectra = torch.fft.fft2(kernels, s=(size, size))  # (B, n, C, m, m)
    cross = torch.einsum("bjcuv,bjduv->bcduv", spectra, spectra.conj())
    return torch.fft.ifft2(cross)


def _dft_rows(length: int, offsets: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``exp(2 pi i e (r - length // 2) / length)`` as ``(length, len(offsets))``: the centred
    inverse DFT (without its scale) from k-space offsets ``e`` (relative to DC) to pixels ``r``."""
    position = torch.arange(length, device=device, dtype=torch.float64) - length // 2
    turns = torch.remainder(position[:, None] * offsets.to(device=device, dtype=torch.float64)[None, :], length) / length
    return torch.polar(torch.ones_like(turns), 2 * math.pi * turns).to(dtype)


def _correlation_offsets(k: int) -> torch.Tensor:
    """Offsets ``e`` of the ``2k - 1`` correlation samples: index ``i`` holds ``e = i`` or ``i - (2k - 1)``."""
    size = 2 * k - 1
    index = torch.arange(size)
    return torch.where(index < k, index, index - size)


def _low_resolution_images(
    calib: torch.Tensor, start: Tuple[int, int], shape: Tuple[int, int], acs_width: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Separable factors of the ACS coil images (the direction of :func:`estimate_maps_acs`'s maps).

    The ``cos^2``-windowed calibration block, zero-padded to ``shape`` and inverse-FFT'd (up to
    scale), is ``D_H block D_W^T``; the block is returned laid out ``(rows, B * C * cols)``.

    Returns:
        ``(D_H (H, rows), block (rows, B C cols), D_W^T (cols, W))``.
    """
    num_batch, coils, rows, cols = calib.shape
    height, width = shape
    row0, col0 = start
    real = calib.real.dtype
    window_h = _centred_window(height, acs_width, calib.device, real)[row0 : row0 + rows]
    window_w = _centred_window(width, acs_width, calib.device, real)[col0 : col0 + cols]
    block = (calib * (window_h[:, None] * window_w)).permute(2, 0, 1, 3).reshape(rows, -1)
    dft_h = _dft_rows(height, torch.arange(rows) + row0 - height // 2, calib.dtype, calib.device)
    dft_w = _dft_rows(width, torch.arange(cols) + col0 - width // 2, calib.dtype, calib.device)
    return dft_h, block, dft_w.T.contiguous()


def _separable_tile(factors: Tuple[torch.Tensor, torch.Tensor, torch.Tensor], row0: int, row1: int) -> torch.Tensor:
    """Rows ``row0:row1`` of ``D_H X D_W^T`` for ``X`` laid out ``(p, N q)``: ``(R, N, W)``.

    The small product along the rows comes first, so each tile reads only ``X`` (small) and
    the column transform is one well-shaped matrix product ``(R N, q) @ (q, W)``.
    """
    dft_h, data, dft_wt = factors
    count, inner = row1 - row0, dft_wt.shape[0]
    rows = dft_h[row0:row1] @ data  # (R, N q)
    return (rows.view(-1, inner) @ dft_wt).view(count, -1, dft_wt.shape[1])


def _image_space_maps(
    corr: torch.Tensor,
    kernel_width: int,
    low_res: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    num_iters: int,
    phase_ref: PhaseRef,
    crop: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Leading eigenvector of ``G(r)`` at every pixel, phase referenced and cropped.

    Works in row tiles: per tile, ``G`` (``(R, B, C, C, W)``) and the ACS start vectors come
    from small separable matrix products, then the power iterations, the phase and the crop
    run while the tile is in cache (CPU); on other devices the tiles are large.

    Args:
        corr: ``(B, C, C, m, m)`` kernel correlations.
        kernel_width: ``k``.
        low_res: :func:`_low_resolution_images` factors (start vectors, ``acs`` reference).
        num_iters: power iterations.
        phase_ref: coil index, ``"acs"`` or None.
        crop: eigenvalue threshold.

    Returns:
        maps ``(B, C, H, W)`` (unit norm where kept) and eigenvalues ``(B, H, W)`` (real).
    """
    num_batch, coils = corr.shape[:2]
    size = corr.shape[-1]
    height, width = low_res[0].shape[0], low_res[2].shape[1]
    dtype, device = corr.dtype, corr.device
    offsets = _correlation_offsets(kernel_width)
    gram_factors = (
        _dft_rows(height, offsets, dtype, device) / kernel_width**2,  # (H, m)
        corr.permute(3, 0, 1, 2, 4).reshape(size, -1),  # (m, B C C m)
        _dft_rows(width, offsets, dtype, device).T.contiguous(),  # (m, W)
    )
    budget = CPU_TILE_BYTES if device.type == "cpu" else DEVICE_TILE_BYTES
    tile = max(1, budget // (num_batch * coils * coils * width * corr.element_size()))
    tiny = torch.finfo(corr.real.dtype).tiny
    maps = torch.empty(num_batch, coils, height, width, dtype=dtype, device=device)
    eig = torch.empty(num_batch, height, width, dtype=corr.real.dtype, device=device)
    for row0 in range(0, height, tile):
        row1 = min(height, row0 + tile)
        count = row1 - row0
        gram = _separable_tile(gram_factors, row0, row1).view(count, num_batch, coils, coils, width)
        start = _separable_tile(low_res, row0, row1).view(count, num_batch, coils, width)
        vec, norm = start, _norm(start)
        if not bool((norm > 0).all()):  # no ACS signal: start from the column of the largest diagonal
            vec = torch.where(norm > 0, vec, _largest_column(gram))
            norm = _norm(vec)
        for _ in range(num_iters):
            vec = (gram * (vec * norm.clamp_min(tiny).reciprocal()).unsqueeze(2)).sum(dim=3)
            norm = _norm(vec)
        unit = vec * norm.clamp_min(tiny).reciprocal()
        if num_iters == 0:  # the start vector's Rayleigh quotient
            value = torch.linalg.vecdot(unit, (gram * unit.unsqueeze(2)).sum(dim=3), dim=2).real
        else:  # ||G x|| for the last unit-norm x: approaches lambda_max from below
            value = norm[:, :, 0]
        if phase_ref is not None:
            relative = torch.linalg.vecdot(start, unit, dim=2) if phase_ref == "acs" else unit[:, :, int(phase_ref)]
            unit = unit * _unit_phase(relative).unsqueeze(2)
        unit = torch.where((value > crop).unsqueeze(2), unit, torch.zeros_like(unit))
        maps[:, :, row0:row1] = unit.permute(1, 2, 0, 3)
        eig[:, row0:row1] = value.transpose(0, 1)
    return maps, eig


def _norm(vec: torch.Tensor) -> torch.Tensor:
    """Norm over the coil axis (dim 2) of ``(R, B, C, W)``, kept as ``(R, B, 1, W)``."""
    return (vec.real.square() + vec.imag.square()).sum(dim=2, keepdim=True).sqrt()


def _largest_column(gram: torch.Tensor) -> torch.Tensor:
    """Column of ``G`` with the largest diagonal entry, per pixel: ``(R, B, C, C, W) -> (R, B, C, W)``."""
    diag = torch.diagonal(gram, dim1=2, dim2=3).real  # (R, B, W, C)
    index = diag.argmax(dim=-1)  # (R, B, W)
    coils = gram.shape[2]
    index = index[:, :, None, None, :].expand(-1, -1, coils, 1, -1)
    return torch.gather(gram, 3, index).squeeze(3)


def _unit_phase(value: torch.Tensor) -> torch.Tensor:
    """``conj(value) / |value|`` with 1 where ``value`` is 0 (so nothing changes there)."""
    magnitude = value.abs()
    safe = torch.where(magnitude > 0, value, torch.ones_like(value))
    return (safe.conj() / safe.abs()).to(value.dtype)


def _check_options(
    kernel_width: int,
    rows: int,
    cols: int,
    thresh: float,
    crop: float,
    num_iters: int,
    phase_ref: PhaseRef,
    coils: int,
) -> None:
    if not 1 <= kernel_width <= min(rows, cols):
        raise ValueError(f"kernel_width: expected 1..{min(rows, cols)} (the calibration block's side), found {kernel_width}")
    if not 0 <= thresh < 1:
        raise ValueError(f"thresh: expected 0 <= thresh < 1 (relative singular value), found {thresh}")
    if not math.isfinite(crop):
        raise ValueError(f"crop: expected a finite eigenvalue threshold, found {crop}")
    if num_iters < 0:
        raise ValueError(f"num_iters: expected >= 0, found {num_iters}")
    if phase_ref is None or phase_ref == "acs":
        return
    if isinstance(phase_ref, str) or not 0 <= int(phase_ref) < coils:
        raise ValueError(f"phase_ref: expected a coil index 0..{coils - 1}, 'acs' or None, found {phase_ref!r}")
