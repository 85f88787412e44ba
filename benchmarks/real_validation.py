"""Quality on images the models never saw: CCDF beside BART, and how t0 is chosen.

Every reconstruction runs the bundle's own parts (:func:`ccdf_mri.app.build.from_bundle`: the
one preprocessing path, the initializers, ``CCDFInferer``, the postprocessing), so a row here
is what ``ccdf-mri recon`` with those settings gives. Metrics: fastMRI PSNR / SSIM per slice
(magnitude, ``data_range`` = the slice target's maximum, 7x7 SSIM window) against the
noise-free ``|target_complex|``; tables give medians over slices and say how many.

Commands (``--data`` is a folder with ``val/`` and ``test/``: the real-image validation set of
``ccdf_mri.data_prep.make_validation_set`` or the demo corpus)::

    # per-slice oracle t0 (best of a grid in hindsight) vs the estimated t0, per initializer
    python -m benchmarks.real_validation oracle --data /work/validation --split val --slices 12
    # (the estimator's factor per initializer is fitted by python -m ccdf_mri.calibration)
    # headline: defaults vs BART pics -l1 / -l2 (lambda tuned on val), 4x and 8x
    python -m benchmarks.real_validation headline --data /work/validation --split test --slices 24
    # what K posterior samples buy per network evaluation, and the DC strength
    python -m benchmarks.real_validation samples --data /work/validation --split val --slices 12
    # the same budget t0 N on coarser ladders (a higher start noise)
    python -m benchmarks.real_validation ladder --data /work/validation --split val --slices 12 --pairs 1000:0.05 250:0.2
    # the CG-SENSE start with ESPIRiT maps at several eigenvalue crops and with BART's ecalib maps
    python -m benchmarks.real_validation maps --data /work/validation --split val --slices 12 --setting 8x
    # the L1-wavelet start (lam:iterations:wavelet:levels) beside CG-SENSE
    python -m benchmarks.real_validation l1 --data /work/validation --split val --slices 12 --setting 8x --specs 0.001:100:haar:5
    # CCDF from L1 starts whose weight follows the noise (weight:acceleration_power:noise_power)
    python -m benchmarks.real_validation l1 --data /work/validation --split val --slices 12 --setting 8x --ccdf --specs --rules 1:2:1.5 12:0.75:2
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from benchmarks import common
from ccdf_mri import calibration as cal

RESULTS = common.RESULTS_DIR / "real_validation"
INITIALIZERS = ("zero_filled", "cg_sense", "l1_wavelet", "unet")
T0_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
SETTINGS = {"4x": ("equispaced_fraction", 4.0, 0.08), "8x": ("equispaced_fraction", 8.0, 0.04)}
TARGET_KEY = "target_complex"


def slice_list(folder: Path, max_slices: int) -> list[tuple[Path, int]]:
    """Up to ``max_slices`` ``(file, slice)`` pairs spread evenly over the files (round robin;
    within a file 0, n/2, n/4, 3n/4, ...)."""
    from ccdf_mri.io import FastMRIVolume, find_inputs

    per_file = []
    for path in find_inputs(folder):
        with FastMRIVolume(path) as volume:
            count = volume.num_slices
        order = sorted(range(count), key=lambda i: (bin(i).count("1"), i))
        per_file.append([(path, i) for i in order])
    chosen: list[tuple[Path, int]] = []
    depth = 0
    while len(chosen) < max_slices and any(depth < len(items) for items in per_file):
        for items in per_file:
            if depth < len(items) and len(chosen) < max_slices:
                chosen.append(items[depth])
        depth += 1
    return chosen


def config(setting: str, device: Any, **overrides: Any) -> dict:
    """Bundle config overrides for a mask setting (nothing is written)."""
    kind, acceleration, center_fraction = SETTINGS[setting]
    base = {"mask": kind, "acceleration": acceleration, "center_fraction": center_fraction, "progress": False,
            "device": device, "output_dir": str(RESULTS / ".unused")}
    return {**base, **overrides}


def build(setting: str, device: Any, **overrides: Any):
    """The bundle's reconstructor for a mask setting (nothing is written)."""
    from ccdf_mri.app.build import from_bundle

    return from_bundle(None, config(setting, device, **overrides))


def scores(target: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """fastMRI PSNR / SSIM of one slice (``data_range`` = the target's maximum)."""
    return {k: v for k, v in cal.slice_scores(target, image).items() if k in ("psnr", "ssim")}


def median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


# --------------------------------------------------------------------------- oracle t0
def oracle(args: argparse.Namespace) -> dict:
    """Per slice and initializer: PSNR of x0, of CCDF at each ``t0`` of the grid (one sample, and
    the bundle's ``K`` samples within the budget), with the bundle's ``t0 = auto`` (the
    calibration table, ``K`` samples: the default) and with the per-slice estimate
    (``EstimatedT0``, ``K`` samples sharing the budget)."""
    from ccdf_mri.diffusion.t0 import EstimatedT0

    # one sample for the grid curves (K > 1 through ``samples``); the bundle's K for the auto rows
    recon = build(args.setting, args.device, t0=0.1, num_steps=args.steps, num_samples=1)
    bundle = build(args.setting, args.device, num_steps=args.steps)
    starts = cal.named_initializers(args.initializers, None, config(args.setting, args.device))
    k = bundle.inferer.num_samples
    cases = cal.prepare_cases(recon, slice_list(args.data / args.split, args.slices), TARGET_KEY)
    factors = json.loads(Path(args.factors).read_text()).get("factor", {}) if args.factors else {}
    budget = args.max_nfe or None
    reused = reusable_rows(args, cases) if args.reuse else {}
    records = []
    for init in args.initializers:
        start = time.perf_counter()
        rows = reused.get(init)
        if rows is None:
            rows = cal.curves(recon, cases, init, args.grid, samples=[k], max_nfe=budget, start=starts[init])
            for row in rows:
                row["seconds_all_grid"] = (time.perf_counter() - start) / len(cases)
        x0 = cal.initial_estimates(recon, cases, starts[init])
        selectors = {"table": bundle.inferer.t0_selector}
        if init in factors or "default" in factors:  # as the product: the initializer's factor, else the default one
            selectors["auto"] = EstimatedT0(factor=factors, initializer=init, max_nfe=budget, num_samples=k)
        for key, selector in selectors.items():
            if all(key in row for row in rows):
                continue
            inferer = copy.copy(bundle.inferer)
            inferer.t0_selector, inferer.num_samples = selector, k
            images, t0s, nfes = cal.ccdf_images(recon, cases, x0, "auto", inferer=inferer)
            for row, case, image, t0, nfe in zip(rows, cases, images, t0s, nfes):
                row[key] = {**scores(case.target, image), "t0": t0, "nfe": nfe, "num_samples": k}
                if key == "auto":
                    row[key]["factor"] = selector.factor
                    row[key]["factor_entry"] = init if init in factors else "default"
        records += rows
    return {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)), "setting": args.setting,
            "data": str(args.data / args.split), "slices": len(cases), "num_steps": args.steps, "num_samples": k,
            "grid": list(args.grid), "max_nfe": args.max_nfe, "records": records}


def reusable_rows(args: argparse.Namespace, cases: Sequence[Any]) -> dict[str, list[dict]]:
    """The grid curves and rows of an earlier oracle run (``--reuse``), per initializer, when it
    had the same data, setting, grid, steps and budget and the same slices in the same order
    (otherwise an error: a reused curve must be the one this run would measure)."""
    old = json.loads(Path(args.reuse).read_text())
    same = {"data": str(args.data / args.split), "setting": args.setting, "grid": list(args.grid),
            "num_steps": args.steps, "max_nfe": args.max_nfe}
    differ = {key: (old.get(key), value) for key, value in same.items() if old.get(key) != value}
    if differ:
        raise ValueError(f"--reuse {args.reuse}: made with other settings (found vs expected): {differ}")
    by_init: dict[str, list[dict]] = {}
    for row in old["records"]:
        by_init.setdefault(row["initializer"], []).append(row)
    names = [case.name for case in cases]
    for init, rows in by_init.items():
        if [row["slice"] for row in rows] != names:
            raise ValueError(f"--reuse {args.reuse}: {init}: expected the slices {names}, found {[r['slice'] for r in rows]}")
    return by_init


def affordable(row: dict, num_steps: int, max_nfe: Optional[int]) -> dict[str, dict]:
    """A record's CCDF results within the budget: ``{"K=1 t0=..": scores, "K=k t0=..": scores}``."""
    found = {f"K=1 t0={t0}": v for t0, v in row["grid"].items() if not max_nfe or round(float(t0) * num_steps) <= max_nfe}
    for k, per_t0 in row.get("samples", {}).items():
        found.update({f"K={k} t0={t0}": v for t0, v in per_t0.items()})
    return found


def summarize_oracle(payload: dict) -> str:
    """Markdown: per initializer, x0 / best fixed / oracle / table / per-slice PSNR (means over slices) and the
    share of the oracle's gain over x0 each recovers (oracle: the best affordable (K, t0) per slice in hindsight)."""
    steps, budget = payload["num_steps"], payload.get("max_nfe")
    lines = [f"Data: `{payload['data']}`, {payload['slices']} slices, {payload['setting']}, N = {steps}; "
             f"t0 grid {payload['grid']}, K = 1 and {payload.get('num_samples', 1)}, at most {budget} network evaluations "
             "per slice. PSNR dB, means over slices; gain = mean over slices of (method - x0).", "",
             "| initializer | x0 | best fixed (K, t0) | oracle (per slice) | table (default) | per-slice estimate | "
             "table / oracle gain | estimate / oracle gain |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for init in dict.fromkeys(r["initializer"] for r in payload["records"]):
        rows = [r for r in payload["records"] if r["initializer"] == init]
        x0 = float(np.mean([r["x0"]["psnr"] for r in rows]))
        options = [affordable(r, steps, budget) for r in rows]
        best = max(options[0], key=lambda key: np.mean([o[key]["psnr"] for o in options]))
        oracle_psnr = float(np.mean([max(v["psnr"] for v in o.values()) for o in options]))
        cells = []
        for key in ("table", "auto"):
            vals = [r[key]["psnr"] for r in rows if key in r]
            cells.append((float(np.mean(vals)), (float(np.mean(vals)) - x0) / (oracle_psnr - x0)) if vals else (float("nan"), float("nan")))
        text = [("-", "-") if np.isnan(value) else (f"{value:.2f}", f"{share:.0%}") for value, share in cells]
        lines.append(f"| {init} | {x0:.2f} | {np.mean([o[best]['psnr'] for o in options]):.2f} ({best}) | {oracle_psnr:.2f} | "
                     f"{text[0][0]} | {text[1][0]} | {text[0][1]} | {text[1][1]} |")
    defaulted = list(dict.fromkeys(r["initializer"] for r in payload["records"]
                                   if r.get("auto", {}).get("factor_entry") == "default"))
    if defaulted:
        lines += ["", f"Per-slice estimate of {', '.join(defaulted)}: no factor is calibrated for "
                  f"{'it' if len(defaulted) == 1 else 'them'}; the calibration's default entry is used, as the product does."]
    return "\n".join(lines)


def bart_case(case: Any) -> Any:
    """A prepared case as BART sees it: the measured k-space in the file's units and the mask."""
    from benchmarks import bart
    from ccdf_mri.transforms.array import ScaleIntensityByZeroFilled

    kspace = ScaleIntensityByZeroFilled.inverse(case.data["kspace"], case.data["scale"])[0].cpu().numpy()
    mask = torch.broadcast_to(case.data["mask"].reshape(case.data["mask"].shape[-2:]), kspace.shape[-2:]).cpu().numpy()
    return bart.BartCase(kspace, mask, case.target, case.name)


def bart_rows(cases: Sequence[Any], setting: str, lambdas: dict) -> dict[str, dict]:
    """BART ecalib + pics -l1 / -l2 on the same measured samples, with the lambdas tuned on val."""
    from benchmarks import bart
    from ccdf_mri.app.postprocessing import center_crop

    out: dict[str, dict] = {}
    if not bart.bart_available():
        print("BART rows left out: the `bart` command is not installed (apt-get install bart)")
        return out
    bart_cases = [bart_case(c) for c in cases]
    for reg in ("l1", "l2"):
        lam = lambdas.get(f"{setting}-{reg}")
        if lam is None:
            print(f"BART -{reg} row left out: no lambda tuned on val for {setting}")
            continue
        per_slice, seconds = [], []
        for case, bcase in zip(cases, bart_cases):
            image, sec = bart.reconstruct(bcase, reg, lam)
            cropped = center_crop(torch.from_numpy(np.abs(image)), case.header.recon_matrix[:2]).numpy()
            per_slice.append(scores(case.target, cropped))
            seconds.append(sec + bcase.ecalib_seconds)
        out[f"BART ecalib + pics -{reg} -r {lam:g}"] = {"per_slice": per_slice, "seconds": seconds, "nfe": 0.0}
    return out


def method_row(per_slice: list[dict], seconds: Sequence[float], nfe: Sequence[float]) -> dict:
    return {"per_slice": per_slice, "seconds": list(seconds), "nfe": float(np.mean(nfe)) if len(nfe) else 0.0}


def headline(args: argparse.Namespace) -> dict:
    """The bundle's defaults vs BART (and the parts alone) on ``--slices`` slices per setting."""
    results: dict[str, Any] = {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)),
                               "data": str(args.data / args.split), "settings": {}}
    lambdas = load_lambdas(args.bart_lambdas)
    pairs = slice_list(args.data / args.split, args.slices)
    for setting in args.settings:
        recon = build(setting, args.device)  # the shipped defaults: initializer, t0, steps, samples, DC
        cases = cal.prepare_cases(recon, pairs, TARGET_KEY)
        _, _, scale = cal.batched(cases)
        rows: dict[str, dict] = {}
        x0 = cal.initial_estimates(recon, cases, cal.named_initializers(["zero_filled"])["zero_filled"])
        rows["zero-filled SENSE"] = method_row([scores(c.target, im) for c, im in zip(cases, cal.magnitudes(cases, x0, scale))],
                                               [0.0] * len(cases), [])
        start = time.perf_counter()
        x0 = cal.initial_estimates(recon, cases)
        init_seconds = (time.perf_counter() - start) / len(cases)
        rows[f"initial estimate alone ({type(recon.initializer).__name__})"] = method_row(
            [scores(c.target, im) for c, im in zip(cases, cal.magnitudes(cases, x0, scale))], [init_seconds] * len(cases), [])
        start = time.perf_counter()
        images, t0s, nfes = cal.ccdf_images(recon, cases, x0, None)
        seconds = (time.perf_counter() - start) / len(cases) + init_seconds
        rows["ccdf-mri recon defaults"] = method_row([scores(c.target, im) for c, im in zip(cases, images)],
                                                     [seconds] * len(cases), nfes)  # all K samples (CCDFResult.nfe)
        rows["ccdf-mri recon defaults"]["t0"] = t0s
        rows.update(bart_rows(cases, setting, lambdas))
        results["settings"][setting] = {"slices": len(cases), "kinds": sorted({c.kind for c in cases}), "rows": rows,
                                        "defaults": defaults(recon)}
        print(summarize_setting(setting, results["settings"][setting]), flush=True)
    return results


def load_lambdas(path: Optional[str]) -> dict:
    """``{"4x-l1": lambda, ...}`` from ``benchmarks.bart_study tune``'s JSON (tuned on val)."""
    if not path or not Path(path).is_file():
        return {}
    stored = json.loads(Path(path).read_text())
    out = {}
    for entry in stored.values():
        label = entry["setting"].split("-")[-1]  # equispaced_fraction-4x -> 4x
        out[f"{label}-{entry['reg']}"] = float(entry["lambda"])
    return out


def defaults(recon: Any) -> dict:
    inferer = recon.inferer
    return {"initializer": type(recon.initializer).__name__, "t0": inferer.t0, "num_steps": inferer.num_steps,
            "num_samples": inferer.num_samples, "sampler": inferer.sampler, "dc": type(inferer.dc).__name__,
            "dc_lam": getattr(inferer.dc, "lam", None), "t0_selector": type(inferer.t0_selector).__name__,
            "maps": next((t.estimate.method for t in recon.preprocessing.transforms if hasattr(t, "estimate")), None)}


def summarize_setting(setting: str, block: dict) -> str:
    lines = [f"### {setting}: {block['slices']} slices ({', '.join(block['kinds'])})", "",
             "| method | PSNR dB (median) | SSIM (median) | network evaluations / slice | s / slice (median) |",
             "|---|---:|---:|---:|---:|"]
    for name, row in block["rows"].items():
        psnr = median([r["psnr"] for r in row["per_slice"]])
        ssim = median([r["ssim"] for r in row["per_slice"]])
        lines.append(f"| {name} | {psnr:.2f} | {ssim:.3f} | {row['nfe']:.1f} | {median(row['seconds']):.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- samples and DC strength
def samples(args: argparse.Namespace) -> dict:
    """Posterior samples K vs network evaluations, and the proximal DC weight, at the default start."""
    from ccdf_mri.physics import ProximalDC

    recon = build(args.setting, args.device)
    cases = cal.prepare_cases(recon, slice_list(args.data / args.split, args.slices), TARGET_KEY)
    x0 = cal.initial_estimates(recon, cases)
    rows = {}
    dc = recon.inferer.dc
    variants = [(lam, std) for lam in args.lams for std in (args.prior_stds if lam == "auto" else [None])]
    for k in args.samples:
        for lam, std in variants:
            inferer = copy.copy(recon.inferer)
            inferer.num_samples = int(k)
            inferer.dc = ProximalDC(lam=lam, num_iters=dc.num_iters, prior_std=std or dc.prior_std, lam_min=dc.lam_min)
            images, t0s, nfes = cal.ccdf_images(recon, cases, x0, args.t0, inferer=inferer)
            per_slice = [scores(c.target, im) for c, im in zip(cases, images)]
            label = f"K={k} lam={lam}" + (f" prior_std={std:g}" if std else "") + (f" t0={args.t0:g}" if args.t0 is not None else "")
            rows[label] = {"per_slice": per_slice, "nfe": float(np.mean(nfes)), "t0": median(t0s)}
            print(f"{label}: median PSNR {median([r['psnr'] for r in per_slice]):.2f}, mean "
                  f"{np.mean([r['psnr'] for r in per_slice]):.2f}, SSIM {median([r['ssim'] for r in per_slice]):.3f}, "
                  f"NFE {np.mean(nfes):.0f}", flush=True)
    return {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)), "setting": args.setting,
            "data": str(args.data / args.split), "slices": len(cases), "rows": rows}


# --------------------------------------------------------------------------- maps: ESPIRiT's crop vs BART's maps
def maps(args: argparse.Namespace) -> dict:
    """CG-SENSE (10 iterations, Tikhonov 0.01: the maps' effect without a prior) with ESPIRiT maps
    at eigenvalue crops ``--crops`` (None: the bundle's rule,
    :func:`ccdf_mri.transforms.array.espirit_crop`) and with ``bart ecalib``'s maps (the
    benchmarks' fair calibration rule), on the same measured samples."""
    from benchmarks import bart
    from ccdf_mri.initializers import CGSense
    from ccdf_mri.physics import SenseOp

    start = CGSense(10, 0.01)

    pairs = slice_list(args.data / args.split, args.slices)
    rows: dict[str, dict] = {}
    for crop in [None, *args.crops]:
        recon = build(args.setting, args.device, **({} if crop is None else {"preprocessing#transforms#2#crop": crop}))
        cases = cal.prepare_cases(recon, pairs, TARGET_KEY)
        variants = {"bundle rule" if crop is None else f"crop {crop:g}": [c.data["maps"] for c in cases]}
        if crop is None and bart.bart_available():
            variants["BART ecalib maps"] = []
            for c in cases:
                found = bart_case(c).coil_maps()
                variants["BART ecalib maps"].append(torch.from_numpy(found)[None].to(c.data["maps"].dtype))
        for name, per_case in variants.items():
            per_slice = []
            for c, m in zip(cases, per_case):
                mask = c.data["mask"].reshape(1, 1, *c.data["mask"].shape[-2:])
                x0 = start(SenseOp(m, mask), c.data["kspace"])
                per_slice.append(scores(c.target, cal.magnitudes([c], x0, c.data["scale"].reshape(-1))[0]))
            rows[name] = {"per_slice": per_slice, "nfe": 0.0}
            print(f"{name}: median PSNR {median([r['psnr'] for r in per_slice]):.2f}, "
                  f"min {min(r['psnr'] for r in per_slice):.2f}", flush=True)
    return {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)), "setting": args.setting,
            "data": str(args.data / args.split), "slices": len(pairs), "rows": rows}


# --------------------------------------------------------------------------- l1: the L1-wavelet start's settings
def l1(args: argparse.Namespace) -> dict:
    """The L1-wavelet initial estimate alone for ``--specs lam:iters:wavelet:levels`` (``lam`` a
    number or ``auto``; ``--rules weight:acceleration_power:noise_power`` give more ``auto``
    rules), beside CG-SENSE, on the same prepared slices (seconds per slice on this machine);
    with ``--ccdf`` also CCDF with the bundle's other defaults from each L1 start."""
    from ccdf_mri.initializers import CGSense, L1Wavelet

    recon = build(args.setting, args.device)
    cases = cal.prepare_cases(recon, slice_list(args.data / args.split, args.slices), TARGET_KEY)
    _, _, scale = cal.batched(cases)
    inits = {} if args.ccdf else {"CG-SENSE (10 its, lam 0.01)": CGSense(10, 0.01)}
    for spec in args.specs:
        lam, iters, wavelet, levels = spec.split(":")
        inits[f"L1 {wavelet} x{levels}, lam {lam}, {iters} its"] = L1Wavelet(lam if lam == "auto" else float(lam), int(iters), wavelet, int(levels))
    for rule in args.rules:
        weight, acc_power, noise_power = (float(v) for v in rule.split(":"))
        inits[f"L1 auto {weight:g} (R/4)^{acc_power:g} sigma^{noise_power:g}"] = L1Wavelet(
            "auto", noise_weight=weight, acceleration_power=acc_power, noise_power=noise_power)
    rows = {}
    for name, init in inits.items():
        start = time.perf_counter()
        x0 = torch.cat([init(*cal.batched(cases[i : i + 4])[:2]) for i in range(0, len(cases), 4)])
        seconds = (time.perf_counter() - start) / len(cases)
        per_slice = [scores(c.target, im) for c, im in zip(cases, cal.magnitudes(cases, x0, scale))]
        rows[name] = {"per_slice": per_slice, "nfe": 0.0, "seconds_per_slice": seconds}
        if isinstance(init, L1Wavelet):
            rows[name]["lam"] = [float(init.weights(*cal.batched([c])[:2])[0]) for c in cases]
        print(f"{name}: median PSNR {median([r['psnr'] for r in per_slice]):.2f}, SSIM "
              f"{median([r['ssim'] for r in per_slice]):.3f}, {seconds:.2f} s / slice", flush=True)
        if args.ccdf:
            images, t0s, nfes = cal.ccdf_images(recon, cases, x0, None)
            per_slice = [scores(c.target, im) for c, im in zip(cases, images)]
            rows[f"{name} -> CCDF defaults"] = {"per_slice": per_slice, "nfe": float(np.mean(nfes)), "t0": t0s}
            print(f"  -> CCDF: median PSNR {median([r['psnr'] for r in per_slice]):.2f}, mean "
                  f"{np.mean([r['psnr'] for r in per_slice]):.2f}, NFE {np.mean(nfes):.0f}", flush=True)
    return {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)), "setting": args.setting,
            "data": str(args.data / args.split), "slices": len(cases), "rows": rows}


# --------------------------------------------------------------------------- ladder: N and t0 at a fixed budget
def ladder(args: argparse.Namespace) -> dict:
    """CCDF at the default start with sampling ladders of ``N`` levels and starts ``t0`` (pairs
    ``N:t0``): the same network-evaluation budget ``t0 N`` can start from a higher noise level
    with a coarser ladder."""
    recon = build(args.setting, args.device)
    cases = cal.prepare_cases(recon, slice_list(args.data / args.split, args.slices), TARGET_KEY)
    x0 = cal.initial_estimates(recon, cases)
    rows = {}
    for pair in args.pairs:
        steps, t0 = pair.split(":")
        inferer = copy.copy(recon.inferer)
        inferer.sub = inferer.schedule.sub_schedule(int(steps))
        if args.sampler:
            inferer.sampler = args.sampler
        start = time.perf_counter()
        images, t0s, nfes = cal.ccdf_images(recon, cases, x0, None if t0 == "auto" else float(t0), inferer=inferer)
        seconds = (time.perf_counter() - start) / len(cases)
        per_slice = [scores(c.target, im) for c, im in zip(cases, images)]
        rows[f"{inferer.sampler} N={steps} t0={t0}"] = {"per_slice": per_slice, "nfe": float(np.mean(nfes)), "t0": t0s, "seconds": seconds,
                                      "start_sigma": float(inferer.sub.sigmas[inferer.sub.start_level(float(np.median(t0s)))])}
        print(f"{inferer.sampler} N={steps} t0={t0}: median PSNR {median([r['psnr'] for r in per_slice]):.2f}, "
              f"SSIM {median([r['ssim'] for r in per_slice]):.3f}, NFE {np.mean(nfes):.0f}", flush=True)
    return {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)), "setting": args.setting,
            "data": str(args.data / args.split), "slices": len(cases), "rows": rows}


# --------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_validation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("oracle", "headline", "samples", "ladder", "maps", "l1"):
        p = sub.add_parser(name)
        p.add_argument("--data", type=Path, required=True, help="folder with val/ and test/")
        p.add_argument("--split", default="val" if name != "headline" else "test")
        p.add_argument("--slices", type=int, default=12)
        p.add_argument("--device", default="cpu")
        p.add_argument("--out", type=Path, default=RESULTS)
        p.add_argument("--tag", default="", help="suffix of the result files")
    oracle_p = sub.choices["oracle"]
    oracle_p.add_argument("--setting", default="4x", choices=sorted(SETTINGS))
    oracle_p.add_argument("--steps", type=int, default=1000)
    oracle_p.add_argument("--grid", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.025, 0.05])
    oracle_p.add_argument("--initializers", nargs="+", default=list(cal.INITIALIZERS))
    oracle_p.add_argument("--factors", help="calibration.json whose 'factor' entries give the auto rows")
    oracle_p.add_argument("--max-nfe", type=int, default=50,
                          help="the auto rows' budget of network evaluations per slice, probes included (0: none)")
    oracle_p.add_argument("--reuse", type=Path, default=None, metavar="JSON",
                          help="an earlier oracle run's JSON (same data, setting, grid, steps, budget): its grid curves "
                               "and rows are kept, only the missing auto rows are computed")
    head = sub.choices["headline"]
    head.add_argument("--settings", nargs="+", default=["4x", "8x"], choices=sorted(SETTINGS))
    head.add_argument("--bart-lambdas", default=str(common.RESULTS_DIR / "bart_lambda.json"),
                      help="benchmarks.bart_study tune's JSON (lambdas tuned on val)")
    smp = sub.choices["samples"]
    smp.add_argument("--setting", default="4x", choices=sorted(SETTINGS))
    smp.add_argument("--samples", type=int, nargs="+", default=[1, 2, 4])
    smp.add_argument("--lams", type=lambda v: v if v == "auto" else float(v), nargs="+", default=["auto"],
                     help="proximal DC weights (numbers or auto)")
    smp.add_argument("--t0", type=float, default=None, help="a fixed t0 instead of the bundle's t0 auto")
    smp.add_argument("--prior-stds", type=float, nargs="+", default=[None],
                     help="for lam auto: the rule's prior_std values ((sigma / prior_std)^2; default: the bundle's)")
    lad = sub.choices["ladder"]
    lad.add_argument("--setting", default="4x", choices=sorted(SETTINGS))
    lad.add_argument("--sampler", default=None, choices=("ddpm", "ddim", "ve"), help="instead of the bundle's sampler")
    lad.add_argument("--pairs", nargs="+", default=["1000:0.05", "500:0.1", "250:0.2"], help="N:t0 pairs (t0 a number or auto)")
    mp = sub.choices["maps"]
    mp.add_argument("--setting", default="8x", choices=sorted(SETTINGS))
    mp.add_argument("--crops", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95])
    l1p = sub.choices["l1"]
    l1p.add_argument("--setting", default="8x", choices=sorted(SETTINGS))
    l1p.add_argument("--specs", nargs="*", default=["auto:100:haar:5"], help="lam:iterations:wavelet:levels (lam a number or auto)")
    l1p.add_argument("--rules", nargs="*", default=[], help="more auto rules, weight:acceleration_power:noise_power")
    l1p.add_argument("--ccdf", action="store_true", help="also CCDF (the bundle's defaults) from each L1 start")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    payload = {"oracle": oracle, "headline": headline, "samples": samples, "ladder": ladder, "maps": maps, "l1": l1}[args.command](args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.command}_{args.split}{args.tag}"
    common.write_json(args.out / f"{stem}.json", payload)
    if args.command == "oracle":
        text = summarize_oracle(payload)
    elif args.command == "headline":
        text = "\n\n".join(summarize_setting(k, v) for k, v in payload["settings"].items())
    else:
        text = "\n".join(f"| {k} | {median([r['psnr'] for r in v['per_slice']]):.2f} | "
                         f"{float(np.mean([r['psnr'] for r in v['per_slice']])):.2f} | {min(r['psnr'] for r in v['per_slice']):.2f} | "
                         f"{median([r['ssim'] for r in v['per_slice']]):.3f} | {v['nfe']:.0f} |" for k, v in payload["rows"].items())
        text = (f"{payload.get('setting', '')}, {payload.get('slices', '')} slices of {payload.get('data', '')}\n\n"
                "| setting | PSNR dB (median) | PSNR (mean) | PSNR (min) | SSIM (median) | NFE / slice |\n"
                "|---|---:|---:|---:|---:|---:|\n" + text)
    machine = payload["machine"]
    common.write_text(args.out / f"{stem}.md", f"# {args.command} ({args.split})\n\nCommand: `{payload['command']}`\n\n"
                      f"Machine: {machine}\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
