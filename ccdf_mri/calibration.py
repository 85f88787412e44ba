"""Calibrate ``t0`` per acceleration on validation slices and store it in the bundle.

``t0 = "auto"`` (CLI and bundle) reads ``<models>/calibration.json``. This module writes
it: for each acceleration, a few validation slices are reconstructed once by the
initializer and then by CCDF at each candidate ``t0`` (same noise seeds, same ``x0``);
:func:`ccdf_mri.diffusion.theory.calibrate_t0` keeps the cheapest ``t0`` whose mean NMSE
is within ``tolerance`` of the best. Run::

    python -m ccdf_mri.calibration --data demo_data/corpus/val --models bundles/ccdf_mri_recon/models
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ccdf_mri.app.build import from_bundle
from ccdf_mri.app.postprocessing import make_postprocessing
from ccdf_mri.app.reconstructor import slice_seed
from ccdf_mri.diffusion.theory import calibrate_t0
from ccdf_mri.io import FastMRIVolume, atomic_path, find_inputs
from ccdf_mri.metrics import nmse
from ccdf_mri.physics import SenseOp
from ccdf_mri.preprocessing import volume_batch

CALIBRATION = "calibration.json"
CENTER_FRACTIONS = {4.0: 0.08, 8.0: 0.04}
CANDIDATES = (0.01, 0.02, 0.05, 0.1, 0.2)


def calibrate(
    data: Sequence[Path],
    models_dir: Path,
    accelerations: Sequence[float] = (4.0, 8.0),
    candidates: Sequence[float] = CANDIDATES,
    num_steps: int = 1000,
    sampler: str = "ddpm",
    slices_per_file: int = 1,
    max_files: int = 2,
    tolerance: float = 0.01,
    device: Optional[str] = None,
    target_key: Optional[str] = None,
    initializer: str = "unet",
    bundle: Optional[Path] = None,
) -> Dict[str, Dict]:
    """Best ``t0`` per acceleration and the NMSE of every candidate.

    The slices go through the bundle's own parts (:func:`ccdf_mri.app.build.from_bundle`:
    preprocessing, initializer, inferer, postprocessing), so the calibration measures what
    ``t0 = auto`` will be used for.

    Args:
        data: validation fastMRI files (with targets).
        models_dir: models folder (score net, U-Net).
        accelerations: equispaced-fraction accelerations (centre fraction from
            :data:`CENTER_FRACTIONS`, else ``0.32 / acceleration``).
        candidates: t0 values tried.
        num_steps: N of the strided schedule.
        sampler: reverse sampler.
        slices_per_file: central slices used per file.
        max_files: files used.
        tolerance: relative slack of :func:`calibrate_t0`.
        device: ``cpu`` / ``cuda`` (default: CUDA when available).
        target_key: dataset the NMSE is measured against (default: the file's fastMRI target).
        initializer: the initializer calibrated for.
        bundle: bundle folder (default: the shipped one).

    Returns:
        ``{"t0": {"4": t0, ...}, "nmse": {"4": {"0.1": err, ...}, ...}, "initializer_nmse": {...}}``.
    """
    from ccdf_mri.app.options import default_device

    files = list(data)[:max_files]
    if not files:
        raise ValueError(f"calibration: expected validation .h5 files, found none in {data}")
    device = default_device(device)
    result: Dict[str, Dict] = {"t0": {}, "nmse": {}, "initializer_nmse": {}}
    post = make_postprocessing()
    for acceleration in accelerations:
        overrides = {
            "models_dir": str(models_dir), "acceleration": float(acceleration),
            "center_fraction": CENTER_FRACTIONS.get(float(acceleration), 0.32 / acceleration),
            "initializer": initializer, "t0": max(candidates), "num_steps": num_steps, "sampler": sampler,
            "device": device, "progress": False, "output_dir": str(Path(models_dir) / ".calibration-unused"),
        }
        recon = from_bundle(bundle, overrides)
        cases = []
        for path in files:
            with FastMRIVolume(path) as volume:
                middle = volume.num_slices // 2
                indices = list(range(middle, min(volume.num_slices, middle + slices_per_file)))
                batch = recon.preprocessing(volume_batch(volume, indices, None, device))
                op = SenseOp(batch["maps"], batch["mask"])
                target = np.stack([volume.target_slice(i, target_key) for i in indices])
                x0 = recon.initializer(op, batch["kspace"])
                seeds = [slice_seed(0, path.name, i) for i in indices]
                cases.append((batch, op, volume.header, target, x0, seeds))

        def error(t0: float) -> float:
            errors = []
            for batch, op, header, target, x0, seeds in cases:
                generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
                x = recon.inferer(x0, recon.network, op, batch["kspace"], generator=generators, t0=t0).mean
                image = post({"pred": x, "std": None, "scale": batch["scale"], "meta": {"header": header}})["pred"]
                errors.append(nmse(target, image))
            return float(np.mean(errors))

        key = f"{acceleration:g}"
        best, errors = calibrate_t0(error, candidates, tolerance)
        result["t0"][key] = best
        result["nmse"][key] = {f"{t0:g}": err for t0, err in errors.items()}
        result["initializer_nmse"][key] = error(0.0)
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccdf_mri.calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="validation fastMRI folder or files")
    parser.add_argument("--models", type=Path, required=True, help="bundle models folder; calibration.json is written there")
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--candidates", type=float, nargs="+", default=list(CANDIDATES))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--sampler", default="ddpm")
    parser.add_argument("--slices-per-file", type=int, default=1)
    parser.add_argument("--max-files", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--target-key", default=None, help="dataset scored against (default: reconstruction_rss/esc)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        files = find_inputs(args.data)
        result = calibrate(
            files, args.models, args.accelerations, args.candidates, args.steps, args.sampler,
            args.slices_per_file, args.max_files, device=args.device, target_key=args.target_key,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result.update(
        num_steps=args.steps, sampler=args.sampler, data=str(args.data), slices_per_file=args.slices_per_file,
        max_files=args.max_files, target_key=args.target_key or "the file's fastMRI target",
        metric="NMSE (mean over slices)",
        seconds=round(time.perf_counter() - start, 1),
    )
    with atomic_path(args.models / CALIBRATION) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
