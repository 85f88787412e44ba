"""The SENSE encoding operator ``E = M F S`` for Cartesian multi-coil (and single-coil) MRI.

Shapes: image ``x`` is ``(B, H, W)`` complex, k-space ``y`` and coil maps ``S`` are
``(B, C, H, W)`` complex, the 0/1 sampling mask ``M`` broadcasts to k-space (1-D masks
``(B or 1, 1, 1, W)``: phase encode is the last axis). ``F`` is the centred orthonormal 2-D
FFT of :mod:`ccdf_mri.physics.fft`. Single coil is ``C = 1`` with maps of ones or, as the
preprocessing estimates them, phase-only maps (``|S| = 1``).
"""

from __future__ import annotations

import cmath
import math
from typing import Optional, Sequence

import torch

from ccdf_mri.physics.cg import batch_dot_real
from ccdf_mri.physics.checks import check_complex, check_finite


UNIT_MODULUS_TOL = 1e-5  # | |S|^2 - 1 | of a single-coil map counted as unit modulus (float32 rounding)


class SenseOp:
    """``E x = M F (S x)``, its adjoint ``E^H y = sum_c conj(S_c) F^H (M y_c)`` and ``E^H E``.

    Args:
        maps: coil sensitivities ``(B, C, H, W)``, complex64 or complex128, finite.
        mask: real 0/1 sampling mask broadcastable to ``(B, C, H, W)`` (bool or float), or
            ``None`` for fully sampled k-space.

    Raises:
        ValueError: maps not complex / not 4-D / not finite; mask complex, not 0/1, not
            finite, or not broadcastable to the k-space shape.
    """

    def __init__(self, maps: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        check_complex(maps, "maps", "B,C,H,W")
        check_finite(maps, "maps")
        self.maps = maps
        self.mask = None if mask is None else _prepare_mask(mask, maps)
        # one coil with |S| = 1 (maps of ones, or phase-only maps): E^H E = M in the image's
        # basis S x, which data consistency uses for an exact k-space replacement
        self.is_single_coil = maps.shape[1] == 1 and bool(
            ((maps.real.square() + maps.imag.square()) - 1).abs().max() <= UNIT_MODULUS_TOL
        )
        # The centred FFT is plain FFT between two diagonal phases (see _centering_phase), so the
        # fftshift/ifftshift copies fold into stored copies of the maps and the mask:
        #   M F S x = kfac * FFT(S d * x),  E^H y = sum_c conj(S d) * IFFT(conj(kfac) * y),
        #   E^H E x = sum_c conj(S d) * IFFT(M * FFT(S d * x))  (the phases cancel).
        # With a 1-D column mask the H transforms cancel as well: FFTs along W only.
        height, width = maps.shape[-2:]
        phase_h, alpha_h = _centering_phase(height, maps.dtype, maps.device)
        phase_w, alpha_w = _centering_phase(width, maps.dtype, maps.device)
        phase = phase_h[:, None] * phase_w
        self._maps_phased = maps * phase
        self._maps_phased_conj = self._maps_phased.conj().resolve_conj()
        kfac = phase * (alpha_h * alpha_w)
        self._kfac = kfac if self.mask is None else kfac * self.mask
        self._kfac_conj = self._kfac.conj().resolve_conj()
        column_mask = self.mask is not None and self.mask.shape[-2] == 1
        if self.mask is None:
            self._sos = (maps.real.square() + maps.imag.square()).sum(dim=1)
        elif column_mask:
            self._normal_dims: tuple[int, ...] = (-1,)
            self._normal_maps = maps * phase_w
            self._normal_maps_conj = self._normal_maps.conj().resolve_conj()
        else:
            self._normal_dims = (-2, -1)
            self._normal_maps = self._maps_phased
            self._normal_maps_conj = self._maps_phased_conj
        self._eig_cache: dict[int, torch.Tensor] = {}

    @classmethod
    def single_coil(
        cls,
        mask: Optional[torch.Tensor],
        image_shape: Sequence[int],
        dtype: torch.dtype = torch.complex64,
    ) -> "SenseOp":
        """Single-coil operator ``E = M F``: maps of ones ``(B, 1, H, W)``.

        Args:
            mask: 0/1 mask broadcastable to ``(B, 1, H, W)`` or ``None``.
            image_shape: ``(B, H, W)``.
            dtype: complex dtype of the maps (and so of the data the operator accepts).
        """
        if len(image_shape) != 3:
            raise ValueError(f"image_shape: expected (B, H, W), found {tuple(image_shape)}")
        device = None if mask is None else mask.device
        batch, height, width = (int(s) for s in image_shape)
        maps = torch.ones(batch, 1, height, width, dtype=dtype, device=device)
        return cls(maps, mask)

    def select(self, items: Sequence[int], repeats: int = 1) -> "SenseOp":
        """The operator of the batch rows ``items`` (each repeated ``repeats`` times, item-major);
        a mask shared by the batch stays shared."""
        mask = self.mask
        if mask is not None and mask.shape[0] > 1:
            mask = select_rows(mask, items, repeats)
        return SenseOp(select_rows(self.maps, items, repeats), mask)

    @property
    def num_coils(self) -> int:
        """Number of coils ``C``."""
        return int(self.maps.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Image shape ``(B, H, W)`` that :meth:`forward` takes."""
        batch, _, height, width = self.maps.shape
        return (int(batch), int(height), int(width))

    @property
    def kspace_shape(self) -> tuple[int, int, int, int]:
        """K-space shape ``(B, C, H, W)`` that :meth:`forward` returns."""
        return tuple(int(s) for s in self.maps.shape)  # type: ignore[return-value]

    def check_image(self, x: torch.Tensor, name: str = "image") -> None:
        """Raise ValueError unless ``x`` is a complex ``(B, H, W)`` tensor matching the maps."""
        check_complex(x, name, "B,H,W")
        if tuple(x.shape) != self.image_shape:
            raise ValueError(f"{name}: expected shape {self.image_shape} (B, H, W), found {tuple(x.shape)}")
        if x.dtype != self.maps.dtype:
            raise ValueError(f"{name}: expected dtype {self.maps.dtype} (the maps' dtype), found {x.dtype}")

    def check_kspace(self, y: torch.Tensor, name: str = "kspace") -> None:
        """Raise ValueError unless ``y`` is a finite complex ``(B, C, H, W)`` tensor matching the maps."""
        check_complex(y, name, "B,C,H,W")
        if tuple(y.shape) != self.kspace_shape:
            raise ValueError(f"{name}: expected shape {self.kspace_shape} (B, C, H, W), found {tuple(y.shape)}")
        if y.dtype != self.maps.dtype:
            raise ValueError(f"{name}: expected dtype {self.maps.dtype} (the maps' dtype), found {y.dtype}")
        check_finite(y, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` image -> ``(B, C, H, W)`` k-space ``M F S x``."""
        self.check_image(x)
        coil = self._maps_phased * x.unsqueeze(1)
        return torch.fft.fft2(coil, norm="ortho").mul_(self._kfac)

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` k-space -> ``(B, H, W)`` image ``sum_c conj(S_c) F^H (M y_c)``."""
        self.check_kspace(y)
        coil = torch.fft.ifft2(y * self._kfac_conj, norm="ortho")
        return coil.mul_(self._maps_phased_conj).sum(dim=1)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``E^H E x`` for ``x`` ``(B, H, W)`` (no input checks: the hot path of CG and DC)."""
        if self.mask is None:
            return self._sos * x
        dims = self._normal_dims
        kspace = torch.fft.fftn(self._normal_maps * x.unsqueeze(1), dim=dims, norm="ortho")
        coil = torch.fft.ifftn(kspace.mul_(self.mask), dim=dims, norm="ortho")
        return coil.mul_(self._normal_maps_conj).sum(dim=1)

    def max_eigenvalue(self, num_iters: int = 30, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Largest eigenvalue of ``E^H E`` (``||E||^2``) per batch item, by power iteration.

        The start vector is Gaussian, one ``(H, W)`` draw for every item, drawn on ``generator``'s device (``None``: a CPU generator
        seeded 0, so the result does not depend on the device; it is cached, since maps and mask
        do not change). Power iteration approaches the eigenvalue from below.

        Returns:
            real tensor ``(B,)`` on the maps' device.
        """
        if num_iters < 1:
            raise ValueError(f"num_iters: expected >= 1, found {num_iters}")
        if generator is None and num_iters in self._eig_cache:
            return self._eig_cache[num_iters]
        gen = torch.Generator().manual_seed(0) if generator is None else generator
        # one start vector shared by the items, so that an item's estimate does not depend on
        # the batch it came in (up to the rounding of batched transforms)
        vec = torch.randn((1, *self.image_shape[1:]), dtype=self.maps.dtype, device=gen.device, generator=gen)
        vec = vec.to(self.maps.device).expand(self.image_shape).clone()
        eig = torch.zeros(self.image_shape[0], dtype=self.maps.real.dtype, device=self.maps.device)
        for _ in range(num_iters):
            norm = _batch_norm(vec).clamp_min(torch.finfo(eig.dtype).tiny)
            vec = vec / norm[:, None, None]
            image = self.normal(vec)
            eig = batch_dot_real(vec, image)
            vec = image
        if generator is None:
            self._eig_cache[num_iters] = eig
        return eig


def select_rows(tensor: torch.Tensor, items: Sequence[int], repeats: int = 1) -> torch.Tensor:
    """Rows ``items`` of a ``(B, ...)`` tensor, each repeated ``repeats`` times (item-major)."""
    index = torch.tensor(list(items), device=tensor.device)
    picked = tensor.index_select(0, index)
    return picked if repeats == 1 else picked.repeat_interleave(repeats, dim=0)


def _centering_phase(length: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, complex]:
    """Phase ``d`` and constant ``alpha`` with ``fftc(x) = alpha * d * FFT(d * x)`` along one axis.

    The centred transform (``fftshift(fft(ifftshift(x)))``, centre index ``p = N // 2`` in both
    domains) is ``sum_n x[n] exp(-2 pi i (k - p)(n - p) / N)``, so ``d[m] = exp(2 pi i p m / N)``
    and ``alpha = exp(-2 pi i p^2 / N)``; for even ``N``, ``d[m] = (-1)^m`` and
    ``alpha = (-1)^(N/2)`` exactly. The inverse is ``conj(d) * IFFT(conj(alpha d) * y)``.
    """
    index = torch.arange(length, device=device)
    centre = length // 2
    if length % 2 == 0:
        phase = (1 - 2 * (index % 2)).to(dtype)
        return phase, float((-1) ** centre)
    turns = ((centre * index) % length).double() / length
    phase = torch.polar(torch.ones_like(turns), 2 * math.pi * turns).to(dtype)
    return phase, cmath.exp(-2j * math.pi * ((centre * centre) % length) / length)


def _batch_norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each batch item: ``(B, ...)`` -> ``(B,)`` real."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1)


def _prepare_mask(mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Validate a 0/1 mask against the maps and return it 4-D, real, on the maps' device."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask: expected a real torch.Tensor, found {type(mask).__name__}")
    if torch.is_complex(mask):
        raise ValueError(f"mask: expected a real 0/1 tensor, found dtype {mask.dtype}")
    kspace_shape = tuple(maps.shape)
    try:
        broadcast = torch.broadcast_shapes(mask.shape, kspace_shape)
    except RuntimeError:
        broadcast = None
    if mask.ndim > 4 or broadcast != kspace_shape:
        raise ValueError(
            f"mask: expected a shape broadcastable to k-space {kspace_shape} (B, C, H, W), "
            f"found {tuple(mask.shape)}"
        )
    mask = mask.to(device=maps.device, dtype=maps.real.dtype)
    check_finite(mask, "mask")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask: expected only 0 and 1 values, found others")
    return mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
