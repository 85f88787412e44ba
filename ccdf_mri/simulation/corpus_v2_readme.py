"""Text of the README that :func:`~ccdf_mri.simulation.corpus_v2.build_corpus_v2` writes next to the files."""

from __future__ import annotations

from typing import Dict

from .brain import SPLIT_BANDS, SPLITS
from .template import TEMPLATE_FILES, TEMPLATE_NOTICE


def corpus_v2_readme(counts: Dict[str, int], config) -> str:
    """README of a corpus v2 folder (what, how, file contents, split, licence)."""
    files = "\n".join(
        f"- {split}/: {int(counts.get(split, 0))} volumes x {config.slices_per_volume} slices" for split in SPLITS
    )
    bands = "\n".join(f"- {split}: q in " + ", ".join(f"[{a:.2f}, {b:.2f})" for a, b in SPLIT_BANDS[split]) for split in SPLITS)
    snr = "no noise" if config.snr_range is None else f"amplitude SNR log-uniform in [{config.snr_range[0]:g}, {config.snr_range[1]:g}]"
    return f"""# ccdf-mri corpus v2 (simulated)

Simulated multi-coil MRI in the fastMRI `.h5` format, made by
`python -m data_prep.make_demo_corpus --variant v2` without any download. It is NOT patient
data. Brain volumes are computed from the MNI ICBM152 2009a nonlinear symmetric template
shipped in the `nilearn` package ({", ".join(TEMPLATE_FILES.values())}) with procedural
fine structure; limb and abdomen volumes are procedural phantoms. No other brain is used
(the Colin27 brain stays a held-out real validation image).

{files}

## Settings
- matrix {config.size} x {config.size}, field of view {config.fov_mm:g} mm, {config.num_coils} coils,
  {snr}, master seed {config.seed}
- brain orientations: {", ".join(config.orientations)}; contrast families: {", ".join(config.families)}
- non-brain fraction {config.nonbrain_fraction:g} (half limbs, half abdomens); texture {"on" if config.texture else "off"}
- resolution {config.resolution_mm[0]:g}-{config.resolution_mm[1]:g} mm (native in {config.native_fraction:.0%}),
  partial Fourier in {config.partial_fourier_fraction:.0%}, ghosting in {config.ghost_fraction:.0%} of the volumes,
  bias-field log-amplitude up to {config.bias_max:g}

## How a volume is simulated
1. Anatomy (tissue fraction maps):
   - brain: the template's grey / white matter maps and brain mask sampled with a random
     affine + elastic deformation (v1 geometry, zoom 0.85-1.2) at a slice thickness of 1-5 mm
     (three averaged sub-slices above 1.5 mm); boundaries sharpened (tempered soft-max of
     the log-fractions, perturbed by 1-2.5 px band-pass noise); thin sulcus-like CSF lines
     in the cortex (ridges of band-pass noise); short random-walk vessels; skull and scalp as
     layers of random thickness (inner table, diploe, outer table, muscle, fat, skin) and a
     patchwork of bone, marrow, muscle, fluid and air between brain and head outline;
   - limb: skin, subcutaneous fat, muscle bundles separated by thin fat septa, one or two
     bones (cortex + marrow), neurovascular bundles, tendons, superficial veins;
   - abdomen: skin, fat, muscle wall, visceral fat, spine (vertebra, canal, paraspinal
     muscles), aorta / cava, liver, spleen, kidneys, bowel loops (fluid / gas / mixed),
     random organ-like ellipses.
2. Contrast: a family (T1, T2, PD, FLAIR, STIR, T1IR, MIX) with continuous TR / TE / TI and
   jittered tissue T1, T2, PD; signal from the spin-echo / inversion-recovery equations
   (MIX: independent random values, any tissue order); optional fat suppression.
3. Texture: per tissue a multiplicative band-pass texture (fine 0.6-1 px, medium 1.5-3 px,
   thin septa / trabeculae), std a few percent (brain) to 15 % (marrow, bowel).
4. Bias field exp(a f) (a up to {config.bias_max:g}), smooth random phase.
5. Degradations of the complex image: lower resolution (k-space truncation with a Tukey
   taper, or coarse-grid averaging + cubic upsampling), partial-Fourier zero filling along
   one axis, motion-like ghosting along the phase-encode (column) axis. The result is the
   noise-free `target_complex`.
6. Coils: randomised `sigpy.mri.birdcage_maps`, sum_c |S_c|^2 = 1; k-space = centred
   orthonormal FFT of S_c x plus white complex noise with sigma = sqrt(mean_support |x|^2) / SNR.

## File contents
As the v1 demo corpus: `kspace` (S, C, H, W) complex64 (fully sampled; H = readout rows,
W = phase-encode columns), `reconstruction_rss` (S, H, W) float32, `target_complex`
(S, H, W) complex64, `ismrmrd_header`, attrs `max`, `norm`, `acquisition` (orientation +
family, `LIMB` / `ABD` suffix for phantoms, e.g. AXFLAIR, AXT2LIMB), `patient_id`, and
`split`, `volume_index`, `seed`, `variant` (v2), `kind` (brain / limb / abdomen), `snr`,
`snr_db` (= 20 log10 snr), `noise_std`, `simulation` (JSON of every random draw), `source`.

## Train / val / test split
Brain volumes use the v1 anatomical bands of the split coordinate q:

{bands}

Phantoms are procedural (no anatomy shared between volumes). Volume i of a split uses the
random generator SeedSequence([seed, split_id, i, 2]) (split_id train 0, val 1, test 2): the
same seed and settings give bit-identical files, and a rerun keeps finished files.

## Licence of the source template
The template is (C) McConnell Brain Imaging Centre, Montreal Neurological Institute,
McGill University; its licence requires that the following notice appear in all copies:

> {TEMPLATE_NOTICE}

Reference: V. Fonov et al., NeuroImage 47 (2009) S102; NeuroImage 54 (2011) 313-327.
"""
