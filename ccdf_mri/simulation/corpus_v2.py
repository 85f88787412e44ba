"""Corpus v2: a broader simulated corpus for a prior that must generalise to real MRI.

Per volume (all draws from ``SeedSequence([seed, split_id, index, 2])``, so every volume
is a pure function of ``(seed, split, index, config)`` and independent of v1's volumes):

1. kind: a brain (ICBM template, :mod:`.brain_v2`) or, with probability
   ``nonbrain_fraction``, a limb or an abdomen cross-section (:mod:`.phantoms`);
2. contrast: a sequence family and continuous timings (:mod:`.tissues`);
3. magnitude: tissue signal x texture (:mod:`.compose`), x a bias field (log-amplitude up to
   ``bias_max``), x ``exp(i phase)`` (smooth random phase);
4. degradations (:mod:`.degrade`): resolution 1-3 mm, partial-Fourier blur, ghosting; the
   result is the noise-free ``target_complex``;
5. (files only) coil maps and k-space noise at an amplitude SNR drawn log-uniformly from
   ``snr_range`` (``SNR = sqrt(mean_support |x|^2) / sigma``, i.e. ``snr_db = 20 log10 SNR``
   in the v1 convention of :mod:`.kspace`).

Steps 1-4 use the generator before step 5, so :func:`simulate_slices_v2` (images only)
returns exactly the files' targets.
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

from .brain import ORIENTATIONS, SPLIT_BANDS, SPLITS
from .brain_v2 import brain_fractions, draw_brain_geometry
from .coils import random_birdcage_maps
from .compose import compose_magnitude, draw_texture_amplitudes
from .corpus import _SPLIT_ID, BuildSummary, SimulatedVolume, run_build, volume_path
from .degrade import apply_degradations, draw_degradations
from .fields import smooth_field, smooth_phase
from .kspace import simulate_kspace
from .phantoms import abdomen_fractions, limb_fractions
from .template import load_template
from .tissues import FAMILIES, Contrast, draw_contrast
from .writer import write_simulated_h5

FILE_PREFIX_V2 = "ccdf_v2"
KINDS = ("brain", "limb", "abdomen")
_ORIENTATION_PREFIX = {"axial": "AX", "coronal": "COR", "sagittal": "SAG"}


@dataclass
class CorpusV2Config:
    """How corpus v2 is simulated (geometry fields as in :class:`~ccdf_mri.simulation.CorpusConfig`).

    Attributes:
        size, num_coils, slices_per_volume, fov_mm, spacing_mm, orientations, seed, deform,
            template_dir: as in v1 (orientations apply to brain volumes).
        families: contrast families drawn from (:data:`~ccdf_mri.simulation.tissues.FAMILIES`).
        snr_range: range of the amplitude SNR (log-uniform); None: noise-free k-space.
        nonbrain_fraction: probability of a limb / abdomen volume (half each).
        resolution_mm: range of the acquired resolution; native_fraction: probability of native.
        partial_fourier_fraction, ghost_fraction: probabilities of those degradations.
        bias_max: upper bound of the bias field's log-amplitude.
        texture: fine structure (sharpening, sulci, vessels, tissue texture) on/off.
    """

    size: int = 256
    num_coils: int = 8
    slices_per_volume: int = 8
    fov_mm: float = 256.0
    spacing_mm: float = 3.0
    orientations: Tuple[str, ...] = ORIENTATIONS
    families: Tuple[str, ...] = FAMILIES
    seed: int = 0
    deform: bool = True
    template_dir: Optional[str] = None
    snr_range: Optional[Tuple[float, float]] = (10.0, 80.0)
    nonbrain_fraction: float = 0.35
    resolution_mm: Tuple[float, float] = (1.0, 3.0)
    native_fraction: float = 0.5
    partial_fourier_fraction: float = 0.2
    ghost_fraction: float = 0.2
    bias_max: float = 0.5
    texture: bool = True

    def __post_init__(self) -> None:
        self.orientations = tuple(self.orientations)
        self.families = tuple(self.families)
        self.resolution_mm = tuple(float(v) for v in self.resolution_mm)
        if self.snr_range is not None:
            self.snr_range = tuple(float(v) for v in self.snr_range)
        if self.size < 16 or self.num_coils < 1 or self.slices_per_volume < 1:
            raise ValueError(
                f"corpus v2 config: expected size >= 16, num_coils >= 1, slices_per_volume >= 1, "
                f"found {self.size}, {self.num_coils}, {self.slices_per_volume}"
            )
        if self.snr_range is not None and not (0 < self.snr_range[0] <= self.snr_range[1]):
            raise ValueError(f"corpus v2 config: snr_range: expected 0 < low <= high, found {self.snr_range}")
        if not 0.0 <= self.nonbrain_fraction <= 1.0:
            raise ValueError(f"corpus v2 config: nonbrain_fraction: expected a value in [0, 1], found {self.nonbrain_fraction}")
        bad = [f for f in self.families if f not in FAMILIES] + [o for o in self.orientations if o not in ORIENTATIONS]
        if bad or not self.families or not self.orientations:
            raise ValueError(f"corpus v2 config: families / orientations {bad}: expected non-empty subsets of {FAMILIES} / {ORIENTATIONS}")


@dataclass
class VolumeV2Params:
    """The draws of one v2 volume (stored as JSON in the file's ``simulation`` attr).

    Attributes:
        kind: one of :data:`KINDS`; orientation: slice orientation (phantoms: axial).
        contrast: the :class:`~ccdf_mri.simulation.tissues.Contrast`.
        anatomy: brain geometry (v1 :class:`~ccdf_mri.simulation.brain.VolumeParams` fields) or phantom summary.
        slice_mm: slice thickness; spacing_mm: slice distance.
        texture: per-tissue texture std; bias: log-amplitude of the bias field ``exp(bias f)``.
        degradations: :class:`~ccdf_mri.simulation.degrade.Degradations` as a dict.
        snr: amplitude SNR of the k-space noise (NaN: none).
    """

    kind: str
    orientation: str
    contrast: Contrast
    anatomy: dict
    slice_mm: float
    spacing_mm: float
    texture: Dict[str, float]
    bias: float
    degradations: dict
    snr: float = float("nan")

    @property
    def acquisition(self) -> str:
        """fastMRI-style name: orientation prefix + family (e.g. ``AXFLAIR``), ``LIMB`` / ``ABD`` suffix for phantoms."""
        suffix = {"brain": "", "limb": "LIMB", "abdomen": "ABD"}[self.kind]
        return _ORIENTATION_PREFIX[self.orientation] + self.contrast.family + suffix

    def to_dict(self) -> dict:
        """JSON-serialisable dict."""
        out = asdict(self)
        out["contrast"] = self.contrast.to_dict()
        return out


def volume_rng_v2(seed: int, split: str, index: int) -> np.random.Generator:
    """Random generator of v2 volume ``index`` of ``split``."""
    if split not in _SPLIT_ID:
        raise ValueError(f"unknown split '{split}': expected one of {SPLITS}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_ID[split], int(index), 2]))


def _stack(slices: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    names = sorted({k for s in slices for k in s})
    shape = next(iter(slices[0].values())).shape
    out = {}
    for name in names:
        empty = np.ones(shape, np.float32) if name.startswith("_") else np.zeros(shape, np.float32)
        out[name] = np.stack([s.get(name, empty) for s in slices])
    return out


def _kind(draw: float, nonbrain_fraction: float) -> str:
    if draw >= nonbrain_fraction:
        return "brain"
    return "limb" if draw < nonbrain_fraction / 2 else "abdomen"


def volume_kind(config: CorpusV2Config, split: str, index: int) -> str:
    """Kind (brain / limb / abdomen) of v2 volume ``index`` of ``split``, without simulating it."""
    return _kind(volume_rng_v2(config.seed, split, index).random(), config.nonbrain_fraction)


def _render_anatomy(config: CorpusV2Config, split: str, rng: np.random.Generator):
    """(kind, orientation, fractions (S, H, W) dict, anatomy dict, slice thickness, spacing)."""
    shape = (config.size, config.size)
    s = config.slices_per_volume
    kind = _kind(rng.random(), config.nonbrain_fraction)
    if kind == "brain":
        template = load_template(config.template_dir, pixel_mm=config.fov_mm / config.size)
        params, thickness = draw_brain_geometry(template, split, s, rng, config.orientations, config.spacing_mm, config.deform)
        fractions = brain_fractions(template, params, thickness, shape, config.fov_mm, rng, config.deform, config.texture)
        anatomy = {k: v for k, v in params.to_dict().items() if k not in ("contrast", "tissue")}
        return kind, params.orientation, fractions, anatomy, thickness, params.spacing_mm
    thickness = float(rng.uniform(2.0, 6.0))
    if kind == "limb":
        slices, anatomy = limb_fractions(shape, s, rng, np.stack([smooth_field(shape, 7, rng) for _ in range(2)]))
    else:
        slices, anatomy = abdomen_fractions(shape, s, rng)
    return kind, "axial", _stack(slices), anatomy, thickness, config.spacing_mm


def render_v2_images(config: CorpusV2Config, split: str, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, VolumeV2Params]:
    """Steps 1-4 of the module docstring: ``(images complex64 (S, H, W), support bool (S, H, W), params)``."""
    kind, orientation, fractions, anatomy, thickness, spacing = _render_anatomy(config, split, rng)
    contrast = draw_contrast(rng, config.families)
    texture_rng = np.random.default_rng(int(rng.integers(2**63)))  # texture on/off leaves the other draws unchanged
    amplitudes = draw_texture_amplitudes(texture_rng, config.texture)
    magnitude = compose_magnitude(fractions, contrast.values, amplitudes, texture_rng)
    tissue = sum(v for k, v in fractions.items() if not k.startswith("_") and k != "air")
    support = tissue + fractions.get("air", 0.0) > 0.5
    shape = magnitude.shape[1:]
    bias = float(rng.uniform(0.0, config.bias_max))
    field = np.exp(bias * smooth_field(shape, 4, rng))
    magnitude = magnitude * (field / field.mean()).astype(np.float32)
    images = (magnitude * np.exp(1j * smooth_phase(shape, rng))).astype(np.complex64)
    pixel = config.fov_mm / config.size
    degradations = draw_degradations(
        rng, pixel, config.resolution_mm, config.native_fraction, config.partial_fourier_fraction, config.ghost_fraction,
    )
    images = apply_degradations(images, pixel, degradations, rng)
    params = VolumeV2Params(kind, orientation, contrast, anatomy, thickness, spacing, amplitudes, bias, degradations.to_dict())
    return images, support, params


def simulate_volume_v2(config: CorpusV2Config, split: str, index: int, with_kspace: bool = True) -> SimulatedVolume:
    """Simulate v2 volume ``index`` of ``split`` (``with_kspace=False``: targets only, much faster).

    Returns:
        :class:`~ccdf_mri.simulation.SimulatedVolume` whose ``params`` is a :class:`VolumeV2Params`.
    """
    rng = volume_rng_v2(config.seed, split, index)
    images, support, params = render_v2_images(config, split, rng)
    if not with_kspace:
        return SimulatedVolume(images, support, None, None, 0.0, params)
    maps = random_birdcage_maps(config.num_coils, images.shape[1:], rng)
    snr_db = None
    if config.snr_range is not None:
        lo, hi = config.snr_range
        params.snr = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        snr_db = 20.0 * np.log10(params.snr)
    kspace, sigma = simulate_kspace(images, maps, snr_db, rng, support)
    return SimulatedVolume(images, support, maps, kspace, sigma, params)


def simulate_slices_v2(
    num_slices: int, size: int = 256, split: str = "train", seed: int = 0, slices_per_volume: int = 8,
    first_volume: int = 0, **config_kwargs,
) -> np.ndarray:
    """Noise-free complex v2 targets only: volumes ``first_volume, first_volume + 1, ...`` of ``split``.

    Identical to the ``target_complex`` of the v2 files built with the same settings.

    Returns:
        complex64 ``(num_slices, size, size)``.
    """
    config = CorpusV2Config(size=size, seed=seed, slices_per_volume=slices_per_volume, **config_kwargs)
    out: List[np.ndarray] = []
    count, index = 0, first_volume
    while count < num_slices:
        images = simulate_volume_v2(config, split, index, with_kspace=False).images
        out.append(images[: num_slices - count])
        count += out[-1].shape[0]
        index += 1
    return np.concatenate(out) if out else np.zeros((0, size, size), np.complex64)


def write_volume_v2(path: Union[str, os.PathLike], volume: SimulatedVolume, config: CorpusV2Config, split: str, index: int) -> Path:
    """Write a v2 volume as a fastMRI-format file (atomic)."""
    params: VolumeV2Params = volume.params
    source = {
        "brain": "MNI ICBM152 2009a nonlinear symmetric template with procedural texture (simulated)",
        "limb": "procedural limb cross-section phantom (simulated)",
        "abdomen": "procedural abdomen-like phantom (simulated)",
    }[params.kind]
    extra = {
        "split": split, "volume_index": int(index), "seed": int(config.seed), "variant": "v2", "kind": params.kind,
        "snr": params.snr, "snr_db": float(20.0 * np.log10(params.snr)) if np.isfinite(params.snr) else float("nan"),
        "noise_std": float(volume.noise_std), "simulation": json.dumps(params.to_dict()), "source": source,
    }
    return write_simulated_h5(
        path, volume.kspace, volume.images, (config.fov_mm, config.fov_mm), params.slice_mm,
        params.acquisition, f"{FILE_PREFIX_V2}_{split}_{index:04d}", extra,
    )


def build_corpus_v2(
    out_dir: Union[str, os.PathLike], counts: Dict[str, int], config: CorpusV2Config, overwrite: bool = False,
    progress: Callable = lambda iterable, **_: iterable,
) -> BuildSummary:
    """Build (or complete) corpus v2 under ``out_dir``: ``<split>/ccdf_v2_<split>_<i>.h5``, ``corpus.json``, ``README.md``.

    Same contract as :func:`~ccdf_mri.simulation.build_corpus` (resume, atomic files,
    per-volume errors in the summary).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    if config.nonbrain_fraction < 1.0:
        load_template(config.template_dir, pixel_mm=config.fov_mm / config.size)  # fail early on a bad template

    def make(path: Path, split: str, index: int) -> int:
        volume = simulate_volume_v2(config, split, index)
        write_volume_v2(path, volume, config, split, index)
        return volume.images.shape[0]

    summary = run_build(out, counts, make, overwrite, progress, FILE_PREFIX_V2)
    write_metadata_v2(out, counts, config)
    summary.seconds = time.perf_counter() - start
    return summary


def write_metadata_v2(out: Path, counts: Dict[str, int], config: CorpusV2Config) -> None:
    """Write ``corpus.json`` and ``README.md`` (atomic) for corpus v2."""
    from .corpus_v2_readme import corpus_v2_readme

    files = {
        split: [str(volume_path(out, split, i, FILE_PREFIX_V2).relative_to(out)) for i in range(int(counts.get(split, 0)))]
        for split in SPLITS
    }
    config_dict = asdict(config)
    config_dict["template_dir"] = None if config.template_dir is None else str(config.template_dir)
    manifest = {"variant": "v2", "config": config_dict, "split_bands": SPLIT_BANDS, "files": files}
    with atomic_path(out / "corpus.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(corpus_v2_readme(counts, config))
