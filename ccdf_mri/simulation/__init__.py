"""Simulation of multi-coil MRI data: the demo brain corpus and k-space from magnitude images.

- :mod:`.template`: the MNI ICBM152 2009a template shipped with nilearn;
- :mod:`.brain`: varied complex brain slices (contrast, deformation, bias, phase) and the
  anatomical train/val/test split;
- :mod:`.coils`: randomised birdcage coil maps; :mod:`.kspace`: coil k-space and noise;
- :mod:`.corpus`: the demo corpus (files) and :func:`simulate_slices` (targets only);
- :mod:`.images`: DICOM / NIfTI magnitude images -> simulated k-space;
- :mod:`.writer`: fastMRI-format files with a ``target_complex`` dataset;
- corpus v2 (:mod:`.corpus_v2`): random contrasts (:mod:`.tissues`), texture and fine structure
  (:mod:`.texture`, :mod:`.compose`, :mod:`.brain_v2`), limb / abdomen phantoms
  (:mod:`.phantoms`), resolution / partial-Fourier / ghosting degradations (:mod:`.degrade`).
"""

from .brain import CONTRASTS, ORIENTATIONS, SPLIT_BANDS, SPLITS, VolumeParams, draw_volume_params, render_volume
from .coils import normalize_maps, random_birdcage_maps
from .corpus import (
    BuildSummary,
    CorpusConfig,
    SimulatedVolume,
    build_corpus,
    simulate_slices,
    simulate_volume,
    volume_path,
    volume_rng,
)
from .corpus_v2 import CorpusV2Config, build_corpus_v2, simulate_slices_v2, simulate_volume_v2
from .kspace import coil_kspace, complex_noise, noise_std_for_snr, rss_from_kspace, simulate_kspace
from .template import TEMPLATE_NOTICE, BrainTemplate, load_template, template_paths
from .writer import TARGET_COMPLEX_KEY, write_simulated_h5

__all__ = [
    "BrainTemplate", "BuildSummary", "CONTRASTS", "CorpusConfig", "CorpusV2Config", "build_corpus_v2",
    "simulate_slices_v2", "simulate_volume_v2", "ORIENTATIONS", "SPLITS", "SPLIT_BANDS",
    "SimulatedVolume", "TARGET_COMPLEX_KEY", "TEMPLATE_NOTICE", "VolumeParams", "build_corpus", "coil_kspace",
    "complex_noise", "draw_volume_params", "load_template", "noise_std_for_snr", "normalize_maps",
    "random_birdcage_maps", "render_volume", "rss_from_kspace", "simulate_kspace", "simulate_slices",
    "simulate_volume", "template_paths", "volume_path", "volume_rng", "write_simulated_h5",
]
