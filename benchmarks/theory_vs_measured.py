"""Theory versus measurement: reconstruction error against t0 beside Theorem 1's shape.

For one mask setting and sampler, reconstructs a few test slices with CCDF from the U-Net
estimate over a grid of t0 (plus the t0 that ``select_t0`` picks) and measures the squared
error ``||x - x~||^2`` against the complex reference (SENSE combination of the fully sampled
k-space), in the scaled units the networks see, summed over ``n = 2 H W`` real degrees of freedom.

Beside it, eq. 17 for our schedule, per ``N' = round(t0 N)``::

    bound(N') = 2 C tau / (1 - lambda^2) + lambda^(2 N') eps_N'

with ``lambda = max_{i <= N'} lambda_i`` from eq. 18 (``ccdf_mri.diffusion.theory``),
``eps_N' = a^2 eps0 + 2 b^2 n`` (Lemma 1, eps0 = the U-Net's measured error),
``tau = Tr(A^T A) / n`` of the DC map's linear part (Hutchinson estimate) and ``C``, which the
theory leaves open, set to the smallest value that makes the bound hold at every measured t0.
The contraction term alone (C = 0) is what ``select_t0`` uses.

Reports the sweet spot (the t0 of least measured error), the initializer's error, and
whether ``select_t0`` (with eps0 estimated on val slices, as the pipeline would) lands there.

Outputs: ``theory_vs_measured.{json,md,png}`` in ``--out``.

Example::

    python -m benchmarks.theory_vs_measured --data demo_data --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common
from benchmarks.common import MethodSpec, Models, PreparedSlice

T0_GRID = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
QUICK_T0_GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
NEAR_BEST = 0.10  # relative slack that still counts as "at the sweet spot"


def squared_error(image: torch.Tensor, prep: PreparedSlice) -> float:
    """``||image / scale - reference / scale||^2`` summed over pixels (complex: both parts)."""
    return float(((image - prep.reference) / prep.scale).abs().pow(2).sum())


def estimate_tau(prep: PreparedSlice, dc: Any, probes: int, seed: int = 0) -> float:
    """Hutchinson estimate of ``Tr(A^T A) / n`` for the DC map's linear part ``A`` on ``prep``.

    With complex probes ``v`` of independent N(0, 1) real and imaginary parts,
    ``E ||A v||^2 = Tr(A^T A)`` over the ``n = 2 H W`` real coordinates.
    """
    generator = torch.Generator(device=prep.zero_filled.device).manual_seed(seed)
    op = prep.op()
    values = []
    for _ in range(probes):
        v = torch.randn((*prep.zero_filled.shape, 2), generator=generator, device=prep.zero_filled.device)
        values.append(float(dc.linear_part(torch.view_as_complex(v), op).abs().pow(2).sum()))
    return float(np.mean(values)) / (2 * prep.zero_filled[0].numel())


def theory_curves(
    models: Models, num_steps: int, sampler: str, eps0: float, num_dims: int, tau: float
) -> dict[str, list[float]]:
    """Per ``N' = 1..N``: t0, lambda (eq. 18), eps_N' (Lemma 1), the contraction term and the
    noise-term coefficient ``2 tau / (1 - lambda^2)`` (to be multiplied by C)."""
    from ccdf_mri.diffusion import theory

    sub = models.schedule.sub_schedule(num_steps)
    curves: dict[str, list[float]] = {"t0": [], "start": [], "lambda": [], "eps_start": [], "contraction": [],
                                      "noise_coefficient": []}
    for start in range(1, sub.num_steps + 1):
        rate = theory.contraction_rate(sub, sampler, start)
        a, b = sub.forward_coefficients(start)
        eps_start = theory.forward_jump_distance(a, b, eps0, num_dims)
        curves["t0"].append(start / sub.num_steps)
        curves["start"].append(start)
        curves["lambda"].append(rate)
        curves["eps_start"].append(eps_start)
        curves["contraction"].append(theory.error_bound(rate, start, eps_start, 0.0, tau))
        curves["noise_coefficient"].append(2.0 * tau / (1.0 - rate**2))
    return curves


def fit_noise_constant(curves: dict[str, list[float]], starts: Sequence[int], measured: Sequence[float]) -> float:
    """Smallest ``C >= 0`` with ``C u(N') + v(N') >= measured`` at every measured ``N'``."""
    needed = [(m - curves["contraction"][s - 1]) / curves["noise_coefficient"][s - 1]
              for s, m in zip(starts, measured) if s >= 1]
    return max([0.0] + needed)


def select(models: Models, num_steps: int, sampler: str, eps0: float, num_dims: int, target: float,
           tau: float) -> float | None:
    """``select_t0`` (C = 0), or None when no t0 reaches the target on this ladder."""
    from ccdf_mri.diffusion import theory

    try:
        return float(theory.select_t0(eps0, models.schedule.sub_schedule(num_steps), sampler, num_dims,
                                      target=target, tau=tau))
    except ValueError:
        return None


def measure(
    preps: Sequence[PreparedSlice], models: Models, t0s: Sequence[float], num_steps: int, sampler: str, seed: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Squared error per slice for the initializer (t0 = 0) and each t0; NFE and seconds per t0."""
    errors: dict[float, list[float]] = {0.0: []}
    nfe: dict[float, int] = {0.0: 0}
    seconds: dict[float, list[float]] = {0.0: []}
    warm_up = MethodSpec("warm-up", "theory", "unet", 1.0 / num_steps, num_steps, sampler)
    common.run_method(warm_up, preps[0], models, seed=seed)  # first calls are slow: keep them out of the times
    for position, prep in enumerate(preps):
        init = common.run_method(MethodSpec("unet", "unet", "unet"), prep, models)
        errors[0.0].append(squared_error(init.image, prep))
        seconds[0.0].append(init.seconds)
        for t0 in t0s:
            spec = MethodSpec(f"ccdf-{sampler}-N{num_steps}-t0={t0:g}", "theory", "unet", t0, num_steps, sampler)
            out = common.run_method(spec, prep, models, seed=seed + position)
            errors.setdefault(t0, []).append(squared_error(out.image, prep))
            seconds.setdefault(t0, []).append(out.seconds)
            nfe[t0] = out.nfe
        log(f"  slice {position + 1}/{len(preps)} ({prep.case.volume} #{prep.case.index}) done")
    return {"errors": errors, "nfe": nfe, "seconds": seconds}


def plot(payload: dict[str, Any], path: Path) -> Path:
    """Measured error vs t0 (median, IQR band) beside the eq. 17 bound and its contraction term."""
    common.use_agg()
    import matplotlib.pyplot as plt

    rows = [r for r in payload["measured"] if r["t0"] > 0]
    curves = payload["theory"]["curves"]
    figure, ax = plt.subplots(figsize=(7.5, 5))
    t0 = [r["t0"] for r in rows]
    ax.fill_between(t0, [r["error"]["q25"] for r in rows], [r["error"]["q75"] for r in rows], alpha=0.25,
                    label="measured, IQR over slices")
    ax.plot(t0, [r["error"]["median"] for r in rows], "o-", label="measured, median")
    constant = payload["theory"]["noise_constant"]
    bound = [constant * u + v for u, v in zip(curves["noise_coefficient"], curves["contraction"])]
    ax.plot(curves["t0"], bound, "--", label=f"eq. 17 bound, C = {constant:.3g} (smallest that holds)")
    ax.plot(curves["t0"], curves["contraction"], ":", label="contraction term (C = 0, used by select_t0)")
    ax.axhline(payload["eps0"]["median"], color="black", label="U-Net initializer (t0 = 0)")
    best = payload["sweet_spot"]
    ax.plot([best["t0"]], [best["error"]], "*", markersize=14, color="red", label=f"sweet spot t0 = {best['t0']:g}")
    for name, style in (("val", "-."), ("oracle", ":")):
        chosen = payload["select_t0"][name]["t0"]
        if chosen is not None:
            ax.axvline(chosen, linestyle=style, color="green", label=f"select_t0 ({name} eps0) = {chosen:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("t0 = N' / N")
    ax.set_ylabel("||x - x~||^2 (scaled units, sum over 2HW)")
    config = payload["config"]
    ax.set_title(f"{config['setting']}, {config['sampler']}, N = {config['num_steps']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return common.save_figure(figure, path)


def markdown(payload: dict[str, Any]) -> str:
    """Markdown report: configuration, measured table, sweet spot and select_t0 verdict."""
    config, machine, best = payload["config"], payload["machine"], payload["sweet_spot"]
    table = common.markdown_table(
        [{"t0": r["t0"], "nfe": r["nfe"], "median": r["error"]["median"], "q25": r["error"]["q25"],
          "q75": r["error"]["q75"], "ratio": r["ratio_to_eps0"]["median"], "bound": r.get("bound"),
          "contraction": r["contraction"], "lambda": r["lambda"], "seconds": r["seconds"]}
         for r in payload["measured"]],
        [("t0", "t0"), ("nfe", "NFE"), ("median", "error median"), ("q25", "q25"), ("q75", "q75"),
         ("ratio", "error / eps0 (median)"), ("bound", "eq. 17 bound"), ("contraction", "contraction term"),
         ("lambda", "lambda (eq. 18)"), ("seconds", "s/slice")])
    lines = [
        "# Theory versus measurement: error against t0",
        "",
        f"Command: `{config['command']}`",
        "",
        f"Data: `{config['data']}`, {config['num_slices']} test slices, {config['setting']}, sampler "
        f"{config['sampler']}, N = {config['num_steps']}, DC: ProximalDC(); models: {payload['models']}; "
        f"device {machine['device']}, CPU {machine['cpu_model']} ({machine['usable_cores']} cores); "
        f"torch {machine['torch']}.",
        "",
        "Errors are `||x - x~||^2` in scaled units over n = 2HW real values; x~ is the SENSE combination of the "
        "fully sampled k-space. t0 = 0 is the U-Net alone. The bound's C is the smallest value for which it holds "
        f"at every measured t0 (C = {payload['theory']['noise_constant']:.4g}); tau = "
        f"{payload['theory']['tau']:.4g} (Hutchinson, {config['tau_probes']} probes).",
        "",
        table,
        f"**Sweet spot**: t0 = {best['t0']:g} ({best['nfe']} NFE), median error {best['error']:.4g} = "
        f"{best['ratio_to_eps0']:.3f} x the U-Net's ({payload['eps0']['median']:.4g}). "
        f"Within {100 * NEAR_BEST:.0f}% of the best: t0 in {best['near_best_t0']}.",
        "",
    ]
    for name, text in (("val", "eps0 measured on val slices (as a calibration would)"),
                       ("oracle", "eps0 measured on these test slices")):
        chosen = payload["select_t0"][name]
        lines.append(f"**select_t0**, {text}: eps0 = {chosen['eps0']:.4g}, target {config['target']} x eps0 -> "
                     f"t0 = {chosen['t0'] if chosen['t0'] is None else round(chosen['t0'], 4)}; {chosen['verdict']}")
        lines.append("")
    return "\n".join(lines)


def _verdict(t0: float | None, measured: dict[float, dict[str, Any]], best: dict[str, Any], target: float) -> str:
    if t0 is None:
        return "no t0 on this ladder meets the target (select_t0 raised)."
    row = measured.get(round(t0, 6))
    if row is None:
        return "not measured."
    error = row["error"]["median"]
    near = error <= (1.0 + NEAR_BEST) * best["error"]
    meets = row["ratio_to_eps0"]["median"] <= target
    return (f"measured error there {error:.4g} ({row['ratio_to_eps0']['median']:.3f} x eps0, target "
            f"{'met' if meets else 'missed'}); {'at' if near else 'not at'} the sweet spot "
            f"(within {100 * NEAR_BEST:.0f}% of the best: {'yes' if near else 'no'}).")


def run(args: argparse.Namespace, log: Callable[[str], None] = print, models: Models | None = None) -> dict[str, Any]:
    """The whole study for parsed ``args``; writes and returns the payload."""
    from ccdf_mri.physics import ProximalDC

    common.set_threads(args.threads)
    started = time.perf_counter()
    models = models or common.load_models(args.models, args.device)
    if models.unet is None or models.score_net is None:
        raise FileNotFoundError(f"{args.models}: expected trained models score_net.pt and unet.pt")
    setting = common.mask_settings_by_label([args.setting])[0]
    max_slices = args.max_slices or (2 if args.quick else 8)
    cases, skipped = common.load_cases(common.split_folder(args.data, "test"), max_slices, log)
    val_cases, _ = common.load_cases(common.split_folder(args.data, "val"), args.val_slices, log)
    preps = [common.prepare_slice(c, setting, args.maps, args.device) for c in cases]
    val_preps = [common.prepare_slice(c, setting, args.maps, args.device) for c in val_cases]
    height, width = preps[0].zero_filled.shape[-2:]
    num_dims = 2 * height * width

    with torch.no_grad():
        val_eps0 = float(np.mean([squared_error(common.run_method(MethodSpec("unet", "unet", "unet"), p, models).image, p)
                                  for p in val_preps]))
        tau = float(np.mean([estimate_tau(p, ProximalDC(), args.tau_probes, args.seed) for p in preps]))
    chosen_val = select(models, args.num_steps, args.sampler, val_eps0, num_dims, args.target, tau)
    grid = sorted(set(args.t0_grid or (QUICK_T0_GRID if args.quick else T0_GRID))
                  | ({round(chosen_val, 6)} if chosen_val is not None else set()))
    log(f"select_t0 (val eps0 {val_eps0:.4g}) -> {chosen_val}; measuring t0 in {grid}")
    with torch.no_grad():
        result = measure(preps, models, grid, args.num_steps, args.sampler, args.seed, log)
    eps0_values = result["errors"][0.0]
    eps0 = float(np.median(eps0_values))
    chosen_oracle = select(models, args.num_steps, args.sampler, eps0, num_dims, args.target, tau)
    curves = theory_curves(models, args.num_steps, args.sampler, eps0, num_dims, tau)

    measured: dict[float, dict[str, Any]] = {}
    for t0 in [0.0] + grid:
        errors = result["errors"][t0]
        start = int(round(t0 * args.num_steps))
        measured[round(t0, 6)] = {
            "t0": t0, "start": start, "nfe": result["nfe"][t0], "error": common.spread(errors),
            "ratio_to_eps0": common.spread([e / e0 for e, e0 in zip(errors, eps0_values)]),
            "seconds": float(np.median(result["seconds"][t0])),
            "lambda": curves["lambda"][start - 1] if start else None,
            "contraction": curves["contraction"][start - 1] if start else None,
        }
    starts = [m["start"] for m in measured.values() if m["start"]]
    constant = fit_noise_constant(curves, starts, [m["error"]["median"] for m in measured.values() if m["start"]])
    for row in measured.values():
        if row["start"]:
            row["bound"] = constant * curves["noise_coefficient"][row["start"] - 1] + row["contraction"]
    # the oracle's t0 may not be on the grid: measure it too
    if chosen_oracle is not None and round(chosen_oracle, 6) not in measured:
        with torch.no_grad():
            extra = measure(preps, models, [chosen_oracle], args.num_steps, args.sampler, args.seed, log)
        errors = extra["errors"][chosen_oracle]
        start = int(round(chosen_oracle * args.num_steps))
        measured[round(chosen_oracle, 6)] = {
            "t0": chosen_oracle, "start": start, "nfe": extra["nfe"][chosen_oracle], "error": common.spread(errors),
            "ratio_to_eps0": common.spread([e / e0 for e, e0 in zip(errors, eps0_values)]),
            "seconds": float(np.median(extra["seconds"][chosen_oracle])), "lambda": curves["lambda"][start - 1],
            "contraction": curves["contraction"][start - 1],
            "bound": constant * curves["noise_coefficient"][start - 1] + curves["contraction"][start - 1],
        }
    best_row = min((m for m in measured.values() if m["start"]), key=lambda m: m["error"]["median"])
    best = {"t0": best_row["t0"], "nfe": best_row["nfe"], "error": best_row["error"]["median"],
            "ratio_to_eps0": best_row["ratio_to_eps0"]["median"],
            "near_best_t0": [m["t0"] for m in measured.values()
                             if m["start"] and m["error"]["median"] <= (1 + NEAR_BEST) * best_row["error"]["median"]]}
    payload = {
        "config": {"command": " ".join(["python -m benchmarks.theory_vs_measured"] + list(args.argv)),
                   "data": str(args.data), "setting": setting.label, "sampler": args.sampler,
                   "num_steps": args.num_steps, "num_slices": len(preps), "val_slices": len(val_preps),
                   "target": args.target, "tau_probes": args.tau_probes, "maps": args.maps, "seed": args.seed,
                   "quick": bool(args.quick), "wall_seconds": None},
        "machine": common.machine_info(args.device),
        "models": models.description,
        "eps0": common.spread(eps0_values),
        "measured": sorted(measured.values(), key=lambda m: m["t0"]),
        "theory": {"tau": tau, "noise_constant": constant, "num_dims": num_dims, "curves": curves},
        "sweet_spot": best,
        "select_t0": {
            "val": {"eps0": val_eps0, "t0": chosen_val, "verdict": _verdict(chosen_val, measured, best, args.target)},
            "oracle": {"eps0": eps0, "t0": chosen_oracle,
                       "verdict": _verdict(chosen_oracle, measured, best, args.target)},
        },
        "skipped": skipped,
    }
    payload["config"]["wall_seconds"] = time.perf_counter() - started
    out = Path(args.out)
    common.write_json(out / "theory_vs_measured.json", payload)
    common.write_text(out / "theory_vs_measured.md", markdown(payload))
    plot(payload, out / "theory_vs_measured.png")
    log(f"wrote {out}/theory_vs_measured.{{json,md,png}} in {payload['config']['wall_seconds']:.0f} s")
    return payload


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.REPO_ROOT / "demo_data",
                        help="fastMRI-format folder, or a corpus root with test/ and val/")
    parser.add_argument("--models", type=Path, default=common.DEFAULT_MODELS_DIR)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="2 slices, a 7-point t0 grid")
    parser.add_argument("--max-slices", type=int, default=None, help="test slices (default 2 quick, 8 full)")
    parser.add_argument("--val-slices", type=int, default=2, help="val slices for select_t0's eps0 estimate")
    parser.add_argument("--setting", default="equispaced_fraction-4x",
                        help=f"one of {[s.label for s in common.MASK_SETTINGS]}")
    parser.add_argument("--sampler", default="ddpm", choices=common.SAMPLERS)
    parser.add_argument("--num-steps", type=int, default=100, help="N of the strided ladder")
    parser.add_argument("--t0-grid", type=float, nargs="+", default=None)
    parser.add_argument("--target", type=float, default=0.5, help="Theorem 2's mu for select_t0")
    parser.add_argument("--tau-probes", type=int, default=4)
    parser.add_argument("--maps", default="acs", choices=("espirit", "acs"),
                        help="coil maps from the undersampled k-space (default acs, as ccdf_mri.recon and training)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
