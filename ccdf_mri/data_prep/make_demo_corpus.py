"""Build the demo brain corpus: simulated multi-coil fastMRI-format volumes, no download.

Example::

    python -m ccdf_mri.data_prep.make_demo_corpus --out demo_data/corpus --num-train 40 --num-val 4 --num-test 4

``--variant v2`` builds corpus v2 instead (:mod:`ccdf_mri.simulation.corpus_v2`: random
contrasts, 1-3 mm resolution, bias, ghosting, partial Fourier, SNR 10-80, texture, limb and
abdomen phantoms)::

    python -m ccdf_mri.data_prep.make_demo_corpus --variant v2 --out /work/corpus_v2 --num-train 120 --num-val 8 --num-test 0
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ccdf_mri.simulation import CONTRASTS, ORIENTATIONS, CorpusConfig, build_corpus
from ccdf_mri.simulation.corpus_v2 import CorpusV2Config, build_corpus_v2
from ccdf_mri.simulation.tissues import FAMILIES
from ccdf_mri.simulation.batch import BatchReport


def _names(text: str, allowed: tuple, what: str) -> tuple:
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in names if v not in allowed]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{what} '{text}': expected a comma-separated subset of {', '.join(allowed)}")
    return names


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m ccdf_mri.data_prep.make_demo_corpus",
        description=(
            "Simulate a multi-coil brain corpus in the fastMRI .h5 format from the MNI ICBM152 2009a "
            "template shipped with nilearn (no download). Writes OUT/{train,val,test}/ccdf_demo_<split>_<i>.h5, "
            "OUT/corpus.json and OUT/README.md (with the template's licence notice). Existing files are kept "
            "(the build resumes) unless --overwrite; the same --seed gives bit-identical files. "
            "--variant v2 builds the broader corpus v2 (random contrasts, resolutions, artefacts, SNR, texture, "
            "limb / abdomen phantoms) as OUT/<split>/ccdf_v2_<split>_<i>.h5; see data_prep/README.md."
        ),
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--variant", choices=("v1", "v2"), default="v1",
                        help="v1 (default): the template-only demo corpus; v2: the broader corpus of "
                             "ccdf_mri.simulation.corpus_v2 (files ccdf_v2_<split>_<i>.h5)")
    parser.add_argument("--num-train", type=int, default=40, help="training volumes (default 40)")
    parser.add_argument("--num-val", type=int, default=4, help="validation volumes (default 4)")
    parser.add_argument("--num-test", type=int, default=4, help="test volumes (default 4)")
    parser.add_argument("--slices", "--slices-per-volume", dest="slices", type=int, default=8,
                        help="slices per volume (default 8)")
    parser.add_argument("--size", type=int, default=256, help="matrix size, square (default 256)")
    parser.add_argument("--coils", type=int, default=8, help="receive coils (default 8)")
    parser.add_argument("--snr", type=float, default=None, help="v1: SNR of the k-space noise in dB (default 30); see README")
    parser.add_argument("--snr-range", type=float, nargs=2, default=(10.0, 80.0), metavar=("LOW", "HIGH"),
                        help="v2: range of the amplitude SNR drawn per volume, log-uniform (default 10 80)")
    parser.add_argument("--nonbrain-fraction", type=float, default=0.35,
                        help="v2: fraction of limb / abdomen phantom volumes (default 0.35)")
    parser.add_argument("--families", type=lambda t: _names(t, FAMILIES, "families"), default=FAMILIES,
                        help="v2: comma-separated subset of " + ",".join(FAMILIES) + " (default all)")
    parser.add_argument("--no-texture", action="store_true", help="v2: no procedural fine structure (ablation)")
    parser.add_argument("--no-noise", action="store_true", help="noise-free k-space (overrides --snr)")
    parser.add_argument("--fov", type=float, default=256.0, help="field of view in mm (default 256)")
    parser.add_argument("--spacing", type=float, default=3.0, help="slice spacing in mm (default 3)")
    parser.add_argument("--orientations", type=lambda t: _names(t, ORIENTATIONS, "orientations"),
                        default=ORIENTATIONS, help="comma-separated subset of axial,coronal,sagittal (default all)")
    parser.add_argument("--contrasts", type=lambda t: _names(t, CONTRASTS, "contrasts"),
                        default=None, help="v1: comma-separated subset of T1,T2,PD (default all)")
    parser.add_argument("--no-deform", action="store_true", help="no random affine / elastic deformation")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--template-dir", default=None,
                        help="folder with the three mni_icbm152_*_tal_nlin_sym_09a_converted.nii.gz files "
                             "(default: the installed nilearn package)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild files that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("num_train", "num_val", "num_test"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, found {getattr(args, name)}")
    if args.variant == "v2" and (args.snr is not None or args.contrasts is not None):
        parser.error("--snr and --contrasts are v1 options: v2 draws the SNR per volume from --snr-range "
                     "and the contrast from --families")
    if args.variant == "v1":
        args.snr = 30.0 if args.snr is None else args.snr
        args.contrasts = CONTRASTS if args.contrasts is None else args.contrasts
    return args


def _config(args: argparse.Namespace):
    if args.variant == "v2":
        return CorpusV2Config(
            size=args.size, num_coils=args.coils, slices_per_volume=args.slices, fov_mm=args.fov,
            spacing_mm=args.spacing, orientations=args.orientations, families=args.families, seed=args.seed,
            deform=not args.no_deform, template_dir=args.template_dir,
            snr_range=None if args.no_noise else tuple(args.snr_range), nonbrain_fraction=args.nonbrain_fraction,
            texture=not args.no_texture,
        )
    return CorpusConfig(
        size=args.size, num_coils=args.coils, snr_db=None if args.no_noise else args.snr,
        slices_per_volume=args.slices, fov_mm=args.fov, spacing_mm=args.spacing,
        orientations=args.orientations, contrasts=args.contrasts, seed=args.seed,
        deform=not args.no_deform, template_dir=args.template_dir,
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Build the corpus; return the exit status (0 ok, 1 some volumes failed, 2 bad setup)."""
    args = parse_args(argv)
    report = BatchReport(quiet=args.quiet)
    try:
        config = _config(args)
        counts = {"train": args.num_train, "val": args.num_val, "test": args.num_test}
        build = build_corpus_v2 if args.variant == "v2" else build_corpus
        summary = build(args.out, counts, config, overwrite=args.overwrite, progress=report.progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, message in summary.failed.items():
        report.fail(path, f"{path}: {message}")
    print(
        f"{'corpus v2' if args.variant == 'v2' else 'demo corpus'} in {args.out}: {len(summary.written)} volumes written ({summary.slices} slices, "
        f"{summary.bytes / 2**20:.1f} MiB), {len(summary.skipped)} existing kept, {len(summary.failed)} failed, "
        f"{summary.seconds:.1f} s"
    )
    for line in report.summary_lines("volumes")[1:]:
        print(line)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
