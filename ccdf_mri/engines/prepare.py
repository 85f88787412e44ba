"""``prepare_batch`` objects for MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``.

Each turns a collated :class:`~ccdf_mri.data.datasets.FastMRISliceDataset` batch into the
network's ``(inputs, targets[, args, kwargs])`` on the engine's device, through
:func:`ccdf_mri.engines.batch.undersample_batch` (so the intensity rule is the inference
rule: networks see ``image / scale`` with ``scale = intensity_scale(zero-filled SENSE)``).

- :class:`UNetPrepareBatch`: initializer training, ``(zero-filled / scale, target / scale)``
  as ``(B, 2, H, W)`` real/imag channels.
- :class:`EpsilonPrepareBatch`: epsilon (score) training with the schedule object the
  CCDF inferer uses: ``x_t = schedule.add_noise(clean, noise, t)`` on random patches of
  ``target / scale``, target ``noise``; the network is called as ``network(x_t, t)``.
  With ``fixed_timestep`` it is deterministic (validation): noise seeded per slice by file
  name and slice index, patches replaced by the whole image, and the label is the clean
  image, for :class:`OneStepDenoiseInferer`.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from monai.engines.utils import PrepareBatch
from monai.inferers import Inferer

from ccdf_mri.engines.batch import undersample_batch
from ccdf_mri.networks.complex import complex_to_channels

Device = Union[str, torch.device, None]


def _generator(seed: int, device: Device) -> torch.Generator:
    generator = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    generator.manual_seed(int(seed))
    return generator


def random_patches(
    images: torch.Tensor, patch_size: Sequence[int], per_image: int, generator: torch.Generator
) -> torch.Tensor:
    """``per_image`` random ``(h, w)`` crops of each image.

    Args:
        images: ``(B, K, H, W)`` real.
        patch_size: ``(h, w)``, at most ``(H, W)``.
        per_image: crops per image.
        generator: draws the corners (on ``images``' device).

    Returns:
        ``(B * per_image, K, h, w)``; the crops of image ``b`` are rows ``b*per_image ...``.
    """
    height, width = images.shape[-2:]
    ph, pw = (int(p) for p in patch_size)
    if ph > height or pw > width:
        raise ValueError(f"patch_size: expected at most the image size {(height, width)}, found {(ph, pw)}")
    count = images.shape[0] * per_image
    rows = torch.randint(0, height - ph + 1, (count,), generator=generator, device=generator.device).tolist()
    cols = torch.randint(0, width - pw + 1, (count,), generator=generator, device=generator.device).tolist()
    source = images.repeat_interleave(per_image, dim=0)
    return torch.stack([img[:, r : r + ph, c : c + pw] for img, r, c in zip(source, rows, cols)])


class UNetPrepareBatch(PrepareBatch):
    """Initializer batches: input ``image / scale``, label ``target / scale`` (``(B, 2, H, W)``).

    Args:
        map_method: coil maps when the batch has none (``"acs"`` or ``"espirit"``).
        calib_width: largest calibration width.
        target_source: ``"sense"`` (default: the fully sampled SENSE image, same maps and
            phase reference as the input) or ``"file"`` (stored ``target_complex``).
    """

    def __init__(self, map_method: str = "acs", calib_width: int = 24, target_source: str = "sense") -> None:
        self.map_method = map_method
        self.calib_width = calib_width
        self.target_source = target_source

    def __call__(
        self, batchdata: Mapping[str, Any], device: Device = None, non_blocking: bool = False, **kwargs: Any
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        prepared = undersample_batch(
            batchdata, device, self.map_method, self.calib_width, self.target_source, non_blocking
        )
        inputs = complex_to_channels(prepared["image"])
        targets = complex_to_channels(prepared["target"])
        return inputs, targets


class EpsilonPrepareBatch(PrepareBatch):
    """Epsilon-training batches: ``(x_t, noise, (t,), {})`` from intensity-scaled targets.

    Args:
        schedule: the training schedule (e.g. :class:`ccdf_mri.diffusion.VPSchedule`);
            its ``add_noise`` and ``num_train_steps`` are used.
        patch_size: ``(h, w)`` random patches (None: whole images).
        patches_per_slice: patches cut from each slice (effective batch size multiplier).
        map_method, calib_width: as :class:`UNetPrepareBatch` (only the scale needs maps).
        target_source: ``"file"`` (default: the stored noise-free ``target_complex`` when
            present) or ``"sense"``.
        seed: seeds the generator of timesteps, noise and patch corners (training mode).
        fixed_timestep: validation mode: every item at this timestep, noise seeded by
            ``crc32("<filename>:<slice>")``, whole images, label = clean image.
    """

    def __init__(
        self,
        schedule: Any,
        patch_size: Optional[Sequence[int]] = (64, 64),
        patches_per_slice: int = 1,
        map_method: str = "acs",
        calib_width: int = 24,
        target_source: str = "file",
        seed: int = 0,
        fixed_timestep: Optional[int] = None,
    ) -> None:
        if patches_per_slice < 1:
            raise ValueError(f"patches_per_slice: expected >= 1, found {patches_per_slice}")
        if fixed_timestep is not None and not 0 <= fixed_timestep < schedule.num_train_steps:
            raise ValueError(
                f"fixed_timestep: expected in [0, {schedule.num_train_steps - 1}], found {fixed_timestep}"
            )
        self.schedule = schedule
        self.patch_size = None if patch_size is None else tuple(int(p) for p in patch_size)
        self.patches_per_slice = int(patches_per_slice)
        self.map_method = map_method
        self.calib_width = calib_width
        self.target_source = target_source
        self.seed = int(seed)
        self.fixed_timestep = fixed_timestep
        self._generators: Dict[str, torch.Generator] = {}

    def _training_generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = _generator(self.seed, device)
        return self._generators[key]

    def clean_images(self, batchdata: Mapping[str, Any], device: Device, non_blocking: bool) -> torch.Tensor:
        """Intensity-scaled complex targets as channels ``(B, 2, H, W)`` (``batchdata["clean"]`` when
        the batch comes from a :class:`ccdf_mri.data.PreparedSliceCache`, else prepared now)."""
        if "clean" in batchdata:
            return complex_to_channels(batchdata["clean"].to(device=device, non_blocking=non_blocking))
        prepared = undersample_batch(
            batchdata, device, self.map_method, self.calib_width, self.target_source, non_blocking
        )
        return complex_to_channels(prepared["target"])

    def __call__(
        self, batchdata: Mapping[str, Any], device: Device = None, non_blocking: bool = False, **kwargs: Any
    ) -> Tuple[torch.Tensor, torch.Tensor, Tuple[torch.Tensor], Dict[str, Any]]:
        clean = self.clean_images(batchdata, device, non_blocking)
        if self.fixed_timestep is not None:
            return self._validation(clean, batchdata["meta"])
        generator = self._training_generator(clean.device)
        if self.patch_size is not None:
            clean = random_patches(clean, self.patch_size, self.patches_per_slice, generator)
        batch = clean.shape[0]
        timesteps = torch.randint(0, self.schedule.num_train_steps, (batch,), generator=generator, device=clean.device)
        noise = torch.randn(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        noisy = self.schedule.add_noise(clean, noise, timesteps)
        return noisy, noise, (timesteps,), {}

    def _validation(
        self, clean: torch.Tensor, meta: Mapping[str, Any]
    ) -> Tuple[torch.Tensor, torch.Tensor, Tuple[torch.Tensor], Dict[str, Any]]:
        names, slices = meta["filename"], torch.as_tensor(meta["slice"]).tolist()
        noise = torch.stack(
            [
                torch.randn(
                    clean.shape[1:], generator=_generator(zlib.crc32(f"{name}:{index}".encode()), "cpu")
                )
                for name, index in zip(names, slices)
            ]
        ).to(clean.device, clean.dtype)
        timesteps = torch.full((clean.shape[0],), int(self.fixed_timestep), device=clean.device, dtype=torch.long)
        return self.schedule.add_noise(clean, noise, timesteps), clean, (timesteps,), {}


class OneStepDenoiseInferer(Inferer):
    """Validation of an epsilon network: ``x0_hat = (x_t - b_t eps(x_t, t)) / a_t``.

    ``(a_t, b_t)`` are the schedule's forward coefficients (VP: ``sqrt(abar)``,
    ``sqrt(1 - abar)``), so PSNR/SSIM of ``x0_hat`` against the clean image measure the
    prior's denoising quality at one noise level.
    """

    def __init__(self, schedule: Any) -> None:
        super().__init__()
        self.schedule = schedule

    def __call__(self, inputs: torch.Tensor, network: Any, timesteps: torch.Tensor, *args: Any, **kwargs: Any):
        eps = network(inputs, timesteps)
        a, b = self.schedule.forward_coefficients(timesteps.cpu())
        shape = (-1,) + (1,) * (inputs.ndim - 1)
        a = a.to(inputs.device, inputs.dtype).reshape(shape)
        b = b.to(inputs.device, inputs.dtype).reshape(shape)
        return (inputs - b * eps) / a
