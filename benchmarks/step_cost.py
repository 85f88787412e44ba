"""Cost of one CCDF reverse step on CPU, split into the score network, DC and the rest.

Setting (issue 3, "Speed"): a 256x256, 8-coil batch, 4x equispaced mask, the bundle's shipped
score network (``--models``; ``make_score_network()`` defaults with random weights when there is
none: timing does not depend on the weights), ``ProximalDC()`` (5 CG iterations) and ``ProjectionDC()`` (20) for comparison, the
``ddpm`` step. Each part is timed as the inferer runs it:

- network: ``make_epsilon_fn`` (complex -> channels, scaling, the network, channels -> complex);
- DC: ``dc(x, op, kspace)``;
- rest: the sampler arithmetic plus drawing the step's noise;
- whole step: one level of :func:`reverse_diffusion` (all of the above together).

Medians over ``--reps`` repetitions after one warm-up. Writes ``step_cost.json`` and
``step_cost.md`` (with machine information) to ``--out``.

Example::

    python -m benchmarks.step_cost --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ccdf_mri.diffusion import ComplexNoise, VPSchedule, ddpm_step, make_epsilon_fn, reverse_diffusion
from ccdf_mri.networks.score import make_score_network
from ccdf_mri.recon import load_network
from ccdf_mri.physics import ProjectionDC, ProximalDC, SenseOp, make_mask

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = Path(__file__).resolve().parent.parent / "bundles" / "ccdf_mri_recon" / "models"


def _median_seconds(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _problem(size: int, coils: int, batch: int, seed: int = 0) -> tuple[SenseOp, torch.Tensor, torch.Tensor]:
    """Smooth random image and Gaussian-bump coil maps (``sum |S|^2 = 1``); returns op, kspace, x."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    angles = 2 * torch.pi * torch.arange(coils) / coils
    maps = torch.stack([torch.exp(-((yy - 0.8 * torch.sin(a)) ** 2 + (xx - 0.8 * torch.cos(a)) ** 2)) for a in angles])
    maps = (maps / maps.pow(2).sum(0).sqrt()).to(torch.complex64).expand(batch, -1, -1, -1).contiguous()
    image = torch.nn.functional.avg_pool2d(torch.randn(batch, 2, size, size, generator=gen), 9, 1, 4)
    image = torch.complex(image[:, 0], image[:, 1]) * 10
    op = SenseOp(maps, make_mask("equispaced_fraction", (size, size), 4, 0.08, seed=seed))
    return op, op(image), image


def measure(size: int = 256, coils: int = 8, batch: int = 1, reps: int = 5, models: Path = MODELS) -> dict:
    """Median seconds per part of one reverse step; see the module docstring."""
    torch.manual_seed(0)
    schedule = VPSchedule()
    sub = schedule.sub_schedule(100)
    shipped = (models / "score_net.pt").exists()
    network = (load_network(models, "score_net", "cpu") if shipped else make_score_network()).eval()
    op, kspace, image = _problem(size, coils, batch)
    level = 20
    sigma, sigma_next = float(sub.sigmas[level]), float(sub.sigmas[level - 1])
    noise = ComplexNoise(torch.Generator().manual_seed(1), batch, (1, size, size), torch.device("cpu"))
    x = image + sigma * noise()
    eps_fn = make_epsilon_fn(network, sub)
    proximal, projection = ProximalDC(), ProjectionDC()
    with torch.no_grad():
        eps = eps_fn(x, level)
        parts = {
            "network": _median_seconds(lambda: eps_fn(x, level), reps),
            "dc_proximal": _median_seconds(lambda: proximal(x, op, kspace), reps),
            "dc_projection": _median_seconds(lambda: projection(x, op, kspace), reps),
            "rest": _median_seconds(lambda: ddpm_step(x, eps, sigma, sigma_next, noise()), reps),
            "step_proximal": _median_seconds(
                lambda: reverse_diffusion(x, 1, sub, lambda v, _: eps_fn(v, level), noise, "ddpm",
                                          dc=lambda v: proximal(v, op, kspace)), reps),
        }
    parts["dc_fraction_of_step"] = parts["dc_proximal"] / parts["step_proximal"]
    return {
        "setting": {"size": size, "coils": coils, "batch": batch, "reps": reps, "sampler": "ddpm",
                    "network": f"shipped {models / 'score_net.pt'}" if shipped else "make_score_network() defaults, random weights",
                    "parameters": sum(p.numel() for p in network.parameters()),
                    "dc": "ProximalDC(lam=1, num_iters=5); ProjectionDC(num_iters=20) for comparison"},
        "median_seconds": parts,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
    }


def to_markdown(result: dict) -> str:
    s, t, m = result["setting"], result["median_seconds"], result["machine"]
    rows = [
        ("score network (incl. complex<->channels)", t["network"]),
        ("DC: ProximalDC (5 CG iterations)", t["dc_proximal"]),
        ("DC: ProjectionDC (20 CG iterations)", t["dc_projection"]),
        ("rest: ddpm arithmetic + noise", t["rest"]),
        ("whole step (network + ProximalDC + rest)", t["step_proximal"]),
    ]
    lines = [
        f"# Cost of one reverse step ({s['size']}x{s['size']}, {s['coils']} coils, batch {s['batch']}, CPU)",
        "",
        f"Network: {s['network']} ({s['parameters']:,} parameters). Medians of {s['reps']} runs.",
        "",
        "| part | median ms |",
        "|---|---:|",
        *[f"| {name} | {1000 * sec:.1f} |" for name, sec in rows],
        "",
        f"DC share of the step: {100 * t['dc_fraction_of_step']:.1f} % (target < 25 %).",
        "",
        f"Machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} "
        f"with {m['torch_threads']} threads, Python {m['python']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--models", type=Path, default=MODELS, help="bundle models folder (score_net.pt/.json)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = measure(args.size, args.coils, args.batch, args.reps, args.models)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "step_cost.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
