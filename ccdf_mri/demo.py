"""The end-to-end demo behind ``make demo`` / ``ccdf-mri demo``.

1. builds the demo test split (simulated 8-coil brain k-space, no download) if absent;
2. reconstructs it with the bundle's shipped models three ways, through the same
   bundle parts (:func:`ccdf_mri.app.build.from_bundle`) the CLI and the bundle use: zero-filled SENSE
   (``t0 = 0``), the bundle's initial estimate alone (``t0 = 0``; L1-wavelet by default) and CCDF
   (that ``x0``, forward jump to ``t0 N``, ``t0 N`` reverse steps with SENSE data consistency,
   the calibrated number of posterior samples averaged, their spread an uncertainty map);
3. prints a table (PSNR, SSIM, seconds per slice, network evaluations), writes the NIfTI
   and fastMRI outputs under ``<out>/<method>/`` and one PNG figure comparing target,
   zero-filled, the initial estimate, CCDF, their error maps and the CCDF uncertainty map.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ccdf_mri.app.build import from_bundle
from ccdf_mri.app.bundle import bundle_dir
from ccdf_mri.app.options import default_device
from ccdf_mri.app.report import RunReport
from ccdf_mri.io import FastMRIVolume, find_inputs

# The corpus is simulated, so the noise-free image is known: metrics are against it (the
# files' reconstruction_rss is the noisy fully sampled RSS, as in fastMRI).
TARGET_KEY = "target_complex"
METHODS = {
    # method: (initializer, t0, posterior samples); None = the bundle's default
    "zero_filled": ("zero_filled", 0.0, 1),
    "start": (None, 0.0, 1),  # the default initial estimate x0 alone
    "ccdf": (None, None, None),  # the bundle's defaults (t0 and K samples as calibrated; K > 1 writes the std map)
}


def build_test_split(data_dir: Path, num_volumes: int, slices: int, quiet: bool) -> List[Path]:
    """The demo test split in ``data_dir/test`` (built with ``ccdf_mri.data_prep.make_demo_corpus`` if absent)."""
    test_dir = data_dir / "test"
    files = sorted(test_dir.glob("*.h5")) if test_dir.is_dir() else []
    if not files:
        from ccdf_mri.data_prep.make_demo_corpus import main as make_corpus

        args = ["--out", str(data_dir), "--num-train", "0", "--num-val", "0", "--num-test", str(num_volumes),
                "--slices", str(slices), "--orientations", "axial"]
        if make_corpus(args + (["--quiet"] if quiet else [])) != 0:
            raise RuntimeError(f"building the demo test split in {data_dir} failed")
        files = sorted(test_dir.glob("*.h5"))
    return files


def run_methods(files: Sequence[Path], models: Path, out: Path, args: argparse.Namespace) -> Dict[str, RunReport]:
    """Reconstruct ``files`` with each demo method (the bundle's parts with overrides); returns the reports."""
    reports = {}
    for method, (initializer, t0, samples) in METHODS.items():
        overrides = {
            "output_dir": str(out / method), "models_dir": str(models), "acceleration": args.acceleration,
            "center_fraction": args.center_fraction, "initializer": initializer, "t0": t0, "num_steps": args.steps,
            "num_samples": samples, "maps": args.maps, "formats": "nifti,h5", "seed": args.seed, "overwrite": True,
            "device": default_device(args.device), "progress": not args.quiet, "target_key": TARGET_KEY,
        }
        overrides = {key: value for key, value in overrides.items() if value is not None}
        reports[method] = from_bundle(args.bundle, overrides).run(list(files)).raise_if_failed()
    return reports


def summary_table(reports: Dict[str, RunReport]) -> str:
    """One line per method: mean PSNR / SSIM / NMSE over volumes, seconds per slice, NFE per slice."""
    lines = [f"{'method':<12} {'PSNR dB':>8} {'SSIM':>7} {'NMSE':>8} {'s/slice':>8} {'NFE':>5} {'t0':>5}"]
    for method, report in reports.items():
        results = report.results
        mean = {k: float(np.mean([r.metrics[k] for r in results])) for k in ("psnr", "ssim", "nmse")}
        per_slice = sum(r.seconds for r in results) / max(1, sum(r.slices for r in results))
        t0 = results[0].t0 if results[0].t0 is not None else 0.0
        lines.append(
            f"{method:<12} {mean['psnr']:>8.2f} {mean['ssim']:>7.4f} {mean['nmse']:>8.4f} {per_slice:>8.2f} "
            f"{results[0].nfe:>5.0f} {t0:>5.2f}"
        )
    return "\n".join(lines)


def _read_h5(path: Path, key: str) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as handle:
        return handle[key][()]


def save_figure(file: Path, out: Path, path: Path, slice_index: int = 0) -> Path:
    """PNG: target, zero-filled, U-Net, CCDF (top), |error| x5 of each and the CCDF std (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    name = file.stem
    with FastMRIVolume(file) as volume:
        target = volume.target_slice(slice_index, TARGET_KEY)
    images = {m: _read_h5(out / m / f"{name}.h5", "reconstruction")[slice_index] for m in METHODS}
    std_path = out / "ccdf" / f"{name}_std.nii.gz"
    std = np.asarray(nib.load(str(std_path)).dataobj)[..., slice_index] if std_path.exists() else None  # (H, W, S)
    vmax = float(target.max())
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.8))
    axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("target (noise-free)")
    for column, method in enumerate(METHODS, start=1):
        axes[0, column].imshow(images[method], cmap="gray", vmin=0, vmax=vmax)
        axes[0, column].set_title(method)
        axes[1, column].imshow(np.abs(images[method] - target), cmap="magma", vmin=0, vmax=vmax / 5)
        axes[1, column].set_title(f"|error| ({method}), x5")
    if std is not None:
        axes[1, 0].imshow(std, cmap="viridis")
        axes[1, 0].set_title("CCDF posterior std")
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"{name}, slice {slice_index}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ccdf-mri demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("demo_data/corpus"), help="demo corpus folder; its test/ split is built if absent (default demo_data/corpus)")
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    parser.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    parser.add_argument("--models", type=Path, default=None, help="models folder (default: <bundle>/models)")
    parser.add_argument("--volumes", type=int, default=2, help="test volumes to build if absent (default 2)")
    parser.add_argument("--slices", type=int, default=4, help="slices per test volume (default 4)")
    parser.add_argument("--acceleration", type=float, default=4.0)
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument("--steps", type=int, default=None, help="diffusion steps N (default: the bundle's)")
    parser.add_argument("--maps", choices=("espirit", "acs"), default=None, help="coil maps (default: the bundle's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    args.models = args.models or bundle_dir(args.bundle) / "models"
    missing = [p for p in ("score_net.pt", "score_net.json", "unet.pt", "unet.json") if not (args.models / p).exists()]
    if missing:
        print(f"error: {args.models}: missing model files {missing}", file=sys.stderr)
        return 2
    files = build_test_split(args.data, args.volumes, args.slices, args.quiet)
    files = [f for f in find_inputs(files)]
    reports = run_methods(files, args.models, args.out, args)
    print(f"\nDemo: {len(files)} test volumes, {args.acceleration:g}x equispaced-fraction mask, "
          f"{args.center_fraction:g} centre, the bundle's defaults; metrics against the noise-free image\n")
    print(summary_table(reports))
    figure = save_figure(files[0], args.out, args.out / "demo_comparison.png")
    print(f"\noutputs in {args.out}/<method>/ (NIfTI, fastMRI .h5, metrics.csv); figure {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
