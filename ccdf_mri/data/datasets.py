"""Slice datasets over folders of fastMRI-format ``.h5`` files, for training and validation.

The dataset holds only an index of ``(file, slice)`` pairs; every item opens its file,
reads one slice and closes it again, so no corpus is ever held in memory and the
dataset pickles cheaply into ``DataLoader`` workers.

Each item carries the *fully sampled* k-space of the slice together with the mask to
apply and the file's ISMRMRD header; readout crop, undersampling, coil-map estimation, SENSE
combination and intensity scaling run batched on the training device through the one
preprocessing path (:mod:`ccdf_mri.preprocessing`, via :mod:`ccdf_mri.engines.batch`), the
same steps as at inference. Masks:

- ``mask_mode="random"`` (training): a new mask per item, drawn from the global torch
  RNG (reproducible under ``torch.manual_seed`` / ``monai.utils.set_determinism``;
  DataLoader workers get distinct derived seeds), over the policy's accelerations;
- ``mask_mode="fixed"`` (validation): the mask is seeded by the file name as fastMRI
  does (:func:`ccdf_mri.physics.masks.mask_seed_from_name`), identical in every epoch
  and for every slice of a file;
- files that carry their own ``mask`` (fastMRI test/challenge files) always use it.

Cached data from ``ccdf_mri.data_prep.prepare_fastmri`` (sidecar ``<name>.maps.h5`` next to
``<name>.h5``) are used when present: coil maps and the SENSE-combined complex target, both
at the readout-cropped geometry the preprocessing produces.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ccdf_mri.io.fastmri import FastMRIVolume
from ccdf_mri.physics.masks import MASK_KINDS, calibration_width, make_mask, mask_seed_from_name

PathLike = Union[str, os.PathLike]
SIDECAR_SUFFIX = ".maps.h5"
COMPLEX_TARGET_KEY = "target_complex"
SIDECAR_MAPS_KEY = "maps"
MASK_MODES = ("random", "fixed")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskPolicy:
    """Which undersampling masks a dataset draws.

    Attributes:
        kind: one of :data:`ccdf_mri.physics.masks.MASK_KINDS`.
        accelerations: accelerations to choose from, one per mask (uniformly).
        center_fractions: fully sampled centre fraction paired with each acceleration.
    """

    kind: str = "equispaced_fraction"
    accelerations: Sequence[float] = (4, 8)
    center_fractions: Sequence[float] = (0.08, 0.04)

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise ValueError(f"mask kind: expected one of {MASK_KINDS}, found '{self.kind}'")
        if len(self.accelerations) == 0 or len(self.accelerations) != len(self.center_fractions):
            raise ValueError(
                "mask policy: expected as many center_fractions as accelerations (at least one), found "
                f"{len(self.center_fractions)} and {len(self.accelerations)}"
            )

    def draw(
        self, kspace_shape: Tuple[int, int], seed: Union[int, Tuple[int, ...]], padding: Tuple[int, int]
    ) -> Tuple[torch.Tensor, float, float]:
        """Draw one mask.

        Args:
            kspace_shape: ``(H, W)`` of the k-space slice.
            seed: int or tuple of ints; picks the acceleration and seeds the mask.
            padding: ``(left, right)`` acquired columns (from the ISMRMRD header).

        Returns:
            ``(mask, acceleration, center_fraction)``; mask float32 0/1, ``(1, 1, W)``
            (``(1, H, W)`` for ``poisson2d``), broadcastable to k-space ``(C, H, W)``.
        """
        choice = np.random.RandomState(seed).randint(len(self.accelerations))
        acceleration = float(self.accelerations[choice])
        center_fraction = float(self.center_fractions[choice])
        mask = make_mask(self.kind, tuple(kspace_shape), acceleration, center_fraction, seed=seed, padding=padding)
        return mask.reshape(mask.shape[-3:]).float(), acceleration, center_fraction


def sidecar_path(path: PathLike, maps_dir: Optional[PathLike] = None) -> Path:
    """``dir/name.h5`` -> ``(maps_dir or dir)/name.maps.h5``: where ``prepare_fastmri`` caches
    coil maps and complex targets."""
    path = Path(path)
    return (Path(maps_dir) if maps_dir is not None else path.parent) / (path.stem + SIDECAR_SUFFIX)


def list_fastmri_files(root: PathLike) -> List[Path]:
    """Sorted ``*.h5`` files in ``root`` (not recursive), sidecars excluded.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: expected a folder of fastMRI .h5 files, found no such directory")
    return sorted(p for p in root.glob("*.h5") if p.is_file() and not p.name.endswith(SIDECAR_SUFFIX))


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    num_slices: int
    padding: Tuple[int, int]
    sidecar: Optional[Path]
    has_complex_target: bool
    image_shape: Tuple[int, int]


class FastMRISliceDataset(Dataset):
    """One item per slice of every fastMRI-format ``.h5`` file in a folder.

    Args:
        root: folder of ``.h5`` files (multi- or single-coil; sidecars are skipped).
        mask_policy: masks to draw (see :class:`MaskPolicy`).
        mask_mode: ``"random"`` (a new mask per item) or ``"fixed"`` (seeded by file name).
        use_cached_maps: read ``maps`` (and the cached complex target) from sidecars.
        maps_dir: folder of the sidecars (``prepare_fastmri --out``); default ``root``.
        transform: optional callable applied to each item dictionary (MONAI transforms).
        max_slices_per_file: keep only the centre ``n`` slices of each file (None: all).

    Items (a dictionary; all tensors on the CPU):

    - ``kspace``: complex64 ``(C, H, W)``, as stored (fully sampled except in test files);
    - ``mask``: float32 0/1 broadcastable to ``(C, H, W)``, usually ``(1, 1, W)``;
    - ``num_low_frequency``: int, width of the fully sampled centre block of the mask
      (centred as coil-map calibration expects it);
    - ``acceleration``: float, the policy's nominal acceleration (or the file's);
    - ``target``: float32 ``(h, w)`` magnitude target, when the file has one;
    - ``target_complex``: complex64 ``(H', W)``, when the file or its sidecar has one
      (``H'``: the rows after the readout crop the header declares);
    - ``maps``: complex64 ``(C, H', W)``, when a sidecar has cached maps;
    - ``meta``: ``{"filename": str, "slice": int, "header": ISMRMRD XML str}``.

    Files that cannot be read are skipped with a warning and listed in :attr:`skipped`.

    Raises:
        FileNotFoundError: ``root`` is missing.
        ValueError: no readable fastMRI file in ``root``, or a bad ``mask_mode``.
    """

    def __init__(
        self,
        root: PathLike,
        mask_policy: Optional[MaskPolicy] = None,
        mask_mode: str = "random",
        use_cached_maps: bool = True,
        maps_dir: Optional[PathLike] = None,
        transform: Optional[Callable[[Dict[str, Any]], Any]] = None,
        max_slices_per_file: Optional[int] = None,
    ) -> None:
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode: expected one of {MASK_MODES}, found '{mask_mode}'")
        self.root = Path(root)
        self.mask_policy = mask_policy or MaskPolicy()
        self.mask_mode = mask_mode
        self.use_cached_maps = use_cached_maps
        self.maps_dir = maps_dir
        self.transform = transform
        self.skipped: List[Tuple[Path, str]] = []
        self.files: List[_FileInfo] = []
        self.index: List[Tuple[int, int]] = []
        for path in list_fastmri_files(self.root):
            try:
                info = self._file_info(path)
            except (ValueError, OSError) as error:
                logger.warning("skipping %s: %s", path, error)
                self.skipped.append((path, str(error)))
                continue
            first, last = 0, info.num_slices
            if max_slices_per_file is not None and info.num_slices > max_slices_per_file:
                first = (info.num_slices - max_slices_per_file) // 2
                last = first + max_slices_per_file
            self.index.extend((len(self.files), s) for s in range(first, last))
            self.files.append(info)
        if not self.index:
            raise ValueError(
                f"{self.root}: expected readable fastMRI .h5 files with at least one slice, found none"
                + (f" ({len(self.skipped)} unreadable: {[str(p.name) for p, _ in self.skipped]})" if self.skipped else "")
            )

    def _file_info(self, path: Path) -> _FileInfo:
        with FastMRIVolume(path) as volume:
            width = volume.kspace_shape[-1]
            padding = volume.header.padding_columns(width)
            num_slices = volume.num_slices
            rows = volume.header.readout_crop_rows(volume.kspace_shape[-2]) or volume.kspace_shape[-2]
            expected = (num_slices, rows, width)
        with h5py.File(path, "r") as handle:
            has_complex = COMPLEX_TARGET_KEY in handle
            if has_complex and handle[COMPLEX_TARGET_KEY].shape != expected:
                raise ValueError(
                    f"{path}: key '{COMPLEX_TARGET_KEY}': expected shape {expected}, "
                    f"found {handle[COMPLEX_TARGET_KEY].shape}"
                )
        sidecar = sidecar_path(path, self.maps_dir)
        return _FileInfo(
            path, num_slices, padding, sidecar if sidecar.is_file() and self.use_cached_maps else None, has_complex, expected[1:]
        )

    def __len__(self) -> int:
        return len(self.index)

    def _mask(self, info: _FileInfo, volume: FastMRIVolume) -> Tuple[torch.Tensor, int, float]:
        height, width = volume.kspace_shape[-2:]
        if volume.mask is not None:
            mask = torch.from_numpy(volume.mask).reshape(1, 1, width)
            return mask, calibration_width(volume.mask), float(volume.acceleration or 0.0)
        if self.mask_mode == "fixed":
            seed: Union[int, Tuple[int, ...]] = tuple(mask_seed_from_name(info.path.name))
        else:
            seed = int(torch.randint(0, 2**31 - 1, ()))
        mask, acceleration, _ = self.mask_policy.draw((height, width), seed, info.padding)
        return mask, calibration_width(mask.numpy()), acceleration

    def __getitem__(self, item: int) -> Any:
        file_index, slice_index = self.index[item]
        info = self.files[file_index]
        with FastMRIVolume(info.path) as volume:
            mask, num_low, acceleration = self._mask(info, volume)
            sample: Dict[str, Any] = {
                "kspace": torch.from_numpy(volume.kspace_slice(slice_index)),
                "mask": mask,
                "num_low_frequency": num_low,
                "acceleration": acceleration,
                "meta": {"filename": info.path.name, "slice": slice_index, "header": volume.header_xml},
            }
            if volume.target_key is not None:
                sample["target"] = torch.from_numpy(volume.target_slice(slice_index))
        if info.has_complex_target:
            with h5py.File(info.path, "r") as handle:
                target = np.asarray(handle[COMPLEX_TARGET_KEY][slice_index], dtype=np.complex64)
            sample["target_complex"] = torch.from_numpy(target)
        if info.sidecar is not None:
            sample.update(_read_sidecar(info.sidecar, slice_index, (*sample["kspace"].shape[:-2], *info.image_shape)))
        return self.transform(sample) if self.transform is not None else sample


def _read_sidecar(path: Path, slice_index: int, kspace_shape: Sequence[int]) -> Dict[str, torch.Tensor]:
    """Cached ``maps`` ``(C, H', W)`` and complex target ``(H', W)`` of one slice from a sidecar
    (``kspace_shape``: the k-space slice shape after the readout crop)."""
    out: Dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as handle:
        if SIDECAR_MAPS_KEY in handle:
            maps = np.asarray(handle[SIDECAR_MAPS_KEY][slice_index], dtype=np.complex64)
            if maps.shape != tuple(kspace_shape):
                raise ValueError(
                    f"{path}: key '{SIDECAR_MAPS_KEY}': expected slice shape {tuple(kspace_shape)}, found {maps.shape}"
                )
            out["maps"] = torch.from_numpy(maps)
        if COMPLEX_TARGET_KEY in handle:
            target = np.asarray(handle[COMPLEX_TARGET_KEY][slice_index], dtype=np.complex64)
            if target.shape != tuple(kspace_shape[-2:]):
                raise ValueError(
                    f"{path}: key '{COMPLEX_TARGET_KEY}': expected slice shape {tuple(kspace_shape[-2:])}, "
                    f"found {target.shape}"
                )
            out["target_complex"] = torch.from_numpy(target)
    return out


class PreparedSliceCache(Dataset):
    """Every slice of a dataset through the one preprocessing path once, kept in memory.

    Epsilon (score) training needs only the intensity-scaled clean image of each slice; computing
    it per iteration (read the k-space, mask, coil maps, SENSE, scale) costs more than the
    network step on a CPU. This runs :func:`ccdf_mri.engines.batch.undersample_batch` (the
    reconstruction's preprocessing) once per slice, with the mask the dataset draws then, and
    keeps ``{"clean": target / scale (H, W) complex64, "meta": ...}``. The scale therefore comes
    from one mask draw per slice (it varies by a few percent between draws).

    Args:
        dataset: a :class:`FastMRISliceDataset` (or any dataset of its items).
        map_method, calib_width, target_source: as :func:`ccdf_mri.engines.batch.undersample_batch`.
        batch_size: slices prepared per call (slices of one batch need one k-space shape).
        device: where the preparation runs; the cache is kept on the CPU.
        progress: show a bar.
    """

    def __init__(
        self,
        dataset: Dataset,
        map_method: str = "acs",
        calib_width: int = 24,
        target_source: str = "file",
        batch_size: int = 1,
        device: Union[str, torch.device, None] = "cpu",
        progress: bool = True,
    ) -> None:
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        from ccdf_mri.engines.batch import undersample_batch  # one preprocessing path (training package)

        self.items: List[Dict[str, Any]] = []
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
        for batch in tqdm(loader, desc="preparing slices", unit="batch", disable=not progress):
            out = undersample_batch(batch, device, map_method, calib_width, target_source)
            names, slices = batch["meta"]["filename"], torch.as_tensor(batch["meta"]["slice"]).tolist()
            for target, name, index in zip(out["target"].cpu(), names, slices):
                self.items.append({"clean": target.contiguous(), "meta": {"filename": name, "slice": index}})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return self.items[index]
