"""Batch reconstruction of fastMRI volumes: the one engine behind the CLI and the bundle.

For each input volume (sigpy-app style: build once, then :meth:`Reconstructor.run`):

1. read it lazily with :class:`ccdf_mri.io.FastMRIVolume` (a batch of slices at a time,
   each slice read once, moved to the device and kept there);
2. :class:`Preprocessing`: crop the readout oversampling, apply the sampling mask (the
   file's own mask for test-set files, else a retrospective mask seeded from the file name
   as fastMRI's validation data do), estimate coil maps (ESPIRiT or ACS), form the
   zero-filled SENSE image and divide everything by the per-slice intensity scale
   (:func:`ccdf_mri.intensity.intensity_scale`, the rule training uses);
3. the initialiser gives ``x0``; the :class:`ccdf_mri.inferers.CCDFInferer` jumps forward
   to ``N' = t0 N`` and runs ``N'`` reverse steps with SENSE data consistency
   (``t0 = 0`` returns ``x0``; ``t0 = 1`` is diffusion from noise);
4. :class:`Postprocessing`: multiply the scale back, take the magnitude, centre-crop to
   the header's recon matrix;
5. :class:`VolumeWriter`: ``<name>.nii.gz``, the fastMRI submission ``<name>.h5``,
   ``<name>_std.nii.gz`` (pixel standard deviation over posterior samples) and DICOM on
   request, all atomic; finished volumes are skipped unless ``overwrite``.

Then ``metrics.csv`` (fastMRI NMSE / PSNR / SSIM per volume and their mean) when targets
exist, and a summary table. A file that fails is reported (file name and problem) and the
others are still processed; :meth:`RunReport.raise_if_failed` turns failures into an error
at the end. Under ``torch.distributed`` rank ``r`` of ``W`` takes ``files[r::W]`` and rank 0
writes the metrics of all. Random numbers come from one generator per slice seeded by
``(seed, file name, slice)``, so outputs do not depend on batching or sharding.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from ccdf_mri.data.datasets import list_fastmri_files
from ccdf_mri.diffusion.samplers import SAMPLERS
from ccdf_mri.engines.batch import MAP_METHODS, estimate_batch_maps
from ccdf_mri.initializers import INITIALIZERS, Initializer, make_initializer
from ccdf_mri.intensity import intensity_scale
from ccdf_mri.io import FastMRIHeader, FastMRIVolume, atomic_path
from ccdf_mri.io.writers import save_dicom_series, save_nifti, save_submission_h5
from ccdf_mri.metrics import volume_metrics
from ccdf_mri.physics import (
    MASK_KINDS,
    SenseOp,
    calibration_width,
    effective_acceleration,
    make_mask,
    mask_seed_from_name,
)
from ccdf_mri.transforms.array import crop_readout

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # messages reach the application's handlers, never stderr by default

FORMATS = ("nifti", "h5", "dicom")
METRIC_NAMES = ("nmse", "psnr", "ssim")
SCORE_NET = "score_net"
INITIALIZER_NET = "unet"
CALIBRATION = "calibration.json"
MAX_CALIB_WIDTH = 24
# Rough relative squared error ||x0 - x||^2 / ||x||^2 of each initializer at 4x, used only by
# t0="auto" when the bundle has no calibration.json (then scaled with the acceleration).
PRIOR_NMSE = {"zero_filled": 0.08, "cg_sense": 0.05, "l1_wavelet": 0.03, "unet": 0.015}


# ----------------------------------------------------------------------------- options
def default_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` -> CUDA when available, else CPU.

    Raises:
        ValueError: an unknown device name, or CUDA asked for where there is none.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected e.g. 'cpu', 'cuda' or 'cuda:1', found {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} asked for, but CUDA is not available here")
    return device


def check_t0(t0: Union[float, str, None]) -> Union[float, str, None]:
    """Validate ``t0``: a number in ``[0, 1]``, ``"auto"`` or ``None``; numbers come back as float."""
    if t0 is None or t0 == "auto":
        return t0
    try:
        value = float(t0)
    except (TypeError, ValueError):
        raise ValueError(f"t0: expected a number in [0, 1] or 'auto', found {t0!r}") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"t0: expected a number in [0, 1] or 'auto', found {t0!r}")
    return value


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, found {value!r}")


def parse_formats(formats: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"nifti,h5"`` or a sequence -> validated tuple of output formats."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    items = [item.strip().lower() for item in items if item.strip()]
    for item in items:
        _check_choice("formats", item, FORMATS)
    if not items:
        raise ValueError(f"formats: expected at least one of {FORMATS}, found none")
    return tuple(dict.fromkeys(items))


# ----------------------------------------------------------------------------- models
def _read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: expected JSON, found text that does not parse ({error})") from None


def load_network(models_dir: PathLike, name: str, device: Union[str, torch.device, None] = None) -> torch.nn.Module:
    """A network exported by training: ``<name>.pt`` (state_dict) + ``<name>.json`` (factory, kwargs).

    Args:
        models_dir: the bundle's ``models`` folder.
        name: ``"score_net"`` or ``"unet"``.
        device: where to put it (default: CUDA when available).

    Returns:
        the network in eval mode on ``device``.
    """
    from ccdf_mri.engines.checkpoints import load_exported_network  # imports ignite: only when loading

    device = default_device(device)
    path = Path(models_dir) / f"{name}.pt"
    return load_exported_network(path, map_location=device).to(device).eval()


def load_schedule(models_dir: PathLike):
    """The noise schedule the score network was trained with.

    Read from ``score_net.json`` as training exports it: ``"schedule"`` (class name,
    ``"VPSchedule"`` or ``"VESchedule"`` of :mod:`ccdf_mri.diffusion`) and
    ``"schedule_kwargs"``; the default ``VPSchedule()`` when both are absent.
    """
    from ccdf_mri.diffusion import VESchedule, VPSchedule

    path = Path(models_dir) / f"{SCORE_NET}.json"
    record = _read_json(path)
    classes = {"VPSchedule": VPSchedule, "VESchedule": VESchedule}
    name = record.get("schedule", "VPSchedule")
    if name not in classes:
        raise ValueError(f"{path}: key 'schedule': expected one of {sorted(classes)}, found {name!r}")
    try:
        return classes[name](**dict(record.get("schedule_kwargs") or {}))
    except TypeError as error:
        raise ValueError(f"{path}: key 'schedule_kwargs': {error}") from None


def load_t0_table(models_dir: PathLike) -> Optional[Dict[float, float]]:
    """Calibrated ``t0`` per acceleration from ``calibration.json`` (``{"t0": {"4": 0.1, ...}}``), or None."""
    path = Path(models_dir) / CALIBRATION
    if not path.is_file():
        return None
    table = _read_json(path).get("t0")
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: key 't0': expected {{acceleration: t0}}, found {table!r}")
    try:
        return {float(acc): float(check_t0(value)) for acc, value in table.items()}
    except ValueError as error:
        raise ValueError(f"{path}: key 't0': {error}") from None


def nearest_t0(table: Dict[float, float], acceleration: float) -> float:
    """The calibrated ``t0`` of the acceleration nearest to ``acceleration`` (on a log scale)."""
    nearest = min(table, key=lambda acc: (abs(math.log(acc / float(acceleration))), acc))
    return table[nearest]


def resolve_t0(
    t0: Union[float, str],
    acceleration: float,
    models_dir: Optional[PathLike] = None,
    initializer: str = "unet",
    sub=None,
    sampler: str = "ddpm",
) -> float:
    """The ``t0`` to use at one acceleration.

    A number is returned as is (checked to lie in ``[0, 1]``). ``"auto"`` takes the
    bundle's calibrated value for the nearest calibrated acceleration
    (``models/calibration.json``). Without a calibration file it falls back on Theorem 2
    (:func:`ccdf_mri.diffusion.theory.select_t0` on the sampling ladder ``sub``) with
    the prior relative error :data:`PRIOR_NMSE` of the initializer, scaled by
    ``acceleration / 4`` (images are intensity-scaled to about unit magnitude, so the
    pixel count cancels in the bound and one pixel is used); when no ``t0 < 1`` meets the
    bound, ``t0 = 1`` (conditional diffusion from noise).

    Raises:
        ValueError: ``t0`` invalid, or ``"auto"`` with neither calibration nor ladder.
    """
    t0 = check_t0(t0)
    if t0 != "auto":
        return float(t0)
    table = load_t0_table(models_dir) if models_dir is not None else None
    if table:
        return nearest_t0(table, acceleration)
    if sub is None:
        raise ValueError(f"t0 'auto': expected {CALIBRATION} in {models_dir} or a sampling ladder, found neither")
    from ccdf_mri.diffusion.theory import select_t0

    prior = PRIOR_NMSE[initializer] * float(acceleration) / 4.0
    try:
        return float(select_t0(prior, sub, sampler, 1))
    except ValueError as error:
        logger.warning("t0 'auto': %s; using t0 = 1 (diffusion from noise)", error)
        return 1.0


# ----------------------------------------------------------------------------- pre / post
@dataclass
class Batch:
    """One batch of slices on the device, in intensity-scaled units.

    Attributes:
        kspace: measured (masked) k-space ``(B, C, H, W)`` complex64, divided by ``scale``.
        op: SENSE operator ``M F S`` of the batch.
        scale: ``(B,)`` per-slice intensity scale (multiply to get scanner units back).
    """

    kspace: torch.Tensor
    op: SenseOp
    scale: torch.Tensor


class Preprocessing:
    """Turn raw slices of one volume into a :class:`Batch` on the device.

    Call :meth:`prepare_volume` once per volume (it fixes the mask), then
    :meth:`__call__` per batch of slices. The steps after the readout crop are training's
    (:func:`ccdf_mri.engines.batch.estimate_batch_maps`, per-slice intensity scale).

    Args:
        mask: retrospective mask kind (``ccdf_mri.physics.MASK_KINDS``), for files without a mask.
        acceleration: retrospective acceleration factor.
        center_fraction: fully sampled centre fraction of the columns.
        maps: coil-map method, ``"espirit"`` or ``"acs"``.
        calib_width: largest calibration width for the maps (capped by the mask's fully
            sampled centre).
        device: where the batch lives.
    """

    def __init__(
        self,
        mask: str = "equispaced_fraction",
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        maps: str = "acs",
        calib_width: int = MAX_CALIB_WIDTH,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        _check_choice("mask", mask, MASK_KINDS)
        _check_choice("maps", maps, MAP_METHODS)
        if not float(acceleration) >= 1:
            raise ValueError(f"acceleration: expected a number >= 1, found {acceleration!r}")
        if not 0 < float(center_fraction) < 1:
            raise ValueError(f"center_fraction: expected a number in (0, 1), found {center_fraction!r}")
        self.mask_kind = mask
        self.acceleration = float(acceleration)
        self.center_fraction = float(center_fraction)
        self.maps = maps
        self.calib_width = int(calib_width)
        self.device = default_device(device)

    def prepare_volume(self, volume: FastMRIVolume) -> Dict[str, Any]:
        """The volume's mask on the device (``(1, 1, 1, W)`` or ``(1, 1, H, W)``), its
        acceleration and calibration width (:func:`calibration_width`):
        ``{"mask", "acceleration", "num_low"}``.

        Test-set files use their own mask; others get a mask seeded by the file name
        (fastMRI's validation convention), the same for every slice.
        """
        _, coils, rows, cols = volume.kspace_shape
        rows = volume.header.readout_crop_rows(rows) or rows
        if volume.has_mask:
            mask = torch.from_numpy(volume.mask).reshape(1, 1, 1, cols)
            acceleration = float(volume.acceleration or effective_acceleration(mask))
        else:
            mask = make_mask(
                self.mask_kind,
                (coils, rows, cols),
                self.acceleration,
                self.center_fraction,
                seed=mask_seed_from_name(volume.path.name),
                padding=volume.header.padding_columns(cols),
            )
            acceleration = self.acceleration
        mask = mask.to(device=self.device, dtype=torch.float32)
        return {"mask": mask, "acceleration": acceleration, "num_low": calibration_width(mask)}

    def __call__(self, volume: FastMRIVolume, indices: Sequence[int], state: Dict[str, Any]) -> Batch:
        """Read slices ``indices`` of ``volume`` (each once) and prepare them on the device.

        Args:
            volume: the open volume.
            indices: slice indices of the batch.
            state: from :meth:`prepare_volume`.
        """
        raw = np.stack([volume.kspace_slice(index) for index in indices])
        kspace = torch.from_numpy(raw).to(self.device)
        keep = volume.header.readout_crop_rows(kspace.shape[-2])
        if keep is not None:
            kspace = crop_readout(kspace, keep)
        mask = state["mask"]
        kspace = kspace * mask
        num_low = torch.full((len(indices),), state["num_low"])
        maps = estimate_batch_maps(kspace, num_low, self.maps, self.calib_width)
        op = SenseOp(maps, mask)
        scale = torch.stack([intensity_scale(image) for image in op.adjoint(kspace)]).to(torch.float32)
        return Batch(kspace=kspace / scale.reshape(-1, 1, 1, 1), op=op, scale=scale)


class Postprocessing:
    """Scaled complex images ``(B, H, W)`` -> magnitude ``(B, h, w)`` in scanner units, float32.

    ``h, w`` is the header's recon matrix (centre crop; no crop where the image is smaller).
    """

    def __call__(self, images: torch.Tensor, scale: torch.Tensor, header: FastMRIHeader) -> torch.Tensor:
        magnitude = images.abs() * scale.reshape(-1, 1, 1).to(images.device)
        return center_crop(magnitude, header.recon_matrix[:2]).float()


def center_crop(images: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Centre-crop the last two axes of ``images`` to ``shape`` (axes already smaller stay)."""
    rows, cols = images.shape[-2:]
    out_rows, out_cols = min(int(shape[0]), rows), min(int(shape[1]), cols)
    top, left = (rows - out_rows) // 2, (cols - out_cols) // 2
    return images[..., top : top + out_rows, left : left + out_cols]


# ----------------------------------------------------------------------------- outputs
class VolumeWriter:
    """Write one volume's outputs into ``output_dir``, atomically.

    Outputs of volume ``<name>`` (the input file name without ``.h5``): ``<name>.nii.gz``
    (``nifti``), ``<name>.h5`` with dataset ``reconstruction`` (``h5``), ``<name>_dicom/``
    (``dicom``) and ``<name>_std.nii.gz`` when a standard-deviation map is given. When one
    of them fails, those already written for the volume in this call are removed.

    Args:
        output_dir: folder, created when missing.
        formats: subset of :data:`FORMATS`.
        overwrite: rewrite volumes whose outputs already exist.
    """

    def __init__(self, output_dir: PathLike, formats: Union[str, Sequence[str]] = ("nifti", "h5"), overwrite: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.formats = parse_formats(formats)
        self.overwrite = bool(overwrite)

    def check_writable(self) -> None:
        """Create ``output_dir`` and check a file can be written there.

        Raises:
            PermissionError / OSError naming the folder when it cannot be written.
        """
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.output_dir, prefix=".write-test-"):
                pass  # a unique name: several ranks may check the same folder at once
        except OSError as error:
            raise PermissionError(f"{self.output_dir}: output folder cannot be written ({error.strerror or error})") from None

    def paths(self, name: str, with_std: bool = False) -> Dict[str, Path]:
        """``{format: path}`` of the outputs of volume ``name`` (plus ``"std"`` when asked)."""
        suffixes = {"nifti": ".nii.gz", "h5": ".h5", "dicom": "_dicom"}
        paths = {fmt: self.output_dir / f"{name}{suffixes[fmt]}" for fmt in self.formats}
        if with_std:
            paths["std"] = self.output_dir / f"{name}_std.nii.gz"
        return paths

    def is_done(self, name: str) -> bool:
        """True when every requested output of ``name`` exists and ``overwrite`` is off."""
        return not self.overwrite and all(path.exists() for path in self.paths(name).values())

    def write(
        self,
        name: str,
        image: np.ndarray,
        header: FastMRIHeader,
        std: Optional[np.ndarray] = None,
        description: str = "CCDF reconstruction",
    ) -> List[Path]:
        """Write ``image`` (and ``std``) ``(S, h, w)`` float32; returns the written paths."""
        written: List[Path] = []
        try:
            for fmt, path in self.paths(name, with_std=std is not None).items():
                if fmt == "nifti":
                    save_nifti(path, image, header)
                elif fmt == "h5":
                    save_submission_h5(path, image)
                elif fmt == "dicom":
                    save_dicom_series(path, image, header, series_description=description)
                else:
                    save_nifti(path, std, header)
                written.append(path)
        except BaseException:
            for path in written:
                _remove(path)
            raise
        return written

    def read_done(self, name: str) -> Optional[np.ndarray]:
        """The ``reconstruction`` of an existing ``<name>.h5`` output, or None."""
        path = self.output_dir / f"{name}.h5"
        if not path.is_file():
            return None
        with h5py.File(path, "r") as handle:
            return np.asarray(handle["reconstruction"], dtype=np.float32)


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()


# ----------------------------------------------------------------------------- results
@dataclass
class VolumeResult:
    """What happened to one input file.

    Attributes:
        name: volume name (input file name without ``.h5``).
        path: the input file.
        status: ``"done"``, ``"skipped"`` (outputs existed) or ``"failed"``.
        slices: number of slices.
        seconds: wall time of the reconstruction.
        nfe: network evaluations per slice of the diffusion (0 for ``t0 = 0``).
        t0: the ``t0`` used.
        metrics: ``{"nmse", "psnr", "ssim"}`` when the file has a target.
        error: the message when failed.
        outputs: written files.
    """

    name: str
    path: str
    status: str
    slices: int = 0
    seconds: float = 0.0
    nfe: int = 0
    t0: Optional[float] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    error: str = ""
    outputs: List[str] = field(default_factory=list)


@dataclass
class RunReport:
    """Results of :meth:`Reconstructor.run` over all inputs (all ranks).

    Attributes:
        results: one :class:`VolumeResult` per input, in input order.
        metrics_path: ``metrics.csv`` when written.
    """

    results: List[VolumeResult]
    metrics_path: Optional[Path] = None

    @property
    def failed(self) -> List[VolumeResult]:
        """The failed volumes."""
        return [result for result in self.results if result.status == "failed"]

    def table(self) -> str:
        """Plain-text summary: one line per volume and the metric means."""
        return format_table(self.results)

    def raise_if_failed(self) -> "RunReport":
        """Raise RuntimeError listing the failed files (after all were processed); else return self."""
        if self.failed:
            lines = "\n".join(f"  {result.error}" for result in self.failed)
            raise RuntimeError(f"{len(self.failed)} of {len(self.results)} input(s) failed:\n{lines}")
        return self

    def require_metrics(self) -> "RunReport":
        """Raise ValueError naming the volumes without a target (evaluation needs one); else return self."""
        missing = [result.path for result in self.results if not result.metrics]
        if missing or not self.results:
            raise ValueError(f"evaluation: expected files with targets, found none in {missing or 'an empty input list'}")
        return self


def format_table(results: Sequence[VolumeResult]) -> str:
    """Summary table: volume, status, slices, seconds, s/slice, NFE, t0, NMSE, PSNR, SSIM."""
    header = f"{'volume':<28} {'status':<8} {'slices':>6} {'time_s':>8} {'s/slice':>8} {'NFE':>5} {'t0':>5} {'NMSE':>8} {'PSNR':>7} {'SSIM':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        per_slice = r.seconds / r.slices if r.slices else 0.0
        t0 = f"{r.t0:.2f}" if r.t0 is not None else "-"
        metrics = (
            f"{r.metrics['nmse']:>8.4f} {r.metrics['psnr']:>7.2f} {r.metrics['ssim']:>6.4f}"
            if r.metrics
            else f"{'-':>8} {'-':>7} {'-':>6}"
        )
        lines.append(
            f"{r.name[:28]:<28} {r.status:<8} {r.slices:>6} {r.seconds:>8.2f} {per_slice:>8.3f} {r.nfe:>5} {t0:>5} {metrics}"
        )
    scored = [r.metrics for r in results if r.metrics]
    if scored:
        means = {key: float(np.mean([m[key] for m in scored])) for key in METRIC_NAMES}
        lines.append(
            f"{'mean':<28} {'':<8} {'':>6} {'':>8} {'':>8} {'':>5} {'':>5} "
            f"{means['nmse']:>8.4f} {means['psnr']:>7.2f} {means['ssim']:>6.4f}"
        )
    for r in results:
        if r.status == "failed":
            lines.append(f"FAILED {r.error}")
    return "\n".join(lines)


def write_metrics_csv(path: PathLike, rows: Sequence[Tuple[str, Dict[str, float]]]) -> Path:
    """Write ``volume,nmse,psnr,ssim`` per volume and a final ``mean`` row, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("volume",) + METRIC_NAMES)
        for name, metrics in rows:
            writer.writerow([name] + [f"{metrics[key]:.6g}" for key in METRIC_NAMES])
        means = [float(np.mean([m[key] for _, m in rows])) for key in METRIC_NAMES]
        writer.writerow(["mean"] + [f"{value:.6g}" for value in means])
    return path


def find_inputs(inputs: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    """Expand files and folders into a list of files, in order.

    A folder contributes its ``*.h5`` files, sorted, without the ``<name>.maps.h5``
    sidecars of ``data_prep.prepare_fastmri``. Paths that do not exist are kept, so that
    the run reports them as failed.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: List[Path] = []
    for item in inputs:
        path = Path(item)
        files.extend(list_fastmri_files(path) if path.is_dir() else [path])
    return list(dict.fromkeys(files))


def volume_name(path: PathLike) -> str:
    """Output stem of an input file: its name without ``.h5``."""
    name = Path(path).name
    return name[:-3] if name.endswith(".h5") else Path(path).stem


def slice_seed(seed: int, name: str, index: int) -> int:
    """Seed of the random numbers of slice ``index`` of file ``name`` (independent of batching)."""
    return (int(seed) * 1_000_003 + zlib.crc32(f"{name}:{index}".encode())) % (2**62)


def _distributed() -> Tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# ----------------------------------------------------------------------------- engine
def make_inferer(
    schedule,
    sampler: str = "ddpm",
    t0: Union[float, str] = 0.2,
    acceleration: float = 4.0,
    num_steps: Optional[int] = None,
    num_samples: int = 1,
    models_dir: Optional[PathLike] = None,
    initializer: str = "unet",
    progress: bool = False,
):
    """The :class:`ccdf_mri.inferers.CCDFInferer` for these options (``t0`` resolved by :func:`resolve_t0`)."""
    from ccdf_mri.inferers import CCDFInferer

    sub = schedule.sub_schedule(num_steps)
    value = resolve_t0(t0, acceleration, models_dir, initializer, sub, sampler)
    return CCDFInferer(schedule, sampler=sampler, t0=value, num_steps=num_steps, num_samples=int(num_samples), progress=progress)


class Reconstructor:
    """Reconstruct fastMRI volumes with CCDF and write their outputs.

    Build it from a models folder with :meth:`from_models` (what the CLI does) or from its
    parts (what the bundle config does), then call :meth:`run`.

    Args:
        network: the score network ``(B, 2, H, W), (B,) -> (B, 2, H, W)`` (None is fine when
            ``t0 = 0``: the inferer then returns ``x0`` without calling it).
        inferer: a :class:`ccdf_mri.inferers.CCDFInferer`; its ``t0`` is replaced per volume
            when ``t0`` is given.
        initializer: an initialiser ``(op, kspace) -> x0`` (:mod:`ccdf_mri.initializers`).
        preprocessing: :class:`Preprocessing` (mask, maps, scale; decides the device).
        writer: :class:`VolumeWriter` (output folder, formats, overwrite).
        postprocessing: :class:`Postprocessing`.
        t0: a number in ``[0, 1]``, ``"auto"`` (calibrated per acceleration from
            ``models_dir``) or ``None`` (keep the inferer's).
        models_dir: where ``calibration.json`` lives (for ``t0="auto"``).
        batch_size: slices per batch.
        seed: base seed of the per-slice random generators.
        progress: show progress bars (files, slices, diffusion steps).
        target_key: dataset scored against in ``metrics.csv``; ``None`` = the file's fastMRI
            target (``reconstruction_rss`` / ``reconstruction_esc``).
    """

    def __init__(
        self,
        network: Optional[torch.nn.Module],
        inferer: Any,
        initializer: Initializer,
        preprocessing: Preprocessing,
        writer: VolumeWriter,
        postprocessing: Optional[Postprocessing] = None,
        t0: Union[float, str, None] = None,
        models_dir: Optional[PathLike] = None,
        batch_size: int = 8,
        seed: int = 0,
        progress: bool = True,
        target_key: Optional[str] = None,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size: expected >= 1, found {batch_size}")
        self.network = network
        self.inferer = inferer
        self.initializer = initializer
        self.preprocessing = preprocessing
        self.writer = writer
        self.postprocessing = postprocessing or Postprocessing()
        self.t0 = check_t0(t0)
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.progress = bool(progress)
        self.target_key = target_key

    @classmethod
    def from_models(
        cls,
        models_dir: PathLike,
        output_dir: PathLike,
        mask: str = "equispaced_fraction",
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        initializer: str = "unet",
        t0: Union[float, str] = 0.2,
        num_steps: Optional[int] = None,
        sampler: str = "ddpm",
        num_samples: int = 1,
        maps: str = "acs",
        formats: Union[str, Sequence[str]] = ("nifti", "h5"),
        seed: int = 0,
        batch_size: int = 8,
        overwrite: bool = False,
        device: Union[str, torch.device, None] = None,
        progress: bool = True,
        target_key: Optional[str] = None,
    ) -> "Reconstructor":
        """Build the whole pipeline from a bundle ``models`` folder (what the CLI does).

        Options are validated before any model is loaded: ``t0`` in ``[0, 1]`` or
        ``"auto"``, known mask kind / initializer / sampler / maps method / formats. With
        ``t0 = 0`` (the initializer alone) the score network is not loaded.
        """
        t0 = check_t0(t0)
        _check_choice("initializer", initializer, INITIALIZERS)
        _check_choice("sampler", sampler, SAMPLERS)
        device = default_device(device)
        preprocessing = Preprocessing(mask, acceleration, center_fraction, maps, device=device)
        writer = VolumeWriter(output_dir, formats, overwrite)
        diffusion = t0 != 0.0  # t0 = 0 returns x0: no score network needed
        if diffusion:
            schedule = load_schedule(models_dir)
        else:
            from ccdf_mri.diffusion import VPSchedule

            schedule = VPSchedule()
        inferer = make_inferer(
            schedule, sampler, t0, acceleration, num_steps, num_samples, models_dir, initializer, progress
        )
        network = load_network(models_dir, SCORE_NET, device) if diffusion else None
        init_net = load_network(models_dir, INITIALIZER_NET, device) if initializer == "unet" else None
        return cls(
            network,
            inferer,
            make_initializer(initializer, init_net),
            preprocessing,
            writer,
            t0=t0,
            models_dir=models_dir,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            target_key=target_key,
        )

    @property
    def device(self) -> torch.device:
        """The device of the preprocessing (and so of the whole reconstruction)."""
        return self.preprocessing.device

    def inferer_for(self, acceleration: float) -> Any:
        """The inferer with the ``t0`` of a volume at ``acceleration``.

        ``t0="auto"`` with a calibration table picks the calibrated value of that
        acceleration; a number replaces the inferer's; otherwise the inferer is used as is.
        """
        t0 = self.t0
        if t0 == "auto":
            table = load_t0_table(self.models_dir) if self.models_dir is not None else None
            t0 = nearest_t0(table, acceleration) if table else None
        if t0 is None or t0 == self.inferer.t0:
            return self.inferer
        inferer = copy.copy(self.inferer)
        inferer.t0, inferer.start = float(t0), inferer.sub.start_level(float(t0))
        return inferer

    @torch.no_grad()
    def reconstruct(self, volume: FastMRIVolume) -> Dict[str, Any]:
        """Reconstruct one open volume, a batch of slices at a time.

        Returns:
            ``{"image": (S, h, w) float32, "std": (S, h, w) float32 or None, "nfe": int,
            "t0": float}``; images in the file's intensity units, cropped to the recon matrix.
        """
        state = self.preprocessing.prepare_volume(volume)
        inferer = self.inferer_for(state["acceleration"])
        name = volume.path.name
        images, stds = [], []
        bar = tqdm(total=volume.num_slices, desc=volume_name(name), unit="slice", leave=False, disable=not self.progress)
        for start in range(0, volume.num_slices, self.batch_size):
            indices = list(range(start, min(start + self.batch_size, volume.num_slices)))
            batch = self.preprocessing(volume, indices, state)
            x0 = self.initializer(batch.op, batch.kspace)
            generators = [torch.Generator(device=self.device).manual_seed(slice_seed(self.seed, name, i)) for i in indices]
            x = inferer(x0, self.network, batch.op, batch.kspace, generator=generators)
            images.append(self.postprocessing(x, batch.scale, volume.header).cpu())
            if inferer.last_std is not None:
                stds.append(self.postprocessing(inferer.last_std, batch.scale, volume.header).cpu())
            bar.update(len(indices))
        bar.close()
        return {
            "image": torch.cat(images).numpy(),
            "std": torch.cat(stds).numpy() if stds else None,
            "nfe": int(inferer.last_nfe),
            "t0": float(inferer.t0),
        }

    def process(self, path: PathLike) -> VolumeResult:
        """Reconstruct, write and score one file; errors become a failed result naming the file."""
        path = Path(path)
        name = volume_name(path)
        result = VolumeResult(name=name, path=str(path), status="failed")
        try:
            outputs = self.writer.paths(name).values()
            if any(out.resolve() == path.resolve() for out in outputs):
                raise ValueError(f"{path}: an output would overwrite the input; choose another output folder")
            with FastMRIVolume(path) as volume:
                result.slices = volume.num_slices
                if self.writer.is_done(name):
                    result.status = "skipped"
                    image = self.writer.read_done(name)
                else:
                    start = time.perf_counter()
                    out = self.reconstruct(volume)
                    result.seconds = time.perf_counter() - start
                    result.nfe, result.t0, image = out["nfe"], out["t0"], out["image"]
                    written = self.writer.write(name, image, volume.header, out["std"])
                    result.outputs = [str(p) for p in written]
                    result.status = "done"
                target_key = self.target_key or volume.target_key
                if target_key is not None and image is not None:
                    target = np.stack([volume.target_slice(i, target_key) for i in range(volume.num_slices)])
                    if target.shape != image.shape:
                        raise ValueError(
                            f"{path}: key '{target_key}': expected the reconstruction's shape "
                            f"{image.shape}, found {target.shape}"
                        )
                    result.metrics = volume_metrics(target, image)
        except (ValueError, OSError, KeyError, RuntimeError) as error:
            message = str(error)
            result.status = "failed"
            result.error = message if str(path) in message else f"{path}: {message}"
            logger.error(result.error)
        return result

    def run(self, inputs: Union[PathLike, Sequence[PathLike]]) -> RunReport:
        """Reconstruct every input file (files or folders of ``*.h5``) and write the outputs.

        Under ``torch.distributed`` each rank takes its share ``files[rank::world]`` and
        the results are gathered on every rank; rank 0 writes ``metrics.csv`` and logs
        the summary.

        Returns:
            the :class:`RunReport` of all files.

        Raises:
            PermissionError: the output folder cannot be written (nothing is processed).
        """
        self.writer.check_writable()
        files = find_inputs(inputs)
        rank, world = _distributed()
        mine = list(enumerate(files))[rank::world]
        bar = tqdm(mine, desc="volumes", unit="file", disable=not self.progress or rank != 0)
        local = [(index, self.process(path)) for index, path in bar]
        if world > 1:
            gathered: List[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, local)
            local = [item for part in gathered for item in part]
        results = [result for _, result in sorted(local, key=lambda item: item[0])]
        report = RunReport(results)
        scored = [(r.name, r.metrics) for r in results if r.metrics]
        if rank == 0:
            if scored:
                report.metrics_path = write_metrics_csv(self.writer.output_dir / "metrics.csv", scored)
            logger.info("summary\n%s", report.table())
        return report


# ----------------------------------------------------------------------------- evaluation
def evaluate_folders(pred_dir: PathLike, target_dir: PathLike) -> RunReport:
    """fastMRI metrics of the submission files in ``pred_dir`` against the targets in ``target_dir``.

    Each ``target_dir/<name>.h5`` with a target is compared with ``pred_dir/<name>.h5``
    (dataset ``reconstruction``); a missing or mismatched prediction is a failed entry.
    """
    results = []
    for path in find_inputs(target_dir):
        name = volume_name(path)
        result = VolumeResult(name=name, path=str(path), status="failed")
        pred_path = Path(pred_dir) / f"{name}.h5"
        try:
            with FastMRIVolume(path) as volume:
                if volume.target_key is None:
                    raise ValueError(f"{path}: expected a target (reconstruction_rss/esc), found none")
                target = np.stack([volume.target_slice(i) for i in range(volume.num_slices)])
            if not pred_path.is_file():
                raise FileNotFoundError(f"{pred_path}: prediction for {path} not found")
            with h5py.File(pred_path, "r") as handle:
                if "reconstruction" not in handle:
                    raise ValueError(f"{pred_path}: key 'reconstruction': expected a dataset, found keys {sorted(handle)}")
                pred = np.asarray(handle["reconstruction"], dtype=np.float32)
            if pred.shape != target.shape:
                raise ValueError(f"{pred_path}: key 'reconstruction': expected shape {target.shape}, found {pred.shape}")
            result.metrics, result.slices, result.status = volume_metrics(target, pred), len(target), "done"
        except (ValueError, OSError, KeyError) as error:
            result.error = str(error)
        results.append(result)
    return RunReport(results)
