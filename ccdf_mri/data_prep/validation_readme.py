"""The README.md that :mod:`ccdf_mri.data_prep.make_validation_set` writes into its output folder."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Dict

KIND_TEXT = {
    "colin_t1": "Colin27 head, T1 as acquired (1 mm), resampled to the matrix over a 240 mm field of view.",
    "colin_lowres": "Colin27 sampled at 2-3 mm in-plane with 3-5 mm thick slices (box/slab averages), then "
                    "upsampled to the matrix with cubic splines: a clinical thick-slice scan as resampled DICOMs look.",
    "colin_epi": "Colin27 with EPI-like T2* blur along the phase-encode axis (columns; echo-train/T2* ratio 1-2.5) "
                 "and a smooth off-resonance displacement of 1-3 pixels along it, with the Jacobian's intensity change.",
    "colin_t2like": "Colin27 with its T1 intensities mapped to a T2 (axial, sagittal files) or FLAIR (coronal) contrast "
                    "inside the brain mask (ch2bet.nii.gz), fat and scalp kept moderately bright: contrasts the "
                    "acquisition never had, from real anatomy.",
    "colin_oblique": "Colin27 T1 on planes tilted 15-35 degrees from the axial/coronal/sagittal ones and rotated in-plane "
                     "(one tilt per file; val and test planes of a file are parallel).",
    "itk_t1": "A second head: the T1 volume KmeansTest_T1UCharRaw.nii.gz of ITK's example data (2 x 2 x 3 mm, "
              "coronal slices; ITK does not document the subject or scanner, the anatomy is visibly not Colin's), "
              "axial/coronal/sagittal reformats over a 256 mm field of view.",
    "real_body": "Real non-brain MR slices from ITK's example data: FatMRISlice.png (an axial abdomen, test) and "
                 "RatLungSlice1/2.mha (rat thorax, val / test), background noise masked out, copies rotated by "
                 "multiples of 90 degrees plus up to 15 degrees, flipped and zoomed 0.8-1.1 (copies of few images: "
                 "not independent slices).",
    "limb": "Procedural knee/limb cross-sections (ccdf_mri.simulation.validation_shapes, written apart from the "
            "training-corpus generators): skin, fat, muscle compartments with curved fat septa, cortical bone and "
            "textured marrow, vessels; PD, fat-suppressed PD or T1 contrast.",
    "abdomen": "Procedural abdomen cross-sections (same module): body wall, visceral fat, vertebra and canal, "
               "paraspinal muscles, aorta/cava, liver with vessels, spleen, kidneys, bowel loops with fluid/gas; "
               "T1, T2 or fat-suppressed T2 contrast.",
}

SOURCES = """\
## Sources and licences

- **Colin27** (`colin_*`): `/usr/share/mricron/templates/ch2.nii.gz` (and the brain mask `ch2bet.nii.gz`) of the
  Debian package `mricron-data` (`apt-get install mricron-data`). The image is the "Colin 27" average of 27 T1
  scans of one individual (Holmes et al., J Comput Assist Tomogr 22:324-333, 1998, Montreal Neurological
  Institute), as distributed with MRIcron; `/usr/share/doc/mricron-data/copyright` gives, for all files of the
  package, "Copyright 2006-2010, Chris Rorden", license BSD-3-clause. `ch2.nii.gz` (whole head, 1 mm) is used
  rather than `ch2better.nii.gz` (skull-stripped, CSF set to 0, 0.5 mm), because a scan shows scalp, skull and
  CSF signal; `--colin-file` selects another file.
- **ITK example data** (`itk_t1`, `real_body`): `/usr/share/doc/insighttoolkit5-examples/examples/Data/` of the
  Debian package `insighttoolkit5-examples` (`apt-get install insighttoolkit5-examples`);
  `/usr/share/doc/insighttoolkit5-examples/copyright`: "Copyright 1999-2019 Insight Software Consortium,
  2020 NumFOCUS", license Apache-2.0. (The package's BrainWeb-derived slices are not used: BrainWeb is
  simulated from Colin27's anatomy.)
- The training corpora use the MNI ICBM152 2009a template (a population average) and procedural images;
  none of these files, and no code of the training generators, is used here.
"""


def write_readme(path: Path, manifest: Dict[str, Any]) -> Path:
    """Write the folder's README.md from the build manifest."""
    counts: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    files: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry in manifest["volumes"]:
        counts[entry["kind"]][entry["split"]] += entry["num_slices"]
        files[entry["kind"]][entry["split"]] += 1
    snr = manifest["snr_db"]
    lines = [
        "# Real-image validation set",
        "",
        f"Built by `{manifest['command']}` in {manifest['seconds']} s. Every file is a simulated multi-coil scan in",
        "the fastMRI format: `kspace` (slices, coils, rows, cols) complex64, fully sampled; `reconstruction_rss`;",
        "`ismrmrd_header`; `target_complex`, the noise-free complex image (the ground truth: score magnitudes",
        "against `|target_complex|`); attrs `kind`, `split`, `part`, `source`, `seed`, `snr_db` and `slices_json`",
        "(per-slice position / degradation parameters). Per file: magnitude scaled so its 99.5th percentile is 1,",
        "one smooth random phase and one randomised birdcage coil set "
        f"({manifest['coils']} coils, `sum_c |S_c|^2 = 1`), white complex k-space noise at "
        + ("no noise." if snr is None else f"SNR {snr:g} dB (`10 log10(mean_support |x|^2 / sigma^2)`)."),
        f"Matrix {manifest['size']} x {manifest['size']}; rows = read-out, columns = phase encode.",
        "",
        "`val/` is for tuning (lambdas, t0 calibration); `test/` for the reported numbers. Val and test slices of",
        "one orientation of one head come from disjoint slabs: the tissue-bearing range along the slice normal is",
        "cut into 10 slabs, val uses slabs 3 and 7, test the other eight, each slab shrunk by 3 mm at both ends",
        "(slices of different orientations cross, as any two non-parallel planes do). Synthetic and real-body",
        "volumes are drawn separately per split (different images / random streams). `manifest.json` lists every",
        "file, its slices and parameters.",
        "",
        "| kind | test slices (files) | val slices (files) | what it is |",
        "|---|---:|---:|---|",
    ]
    for kind, text in KIND_TEXT.items():
        if kind in counts:
            c, f = counts[kind], files[kind]
            lines.append(f"| `{kind}` | {c['test']} ({f['test']}) | {c['val']} ({f['val']}) | {text} |")
    for kind, reason in manifest.get("skipped", {}).items():
        lines.append(f"| `{kind}` | skipped | skipped | {reason} |")
    lines += ["", SOURCES]
    path.write_text("\n".join(lines) + "\n")
    return path
