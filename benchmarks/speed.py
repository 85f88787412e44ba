"""Speed and scaling of CCDF reconstruction: where the time goes and how it grows.

Measures, on the chosen device:

- one slice of the standard configuration (256x256, 8 coils, N = 100, t0 = 0.2: 20 reverse
  steps, ddpm, ``ProximalDC``): seconds per slice and per step, split into the score network,
  the data consistency (DC) and the rest of the step (sampler arithmetic, noise);
- the stages before the diffusion: reading one slice from a fastMRI file (I/O), mask and coil
  maps (ESPIRiT, ACS), the zero-filled image and the U-Net initializer;
- scaling with coils (4, 8, 16), matrix size (128, 256, 320), batch size (1, 2, 4) and the
  number of posterior samples K (1, 2, 4), with peak memory for each.

The networks are the trained ones from ``--models`` when present; otherwise the factories'
default architectures with random weights (timing does not depend on the weights; the result
files say which). The k-space is synthetic (a Shepp-Logan phantom, birdcage coil maps), so no
data is needed; ``--data`` only selects the file whose slice read is timed.

Outputs: ``speed_<device>.json`` and ``speed_<device>.md`` in ``--out``.

Example::

    python -m benchmarks.speed --quick
    python -m benchmarks.speed --device cuda --autocast on
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common

BASE = {"coils": 8, "size": 256, "batch": 1, "samples": 1}
SCALING = {"coils": (4, 8, 16), "size": (128, 256, 320), "batch": (1, 2, 4), "samples": (1, 2, 4)}
NUM_STEPS = 100


@dataclasses.dataclass
class Problem:
    """A synthetic undersampled batch in scaled units: operator, k-space ``(B, C, H, W)``, x0 ``(B, H, W)``."""

    op: Any
    kspace: torch.Tensor
    x0: torch.Tensor
    full_kspace: torch.Tensor


def synthetic_problem(coils: int, size: int, batch: int, device: str, seed: int = 0) -> Problem:
    """Shepp-Logan phantom with a smooth phase, birdcage maps (sum |S|^2 = 1), 4x equispaced mask.

    x0 is the zero-filled image, everything divided by its intensity scale.
    """
    import sigpy
    import sigpy.mri

    from ccdf_mri.intensity import intensity_scale
    from ccdf_mri.physics import SenseOp, fft2c, make_mask

    phantom = np.asarray(sigpy.shepp_logan((size, size)), dtype=np.complex64)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = phantom * np.exp(1j * (0.6 * xx + 0.3 * yy)).astype(np.complex64)
    maps = sigpy.mri.birdcage_maps((coils, size, size)).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    maps_t = torch.from_numpy(maps)[None].repeat(batch, 1, 1, 1).to(device)
    image_t = torch.from_numpy(image)[None].repeat(batch, 1, 1).to(device)
    full = fft2c(maps_t * image_t[:, None])
    mask = make_mask("equispaced_fraction", tuple(full.shape), 4, 0.08, seed=seed).to(device)
    op = SenseOp(maps_t, mask)
    measured = full * mask
    zero_filled = op.adjoint(measured)
    scale = intensity_scale(zero_filled)
    return Problem(op, measured / scale, zero_filled / scale, full / scale)


def default_networks(models: common.Models, device: str) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, str]]:
    """The trained networks, or the factories' default architectures with random weights."""
    from ccdf_mri.networks.initializer import make_initializer_network
    from ccdf_mri.networks.score import make_score_network

    note = dict(models.description)
    score = models.score_net
    if score is None:
        torch.manual_seed(0)
        score = make_score_network().to(device).eval()
        note["score_net"] = "random weights, make_score_network() defaults (models/score_net.pt missing)"
    unet = models.unet
    if unet is None:
        torch.manual_seed(0)
        unet = make_initializer_network().to(device).eval()
        note["unet"] = "random weights, make_initializer_network() defaults (models/unet.pt missing)"
    return score, unet, note


def time_diffusion(
    network: torch.nn.Module,
    schedule: Any,
    problem: Problem,
    steps: int,
    samples: int,
    repeats: int,
    device: str,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """Time ``steps`` reverse steps (N = 100, t0 = steps / 100), split into network / DC / rest.

    Returns per-repeat medians: ``seconds`` (whole call), ``per_slice`` (call / batch),
    ``network_per_step``, ``dc_per_step``, ``other_per_step``, ``dc_fraction`` (DC time over
    the whole step), ``peak_mib`` and the spread of the call time.
    """
    from ccdf_mri.inferers import CCDFInferer
    from ccdf_mri.physics import ProximalDC

    timed_net = common.TimedNetwork(network, device)
    timed_dc = common.TimedDC(ProximalDC(), device)
    inferer = CCDFInferer(schedule, "ddpm", steps / NUM_STEPS, NUM_STEPS, timed_dc, num_samples=samples,
                          amp_dtype=amp_dtype)
    warm = CCDFInferer(schedule, "ddpm", 1 / NUM_STEPS, NUM_STEPS, ProximalDC(), num_samples=samples,
                       amp_dtype=amp_dtype)
    generator = torch.Generator(device=device)
    with torch.no_grad():
        warm(problem.x0, network, problem.op, problem.kspace, generator=generator.manual_seed(0))
        totals, nets, dcs = [], [], []
        with common.PeakMemory(device) as memory:
            for repeat in range(repeats):
                timed_net.seconds = timed_dc.seconds = 0.0
                timed_net.calls = timed_dc.calls = 0
                common.synchronize(device)
                start = time.perf_counter()
                inferer(problem.x0, timed_net, problem.op, problem.kspace, generator=generator.manual_seed(repeat))
                common.synchronize(device)
                totals.append(time.perf_counter() - start)
                nets.append(timed_net.seconds)
                dcs.append(timed_dc.seconds)
    nfe = inferer.last_nfe
    if nfe != steps or timed_net.calls != steps:
        raise RuntimeError(f"expected {steps} network evaluations, counted {nfe} ({timed_net.calls} calls)")
    total, net, dc = (float(np.median(v)) for v in (totals, nets, dcs))
    batch = problem.x0.shape[0]
    return {
        "steps": steps, "batch": batch, "samples": samples, "repeats": repeats,
        "seconds": total, "seconds_spread": common.spread(totals), "per_slice": total / batch,
        "network_per_step": net / steps, "dc_per_step": dc / steps, "other_per_step": (total - net - dc) / steps,
        "step": total / steps, "dc_fraction": dc / total, "peak_mib": memory.peak_mib,
    }


def time_stages(
    unet: torch.nn.Module, data_file: Path | None, repeats: int, device: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """Seconds (spread over repeats) of the stages before the diffusion, 256x256, 8 coils."""
    from ccdf_mri.initializers import make_initializer
    from ccdf_mri.io.fastmri import FastMRIVolume, write_fastmri_h5
    from ccdf_mri.io.header import make_ismrmrd_header
    from ccdf_mri.physics import make_mask
    from ccdf_mri.physics.coil_maps import estimate_maps_acs, estimate_maps_espirit

    problem = synthetic_problem(BASE["coils"], BASE["size"], 1, device)
    stages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if data_file is None:
            data_file = Path(tmp) / "synthetic.h5"
            full = problem.full_kspace.cpu().numpy()
            header = make_ismrmrd_header((256, 256, 1), (256, 256, 1), (220.0, 220.0, 5.0), (220.0, 220.0, 5.0))
            write_fastmri_h5(data_file, np.repeat(full, 4, axis=0), header,
                             targets={"reconstruction_rss": np.abs(problem.x0.cpu().numpy()).repeat(4, axis=0)})
        with FastMRIVolume(data_file) as volume:
            index = volume.num_slices // 2
            stages["read_slice"] = common.time_repeats(lambda: volume.kspace_slice(index), repeats)
            stages["read_slice"]["file"] = str(data_file)
            stages["read_slice"]["shape"] = list(volume.kspace_slice(index).shape)
    full = problem.full_kspace
    mask = make_mask("equispaced_fraction", tuple(full.shape), 4, 0.08, seed=0).to(device)
    measured = full * mask
    calib = min(common.MAX_CALIB_WIDTH, common.calibration_width(mask))
    stages["mask"] = common.time_repeats(lambda: make_mask("equispaced_fraction", tuple(full.shape), 4, 0.08, seed=0),
                                         repeats, device)
    log("  timing ESPIRiT maps")
    stages["maps_espirit"] = common.time_repeats(
        lambda: estimate_maps_espirit(measured, calib_width=calib), repeats, device)
    stages["maps_acs"] = common.time_repeats(lambda: estimate_maps_acs(measured, calib_width=calib),
                                             repeats, device)
    stages["zero_filled"] = common.time_repeats(lambda: problem.op.adjoint(problem.kspace), repeats, device)
    initializer = make_initializer("unet", network=unet)
    with torch.no_grad():
        stages["unet_initializer"] = common.time_repeats(lambda: initializer(problem.op, problem.kspace), repeats,
                                                         device)
    return stages


def run_scaling(
    network: torch.nn.Module, schedule: Any, steps: int, repeats: int, device: str, amp_dtype: torch.dtype | None,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One row per (parameter, value) of :data:`SCALING`, the others at :data:`BASE`."""
    rows = []
    cache: dict[tuple[int, ...], dict[str, Any]] = {}
    for parameter, values in SCALING.items():
        for value in values:
            config = {**BASE, parameter: value}
            key = tuple(config.values())
            if key not in cache:
                log(f"  scaling {parameter}={value}")
                problem = synthetic_problem(config["coils"], config["size"], config["batch"], device)
                cache[key] = time_diffusion(network, schedule, problem, steps, config["samples"], repeats, device,
                                            amp_dtype)
            rows.append({"parameter": parameter, "value": value, **config, **cache[key]})
    return rows


def markdown(payload: dict[str, Any]) -> str:
    """Markdown report: machine, standard slice split, stages, scaling tables."""
    machine, base = payload["machine"], payload["standard"]
    ms = 1000.0
    lines = [
        f"# Speed on {machine['device']}" + (f" ({machine['gpu']})" if "gpu" in machine else ""),
        "",
        f"Command: `{payload['config']['command']}`",
        "",
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, {machine['torch_threads']} torch "
        f"threads, torch {machine['torch']}, MONAI {machine['monai']}; autocast: {payload['config']['autocast']}. "
        f"Networks: {payload['models']}.",
        "",
        "Medians over repeats; the first call of each configuration is a discarded warm-up.",
        "",
        "## One slice, standard configuration (256x256, 8 coils, N = 100, t0 = 0.2, ddpm, ProximalDC)",
        "",
        common.markdown_table([{
            "steps": base["steps"], "per_slice": base["per_slice"], "step": base["step"] * ms,
            "net": base["network_per_step"] * ms, "dc": base["dc_per_step"] * ms, "other": base["other_per_step"] * ms,
            "dc_fraction": base["dc_fraction"], "peak": base["peak_mib"],
        }], [("steps", "steps"), ("per_slice", "s/slice"), ("step", "ms/step"), ("net", "network ms/step"),
             ("dc", "DC ms/step"), ("other", "other ms/step"), ("dc_fraction", "DC share of a step"),
             ("peak", "peak MiB")]),
        f"DC under a quarter of a reverse step: **{'yes' if base['dc_fraction'] < 0.25 else 'no'}** "
        f"({100 * base['dc_fraction']:.1f}%).",
        "",
        "## Stages before the diffusion (256x256, 8 coils, one slice)",
        "",
        common.markdown_table(
            [{"stage": name, "median": s["median"] * ms, "q25": s["q25"] * ms, "q75": s["q75"] * ms}
             for name, s in payload["stages"].items()],
            [("stage", "stage"), ("median", "ms median"), ("q25", "q25"), ("q75", "q75")]),
        "`read_slice` reads one slice of k-space from the h5 file (page cache warm after the warm-up).",
        "",
        f"## Scaling ({payload['config']['scaling_steps']} steps each; one parameter varied, the others at "
        f"{BASE['size']}x{BASE['size']}, {BASE['coils']} coils, batch 1, K = 1)",
        "",
        common.markdown_table(
            [{**row, "step_ms": row["step"] * ms, "net_ms": row["network_per_step"] * ms,
              "dc_ms": row["dc_per_step"] * ms} for row in payload["scaling"]],
            [("parameter", "varied"), ("coils", "coils"), ("size", "matrix"), ("batch", "batch"),
             ("samples", "K"), ("step_ms", "ms/step"), ("net_ms", "network ms/step"), ("dc_ms", "DC ms/step"),
             ("dc_fraction", "DC share"), ("per_slice", "s/slice (these steps)"), ("peak_mib", "peak MiB")]),
        "Peak memory: " + payload["memory_note"],
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run all measurements for parsed ``args`` and write ``speed_<device>.{json,md}``."""
    common.set_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: CUDA is not available on this machine")
    amp_dtype = torch.bfloat16 if args.autocast == "on" else None
    repeats = args.repeats or (2 if args.quick else 5)
    models = common.load_models(args.models, args.device)
    score, unet, note = default_networks(models, args.device)
    data_file = None
    if args.data is not None:
        data_file = common.list_h5(common.split_folder(args.data, "test"))[0]
    started = time.perf_counter()
    log("standard slice")
    standard = time_diffusion(score, models.schedule, synthetic_problem(8, 256, 1, args.device), 20, 1, repeats,
                              args.device, amp_dtype)
    log("stages")
    stages = time_stages(unet, data_file, repeats, args.device, log)
    log("scaling")
    scaling = run_scaling(score, models.schedule, args.scaling_steps, repeats, args.device, amp_dtype, log)
    memory_note = ("torch.cuda.max_memory_allocated above the memory in use before the run (tensors only)."
                   if args.device == "cuda" else
                   "peak resident set size above the size before the run, sampled every 2 ms (tracemalloc does "
                   "not see torch's CPU allocations); process peak RSS "
                   f"{common.process_peak_rss_mib():.0f} MiB.")
    payload = {
        "config": {"command": " ".join(["python -m benchmarks.speed"] + list(args.argv)), "repeats": repeats,
                   "autocast": args.autocast if args.device == "cuda" else "off (CPU)",
                   "scaling_steps": args.scaling_steps, "quick": bool(args.quick),
                   "wall_seconds": None},
        "machine": common.machine_info(args.device),
        "models": note,
        "standard": standard,
        "stages": stages,
        "scaling": scaling,
        "memory_note": memory_note,
    }
    payload["config"]["wall_seconds"] = time.perf_counter() - started
    out = Path(args.out)
    stem = f"speed_{args.device}" + ("_autocast" if args.autocast == "on" and args.device == "cuda" else "")
    common.write_json(out / f"{stem}.json", payload)
    common.write_text(out / f"{stem}.md", markdown(payload))
    log(f"wrote {out / stem}.json and .md in {payload['config']['wall_seconds']:.0f} s")
    return payload


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--autocast", default="off", choices=("on", "off"), help="bf16 autocast of the network (CUDA)")
    parser.add_argument("--models", type=Path, default=common.DEFAULT_MODELS_DIR)
    parser.add_argument("--data", type=Path, default=None, help="fastMRI folder whose first file's slice read is timed")
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 5")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--scaling-steps", type=int, default=10, help="reverse steps per scaling measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
