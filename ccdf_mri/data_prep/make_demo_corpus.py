"""Build the demo brain corpus: simulated multi-coil fastMRI-format volumes, no download.

Example::

    python -m ccdf_mri.data_prep.make_demo_corpus --out demo_data/corpus --num-train 40 --num-val 4 --num-test 4
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from ccdf_mri.simulation import CONTRASTS, ORIENTATIONS, CorpusConfig, build_corpus
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
            "(the build resumes) unless --overwrite; the same --seed gives bit-identical files."
        ),
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-train", type=int, default=40, help="training volumes (default 40)")
    parser.add_argument("--num-val", type=int, default=4, help="validation volumes (default 4)")
    parser.add_argument("--num-test", type=int, default=4, help="test volumes (default 4)")
    parser.add_argument("--slices", "--slices-per-volume", dest="slices", type=int, default=8,
                        help="slices per volume (default 8)")
    parser.add_argument("--size", type=int, default=256, help="matrix size, square (default 256)")
    parser.add_argument("--coils", type=int, default=8, help="receive coils (default 8)")
    parser.add_argument("--snr", type=float, default=30.0, help="SNR of the k-space noise in dB (default 30); see README")
    parser.add_argument("--no-noise", action="store_true", help="noise-free k-space (overrides --snr)")
    parser.add_argument("--fov", type=float, default=256.0, help="field of view in mm (default 256)")
    parser.add_argument("--spacing", type=float, default=3.0, help="slice spacing in mm (default 3)")
    parser.add_argument("--orientations", type=lambda t: _names(t, ORIENTATIONS, "orientations"),
                        default=ORIENTATIONS, help="comma-separated subset of axial,coronal,sagittal (default all)")
    parser.add_argument("--contrasts", type=lambda t: _names(t, CONTRASTS, "contrasts"),
                        default=CONTRASTS, help="comma-separated subset of T1,T2,PD (default all)")
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
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Build the corpus; return the exit status (0 ok, 1 some volumes failed, 2 bad setup)."""
    args = parse_args(argv)
    report = BatchReport(quiet=args.quiet)
    try:
        config = CorpusConfig(
            size=args.size, num_coils=args.coils, snr_db=None if args.no_noise else args.snr,
            slices_per_volume=args.slices, fov_mm=args.fov, spacing_mm=args.spacing,
            orientations=args.orientations, contrasts=args.contrasts, seed=args.seed,
            deform=not args.no_deform, template_dir=args.template_dir,
        )
        counts = {"train": args.num_train, "val": args.num_val, "test": args.num_test}
        summary = build_corpus(args.out, counts, config, overwrite=args.overwrite, progress=report.progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, message in summary.failed.items():
        report.fail(path, f"{path}: {message}")
    print(
        f"demo corpus in {args.out}: {len(summary.written)} volumes written ({summary.slices} slices, "
        f"{summary.bytes / 2**20:.1f} MiB), {len(summary.skipped)} existing kept, {len(summary.failed)} failed, "
        f"{summary.seconds:.1f} s"
    )
    for line in report.summary_lines("volumes")[1:]:
        print(line)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
