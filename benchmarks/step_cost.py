"""Cost of one CCDF reverse step on the CPU, and which speed options make it faster at equal quality.

Setting (issue 11, item 3): a 256x256, 8-coil slice (batch 1), 4x equispaced mask, the
bundle's score network (architecture from ``configs/inference.json``'s ``network_def``, weights
from ``--models``; ``--random-weights`` for an architecture without trained weights, ``--set
network_def#channels=[16,32,64,128]`` to change it), ``ProximalDC()`` (5 CG iterations) and
``ProjectionDC()`` (20) for comparison, the ``ddpm`` step. Parts, timed as the inferer runs them:

- network: ``eps_fn`` (complex -> channels, scaling, the network, channels -> complex);
- DC: ``dc(x, op, kspace)``;
- rest: the sampler arithmetic plus drawing the step's noise (the fused affine ``ddpm_step``;
  the operation-by-operation formula it replaced is timed beside it);
- whole step: one level of :func:`reverse_diffusion` (all of the above).

Speed options (``CCDFInferer(channels_last=..., amp_dtype=..., compile=...)``), each timed
interleaved with the plain path (A, B, C, A, B, C, ...; medians), with the network's FLOPs
(``FlopCounterMode``) over its time against the CPU's peak (``benchmarks.roofline``). Quality:
``--quality-slices`` slices of ``--data``'s test split reconstructed as ``ccdf-mri recon`` does
(the bundle's preprocessing, initializer, calibrated t0 and N; 20 reverse steps at 4x) with each
option, PSNR against the noise-free target where the files have it (else the file's target), and the
per-slice difference to the plain path.

Writes ``step_cost.json`` and ``step_cost.md`` (machine, command, load average) to ``--out``.

Example::

    OMP_NUM_THREADS=1 python -m benchmarks.step_cost --threads 1 --reps 7 --quality-slices 4
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common, roofline

#: option sets compared with the plain float32 path (name -> CCDFInferer keyword arguments)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"channels_last": False, "amp_dtype": None},
    "channels_last": {"channels_last": True, "amp_dtype": None},
    "bf16": {"channels_last": False, "amp_dtype": "bfloat16"},
    "bf16+channels_last": {"channels_last": True, "amp_dtype": "bfloat16"},
    "compile": {"channels_last": False, "amp_dtype": None, "compile": True},
    "compile+channels_last": {"channels_last": True, "amp_dtype": None, "compile": True},
    "compile+bf16+channels_last": {"channels_last": True, "amp_dtype": "bfloat16", "compile": True},
}
DEFAULT_VARIANTS = ("plain", "channels_last", "bf16", "bf16+channels_last")


def ddpm_step_unfused(x, eps, sigma, sigma_next, noise):  # noqa: ANN001, ANN201 - the formula before the fused step
    """The paper's f, g evaluated operation by operation (six passes), for the timing comparison."""
    abar, abar_next = 1.0 / (1.0 + sigma**2), 1.0 / (1.0 + sigma_next**2)
    alpha = abar / abar_next
    beta = 1.0 - alpha
    mean = (x * math.sqrt(abar) - beta / math.sqrt(1.0 - abar) * eps) / math.sqrt(alpha)
    return (mean + math.sqrt(beta * (1.0 - abar_next) / (1.0 - abar)) * noise) / math.sqrt(abar_next)


def load_load() -> str:
    """``os.getloadavg`` as text (the machine is shared: every result states its load)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["network_def#channels=[16,32]", ...]`` -> config overrides (values parsed as JSON when they parse)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set: expected ID=VALUE, found {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def score_network(models_dir: Path, overrides: dict[str, Any], random_weights: bool, device: str = "cpu") -> tuple[torch.nn.Module, Any, str]:
    """The score network, its schedule and where its weights came from.

    ``random_weights``: the config's architecture with seeded random weights, perturbed so the
    (zero-initialised) output layer is non-zero (timing does not depend on the values).
    """
    if random_weights:
        from ccdf_mri.app.build import read_config

        parser = read_config(None, overrides)
        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def", lazy=False).to(device).eval()
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(0.02 * torch.randn_like(parameter))
        return network, parser.get_parsed_content("schedule", lazy=False), "random weights (config network_def)"
    models = common.load_models(models_dir, device, overrides=overrides)
    if models.score_net is None:
        raise FileNotFoundError(f"{models_dir}/score_net.pt: not found (use --random-weights to time the architecture)")
    return models.score_net, models.schedule, models.description["score_net"]


def synthetic_problem(size: int, coils: int, batch: int, seed: int = 0) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Smooth random image and Gaussian-bump coil maps (``sum |S|^2 = 1``); returns op, kspace, x."""
    from ccdf_mri.physics import SenseOp, make_mask

    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    angles = 2 * torch.pi * torch.arange(coils) / coils
    maps = torch.stack([torch.exp(-((yy - 0.8 * torch.sin(a)) ** 2 + (xx - 0.8 * torch.cos(a)) ** 2)) for a in angles])
    maps = (maps / maps.pow(2).sum(0).sqrt()).to(torch.complex64).expand(batch, -1, -1, -1).contiguous()
    image = torch.nn.functional.avg_pool2d(torch.randn(batch, 2, size, size, generator=gen), 9, 1, 4)
    image = torch.complex(image[:, 0], image[:, 1]) * 10
    op = SenseOp(maps, make_mask("equispaced_fraction", (size, size), 4, 0.08, seed=seed))
    return op, op(image), image


def interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, dict[str, float]]:
    """Each function once untimed, then ``reps`` rounds A, B, C, ...; :func:`common.spread` of seconds."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: common.spread(values) for name, values in times.items()}


def measure_parts(network: torch.nn.Module, schedule: Any, size: int, coils: int, batch: int, reps: int) -> dict[str, Any]:
    """Median seconds of each part of one plain reverse step (see the module docstring)."""
    from ccdf_mri.diffusion import ComplexNoise, ddpm_step, make_epsilon_fn, reverse_diffusion
    from ccdf_mri.physics import ProjectionDC, ProximalDC

    sub = schedule.sub_schedule(100)
    op, kspace, image = synthetic_problem(size, coils, batch)
    level = 20
    sigma, sigma_next = float(sub.sigmas[level]), float(sub.sigmas[level - 1])
    noise = ComplexNoise(torch.Generator().manual_seed(1), batch, (1, size, size), torch.device("cpu"))
    x = image + sigma * noise()
    eps_fn = make_epsilon_fn(network, sub)
    proximal, projection = ProximalDC(), ProjectionDC()
    with torch.no_grad():
        eps = eps_fn(x, level)
        z = noise()
        parts = interleaved({
            "network": lambda: eps_fn(x, level),
            "dc_proximal": lambda: proximal(x, op, kspace),
            "dc_projection": lambda: projection(x, op, kspace),
            "rest": lambda: ddpm_step(x, eps, sigma, sigma_next, noise()),
            "rest_unfused": lambda: ddpm_step_unfused(x, eps, sigma, sigma_next, noise()),
            "sampler_arithmetic": lambda: ddpm_step(x, eps, sigma, sigma_next, z),
            "sampler_arithmetic_unfused": lambda: ddpm_step_unfused(x, eps, sigma, sigma_next, z),
            "step_proximal": lambda: reverse_diffusion(x, 1, sub, lambda v, _: eps_fn(v, level), noise, "ddpm",
                                                      dc=lambda v: proximal(v, op, kspace)),
        }, reps)
    medians = {name: s["median"] for name, s in parts.items()}
    medians["dc_fraction_of_step"] = medians["dc_proximal"] / medians["step_proximal"]
    return {"median_seconds": medians, "spread": parts}


def measure_variants(
    network: torch.nn.Module, schedule: Any, names: Sequence[str], size: int, coils: int, batch: int, reps: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Network and whole-step time of each variant (interleaved), its output difference and roofline."""
    from ccdf_mri.diffusion import ComplexNoise, reverse_diffusion
    from ccdf_mri.inferers import CCDFInferer
    from ccdf_mri.physics import ProximalDC

    sub = schedule.sub_schedule(100)
    op, kspace, image = synthetic_problem(size, coils, batch)
    level = 20
    noise = ComplexNoise(torch.Generator().manual_seed(1), batch, (1, size, size), torch.device("cpu"))
    x = image + float(sub.sigmas[level]) * noise()
    proximal = ProximalDC()
    eps_fns, compile_seconds = {}, {}
    with torch.no_grad():
        for name in names:
            inferer = CCDFInferer(schedule, num_steps=100, **VARIANTS[name])
            eps_fns[name] = inferer.epsilon_fn(copy.deepcopy(network))
            start = time.perf_counter()
            eps_fns[name](x, level)  # compiles when asked to
            compile_seconds[name] = time.perf_counter() - start
            log(f"  {name}: first call {compile_seconds[name]:.1f} s")
        reference = eps_fns[names[0]](x, level)
        nets = interleaved({name: (lambda f=f: f(x, level)) for name, f in eps_fns.items()}, reps)
        steps = interleaved({name: (lambda f=f: reverse_diffusion(x, 1, sub, lambda v, _: f(v, level), noise, "ddpm",
                                                                  dc=lambda v: proximal(v, op, kspace)))
                             for name, f in eps_fns.items()}, reps)
        differences = {name: float((f(x, level) - reference).abs().norm() / reference.abs().norm())
                       for name, f in eps_fns.items()}
        inputs = torch.view_as_real(x * float(sub.input_scales[level])).permute(0, 3, 1, 2).contiguous()
        t = torch.full((batch,), int(sub.timesteps[level]), dtype=torch.long)
        cost = roofline.network_cost(lambda: network(inputs, t), network)
    threads = torch.get_num_threads()
    bandwidth = roofline.stream_bandwidth()
    rows = {}
    for name in names:
        dtype = "bfloat16" if VARIANTS[name].get("amp_dtype") else "float32"
        peak = roofline.cpu_peak(threads, dtype)
        rows[name] = {
            "options": VARIANTS[name], "network": nets[name], "step": steps[name],
            "network_speedup": nets[names[0]]["median"] / nets[name]["median"],
            "step_speedup": steps[names[0]]["median"] / steps[name]["median"],
            "epsilon_relative_difference": differences[name], "first_call_seconds": compile_seconds[name],
            "roofline": roofline.roofline(cost, nets[name]["median"], peak, bandwidth),
        }
    return {"variants": rows, "network_cost": cost, "bandwidth": bandwidth}


def measure_quality(
    data: Path, names: Sequence[str], models_dir: Path, overrides: dict[str, Any], slices: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """PSNR and seconds per slice of the bundle's default reconstruction with each variant.

    Each slice goes through the bundle's preprocessing (:func:`common.prepare_slice`, the one
    path, with the config's coil maps), initializer and calibrated t0 (``t0_selector``), then
    ``CCDFInferer`` with the config's N and DC plus the variant's options; the same seed for
    every variant; variants interleaved per slice.
    """
    from ccdf_mri.app.build import read_config
    from ccdf_mri.metrics import psnr

    config = read_config(None, {"models_dir": str(models_dir), **overrides}).get()
    models = common.load_models(models_dir, "cpu", overrides=overrides)
    setting = common.MaskSetting(config["mask"], int(config["acceleration"]), float(config["center_fraction"]))
    folder = common.split_folder(data, "test")
    cases, _ = common.load_cases(folder, slices, log, common.noise_free_target_key(folder))
    networks = {name: copy.deepcopy(models.score_net) for name in names}
    inferers = {}
    for name in names:  # the options as bundle overrides (what --set inferer#channels_last=true does)
        options = {f"inferer#{key}": value for key, value in VARIANTS[name].items()}
        parser = read_config(None, {"models_dir": str(models_dir), "progress": False, **overrides, **options})
        inferers[name] = parser.get_parsed_content("inferer", lazy=False)
        initializer = parser.get_parsed_content("initializer_fn", lazy=False)
    rows = []
    for case in cases:
        prep = common.prepare_slice(case, setting, config["maps"])
        with torch.no_grad():
            x0 = initializer(prep.op(), prep.kspace_scaled)
            for name in names:
                generator = [torch.Generator().manual_seed(case.index)]
                start = time.perf_counter()
                result = inferers[name](x0, networks[name], prep.op(), prep.kspace_scaled, generator=generator)
                seconds = time.perf_counter() - start
                image = common.magnitude_for_metrics(result.mean * prep.scale, case.target.shape)
                rows.append({"slice": f"{case.volume}[{case.index}]", "variant": name, "seconds": seconds,
                             "nfe": int(result.nfe[0]), "t0": float(result.t0[0]), "psnr": psnr(case.target[None], image[None])})
                log(f"  {rows[-1]['slice']} {name}: {rows[-1]['psnr']:.3f} dB, {seconds:.2f} s")
    summary = {}
    plain = {r["slice"]: r["psnr"] for r in rows if r["variant"] == names[0]}
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        deltas = [r["psnr"] - plain[r["slice"]] for r in mine]
        summary[name] = {"psnr_mean": float(np.mean([r["psnr"] for r in mine])),
                         "delta_mean": float(np.mean(deltas)), "delta_max_abs": float(np.max(np.abs(deltas))),
                         "seconds": common.spread([r["seconds"] for r in mine]), "nfe": mine[0]["nfe"]}
    return {"rows": rows, "summary": summary, "setting": setting.label, "maps": config["maps"],
            "initializer": config["initializer"], "num_steps": config["num_steps"], "slices": len(cases),
            "data": str(data), "target_key": common.noise_free_target_key(folder) or "the file's fastMRI target"}


def to_markdown(result: dict) -> str:
    """The report: parts of the plain step, the variants (time, speed-up, roofline), quality."""
    s, parts, m = result["setting"], result["parts"]["median_seconds"], result["machine"]
    ms = 1000.0
    lines = [
        f"# Cost of one reverse step ({s['size']}x{s['size']}, {s['coils']} coils, batch {s['batch']}, CPU)",
        "",
        f"Command: `{result['command']}`. Load average at start / end: {result['load_start']} / {result['load_end']} "
        f"(a shared 2-core machine: other jobs hold the cores, so absolute times are inflated; variants were "
        f"interleaved A, B, A, B, ... and compared by medians).",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, {m['torch_threads']} torch threads, torch "
        f"{m['torch']}. Network: {s['network']} ({s['parameters']:,} parameters). Medians of {s['reps']} runs.",
        "",
        "## Parts of the plain step",
        "",
        "| part | median ms |",
        "|---|---:|",
        f"| score network (incl. complex<->channels) | {ms * parts['network']:.1f} |",
        f"| DC: ProximalDC (5 CG iterations) | {ms * parts['dc_proximal']:.1f} |",
        f"| DC: ProjectionDC (20 CG iterations) | {ms * parts['dc_projection']:.1f} |",
        f"| rest: ddpm arithmetic + noise (fused step) | {ms * parts['rest']:.2f} |",
        f"| rest with the op-by-op formula it replaced | {ms * parts['rest_unfused']:.2f} |",
        f"| ddpm arithmetic alone: fused / op by op | {ms * parts['sampler_arithmetic']:.2f} / "
        f"{ms * parts['sampler_arithmetic_unfused']:.2f} |",
        f"| whole step (network + ProximalDC + rest) | {ms * parts['step_proximal']:.1f} |",
        "",
        f"DC share of the step: {100 * parts['dc_fraction_of_step']:.1f} %.",
        "",
    ]
    if "variants" in result:
        v = result["variants"]
        lines += [
            "## Speed options (`CCDFInferer(...)`), interleaved",
            "",
            "| variant | network ms | speed-up | whole step ms | speed-up | rel. diff of epsilon | first call s | GFLOP/s | % of peak |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in v["variants"].items():
            r = row["roofline"]
            lines.append(
                f"| {name} | {ms * row['network']['median']:.1f} | {row['network_speedup']:.2f}x | "
                f"{ms * row['step']['median']:.1f} | {row['step_speedup']:.2f}x | {row['epsilon_relative_difference']:.1e} | "
                f"{row['first_call_seconds']:.1f} | {r['achieved_flops'] / 1e9:.1f} | {100 * r['fraction_of_peak']:.0f} |")
        first = next(iter(v["variants"].values()))["roofline"]
        lines += ["", "Roofline (plain float32): " + roofline.roofline_line("network step", first), ""]
        bf16 = [row["roofline"] for name, row in v["variants"].items() if "bf16" in name]
        if bf16:
            lines += ["bf16 variants are compared with the bf16 peak: " + bf16[-1]["assumption"] + ".", ""]
    if "quality" in result:
        q = result["quality"]
        lines += [
            f"## Quality at equal seeds ({q['slices']} slices of {q['data']} test split, {q['setting']}, "
            f"{q['maps']} maps, {q['initializer']} start, calibrated t0, N = {q['num_steps']}; "
            f"scored against {q.get('target_key', 'the file target')})",
            "",
            "| variant | NFE | mean PSNR dB | mean delta dB | max abs delta dB | s / slice (median) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in q["summary"].items():
            lines.append(f"| {name} | {row['nfe']} | {row['psnr_mean']:.3f} | {row['delta_mean']:+.4f} | "
                         f"{row['delta_max_abs']:.4f} | {row['seconds']['median']:.2f} |")
        lines += ["", "Equal quality = every slice within 0.05 dB of the plain path.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """All measurements for parsed ``args``; writes ``step_cost.{json,md}`` to ``args.out``."""
    common.set_threads(args.threads)
    overrides = parse_sets(args.set)
    load_start = load_load()
    network, schedule, source = score_network(args.models, overrides, args.random_weights)
    log("parts of the plain step")
    result: dict[str, Any] = {
        "command": "python -m benchmarks.step_cost " + " ".join(args.argv), "load_start": load_start,
        "setting": {"size": args.size, "coils": args.coils, "batch": args.batch, "reps": args.reps, "sampler": "ddpm",
                    "network": source, "parameters": sum(p.numel() for p in network.parameters()),
                    "dc": "ProximalDC(lam=1, num_iters=5); ProjectionDC(num_iters=20) for comparison",
                    "overrides": overrides},
        "parts": measure_parts(network, schedule, args.size, args.coils, args.batch, args.reps),
    }
    if args.variants:
        log("speed options")
        result["variants"] = measure_variants(network, schedule, args.variants, args.size, args.coils, args.batch,
                                              args.reps, log)
    if args.quality_slices:
        log("quality")
        if args.random_weights:
            raise ValueError("--quality-slices needs trained weights (not --random-weights)")
        result["quality"] = measure_quality(args.data, args.variants or ["plain"], args.models, overrides,
                                            args.quality_slices, log)
    result["load_end"] = load_load()
    result["machine"] = common.machine_info("cpu")
    common.write_json(args.out / f"{args.name}.json", result)
    common.write_text(args.out / f"{args.name}.md", to_markdown(result))
    return result


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--models", type=Path, default=common.DEFAULT_MODELS_DIR, help="weights folder (score_net.pt)")
    parser.add_argument("--random-weights", action="store_true", help="time the config's architecture with random weights")
    parser.add_argument("--set", nargs="*", default=[], metavar="ID=VALUE",
                        help="bundle config overrides, e.g. network_def#channels=[16,32,64,128]")
    parser.add_argument("--variants", nargs="*", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                        help="speed options to compare, the first is the reference (none: parts only)")
    parser.add_argument("--quality-slices", type=int, default=0, help="demo test slices for the quality check (0: none)")
    parser.add_argument("--data", type=Path, default=common.REPO_ROOT / "demo_data" / "corpus")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--name", default="step_cost", help="result file stem")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    result = run(parse_args(sys.argv[1:] if argv is None else argv))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
