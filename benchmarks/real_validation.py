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
    # fit the estimator's factor per initializer on val (writes <models>/calibration.json "factor")
    python -m benchmarks.real_validation calibrate --records benchmarks/results/real_validation/oracle_val.json
    # headline: defaults vs BART pics -l1 / -l2 (lambda tuned on val), 4x and 8x
    python -m benchmarks.real_validation headline --data /work/validation --split test --slices 24
    # what K posterior samples buy per network evaluation, and the DC strength
    python -m benchmarks.real_validation samples --data /work/validation --split val --slices 12
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from benchmarks import common

RESULTS = common.RESULTS_DIR / "real_validation"
INITIALIZERS = ("zero_filled", "cg_sense", "l1_wavelet", "unet")
T0_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
SETTINGS = {"4x": ("equispaced_fraction", 4.0, 0.08), "8x": ("equispaced_fraction", 8.0, 0.04)}
TARGET_KEY = "target_complex"


@dataclasses.dataclass
class Case:
    """One prepared slice: the bundle's preprocessing output (batch of one) and its target."""

    name: str
    kind: str
    data: dict
    header: Any
    target: np.ndarray
    kspace: np.ndarray  # measured, readout-cropped, unscaled (C, H, W): what BART gets
    mask: np.ndarray  # (H, W) 0/1


def slice_list(folder: Path, max_slices: int) -> list[tuple[Path, int]]:
    """Up to ``max_slices`` ``(file, slice)`` pairs spread evenly over the files (round robin)."""
    from ccdf_mri.io import FastMRIVolume, find_inputs

    per_file = []
    for path in find_inputs(folder):
        with FastMRIVolume(path) as volume:
            per_file.append([(path, i) for i in range(volume.num_slices)])
    chosen: list[tuple[Path, int]] = []
    depth = 0
    while len(chosen) < max_slices and any(depth < len(f) for f in per_file):
        for items in per_file:
            # spread within a file too: 0, n/2, n/4, 3n/4, ...
            if depth < len(items) and len(chosen) < max_slices:
                order = sorted(range(len(items)), key=lambda i: (bin(i).count("1"), i))
                chosen.append(items[order[depth] if depth < len(order) else depth])
        depth += 1
    return chosen


def build(setting: str, device: Any, **overrides: Any):
    """The bundle's reconstructor for a mask setting (nothing is written)."""
    from ccdf_mri.app.build import from_bundle

    kind, acceleration, center_fraction = SETTINGS[setting]
    base = {"mask": kind, "acceleration": acceleration, "center_fraction": center_fraction, "progress": False,
            "device": device, "output_dir": str(RESULTS / ".unused")}
    return from_bundle(None, {**base, **overrides})


def prepare(recon: Any, pairs: Sequence[tuple[Path, int]], device: Any) -> list[Case]:
    """Each slice through the bundle's preprocessing (its own file-seeded mask)."""
    from ccdf_mri.io import FastMRIVolume
    from ccdf_mri.preprocessing import volume_batch
    from ccdf_mri.transforms.array import ScaleIntensityByZeroFilled

    cases = []
    for path, index in pairs:
        with FastMRIVolume(path) as volume:
            data = recon.preprocessing(volume_batch(volume, [index], None, device))
            target = volume.target_slice(index, TARGET_KEY)
            kind = str(volume.attrs.get("kind", path.parent.name))
            header = volume.header
        mask = torch.broadcast_to(data["mask"].reshape(data["mask"].shape[-2:]), data["kspace"].shape[-2:])
        measured = ScaleIntensityByZeroFilled.inverse(data["kspace"], data["scale"])[0].cpu().numpy()
        cases.append(Case(f"{path.stem}[{index}]", kind, data, header, target, measured, mask.cpu().numpy()))
    return cases


def batched(cases: Sequence[Case]):
    """One batch from several single-slice cases: ``(op, kspace, scale)``."""
    from ccdf_mri.physics import SenseOp

    maps = torch.cat([c.data["maps"] for c in cases])
    masks = torch.cat([c.data["mask"].reshape(1, 1, *c.data["mask"].shape[-2:]) for c in cases])
    kspace = torch.cat([c.data["kspace"] for c in cases])
    scale = torch.cat([c.data["scale"].reshape(-1) for c in cases])
    return SenseOp(maps, masks), kspace, scale


def magnitude(cases: Sequence[Case], images: torch.Tensor, scale: torch.Tensor) -> list[np.ndarray]:
    """Scaled complex images -> magnitude in the file's units, cropped to the recon matrix."""
    from ccdf_mri.app.postprocessing import make_postprocessing

    post = make_postprocessing()
    out = []
    for case, image, s in zip(cases, images, scale):
        out.append(post({"pred": image[None], "std": None, "scale": s.reshape(1), "meta": {"header": case.header}})["pred"][0])
    return out


def scores(target: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """fastMRI PSNR / SSIM of one slice (``data_range`` = the target's maximum)."""
    from ccdf_mri.metrics import psnr, ssim

    t, p = target[None].astype(np.float32), image[None].astype(np.float32)
    return {"psnr": float(psnr(t, p)), "ssim": float(ssim(t, p))}


def run_ccdf(recon: Any, cases: Sequence[Case], x0: torch.Tensor, t0: Any, batch: int = 4, seed: int = 0,
             inferer: Any = None) -> tuple[list[np.ndarray], list[float], list[float]]:
    """CCDF from ``x0`` for all cases, ``batch`` slices at a time: ``(images, t0 per slice, NFE per slice)``."""
    from ccdf_mri.app.reconstructor import slice_seed

    inferer = inferer or recon.inferer
    images, t0s, nfes = [], [], []
    for start in range(0, len(cases), batch):
        part = cases[start : start + batch]
        op, kspace, scale = batched(part)
        gens = [torch.Generator(device=recon.device).manual_seed(slice_seed(seed, c.name, 0)) for c in part]
        result = inferer(x0[start : start + len(part)], recon.network, op, kspace, generator=gens, t0=t0)
        images += magnitude(part, result.mean, scale)
        t0s += result.t0.tolist()
        nfes += result.nfe.double().tolist()
    return images, t0s, nfes


def initial(recon: Any, cases: Sequence[Case], name: str, batch: int = 4) -> tuple[torch.Tensor, float]:
    """``x0`` of initializer ``name`` for all cases (scaled) and seconds per slice."""
    from ccdf_mri.initializers import make_initializer

    init = make_initializer(name, recon.initializer.network if name == "unet" else None)
    out, start = [], time.perf_counter()
    for first in range(0, len(cases), batch):
        op, kspace, _ = batched(cases[first : first + batch])
        with torch.no_grad():
            out.append(init(op, kspace))
    return torch.cat(out), (time.perf_counter() - start) / len(cases)


def median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


# --------------------------------------------------------------------------- oracle t0
def oracle(args: argparse.Namespace) -> dict:
    """Per slice and initializer: PSNR of x0, of CCDF at each t0 of the grid, and at the estimated t0."""
    from ccdf_mri.diffusion.samplers import make_epsilon_fn
    from ccdf_mri.diffusion.t0 import EstimatedT0, noise_level

    recon = build(args.setting, args.device, initializer="unet", t0=0.1, num_steps=args.steps)
    cases = prepare(recon, slice_list(args.data / args.split, args.slices), args.device)
    _, _, scale = batched(cases)
    eps_fn = make_epsilon_fn(recon.network, recon.inferer.sub)
    factors = json.loads(Path(args.factors).read_text()).get("factor", {}) if args.factors else {}
    records = []
    for init in args.initializers:
        x0, seconds = initial(recon, cases, init)
        start = time.perf_counter()
        sigma = torch.cat([noise_level(x0[i : i + 4], eps_fn, recon.inferer.sub) for i in range(0, len(cases), 4)])
        estimate_seconds = (time.perf_counter() - start) / len(cases)
        rows = [{"initializer": init, "slice": c.name, "kind": c.kind, "x0": scores(c.target, im), "sigma_hat": float(s),
                 "grid": {}, "x0_seconds": seconds, "estimate_seconds": estimate_seconds}
                for c, im, s in zip(cases, magnitude(cases, x0, scale), sigma)]
        for t0 in args.grid:
            images, _, _ = run_ccdf(recon, cases, x0, t0)
            for row, case, image in zip(rows, cases, images):
                row["grid"][f"{t0:g}"] = scores(case.target, image)
            print(f"{init} t0 {t0:g}: median PSNR {median([r['grid'][f'{t0:g}']['psnr'] for r in rows]):.2f}", flush=True)
        if init in factors:
            selector = EstimatedT0(factor=factors[init], initializer=init)
            inferer = copy.copy(recon.inferer)
            inferer.t0_selector = selector
            images, t0s, nfes = run_ccdf(recon, cases, x0, "auto", inferer=inferer)
            for row, case, image, t0, nfe in zip(rows, cases, images, t0s, nfes):
                row["auto"] = {**scores(case.target, image), "t0": t0, "nfe": nfe}
        records += rows
    return {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)), "setting": args.setting,
            "data": str(args.data / args.split), "slices": len(cases), "num_steps": args.steps,
            "grid": list(args.grid), "records": records}


def fit_factor(rows: Sequence[dict], sub: Any, candidates: Sequence[float]) -> tuple[float, dict]:
    """The factor whose estimated t0 maximises the mean PSNR over ``rows`` (each slice's PSNR(t0)
    curve interpolated linearly in log t0 between its grid points, constant beyond them)."""
    sigmas = sub.sigmas.double()

    def psnr_at(row: dict, t0: float) -> float:
        grid = sorted((float(k), v["psnr"]) for k, v in row["grid"].items())
        xs, ys = np.log([g for g, _ in grid]), [p for _, p in grid]
        return float(np.interp(math.log(max(t0, 1e-6)), xs, ys))

    means = {}
    for factor in candidates:
        values = []
        for row in rows:
            level = int(torch.searchsorted(sigmas.contiguous(), torch.tensor(row["sigma_hat"] * factor, dtype=torch.float64)).clamp(1, sub.num_steps))
            values.append(psnr_at(row, level / sub.num_steps))
        means[factor] = float(np.mean(values))
    best = max(means, key=means.get)
    return best, means


def calibrate(args: argparse.Namespace) -> dict:
    """Fit the EstimatedT0 factor per initializer on oracle records (val) and store it."""
    from ccdf_mri.diffusion import VPSchedule

    payload = json.loads(Path(args.records).read_text())
    sub = VPSchedule().sub_schedule(payload["num_steps"])
    candidates = [round(2 ** (k / 4), 4) for k in range(-8, 17)]  # 0.25 .. 16
    factors, curves = {}, {}
    for init in sorted({r["initializer"] for r in payload["records"]}):
        rows = [r for r in payload["records"] if r["initializer"] == init]
        factors[init], curves[init] = fit_factor(rows, sub, candidates)
        edge = factors[init] in (candidates[0], candidates[-1])
        print(f"{init}: factor {factors[init]:g} (mean PSNR {curves[init][factors[init]]:.2f} dB){' ON THE GRID EDGE' if edge else ''}")
    out = {"factor": factors, "factor_fit": {"records": args.records, "slices": payload["slices"], "candidates": candidates,
                                             "mean_psnr": {k: {f"{f:g}": v for f, v in c.items()} for k, c in curves.items()}}}
    if args.models:
        path = Path(args.models) / "calibration.json"
        existing = json.loads(path.read_text()) if path.is_file() else {}
        existing.update(out)
        path.write_text(json.dumps(existing, indent=2) + "\n")
        print(f"wrote {path}")
    return out


def summarize_oracle(payload: dict) -> str:
    """Markdown: per initializer, x0 / oracle / auto PSNR medians and the share of the oracle's gain auto recovers."""
    lines = [f"Data: `{payload['data']}`, {payload['slices']} slices, {payload['setting']}, N = {payload['num_steps']}; "
             f"t0 grid {payload['grid']}. PSNR dB medians over slices; gain = mean over slices of (method - x0).", "",
             "| initializer | x0 | best fixed t0 | oracle (per slice) | auto | auto t0 (median) | oracle t0 (median) | auto / oracle gain |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for init in dict.fromkeys(r["initializer"] for r in payload["records"]):
        rows = [r for r in payload["records"] if r["initializer"] == init]
        x0 = [r["x0"]["psnr"] for r in rows]
        best_key = max(rows[0]["grid"], key=lambda k: np.mean([r["grid"][k]["psnr"] for r in rows]))
        oracle_t0 = [float(max(r["grid"], key=lambda k: r["grid"][k]["psnr"])) for r in rows]
        oracle_psnr = [max(v["psnr"] for v in r["grid"].values()) for r in rows]
        auto = [r["auto"]["psnr"] for r in rows if "auto" in r]
        gain_oracle = np.mean(np.subtract(oracle_psnr, x0))
        gain_auto = np.mean(np.subtract(auto, x0)) if auto else float("nan")
        lines.append(
            f"| {init} | {median(x0):.2f} | {median([r['grid'][best_key]['psnr'] for r in rows]):.2f} (t0 {best_key}) | "
            f"{median(oracle_psnr):.2f} | {median(auto):.2f} | {median([r['auto']['t0'] for r in rows if 'auto' in r]):.3f} | "
            f"{median(oracle_t0):.3f} | {gain_auto / gain_oracle if auto else float('nan'):.0%} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- headline
def bart_rows(cases: Sequence[Case], setting: str, lambdas: dict) -> dict[str, dict]:
    """BART ecalib + pics -l1 / -l2 on the same measured samples, with the lambdas tuned on val."""
    from benchmarks import bart
    from ccdf_mri.app.postprocessing import center_crop

    out: dict[str, dict] = {}
    if not bart.bart_available():
        return out
    bart_cases = [bart.BartCase(c.kspace, c.mask, c.target, c.name) for c in cases]
    for reg in ("l1", "l2"):
        lam = lambdas.get(f"{setting}-{reg}")
        if lam is None:
            continue
        per_slice, seconds = [], []
        for case, bcase in zip(cases, bart_cases):
            image, sec = bart.reconstruct(bcase, reg, lam)
            cropped = center_crop(torch.from_numpy(np.abs(image)), case.header.recon_matrix[:2]).numpy()
            per_slice.append(scores(case.target, cropped))
            seconds.append(sec + bcase.ecalib_seconds / 2)  # ecalib is shared by the two rows
        out[f"BART ecalib + pics -{reg} -r {lam:g}"] = {"per_slice": per_slice, "seconds": seconds, "nfe": 0}
    return out


def method_row(per_slice: list[dict], seconds: Sequence[float], nfe: Sequence[float]) -> dict:
    return {"per_slice": per_slice, "seconds": list(seconds), "nfe": float(np.mean(nfe)) if len(nfe) else 0.0}


def headline(args: argparse.Namespace) -> dict:
    """Defaults vs BART (and the parts alone) on ``--slices`` test slices per setting."""
    results: dict[str, Any] = {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)),
                               "data": str(args.data / args.split), "settings": {}}
    lambdas = json.loads(Path(args.bart_lambdas).read_text()) if args.bart_lambdas and Path(args.bart_lambdas).is_file() else {}
    pairs = slice_list(args.data / args.split, args.slices)
    for setting in args.settings:
        recon = build(setting, args.device)  # the shipped defaults: initializer, t0, steps, samples, DC
        cases = prepare(recon, pairs, args.device)
        _, _, scale = batched(cases)
        rows: dict[str, dict] = {}
        x0, _ = initial(recon, cases, "zero_filled")
        rows["zero-filled SENSE"] = method_row([scores(c.target, im) for c, im in zip(cases, magnitude(cases, x0, scale))], [0.0] * len(cases), [])
        default_init = recon.initializer
        start = time.perf_counter()
        x0 = torch.cat([default_init(*batched(cases[i : i + 4])[:2]) for i in range(0, len(cases), 4)])
        init_seconds = (time.perf_counter() - start) / len(cases)
        name = type(default_init).__name__
        rows[f"initializer alone ({name})"] = method_row(
            [scores(c.target, im) for c, im in zip(cases, magnitude(cases, x0, scale))], [init_seconds] * len(cases), [])
        start = time.perf_counter()
        images, t0s, nfes = run_ccdf(recon, cases, x0, None)
        seconds = (time.perf_counter() - start) / len(cases) + init_seconds
        rows["ccdf-mri recon defaults"] = method_row([scores(c.target, im) for c, im in zip(cases, images)], [seconds] * len(cases), nfes)
        rows["ccdf-mri recon defaults"]["t0"] = t0s
        rows.update(bart_rows(cases, setting, lambdas))
        results["settings"][setting] = {"slices": len(cases), "kinds": sorted({c.kind for c in cases}), "rows": rows,
                                        "defaults": _defaults(recon)}
        print(summarize_setting(setting, results["settings"][setting]), flush=True)
    return results


def _defaults(recon: Any) -> dict:
    inferer = recon.inferer
    return {"initializer": type(recon.initializer).__name__, "t0": inferer.t0, "num_steps": inferer.num_steps,
            "num_samples": inferer.num_samples, "sampler": inferer.sampler, "dc": type(inferer.dc).__name__,
            "dc_lam": getattr(inferer.dc, "lam", None), "t0_selector": type(inferer.t0_selector).__name__}


def summarize_setting(setting: str, block: dict) -> str:
    lines = [f"### {setting}: {block['slices']} slices ({', '.join(block['kinds'])})", "",
             "| method | PSNR dB (median) | SSIM (median) | NFE / slice | s / slice (median) |", "|---|---:|---:|---:|---:|"]
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
    cases = prepare(recon, slice_list(args.data / args.split, args.slices), args.device)
    x0 = torch.cat([recon.initializer(*batched(cases[i : i + 4])[:2]) for i in range(0, len(cases), 4)])
    rows = {}
    for k in args.samples:
        for lam in args.lams:
            inferer = copy.copy(recon.inferer)
            inferer.num_samples, inferer.dc = int(k), ProximalDC(lam=lam, num_iters=inferer.dc.num_iters)
            images, t0s, nfes = run_ccdf(recon, cases, x0, None, inferer=inferer)
            per_slice = [scores(c.target, im) for c, im in zip(cases, images)]
            rows[f"K={k} lam={lam:g}"] = {"per_slice": per_slice, "nfe": float(np.mean(nfes)) * k, "t0": median(t0s)}
            print(f"K={k} lam={lam:g}: median PSNR {median([r['psnr'] for r in per_slice]):.2f}, "
                  f"SSIM {median([r['ssim'] for r in per_slice]):.3f}, NFE {np.mean(nfes) * k:.0f}", flush=True)
    return {"command": " ".join(sys.argv), "machine": common.machine_info(str(args.device)), "setting": args.setting,
            "data": str(args.data / args.split), "slices": len(cases), "rows": rows}


# --------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_validation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("oracle", "headline", "samples"):
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
    oracle_p.add_argument("--grid", type=float, nargs="+", default=list(T0_GRID))
    oracle_p.add_argument("--initializers", nargs="+", default=list(INITIALIZERS))
    oracle_p.add_argument("--factors", help="calibration.json whose 'factor' entries give the auto rows")
    head = sub.choices["headline"]
    head.add_argument("--settings", nargs="+", default=["4x", "8x"], choices=sorted(SETTINGS))
    head.add_argument("--bart-lambdas", default=str(common.RESULTS_DIR / "bart_lambda_flat.json"),
                      help="JSON {'4x-l1': lambda, ...} tuned on val")
    smp = sub.choices["samples"]
    smp.add_argument("--setting", default="4x", choices=sorted(SETTINGS))
    smp.add_argument("--samples", type=int, nargs="+", default=[1, 2, 4])
    smp.add_argument("--lams", type=float, nargs="+", default=[1.0])
    cal = sub.add_parser("calibrate")
    cal.add_argument("--records", required=True)
    cal.add_argument("--models", help="models folder whose calibration.json gets the factors")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.command == "calibrate":
        calibrate(args)
        return 0
    payload = {"oracle": oracle, "headline": headline, "samples": samples}[args.command](args)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.command}_{args.split}{args.tag}"
    common.write_json(args.out / f"{stem}.json", payload)
    if args.command == "oracle":
        text = summarize_oracle(payload)
    elif args.command == "headline":
        text = "\n\n".join(summarize_setting(k, v) for k, v in payload["settings"].items())
    else:
        text = json.dumps({k: {"psnr": median([r["psnr"] for r in v["per_slice"]]), "nfe": v["nfe"]} for k, v in payload["rows"].items()}, indent=1)
    common.write_text(args.out / f"{stem}.md", f"# {args.command} ({args.split})\n\nCommand: `{payload['command']}`\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
