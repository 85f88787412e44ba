"""Shared machinery of the benchmark scripts.

One place for: reading a folder of fastMRI-format files into slices, the mask settings,
per-slice preparation (mask, coil maps, zero-filled image, intensity scale), the method
registry (every method is a configuration of the library's one reconstruction path:
an initializer, optionally followed by :class:`ccdf_mri.inferers.CCDFInferer`), timing
with medians and spread, peak memory, machine information and result writing
(JSON, markdown, PNG through matplotlib's Agg backend).

Units: images are complex ``(B, H, W)`` tensors in the file's intensity units unless a
name says ``scaled`` (divided by the slice's intensity scale, what the networks see);
times are seconds; memory is MiB.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DEFAULT_MODELS_DIR = REPO_ROOT / "bundles" / "ccdf_mri_recon" / "models"


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class MaskSetting:
    """One undersampling setting: mask kind, acceleration and fully sampled centre fraction."""

    kind: str
    acceleration: int
    center_fraction: float

    @property
    def label(self) -> str:
        """Short name used in tables and file names, e.g. ``equispaced_fraction-4x``."""
        return f"{self.kind}-{self.acceleration}x"


#: The issue's settings: 4x with an 8% centre and 8x with a 4% centre, 1-D and 2-D masks.
MASK_SETTINGS: tuple[MaskSetting, ...] = (
    MaskSetting("equispaced_fraction", 4, 0.08),
    MaskSetting("equispaced_fraction", 8, 0.04),
    MaskSetting("poisson2d", 4, 0.08),
    MaskSetting("poisson2d", 8, 0.04),
)


def mask_settings_by_label(labels: Sequence[str] | None) -> list[MaskSetting]:
    """The settings named by ``labels`` (all of :data:`MASK_SETTINGS` when None)."""
    if not labels:
        return list(MASK_SETTINGS)
    known = {s.label: s for s in MASK_SETTINGS}
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ValueError(f"unknown mask setting(s) {unknown}; expected some of {sorted(known)}")
    return [known[label] for label in labels]


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class SliceCase:
    """One fully sampled slice of a fastMRI-format file and its magnitude target.

    Attributes:
        volume: file name (the fastMRI mask seed and the per-volume metric group).
        index: slice index inside the file.
        kspace: fully sampled k-space ``(C, H, W)`` complex64 (readout oversampling removed).
        target: magnitude target ``(h, w)`` float32 from the file (e.g. ``reconstruction_rss``).
        padding: k-space columns outside the header's encoded limits, ``(left, right)``.
        header: the file's :class:`ccdf_mri.io.FastMRIHeader` (None when it has none); the one
            preprocessing path reads the mask's column padding from it.
    """

    volume: str
    index: int
    kspace: torch.Tensor
    target: np.ndarray
    padding: tuple[int, int] | None
    header: Any = None


def split_folder(data_dir: Path, split: str) -> Path:
    """``data_dir/split`` when that folder exists (a corpus root), else ``data_dir`` itself."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    candidate = data_dir / split
    return candidate if candidate.is_dir() else data_dir


def require_done(report: Any, label: str) -> Any:
    """``report`` (a :class:`ccdf_mri.app.report.RunReport`) when it has volumes and every one was
    reconstructed in this run (status ``done``); else RuntimeError naming ``label`` and each other
    volume with its status and error. A timing or score of skipped or failed volumes means nothing."""
    others = [f"{r.name}: {r.status}: {r.error}" for r in report.results if r.status != "done"]
    if others or not report.results:
        raise RuntimeError(f"{label}: " + ("; ".join(others) or "no volume"))
    return report


def list_h5(folder: Path) -> list[Path]:
    """Sorted ``*.h5`` files directly inside ``folder``; error when there are none."""
    files = sorted(Path(folder).glob("*.h5"))
    if not files:
        raise FileNotFoundError(f"no .h5 files in {folder}")
    return files


def _evenly_spaced(count: int, num: int) -> list[int]:
    """``num`` indices spread evenly over ``range(count)`` (centred, no duplicates)."""
    num = min(num, count)
    return sorted({int((k + 0.5) * count / num) for k in range(num)})


def _crop_oversampling(kspace: torch.Tensor, header: Any, target_rows: int) -> torch.Tensor:
    """Readout oversampling removed by the one path's transform (:class:`ccdf_mri.transforms.CropReadoutOversamplingd`):
    as the header declares, else (no header) when the k-space has twice the target's rows."""
    from ccdf_mri.transforms import CropReadoutOversamplingd

    rows = None if header is not None or kspace.shape[-2] != 2 * target_rows else target_rows
    return CropReadoutOversamplingd("kspace", num_rows=rows)({"kspace": kspace, "meta": {"header": header}})["kspace"]


def _read_target(path: Path, key: str, index: int) -> np.ndarray:
    """``|file[key][index]|`` as float32 (any real or complex dataset ``(S, h, w)``)."""
    import h5py

    with h5py.File(path, "r") as handle:
        if key not in handle:
            raise ValueError(f"{path}: key '{key}': expected a target dataset, found keys {sorted(handle.keys())}")
        return np.abs(np.asarray(handle[key][index])).astype(np.float32)


def noise_free_target_key(folder: Path) -> str | None:
    """The noise-free target's key (``ccdf_mri.demo.TARGET_KEY``, as ``make demo`` scores) when the
    folder's first file has it, else None (the file's fastMRI target: on the demo corpus that is
    the noisy fully sampled image)."""
    import h5py

    from ccdf_mri.demo import TARGET_KEY

    with h5py.File(list_h5(folder)[0], "r") as first:
        return TARGET_KEY if TARGET_KEY in first else None


def load_cases(
    folder: Path, max_slices: int, log: Callable[[str], None] = print, target_key: str | None = None
) -> tuple[list[SliceCase], list[str]]:
    """Read up to ``max_slices`` slices, spread over the volumes of ``folder``.

    Slices are taken evenly spaced inside each volume and volumes in name order, so the
    same folder and ``max_slices`` always give the same slices. Files without a target
    (test-set files) or that cannot be read are skipped and reported.

    Args:
        target_key: dataset whose magnitude is the target (e.g. the demo corpus's noise-free
            ``target_complex``); default: the file's fastMRI target (``reconstruction_rss``).

    Returns:
        the slices, and one message per skipped file.
    """
    from ccdf_mri.io.fastmri import FastMRIVolume

    files = list_h5(folder)
    per_volume = max(1, math.ceil(max_slices / len(files)))
    cases: list[SliceCase] = []
    skipped: list[str] = []
    for path in files:
        if len(cases) >= max_slices:
            break
        try:
            with FastMRIVolume(path) as volume:
                if volume.target_key is None and target_key is None:
                    skipped.append(f"{path.name}: no target (test-set file), skipped")
                    continue
                width = volume.kspace_slice(0).shape[-1]
                padding = volume.header.padding_columns(width) if volume.header is not None else None
                for index in _evenly_spaced(volume.num_slices, per_volume):
                    if len(cases) >= max_slices:
                        break
                    kspace = torch.from_numpy(np.ascontiguousarray(volume.kspace_slice(index)))
                    if target_key is None:
                        target = np.asarray(volume.target_slice(index), dtype=np.float32)
                    else:
                        target = _read_target(path, target_key, index)
                    kspace = _crop_oversampling(kspace, volume.header, target.shape[-2])
                    cases.append(SliceCase(path.name, index, kspace, target, padding, volume.header))
        except (OSError, ValueError, KeyError) as error:
            skipped.append(f"{path.name}: {error}")
    for message in skipped:
        log(f"skipped {message}")
    if not cases:
        raise FileNotFoundError(f"no usable slices with targets in {folder}")
    return cases, skipped


# --------------------------------------------------------------------------- preparation


@dataclasses.dataclass
class PreparedSlice:
    """A slice undersampled for one mask setting, as the one preprocessing path makes it.

    Built by :func:`prepare_slice` from the output of
    :func:`ccdf_mri.preprocessing.make_preprocessing` (what ``ccdf-mri recon``, training and the
    bundle run): the scaled k-space and zero-filled image are that path's tensors, bit for bit.

    Attributes:
        case: the source slice.
        setting: the mask setting.
        mask: float32 0/1 mask broadcastable to ``(1, C, H, W)``.
        kspace_scaled: measured (masked) k-space ``(1, C, H, W)`` divided by ``scale``
            (the preprocessing's ``"kspace"``).
        maps: coil maps ``(1, C, H, W)`` estimated from the measured k-space.
        image_scaled: zero-filled SENSE image ``(1, H, W)`` divided by ``scale`` (``"image"``).
        reference: SENSE combination of the fully sampled k-space ``(1, H, W)`` with ``maps``
            (the complex truth used in scaled-error studies), file units.
        scale: intensity scale (0-d), see :mod:`ccdf_mri.intensity`.
        prep_seconds: time of the preprocessing (mask, coil maps, zero-filled image, scale).
    """

    case: SliceCase
    setting: MaskSetting
    mask: torch.Tensor
    kspace_scaled: torch.Tensor
    maps: torch.Tensor
    image_scaled: torch.Tensor
    reference: torch.Tensor
    scale: torch.Tensor
    prep_seconds: float

    @property
    def kspace(self) -> torch.Tensor:
        """Measured k-space ``(1, C, H, W)`` in file units."""
        return self.kspace_scaled * self.scale

    @property
    def zero_filled(self) -> torch.Tensor:
        """Zero-filled SENSE image ``(1, H, W)`` in file units."""
        return self.image_scaled * self.scale

    def op(self, num_samples: int = 1) -> Any:
        """The SENSE operator of this slice (maps repeated ``num_samples`` times)."""
        from ccdf_mri.physics import SenseOp

        maps = self.maps.repeat(num_samples, 1, 1, 1) if num_samples > 1 else self.maps
        return SenseOp(maps, self.mask)


def prepare_slice(
    case: SliceCase, setting: MaskSetting, maps_method: str = "acs", device: str = "cpu", **maps_kwargs: Any
) -> PreparedSlice:
    """Undersample ``case`` with ``setting`` through the one preprocessing path.

    Runs :func:`ccdf_mri.preprocessing.make_preprocessing` (mask seeded from the file name,
    column padding from the file's header, coil maps over the fully sampled centre with the
    path's calibration rules, zero-filled SENSE image, intensity scale) on the slice as a batch
    of one. ``maps_kwargs`` go to the coil-map estimator (ESPIRiT's ``thresh``, ``crop``, ...).

    Raises:
        ValueError: an unknown ``maps_method``, or coil maps that came out all zero.
    """
    from ccdf_mri.physics import sense_combine
    from ccdf_mri.preprocessing import FULL_KEY, make_preprocessing

    start = time.perf_counter()
    preprocessing = make_preprocessing(setting.kind, setting.acceleration, setting.center_fraction, maps_method,
                                       keep_fully_sampled=True, **maps_kwargs)
    sample = {"kspace": case.kspace.to(device)[None],
              "meta": {"filename": case.volume, "header": case.header, "slice": [case.index]}}
    data = preprocessing(sample)
    maps = data["maps"]
    if not bool(maps.abs().amax() > 0):
        raise ValueError(
            f"{case.volume} slice {case.index}: {maps_method} coil maps are all zero ({setting.label}); "
            "use more centre lines, a larger matrix or maps_method='acs'"
        )
    scale = data["scale"].reshape(())
    synchronize(device)
    seconds = time.perf_counter() - start
    reference = sense_combine(data[FULL_KEY], maps)
    return PreparedSlice(case, setting, data["mask"], data["kspace"], maps, data["image"], reference, scale, seconds)


def centre_crop(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre crop the last two axes of ``image`` to ``shape`` (fastMRI's target crop)."""
    h, w = image.shape[-2:]
    top, left = (h - shape[0]) // 2, (w - shape[1]) // 2
    if top < 0 or left < 0:
        raise ValueError(f"cannot crop image {image.shape[-2:]} to larger target {shape}")
    return image[..., top : top + shape[0], left : left + shape[1]]


def magnitude_for_metrics(image: torch.Tensor, target_shape: tuple[int, int]) -> np.ndarray:
    """``|image|`` of a ``(1, H, W)`` or ``(H, W)`` complex tensor, cropped to the target, float32."""
    magnitude = image.detach().abs().reshape(image.shape[-2:]).float().cpu().numpy()
    return np.ascontiguousarray(centre_crop(magnitude, target_shape))


# --------------------------------------------------------------------------- models


@dataclasses.dataclass
class Models:
    """The networks and schedule the benchmarks use.

    Attributes:
        score_net: epsilon network ``(B, 2, H, W), (B,) -> (B, 2, H, W)`` or None.
        unet: initializer network ``(B, 2, H, W) -> (B, 2, H, W)`` or None.
        schedule: the diffusion schedule the score network was trained with.
        description: where the weights came from (for the result files).
        models_dir: the folder they were read from (its ``calibration.json`` serves ``t0="auto"``).
    """

    score_net: torch.nn.Module | None
    unet: torch.nn.Module | None
    schedule: Any
    description: dict[str, str]
    models_dir: Path | None = None


def load_models(
    models_dir: Path = DEFAULT_MODELS_DIR,
    device: str = "cpu",
    bundle: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Models:
    """The bundle's networks and schedule, built as ``ccdf-mri recon`` builds them.

    The architectures and the schedule come from the bundle's ``configs/inference.json``
    (``network_def``, ``initializer_def``, ``schedule``; ``overrides`` are config ids, e.g.
    ``{"network_def#channels": [16, 32, 64, 128]}``) and the weights ``score_net.pt`` /
    ``unet.pt`` of ``models_dir`` are loaded into them by
    :func:`ccdf_mri.networks.loading.load_weights`. A missing weights file gives None. Weights
    of another architecture whose exported ``.json`` is beside them (a training run's folder)
    are rebuilt from that record instead, and the description says so.

    Args:
        models_dir: folder of the weights (default: the shipped bundle's ``models/``).
        device: where the networks go.
        bundle: bundle folder (default: the shipped one, see :func:`ccdf_mri.app.bundle.bundle_dir`).
        overrides: further config overrides.
    """
    from ccdf_mri.app.build import read_config
    from ccdf_mri.networks.loading import load_exported_network, load_weights

    models_dir = Path(models_dir)
    parser = read_config(bundle, {"models_dir": str(models_dir), **(overrides or {})})
    found: dict[str, torch.nn.Module | None] = {}
    description: dict[str, str] = {}
    for name, key in (("score_net", "network_def"), ("unet", "initializer_def")):
        weights = models_dir / f"{name}.pt"
        if not weights.is_file():
            found[name], description[name] = None, f"missing ({weights})"
            continue
        try:
            found[name] = load_weights(parser.get_parsed_content(key, lazy=False), weights, device)
            description[name] = f"{weights} (bundle config {key})"
        except ValueError:
            if not weights.with_suffix(".json").is_file():
                raise
            found[name] = load_exported_network(weights).to(device).eval()
            description[name] = f"{weights} (architecture of {weights.with_suffix('.json').name}; not the config's {key})"
    schedule = parser.get_parsed_content("schedule", lazy=False)
    description["schedule"] = repr(schedule)
    return Models(found["score_net"], found["unet"], schedule, description, models_dir)


# --------------------------------------------------------------------------- methods

INITIALIZERS = ("zero_filled", "cg_sense", "l1_wavelet", "unet")
SAMPLERS = ("ddpm", "ddim", "ve")


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """A reconstruction configuration.

    ``t0 is None`` means the initializer alone; otherwise the initializer's output is the
    CCDF starting point (``t0 = 1`` starts from pure noise, the initializer is then unused;
    ``t0 = "auto"`` asks :func:`ccdf_mri.diffusion.theory.select_t0`).

    Attributes:
        name: unique row name.
        family: curve the row belongs to in plots (rows of one family share all but t0/N).
        initializer: one of :data:`INITIALIZERS`.
        t0: None, a float in (0, 1], or "auto".
        num_steps: N, the number of (strided) diffusion steps; None = the schedule's.
        sampler: one of :data:`SAMPLERS`.
        dc_target: "sample" or "x0".
    """

    name: str
    family: str
    initializer: str
    t0: float | str | None = None
    num_steps: int | None = None
    sampler: str = "ddpm"
    dc_target: str = "sample"

    def expected_nfe(self, auto_t0: float = 0.1, num_train_steps: int = 1000) -> int:
        """Score-network evaluations this method will make (``round(t0 * N)``)."""
        if self.t0 is None:
            return 0
        t0 = auto_t0 if self.t0 == "auto" else float(self.t0)
        return int(round(t0 * (self.num_steps or num_train_steps)))


def initial_estimate(
    kind: str, prep: PreparedSlice, unet: torch.nn.Module | None, l1_lambda: float | None
) -> torch.Tensor:
    """The initializer's image ``(1, H, W)`` in scaled units, by :func:`ccdf_mri.initializers.make_initializer`.

    Args:
        l1_lambda: the L1-wavelet weight in scaled units (required for ``"l1_wavelet"``).
    """
    from ccdf_mri.initializers import make_initializer

    if kind == "l1_wavelet" and l1_lambda is None:
        raise ValueError("initializer 'l1_wavelet' needs a tuned lambda, found l1_lambda=None")
    options = {"l1_lam": l1_lambda} if kind == "l1_wavelet" else {}
    initializer = make_initializer(kind, network=unet, **options)
    return initializer(prep.op(), prep.kspace_scaled)


@dataclasses.dataclass
class MethodOutput:
    """Result of one method on one slice: image ``(1, H, W)`` in file units, NFE, seconds, t0."""

    image: torch.Tensor
    nfe: int
    seconds: float
    t0: float | None


def make_inferer(spec: MethodSpec, schedule: Any, t0: float, num_samples: int = 1, dc: Any = None) -> Any:
    """The :class:`ccdf_mri.inferers.CCDFInferer` of ``spec`` at a resolved ``t0``."""
    from ccdf_mri.inferers import CCDFInferer
    from ccdf_mri.physics import ProximalDC

    return CCDFInferer(
        schedule,
        sampler=spec.sampler,
        t0=t0,
        num_steps=spec.num_steps,
        dc=dc if dc is not None else ProximalDC(),
        num_samples=num_samples,
        dc_target=spec.dc_target,
        progress=False,
    )


def run_method(
    spec: MethodSpec,
    prep: PreparedSlice,
    models: Models,
    l1_lambda: float | None = None,
    auto_t0: float | None = None,
    seed: int = 0,
) -> MethodOutput:
    """Run ``spec`` on one prepared slice; time it (excluding the shared preparation).

    Args:
        auto_t0: the t0 that ``t0="auto"`` resolves to for this setting.
        seed: seed of the diffusion noise.
    """
    device = prep.kspace.device
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        from_noise = spec.t0 is not None and spec.t0 != "auto" and float(spec.t0) >= 1
        # from pure noise the starting image is unused: take the cheapest one
        x0 = initial_estimate("zero_filled" if from_noise else spec.initializer, prep, models.unet, l1_lambda)
        if spec.t0 is None:
            image = x0 * prep.scale
            synchronize(device)
            return MethodOutput(image, 0, time.perf_counter() - start, None)
        if models.score_net is None:
            raise ValueError(f"method {spec.name} needs a score network (models/score_net.pt missing)")
        if spec.t0 == "auto":
            if auto_t0 is None:
                raise ValueError(f"method {spec.name}: t0='auto' was not resolved for {prep.setting.label}")
            t0 = auto_t0
        else:
            t0 = float(spec.t0)
        inferer = make_inferer(spec, models.schedule, t0)
        generator = torch.Generator(device=device).manual_seed(seed)
        result = inferer(x0, models.score_net, prep.op(), prep.kspace_scaled, generator=generator)
        image = result.mean * prep.scale
    synchronize(device)
    return MethodOutput(image, int(result.nfe[0]), time.perf_counter() - start, t0)


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device | str) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU), so wall-clock times are honest."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (IQR = q75 - q25), min, max and count of ``values`` (NaN-free)."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if array.size == 0:
        return {"median": float("nan"), "q25": float("nan"), "q75": float("nan"), "iqr": float("nan"),
                "min": float("nan"), "max": float("nan"), "n": 0}
    q25, median, q75 = np.percentile(array, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25),
            "min": float(array.min()), "max": float(array.max()), "n": int(array.size)}


def time_repeats(fn: Callable[[], Any], repeats: int, device: str = "cpu", warmup: int = 1) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times; :func:`spread` of seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return spread(times)


class TimedNetwork(torch.nn.Module):
    """Wraps a network and accumulates the wall time and number of its forward calls."""

    def __init__(self, network: torch.nn.Module, device: str = "cpu"):
        super().__init__()
        self.network = network
        self.device_name = str(device)
        self.seconds = 0.0
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        synchronize(self.device_name)
        start = time.perf_counter()
        out = self.network(*args, **kwargs)
        synchronize(self.device_name)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


class TimedDC:
    """Wraps a data-consistency map ``dc(x_prime, op, y)`` and accumulates its wall time."""

    def __init__(self, dc: Any, device: str = "cpu", root: Optional["TimedDC"] = None):
        self.dc = dc
        self.device_name = str(device)
        self.seconds = 0.0
        self.calls = 0
        self.root = self if root is None else root  # where the time of maps bound from this one adds up

    def __call__(self, x_prime: torch.Tensor, op: Any, y: torch.Tensor) -> torch.Tensor:
        synchronize(self.device_name)
        start = time.perf_counter()
        out = self.dc(x_prime, op, y)
        synchronize(self.device_name)
        self._add(time.perf_counter() - start)
        return out

    def bind(self, op: Any, y: torch.Tensor) -> "TimedDC":
        """The wrapped map bound to a batch (``AffineDC.bind``), still timed here."""
        return TimedDC(self.dc.bind(op, y) if hasattr(self.dc, "bind") else self.dc, self.device_name, self.root)

    def select(self, index: torch.Tensor) -> "TimedDC":
        return TimedDC(self.dc.select(index) if hasattr(self.dc, "select") else self.dc, self.device_name, self.root)

    def _add(self, seconds: float) -> None:
        self.root.seconds += seconds
        self.root.calls += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dc, name)


# --------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory while the ``with`` block runs, in MiB (``.peak_mib`` after exit).

    CUDA: ``torch.cuda.max_memory_allocated`` after a reset (tensors only).
    CPU: a background thread samples the resident set size every ``interval`` seconds and
    reports the peak above the RSS at entry. ``tracemalloc`` cannot be used for this: it
    sees only allocations made through Python's allocator, not torch's CPU tensors.
    """

    def __init__(self, device: str = "cpu", interval: float = 0.002):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mib = float("nan")
        self._stop = threading.Event()
        self._peak = 0
        self._base = 0
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.peak_mib = (self._peak - self._base) / 2**20


def process_peak_rss_mib() -> float:
    """Peak resident set size of this process since it started (``resource``), MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, usable cores, torch threads, library versions and the device used."""
    import monai
    import sigpy

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "sigpy": sigpy.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


# --------------------------------------------------------------------------- results


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Temporary path beside ``path``, renamed onto it on success, removed on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (NaN/inf -> null), atomically."""
    path = Path(path)
    with _atomic(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically."""
    path = Path(path)
    with _atomic(path) as tmp:
        tmp.write_text(text)
    return path


def save_figure(figure: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with _atomic(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def format_cell(value: Any, digits: int = 3) -> str:
    """Markdown cell text: floats with ``digits`` significant decimals, None/NaN as ``-``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A markdown table of ``rows`` with ``columns`` given as ``(key, header)`` pairs."""
    lines = ["| " + " | ".join(header for _, header in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(key)) for key, _ in columns) + " |")
    return "\n".join(lines) + "\n"


def use_agg() -> None:
    """Select matplotlib's non-interactive Agg backend (before pyplot is imported)."""
    import matplotlib

    matplotlib.use("Agg")


def set_threads(threads: int | None) -> None:
    """Limit torch's intra-op threads (None: leave torch's default)."""
    if threads:
        torch.set_num_threads(threads)
