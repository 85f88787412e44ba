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

from ccdf_mri.diffusion.theory import calibrate_t0
from ccdf_mri.io import FastMRIVolume, atomic_path
from ccdf_mri.metrics import nmse
from ccdf_mri.recon import (
    CALIBRATION,
    INITIALIZER_NET,
    SCORE_NET,
    Postprocessing,
    Preprocessing,
    find_inputs,
    load_network,
    load_schedule,
    make_inferer,
    slice_seed,
)
from ccdf_mri.initializers import make_initializer

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
) -> Dict[str, Dict]:
    """Best ``t0`` per acceleration and the NMSE of every candidate.

    Args:
        data: validation fastMRI files (with targets).
        models_dir: bundle models folder (score net, U-Net, schedule).
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

    Returns:
        ``{"t0": {"4": t0, ...}, "nmse": {"4": {"0.1": err, ...}, ...}, "initializer_nmse": {...}}``.
    """
    schedule = load_schedule(models_dir)
    files = list(data)[:max_files]
    if not files:
        raise ValueError(f"calibration: expected validation .h5 files, found none in {data}")
    result: Dict[str, Dict] = {"t0": {}, "nmse": {}, "initializer_nmse": {}}
    post = Postprocessing()
    for acceleration in accelerations:
        pre = Preprocessing(
            "equispaced_fraction", acceleration, CENTER_FRACTIONS.get(float(acceleration), 0.32 / acceleration),
            "acs", device=device,
        )
        network = load_network(models_dir, SCORE_NET, pre.device)
        initializer = make_initializer("unet", load_network(models_dir, INITIALIZER_NET, pre.device))
        cases = []
        for path in files:
            with FastMRIVolume(path) as volume:
                middle = volume.num_slices // 2
                indices = list(range(middle, min(volume.num_slices, middle + slices_per_file)))
                state = pre.prepare_volume(volume)
                batch = pre(volume, indices, state)
                target = np.stack([volume.target_slice(i, target_key) for i in indices])
                x0 = initializer(batch.op, batch.kspace)
                seeds = [slice_seed(0, path.name, i) for i in indices]
                cases.append((batch, volume.header, target, x0, seeds))

        def error(t0: float) -> float:
            inferer = make_inferer(schedule, sampler, t0, acceleration, num_steps, 1, models_dir, "unet")
            errors = []
            for batch, header, target, x0, seeds in cases:
                generators = [torch.Generator(device=pre.device).manual_seed(s) for s in seeds]
                x = inferer(x0, network, batch.op, batch.kspace, generator=generators)
                errors.append(nmse(target, post(x, batch.scale, header).cpu().numpy()))
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
        if not files:
            raise ValueError(f"{args.data}: expected validation fastMRI .h5 files, found none")
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
