"""A Gaussian image model ``x ~ N(0, Sigma)`` with its exact epsilon predictor, for tests.

Images are complex ``(H, W)``; as real vectors (the network's ``(2, H, W)`` channels,
flattened) they have ``d = 2 H W`` dimensions and covariance
``Sigma = V diag(s) V^T``: a few smooth, large principal components plus a small diagonal.
For a VE-coordinate sample ``x = x0 + sigma z`` the posterior mean of the noise is
``E[z | x] = sigma (Sigma + sigma^2 I)^-1 x``, the VP form
``sqrt(1 - abar) (abar Sigma + (1 - abar) I)^-1 x_t`` rescaled; :class:`ExactEpsilon` evaluates
it for any schedule, through the same ``network(x, t)`` interface a trained network has.
"""

from __future__ import annotations

import torch

from ccdf_mri.diffusion.schedules import VESchedule, VPSchedule
from ccdf_mri.networks.complex import channels_to_complex, complex_to_channels


class GaussianImageModel:
    """Low-rank-plus-diagonal Gaussian over complex ``H x W`` images.

    Args:
        size: ``(H, W)``.
        rank: number of large components (smooth random images).
        top: largest eigenvalue; component ``k`` has ``top * decay**k``.
        decay: geometric decay of the large eigenvalues.
        floor: eigenvalue of every other direction.
        seed: seed of the basis.
    """

    def __init__(
        self,
        size: tuple[int, int] = (16, 16),
        rank: int = 8,
        top: float = 40.0,
        decay: float = 0.7,
        floor: float = 1e-3,
        seed: int = 0,
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        height, width = size
        d = 2 * height * width
        # smooth components: random k-space concentrated at the centre, to image space
        ky = torch.fft.fftfreq(height).reshape(-1, 1)
        kx = torch.fft.fftfreq(width).reshape(1, -1)
        envelope = torch.exp(-(kx**2 + ky**2) / (2 * 0.12**2))
        coeffs = torch.randn(rank, height, width, 2, generator=gen, dtype=torch.float64)
        smooth = torch.fft.ifft2(torch.view_as_complex(coeffs) * envelope)
        rest = torch.randn(d - rank, d, generator=gen, dtype=torch.float64)
        basis = torch.cat([complex_to_channels(smooth).reshape(rank, d), rest])
        q, _ = torch.linalg.qr(basis.T)  # first columns span the smooth components, in order
        self.size, self.dim, self.rank, self.floor = (height, width), d, rank, floor
        self.basis = q  # (d, d) float64, orthonormal
        self.eigenvalues = torch.full((d,), floor, dtype=torch.float64)
        self.eigenvalues[:rank] = top * decay ** torch.arange(rank, dtype=torch.float64)

    @property
    def covariance(self) -> torch.Tensor:
        """``(d, d)`` float64 ``Sigma``."""
        return (self.basis * self.eigenvalues) @ self.basis.T

    def to_vector(self, images: torch.Tensor) -> torch.Tensor:
        """complex ``(B, H, W)`` -> float64 ``(B, d)``."""
        return complex_to_channels(images.to(torch.complex128)).reshape(images.shape[0], -1)

    def to_image(self, vectors: torch.Tensor) -> torch.Tensor:
        """float ``(B, d)`` -> complex64 ``(B, H, W)``."""
        return channels_to_complex(vectors.reshape(-1, 2, *self.size))

    def sample(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """``num`` complex64 images ``(num, H, W)`` drawn from the model."""
        z = torch.randn(num, self.dim, generator=generator, dtype=torch.float64)
        return self.to_image((z * self.eigenvalues.sqrt()) @ self.basis.T)

    def denoise_vectors(self, x_ve: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``E[z | x]`` for VE samples ``x_ve`` ``(B, d)`` float64 with noise levels ``sigma`` ``(B,)``.

        ``sigma (Sigma + sigma^2 I)^-1 x``, using that all but ``rank`` eigenvalues equal ``floor``.
        """
        top = self.basis[:, : self.rank]
        var = sigma[:, None] ** 2
        base = sigma[:, None] / (self.floor + var)
        extra = sigma[:, None] / (self.eigenvalues[None, : self.rank] + var) - base
        return base * x_ve + ((x_ve @ top) * extra) @ top.T


class ExactEpsilon(torch.nn.Module):
    """``network(x (B,2,H,W), t (B,) long) -> E[eps | x_t]`` for a :class:`GaussianImageModel`.

    ``x`` is in the schedule's own coordinates (VP: ``sqrt(abar) x0 + sqrt(1-abar) z``; VE:
    ``x0 + sigma z``), exactly what a network trained with that schedule receives.
    ``calls`` counts the evaluations and ``inputs`` keeps them when ``record`` is on.
    """

    def __init__(self, model: GaussianImageModel, schedule: VPSchedule | VESchedule, record: bool = False) -> None:
        super().__init__()
        self.model, self.schedule, self.record = model, schedule, record
        self.calls = 0
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.record:
            self.inputs.append((x.clone(), timesteps.clone()))
        t = timesteps.cpu().long()
        sigma = self.schedule.sigmas[t]
        vectors = x.reshape(x.shape[0], -1).double().cpu() / self.schedule.input_scales[t][:, None]
        eps = self.model.denoise_vectors(vectors, sigma)
        return eps.reshape(x.shape).to(device=x.device, dtype=x.dtype)


def smooth_coil_maps(num_coils: int, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` complex64 Gaussian-bump coil maps with phase ramps, ``sum_c |S_c|^2 = 1``."""
    height, width = size
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    angles = 2 * torch.pi * torch.arange(num_coils) / num_coils
    maps = torch.stack(
        [
            torch.exp(-((yy - torch.sin(a)) ** 2 + (xx - torch.cos(a)) ** 2) / 2.0)
            * torch.exp(1j * torch.pi * 0.25 * k * (yy + xx))
            for k, a in enumerate(angles)
        ]
    )
    return (maps / maps.abs().pow(2).sum(0).sqrt()).to(torch.complex64)


def equispaced_mask(width: int, acceleration: int, center_lines: int) -> torch.Tensor:
    """``(1, 1, 1, W)`` float32 0/1 mask: every ``acceleration``-th column plus the centre."""
    mask = torch.zeros(1, 1, 1, width)
    mask[..., ::acceleration] = 1.0
    mask[..., width // 2 - center_lines // 2 : width // 2 + (center_lines + 1) // 2] = 1.0
    return mask
