"""Turn magnitude images (DICOM series or NIfTI volumes) into simulated multi-coil fastMRI files.

Each NIfTI file (3-D; slices along its RAS z axis) and each DICOM series (files grouped by
SeriesInstanceUID, sorted along the slice normal) becomes ``<out>/<name>.h5`` with
fully sampled k-space from a smooth random phase, randomised birdcage coil maps and white
noise (:func:`ccdf_mri.simulation.images.simulate_from_magnitude`), ``reconstruction_rss``
and the noise-free ``target_complex``.

Example::

    python -m ccdf_mri.data_prep.images_to_kspace my_dicoms/ brain.nii.gz --out simulated/ --coils 8 --size 256
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ccdf_mri.simulation.batch import BatchReport
from ccdf_mri.simulation.images import ImageVolume, is_nifti, read_dicom_series, read_nifti, resample_square, simulate_from_magnitude
from ccdf_mri.simulation.writer import write_simulated_h5


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "volume"


def collect_inputs(inputs: List[str], report: BatchReport) -> Tuple[List[Path], Dict[str, List[Path]]]:
    """Split the inputs into NIfTI files and DICOM series.

    Folders are searched recursively. Files that are neither NIfTI nor DICOM are reported
    (naming the file); an input that does not exist or a folder without files is reported.

    Returns:
        ``(nifti files, {series name: DICOM files})``.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    niftis: List[Path] = []
    series: Dict[str, List[Path]] = defaultdict(list)
    for item in inputs:
        root = Path(item)
        if not root.exists():
            report.fail(item, f"{root}: no such file or folder")
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            report.fail(item, f"{root}: empty folder (no DICOM or NIfTI files)")
            continue
        for path in files:
            if is_nifti(path):
                niftis.append(path)
                continue
            try:
                ds = pydicom.dcmread(str(path), stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError) as error:
                report.fail(str(path), f"{path}: neither NIfTI (.nii, .nii.gz) nor a readable DICOM file ({type(error).__name__})")
                continue
            uid = str(getattr(ds, "SeriesInstanceUID", "") or path.parent)
            label = "_".join(str(v) for v in (path.parent.name, getattr(ds, "SeriesNumber", None), getattr(ds, "SeriesDescription", None)) if v not in (None, ""))
            series[f"{_safe(label)}|{uid}"].append(path)
    return niftis, dict(series)


def _unique_names(keys: List[str]) -> Dict[str, str]:
    names: Dict[str, str] = {}
    used: Dict[str, int] = defaultdict(int)
    for key in keys:
        base = key.split("|")[0]
        used[base] += 1
        names[key] = base if used[base] == 1 else f"{base}_{used[base]}"
    return names


def convert(volume: ImageVolume, out: Path, args: argparse.Namespace) -> Path:
    """Simulate and write one volume; returns the output path."""
    magnitude, pixel = volume.magnitude, volume.pixel_mm
    if args.size:
        magnitude, pixel = resample_square(magnitude, pixel, args.size)
    seed = np.random.SeedSequence([args.seed, zlib.crc32(volume.name.encode())])
    kspace, target, _ = simulate_from_magnitude(magnitude, args.coils, None if args.no_noise else args.snr, np.random.default_rng(seed))
    h, w = magnitude.shape[1:]
    path = out / f"{_safe(volume.name)}.h5"
    extra = {"source": volume.source, "seed": int(args.seed), "snr_db": float("nan") if args.no_noise else float(args.snr)}
    return write_simulated_h5(path, kspace, target, (pixel[0] * h, pixel[1] * w), volume.slice_mm, args.acquisition, _safe(volume.name), extra)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m ccdf_mri.data_prep.images_to_kspace",
        description=(
            "Simulate multi-coil fastMRI-format .h5 files from magnitude images: NIfTI volumes (.nii, .nii.gz; "
            "3-D) and DICOM series (pydicom). Adds a smooth random phase, random birdcage coil maps and white "
            "noise. Bad inputs are reported by name and skipped; the exit status is non-zero when any failed."
        ),
    )
    parser.add_argument("inputs", nargs="+", help="NIfTI files, DICOM files, or folders of them (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--coils", type=int, default=8, help="receive coils (default 8)")
    parser.add_argument("--snr", type=float, default=30.0, help="SNR of the k-space noise in dB (default 30)")
    parser.add_argument("--no-noise", action="store_true", help="noise-free k-space")
    parser.add_argument("--size", type=int, default=None, help="resample slices to size x size (default: keep the matrix)")
    parser.add_argument("--acquisition", default="SIM", help="value of the 'acquisition' attribute (default SIM)")
    parser.add_argument("--seed", type=int, default=0, help="seed; each volume's generator also depends on its name")
    parser.add_argument("--overwrite", action="store_true", help="rebuild outputs that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Convert the inputs; return the exit status (0 ok, 1 some input failed)."""
    args = parse_args(argv)
    start = time.perf_counter()
    report = BatchReport(quiet=args.quiet)
    out = Path(args.out)
    niftis, series = collect_inputs(args.inputs, report)
    names = _unique_names(list(series))
    jobs = [("nifti", p) for p in niftis] + [("dicom", key) for key in series]
    skipped = slices = 0
    for kind, item in report.progress(jobs, desc="volumes", unit="vol"):
        try:
            if kind == "nifti":
                volume = read_nifti(item)
                label = str(item)
            else:
                volume, errors = read_dicom_series(series[item], names[item])
                label = f"DICOM series {names[item]} ({series[item][0].parent})"
                for path, message in errors.items():
                    report.fail(path, message)
                if volume is None:
                    report.fail(label, f"{label}: no usable image in the series")
                    continue
            target = out / f"{_safe(volume.name)}.h5"
            if target.exists() and not args.overwrite:
                skipped += 1
                report.ok(label)
                continue
            convert(volume, out, args)
            slices += volume.magnitude.shape[0]
            report.ok(label)
        except (ValueError, FileNotFoundError, OSError) as error:
            report.fail(str(item), str(error) if str(item) in str(error) else f"{item}: {error}")
    print(
        f"images_to_kspace -> {out}: {len(report.done) - skipped} volumes written ({slices} slices), "
        f"{skipped} existing kept, {len(report.errors)} inputs failed, {time.perf_counter() - start:.1f} s"
    )
    for line in report.summary_lines("inputs")[1:]:
        print(line)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
