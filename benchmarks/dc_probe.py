"""Proximal DC weight x CG iterations x fixed t0, CCDF from the bundle's default start.

One line per setting: median PSNR / SSIM over real-image validation slices (the bundle's own
parts through :func:`benchmarks.real_validation.build`), used to choose ``inferer#dc#lam``::

    python -m benchmarks.dc_probe 4x 8 '[[0.03,5,0.02],["auto",5,0.02]]' out.json --data /work/validation/val [--models DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from benchmarks.real_validation import build, median, scores, slice_list
from ccdf_mri import calibration as cal


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dc_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("setting", choices=("4x", "8x"))
    parser.add_argument("slices", type=int)
    parser.add_argument("combos", help="JSON list of [lam, cg_iterations, t0]")
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="a folder of .h5 slices with target_complex, e.g. VALIDATION/val")
    parser.add_argument("--models", help="models folder (default: the bundle's)")
    args = parser.parse_args()
    from ccdf_mri.physics import ProximalDC

    recon = build(args.setting, "cpu", **({"models_dir": args.models} if args.models else {}))
    cases = cal.prepare_cases(recon, slice_list(args.data, args.slices), "target_complex")
    x0 = cal.initial_estimates(recon, cases)
    _, _, scale = cal.batched(cases)
    result = {"x0": [scores(c.target, im) for c, im in zip(cases, cal.magnitudes(cases, x0, scale))]}
    print(args.setting, "x0", round(median([r["psnr"] for r in result["x0"]]), 2), flush=True)
    for lam, iters, t0 in json.loads(args.combos):
        inferer = copy.copy(recon.inferer)
        inferer.dc = ProximalDC(lam=lam, num_iters=iters)
        start = time.perf_counter()
        images, _, _ = cal.ccdf_images(recon, cases, x0, t0, inferer=inferer)
        per_slice = [scores(c.target, im) for c, im in zip(cases, images)]
        key = f"lam={lam} iters={iters} t0={t0}"
        result[key] = per_slice
        print(args.setting, key, round(median([r["psnr"] for r in per_slice]), 2),
              round(median([r["ssim"] for r in per_slice]), 3), f"{time.perf_counter() - start:.0f}s", flush=True)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
