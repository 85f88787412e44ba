"""The demo brain corpus: simulated multi-coil fastMRI-format volumes from the ICBM template.

Every volume is a pure function of ``(seed, split, index)`` and the configuration: its
random generator is ``numpy.random.default_rng(SeedSequence([seed, split_id, index]))``,
so the same seed gives bit-identical arrays, volumes can be built in any order, and a
rerun that skips finished files gives the same corpus.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ccdf_mri.io.atomic import atomic_path

from .brain import CONTRASTS, ORIENTATIONS, SPLIT_BANDS, SPLITS, VolumeParams, draw_volume_params, render_volume
from .coils import random_birdcage_maps
from .kspace import simulate_kspace
from .template import TEMPLATE_FILES, TEMPLATE_NOTICE, load_template
from .writer import write_simulated_h5

_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
FILE_PREFIX = "ccdf_demo"


@dataclass
class CorpusConfig:
    """How the demo corpus is simulated.

    Attributes:
        size: image and k-space matrix (size x size).
        num_coils: receive coils C.
        snr_db: SNR of the white k-space noise (see :mod:`ccdf_mri.simulation.kspace`); None: no noise.
        slices_per_volume: slices S per file.
        fov_mm: square field of view in mm.
        spacing_mm: distance between adjacent slices (reduced to fit a split band).
        orientations: orientations drawn from.
        contrasts: contrasts drawn from.
        seed: master seed.
        deform: random affine + elastic deformation on/off.
        template_dir: folder of the three template files (None: installed nilearn).
    """

    size: int = 256
    num_coils: int = 8
    snr_db: Optional[float] = 30.0
    slices_per_volume: int = 8
    fov_mm: float = 256.0
    spacing_mm: float = 3.0
    orientations: Tuple[str, ...] = ORIENTATIONS
    contrasts: Tuple[str, ...] = CONTRASTS
    seed: int = 0
    deform: bool = True
    template_dir: Optional[str] = None

    def __post_init__(self) -> None:
        self.orientations = tuple(self.orientations)
        self.contrasts = tuple(self.contrasts)
        if self.size < 16 or self.num_coils < 1 or self.slices_per_volume < 1:
            raise ValueError(
                f"corpus config: expected size >= 16, num_coils >= 1, slices_per_volume >= 1, "
                f"found {self.size}, {self.num_coils}, {self.slices_per_volume}"
            )


@dataclass
class SimulatedVolume:
    """One simulated volume.

    Attributes:
        images: complex64 ``(S, H, W)`` noise-free target.
        support: bool ``(S, H, W)`` object support.
        maps: complex64 ``(C, H, W)`` coil maps (``sum |S_c|^2 = 1``), or None (images only).
        kspace: complex64 ``(S, C, H, W)`` noisy k-space, or None (images only).
        noise_std: sigma of the complex k-space noise.
        params: the anatomical / contrast draws.
    """

    images: np.ndarray
    support: np.ndarray
    maps: Optional[np.ndarray]
    kspace: Optional[np.ndarray]
    noise_std: float
    params: VolumeParams


def volume_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Random generator of volume ``index`` of ``split`` (independent of all other volumes)."""
    if split not in _SPLIT_ID:
        raise ValueError(f"unknown split '{split}': expected one of {SPLITS}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_ID[split], int(index)]))


def simulate_volume(config: CorpusConfig, split: str, index: int, with_kspace: bool = True) -> SimulatedVolume:
    """Simulate volume ``index`` of ``split``.

    Args:
        config: corpus configuration.
        split: "train", "val" or "test".
        index: volume number within the split.
        with_kspace: False -> images only (no coil maps, no FFT, no noise; much faster).

    Returns:
        :class:`SimulatedVolume`.
    """
    rng = volume_rng(config.seed, split, index)
    template = load_template(config.template_dir, pixel_mm=config.fov_mm / config.size)
    params = draw_volume_params(
        template, split, config.slices_per_volume, rng, config.orientations, config.contrasts,
        config.spacing_mm, config.deform,
    )
    shape = (config.size, config.size)
    images, support = render_volume(template, params, shape, config.fov_mm, rng, deform=config.deform)
    if not with_kspace:
        return SimulatedVolume(images, support, None, None, 0.0, params)
    maps = random_birdcage_maps(config.num_coils, shape, rng)
    kspace, sigma = simulate_kspace(images, maps, config.snr_db, rng, support)
    return SimulatedVolume(images, support, maps, kspace, sigma, params)


def simulate_slices(
    num_slices: int,
    size: int = 256,
    split: str = "train",
    seed: int = 0,
    slices_per_volume: int = 8,
    first_volume: int = 0,
    **config_kwargs,
) -> np.ndarray:
    """Noise-free complex target slices only (no k-space): fast training data for the score network.

    The slices are those of volumes ``first_volume, first_volume + 1, ...`` of ``split``,
    i.e. exactly the ``target_complex`` of the corpus files built with the same settings.

    Args:
        num_slices: N.
        size: image size (size x size).
        split: "train", "val" or "test".
        seed: master seed.
        slices_per_volume: slices per simulated volume.
        first_volume: index of the first volume (to draw disjoint chunks).
        **config_kwargs: further :class:`CorpusConfig` fields (fov_mm, orientations, contrasts, ...).

    Returns:
        complex64 ``(N, size, size)``.
    """
    config = CorpusConfig(size=size, seed=seed, slices_per_volume=slices_per_volume, **config_kwargs)
    out: List[np.ndarray] = []
    count, index = 0, first_volume
    while count < num_slices:
        images = simulate_volume(config, split, index, with_kspace=False).images
        out.append(images[: num_slices - count])
        count += out[-1].shape[0]
        index += 1
    if not out:
        return np.zeros((0, size, size), np.complex64)
    return np.concatenate(out)


def volume_path(out_dir: Union[str, os.PathLike], split: str, index: int, prefix: str = FILE_PREFIX) -> Path:
    """``<out_dir>/<split>/<prefix>_<split>_<index:04d>.h5`` (prefix ``ccdf_demo`` for v1)."""
    return Path(out_dir) / split / f"{prefix}_{split}_{index:04d}.h5"


def write_volume(path: Union[str, os.PathLike], volume: SimulatedVolume, config: CorpusConfig, split: str, index: int) -> Path:
    """Write a simulated volume as a fastMRI-format file (atomic)."""
    params = volume.params
    extra = {
        "split": split,
        "volume_index": int(index),
        "seed": int(config.seed),
        "snr_db": float("nan") if config.snr_db is None else float(config.snr_db),
        "noise_std": float(volume.noise_std),
        "simulation": json.dumps(params.to_dict()),
        "source": "MNI ICBM152 2009a nonlinear symmetric template (simulated)",
    }
    return write_simulated_h5(
        path, volume.kspace, volume.images, (config.fov_mm, config.fov_mm), params.spacing_mm,
        params.acquisition, f"{FILE_PREFIX}_{split}_{index:04d}", extra,
    )


@dataclass
class BuildSummary:
    """Outcome of :func:`build_corpus`."""

    written: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    slices: int = 0
    bytes: int = 0
    seconds: float = 0.0


def build_corpus(
    out_dir: Union[str, os.PathLike],
    counts: Dict[str, int],
    config: CorpusConfig,
    overwrite: bool = False,
    progress: Callable = lambda iterable, **_: iterable,
) -> BuildSummary:
    """Build (or complete) the corpus under ``out_dir``.

    Writes ``<split>/ccdf_demo_<split>_<i>.h5`` for ``i < counts[split]``, then
    ``corpus.json`` (configuration and file list) and ``README.md`` (description, split
    rule, template licence notice). Existing volume files are kept unless ``overwrite``.

    Args:
        out_dir: output folder.
        counts: volumes per split, e.g. ``{"train": 40, "val": 4, "test": 4}``.
        config: corpus configuration.
        overwrite: rebuild existing files.
        progress: wrapper for the volume loop (e.g. ``tqdm``), called as ``progress(iterable, total=..)``.

    Returns:
        :class:`BuildSummary`.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    load_template(config.template_dir, pixel_mm=config.fov_mm / config.size)  # fail early on a bad template

    def make(path: Path, split: str, index: int) -> int:
        volume = simulate_volume(config, split, index)
        write_volume(path, volume, config, split, index)
        return volume.images.shape[0]

    summary = run_build(out, counts, make, overwrite, progress)
    write_corpus_metadata(out, counts, config)
    summary.seconds = time.perf_counter() - start
    return summary


def run_build(
    out: Path, counts: Dict[str, int], make: Callable[[Path, str, int], int], overwrite: bool = False,
    progress: Callable = lambda iterable, **_: iterable, prefix: str = FILE_PREFIX,
) -> BuildSummary:
    """The volume loop of a corpus build: skip existing files (resume), report failures, go on.

    Args:
        out: output folder.
        counts: volumes per split.
        make: ``make(path, split, index)`` simulates and writes one volume, returns its slice count.
        overwrite: rebuild existing files.
        progress: wrapper for the loop (e.g. ``tqdm``).
        prefix: file name prefix (:func:`volume_path`).

    Returns:
        :class:`BuildSummary` (``seconds`` covers the loop).
    """
    start = time.perf_counter()
    jobs = [(split, i) for split in SPLITS for i in range(int(counts.get(split, 0)))]
    summary = BuildSummary()
    for split, index in progress(jobs, total=len(jobs), desc="volumes", unit="vol"):
        path = volume_path(out, split, index, prefix)
        if path.exists() and not overwrite:
            summary.skipped.append(str(path))
            continue
        try:
            slices = make(path, split, index)
        except Exception as error:  # report and go on with the other volumes
            summary.failed[str(path)] = f"{type(error).__name__}: {error}"
            continue
        summary.written.append(str(path))
        summary.slices += slices
        summary.bytes += path.stat().st_size
    summary.seconds = time.perf_counter() - start
    return summary


def write_corpus_metadata(out: Path, counts: Dict[str, int], config: CorpusConfig) -> None:
    """Write ``corpus.json`` and ``README.md`` (atomic) for the files listed by ``counts``."""
    files = {
        split: [str(volume_path(out, split, i).relative_to(out)) for i in range(int(counts.get(split, 0)))]
        for split in SPLITS
    }
    config_dict = asdict(config)
    config_dict["template_dir"] = None if config.template_dir is None else str(config.template_dir)
    manifest = {"config": config_dict, "split_bands": SPLIT_BANDS, "files": files}
    with atomic_path(out / "corpus.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(corpus_readme(counts, config))


def corpus_readme(counts: Dict[str, int], config: CorpusConfig) -> str:
    """Text of the corpus README (description, split rule, licence notice)."""
    bands = "\n".join(f"- {split}: q in " + ", ".join(f"[{a:.2f}, {b:.2f})" for a, b in SPLIT_BANDS[split]) for split in SPLITS)
    files = "\n".join(f"- {split}/: {int(counts.get(split, 0))} volumes x {config.slices_per_volume} slices" for split in SPLITS)
    snr = "no noise" if config.snr_db is None else f"{config.snr_db:g} dB"
    return f"""# ccdf-mri demo brain corpus (simulated)

Simulated multi-coil brain MRI in the fastMRI `.h5` format, made by
`python -m data_prep.make_demo_corpus` without any download. It is NOT patient data:
every image is computed from the MNI ICBM152 2009a nonlinear symmetric template
(grey/white-matter probability maps and the brain mask of the T1 average) as shipped in
the `nilearn` package ({", ".join(TEMPLATE_FILES.values())}).

{files}

## Settings
- matrix {config.size} x {config.size}, field of view {config.fov_mm:g} mm, {config.num_coils} coils,
  slice spacing up to {config.spacing_mm:g} mm, SNR {snr}, master seed {config.seed}
- orientations: {", ".join(config.orientations)}; contrasts: {", ".join(config.contrasts)};
  deformation: {"on" if config.deform else "off"}

## How a volume is simulated
1. Contrast: one of T1-, T2-, PD-like; signal = c_GM GM + c_WM WM + c_CSF CSF + c_skull skull + c_scalp
   scalp with per-volume random tissue values; CSF = clip(mask - GM - WM, 0, 1) inside the
   head mask; the head outline is the brain mask closed with a 15 mm disc (dark skull in
   between) and a scalp shell lies at a random distance and thickness outside it.
2. Geometry: random in-plane rotation (+-15 deg), through-plane tilt (+-3 deg), zoom
   (0.9-1.1), shear, shift (+-8 mm), smooth elastic displacement (up to 3 mm); trilinear
   sampling of the template.
3. Smooth multiplicative bias field, fine texture (<= 5 %), smooth random phase.
4. Coils: `sigpy.mri.birdcage_maps` with random radius, rotation, gain and phase,
   normalised so that sum_c |S_c|^2 = 1.
5. k-space = centred orthonormal FFT of S_c x, plus white circular complex Gaussian
   noise; SNR_dB = 10 log10(mean_support |x|^2 / sigma^2).

## File contents
`kspace` (S, C, H, W) complex64 (fully sampled; H = readout rows, W = phase-encode
columns), `reconstruction_rss` (S, H, W) float32 (RSS of the noisy coil images),
`target_complex` (S, H, W) complex64 (noise-free complex image, the SENSE target),
`ismrmrd_header` (matrix and field of view), attrs `max`, `norm`, `acquisition`
(e.g. AXT1, CORT2, SAGPD), `patient_id`, and `split`, `volume_index`, `seed`, `snr_db`,
`noise_std`, `simulation` (JSON of the random draws).

## Train / val / test split (by anatomy)
Along the slice normal the brain's extent maps to a split coordinate q in [0, 1]
(axial: inferior to superior; coronal: posterior to anterior; sagittal: distance from
the midline over the half-width, since the template is left-right symmetric). All slices
of a volume lie in one band of its split:

{bands}

Bands of different splits are disjoint with gaps of 0.04 (about 6 mm axially, 7 mm
coronally, 3 mm sagittally). The bands hold the slice centres; the through-plane tilt
(up to 3 degrees) and the elastic displacement (up to 3 mm) move anatomy near the image
edges by a few mm, so neighbouring bands can touch there but do not overlap at the
centre. Slices of different orientations cross each other along a line; build every
split with a single orientation (`--orientations axial`) to avoid that.
Volume i of a split uses the random generator SeedSequence([seed, split_id, i]) with
split_id train 0, val 1, test 2: the same seed gives bit-identical files.

## Licence of the source template
The template is (C) McConnell Brain Imaging Centre, Montreal Neurological Institute,
McGill University; its licence requires that the following notice appear in all copies:

> {TEMPLATE_NOTICE}

Reference: V. Fonov, A. Evans, R. McKinstry, C. Almli, D. L. Collins, "Unbiased nonlinear
average age-appropriate brain templates from birth to adulthood", NeuroImage 47 (2009)
S102; V. Fonov et al., "Unbiased average age-appropriate atlases for pediatric studies",
NeuroImage 54 (2011) 313-327.
"""
