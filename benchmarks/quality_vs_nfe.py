"""Quality versus network evaluations: does CCDF reach diffusion-from-noise quality in few steps?

Compares, on one folder of fastMRI-format files (default: the demo corpus test split) and
for each mask setting (4x/8x, equispaced 1-D and 2-D Poisson):

- zero-filled SENSE, CG-SENSE, L1-wavelet (lambda tuned once on the val split over a small
  grid and stored), the U-Net initializer alone (0 score-network evaluations);
- conditional diffusion from noise (``t0 = 1``) at N = 1000 and strided N = 100, 50, 20;
- CCDF from the U-Net estimate at t0 in {0.02, 0.05, 0.1, 0.2, 0.3, 0.5} for N in {1000, 100}
  and ``t0 = auto``; samplers ddpm, ddim, ve; data consistency on the sample or on x0.

Every row is a configuration of the same code path (initializer, then ``CCDFInferer``).
Methods above ``--heavy-nfe`` evaluations run on the first ``--heavy-slices`` slices only;
a second table compares all methods on exactly those slices.

Outputs (``--out``): ``quality_vs_nfe.json`` (rows, per-slice records, configuration,
machine), ``quality_vs_nfe.md`` (tables) and ``quality_vs_nfe.png`` (PSNR vs NFE).

Example::

    python -m benchmarks.quality_vs_nfe --data demo_data --quick --out benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common
from benchmarks.common import MaskSetting, MethodSpec, Models, PreparedSlice

T0_GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
NOISE_STEPS = (1000, 100, 50, 20)
L1_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
HEAVY_NFE = 200
QUICK_SETTINGS = ("equispaced_fraction-4x", "equispaced_fraction-8x")
QUICK_BUDGET_MINUTES = 27.0

#: Columns every row of the table has (the JSON rows carry these keys).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("setting", "setting"),
    ("method", "method"),
    ("nfe", "NFE"),
    ("slices", "slices"),
    ("volumes", "volumes"),
    ("psnr", "PSNR (dB)"),
    ("psnr_spread", "PSNR median [q25, q75]"),
    ("ssim", "SSIM"),
    ("ssim_spread", "SSIM median [q25, q75]"),
    ("nmse", "NMSE"),
    ("nmse_spread", "NMSE median [q25, q75]"),
    ("seconds", "s/slice median [q25, q75]"),
)
METRICS = ("nmse", "psnr", "ssim")


# --------------------------------------------------------------------------- configuration


def _ccdf(t0: float | str, steps: int, sampler: str = "ddpm", dc_target: str = "sample") -> MethodSpec:
    suffix = "-dcx0" if dc_target == "x0" else ""
    t0_name = "auto" if t0 == "auto" else f"t0={t0:g}"
    family = f"CCDF {sampler} N={steps}" + (" dc=x0" if dc_target == "x0" else "")
    if t0 == "auto":
        family = f"CCDF {sampler} auto"
    return MethodSpec(f"ccdf-{sampler}-N{steps}-{t0_name}{suffix}", family, "unet", t0, steps, sampler, dc_target)


def _noise(steps: int, sampler: str = "ddpm") -> MethodSpec:
    return MethodSpec(f"noise-{sampler}-N{steps}", f"noise {sampler} (t0=1)", "zero_filled", 1.0, steps, sampler)


BASELINES = tuple(MethodSpec(name, name, name) for name in common.INITIALIZERS)
#: the classical peer (benchmarks.bart): ecalib maps from the undersampled centre, then pics
BART_METHODS = tuple(MethodSpec(f"bart_pics_{reg}", f"BART pics -{reg}", f"bart_pics_{reg}") for reg in ("l2", "l1"))


def run_bart_method(spec: MethodSpec, prep: PreparedSlice, lam: float) -> common.MethodOutput:
    """``bart ecalib`` (fair calibration rule) + ``bart pics -l1/-l2 -r lam -S`` on one prepared slice.

    Seconds: ecalib plus pics, each a ``bart`` process (file I/O included).
    """
    from benchmarks import bart

    kspace = prep.kspace[0].detach().cpu().numpy()
    mask = torch.broadcast_to(prep.mask.reshape(prep.mask.shape[-2:]), kspace.shape[-2:]).cpu().numpy()
    case = bart.BartCase(kspace, mask, None, f"{prep.case.volume}[{prep.case.index}]")
    image, pics_seconds = bart.reconstruct(case, spec.initializer.rsplit("_", 1)[1], lam)
    image = torch.from_numpy(image)[None].to(prep.kspace.device)
    return common.MethodOutput(image, 0, case.ecalib_seconds + pics_seconds, None)


def build_methods(quick: bool) -> list[MethodSpec]:
    """The method list of the full or the quick configuration, in priority order.

    The order matters when a time budget drops methods (:func:`plan`): first the 0-NFE
    baselines, then CCDF at <= 50 evaluations (the claim), the 1000-step run from noise (the
    reference), CCDF at N = 1000, ``t0 = auto``, the strided runs from noise, the rest of the
    t0 grid, and last the sampler and DC-target variants.

    Full: everything in the module docstring, with the samplers and the DC target compared
    on N = 100 over the whole t0 grid. Quick: t0 in {0.02, 0.05} and auto at N = 1000 and the
    ddim / ve / DC-on-x0 variants at t0 in {0.1, 0.2} only.
    """
    claim = [_ccdf(t0, 100) for t0 in T0_GRID if t0 <= 0.2]
    rest_of_grid = [_ccdf(t0, 100) for t0 in T0_GRID if t0 > 0.2]
    methods = list(BASELINES) + list(BART_METHODS) + claim + [_noise(1000)]
    if quick:
        methods += [_ccdf(t0, 1000) for t0 in (0.02, 0.05)] + [_ccdf("auto", 1000)]
        sweep: Sequence[float] = (0.1, 0.2)
    else:
        methods += [_ccdf(t0, 1000) for t0 in T0_GRID] + [_ccdf("auto", 100), _ccdf("auto", 1000)]
        sweep = T0_GRID
    methods += [_noise(steps) for steps in NOISE_STEPS if steps != 1000] + rest_of_grid
    if not quick:
        methods += [_noise(100, sampler) for sampler in ("ddim", "ve")]
    methods += [_ccdf(t0, 100, sampler) for sampler in ("ddim", "ve") for t0 in sweep]
    methods += [_ccdf(t0, 100, "ddpm", "x0") for t0 in sweep]
    return methods


def seconds_per_nfe(models: Models, prep: PreparedSlice, repeats: int = 2) -> float:
    """Measured seconds of one score-network evaluation plus one DC step on ``prep``'s shape."""
    from ccdf_mri.networks.complex import complex_to_channels
    from ccdf_mri.physics import ProximalDC

    x = complex_to_channels(prep.zero_filled / prep.scale)
    t = torch.full((1,), 10, dtype=torch.long, device=x.device)
    op, dc, y = prep.op(), ProximalDC(), prep.kspace / prep.scale

    def step() -> None:
        models.score_net(x, t)
        dc(prep.zero_filled / prep.scale, op, y)

    with torch.no_grad():
        return common.time_repeats(step, repeats, str(x.device))["median"]


def plan(
    settings: Sequence[MaskSetting],
    methods: Sequence[MethodSpec],
    num_slices: int,
    heavy_slices: int,
    heavy_nfe: int,
    step_seconds: float,
    budget_seconds: float | None,
    auto_t0s: dict[str, dict[int, float]],
    num_train_steps: int,
) -> tuple[dict[str, list[MethodSpec]], list[str], float]:
    """Which methods run per setting so that the estimated time fits ``budget_seconds``.

    Methods are taken in priority order (the order of ``methods``), settings interleaved;
    a (setting, method) pair whose estimated time (NFE x slices x ``step_seconds``) would
    exceed the budget is dropped, cheaper later ones may still fit. ``None``: no budget.

    Returns:
        ``{setting label: methods}``, the dropped pairs as text, and the estimated seconds.
    """
    chosen: dict[str, list[MethodSpec]] = {s.label: [] for s in settings}
    dropped: list[str] = []
    total = 0.0
    for spec in methods:
        for setting in settings:
            auto = auto_t0s.get(setting.label, {}).get(spec.num_steps or num_train_steps, 0.1)
            nfe = spec.expected_nfe(auto, num_train_steps)
            slices = min(heavy_slices, num_slices) if nfe > heavy_nfe else num_slices
            cost = nfe * slices * step_seconds
            if budget_seconds is not None and total + cost > budget_seconds:
                dropped.append(f"{setting.label} {spec.name} (~{cost / 60:.1f} min)")
                continue
            total += cost
            chosen[setting.label].append(spec)
    return chosen, dropped, total


# --------------------------------------------------------------------------- tuning


def tune_l1_lambda(
    preps: Sequence[PreparedSlice], grid: Sequence[float], log: Callable[[str], None]
) -> tuple[float, dict[str, float]]:
    """Lambda of the grid with the highest mean PSNR (fastMRI, per slice) on ``preps``."""
    from ccdf_mri.metrics import psnr

    scores: dict[str, float] = {}
    for lam in grid:
        values = []
        for prep in preps:
            image = common.initial_estimate("l1_wavelet", prep, None, lam) * prep.scale
            pred = common.magnitude_for_metrics(image, prep.case.target.shape)
            values.append(psnr(prep.case.target[None], pred[None]))
        scores[f"{lam:g}"] = float(np.mean(values))
        log(f"  l1 lambda {lam:g}: mean PSNR {scores[f'{lam:g}']:.2f} dB on {len(preps)} val slice(s)")
    finite = [lam for lam in grid if np.isfinite(scores[f"{lam:g}"])]
    if not finite:
        raise ValueError(f"L1-wavelet tuning: no lambda in {list(grid)} gave a finite PSNR on the val slices")
    best = max(finite, key=lambda lam: scores[f"{lam:g}"])
    if best in (min(grid), max(grid)):
        log(f"  warning: the best L1 lambda {best:g} is at the edge of the grid {list(grid)}; widen --l1-grid")
    return float(best), scores


def tune_bart_lambdas(
    val_cases: Sequence[common.SliceCase], settings: Sequence[MaskSetting], methods: Sequence[MethodSpec],
    out_dir: Path, val_source: str, retune: bool, log: Callable[[str], None],
) -> tuple[list[MethodSpec], dict[str, dict[str, float]]]:
    """The BART pics lambdas per setting (``{label: {method initializer: lambda}}``), tuned on ``val_cases``.

    Stored in ``out_dir/bart_lambda.json`` as ``python -m benchmarks.bart_study tune`` stores them
    (same keys: a lambda tuned there on the same val folder is reused unless ``retune``). Without
    ``bart`` the BART methods are dropped (returned method list) with a message.
    """
    from benchmarks import bart, bart_study

    wanted = [m for m in methods if m in BART_METHODS]
    if not wanted:
        return list(methods), {}
    if not bart.bart_available():
        log(f"BART rows skipped: bart not installed ({bart.INSTALL_HINT})")
        return [m for m in methods if m not in BART_METHODS], {}
    path = Path(out_dir) / "bart_lambda.json"
    stored = _stored_lambdas(path)
    lambdas: dict[str, dict[str, float]] = {}
    for setting in settings:
        cases = bart_study.cases_for_setting(val_cases, setting)
        lambdas[setting.label] = {}
        for spec in wanted:
            reg = spec.initializer.rsplit("_", 1)[1]
            key = f"{setting.label} reg={reg} val={val_source}"
            if key not in stored or retune:
                log(f"{setting.label}: tuning bart pics -{reg} over {list(bart.LAMBDA_GRID)} on {len(cases)} val slice(s)")
                record: dict[str, Any] = {}
                best = bart.tune_lambda(cases, reg, bart.LAMBDA_GRID, record=record, log=log)
                stored[key] = {"lambda": best, "reg": reg, "setting": setting.label, "val": val_source,
                               "val_slices": len(cases), "median_psnr": record["median_psnr"], "bart": bart.bart_version()}
                common.write_json(path, stored)
            lambdas[setting.label][spec.initializer] = float(stored[key]["lambda"])
            log(f"{setting.label}: bart pics -{reg} lambda {lambdas[setting.label][spec.initializer]:g} ({path}, {key})")
    return list(methods), lambdas


def resolve_auto_t0(setting: MaskSetting, models: Models, num_steps: int, sampler: str) -> dict[str, Any]:
    """``t0 = auto`` exactly as the CLI and bundle resolve it: the bundle's ``t0_selector``
    (:class:`ccdf_mri.diffusion.t0.CalibratedT0` on ``calibration.json`` of the models folder).

    That is the calibrated t0 for the nearest acceleration or, without a table, Theorem 2's
    ``select_t0`` on a prior error of the U-Net.
    """
    from ccdf_mri.diffusion.t0 import PRIOR_NMSE, CalibratedT0

    path = None if models.models_dir is None else Path(models.models_dir) / "calibration.json"
    selector = CalibratedT0(path, initializer="unet", sampler=sampler)
    t0 = selector.t0_for(setting.acceleration, models.schedule.sub_schedule(num_steps))
    source = f"calibration.json {selector.table}" if selector.table else f"select_t0 with the prior U-Net NMSE {PRIOR_NMSE['unet']}"
    return {"t0": float(t0), "source": source, "num_steps": num_steps, "sampler": sampler}


# --------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class _Volume:
    """Per-(setting, method) accumulation of one volume's slices."""

    slices: list[int] = dataclasses.field(default_factory=list)
    preds: list[np.ndarray] = dataclasses.field(default_factory=list)
    targets: list[np.ndarray] = dataclasses.field(default_factory=list)
    in_subset: list[bool] = dataclasses.field(default_factory=list)


def _volume_metrics(targets: Sequence[np.ndarray], preds: Sequence[np.ndarray]) -> dict[str, float]:
    from ccdf_mri.metrics import volume_metrics

    return volume_metrics(np.stack(targets), np.stack(preds))


def _save_volume(recon_dir: Path, setting: str, method: str, volume: str, acc: _Volume) -> None:
    path = recon_dir / setting / method / f"{Path(volume).stem}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, pred=np.stack(acc.preds), target=np.stack(acc.targets), slices=np.asarray(acc.slices))


def evaluate(
    cases: Sequence[common.SliceCase],
    settings: Sequence[MaskSetting],
    methods: dict[str, Sequence[MethodSpec]],
    models: Models,
    l1_lambdas: dict[str, float],
    auto_t0s: dict[str, dict[int, float]],
    heavy_slices: int,
    heavy_nfe: int = HEAVY_NFE,
    maps_method: str = "acs",
    device: str = "cpu",
    seed: int = 0,
    recon_dir: Path | None = None,
    log: Callable[[str], None] = print,
    bart_lambdas: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Run the methods of each setting (``methods[label]``) on every slice; volume and slice metrics.

    Slices are processed volume by volume, so only one volume's outputs are in memory.
    A method whose expected NFE exceeds ``heavy_nfe`` runs on the first ``heavy_slices``
    slices only. The diffusion noise of slice ``k`` is seeded with ``seed + k`` for every
    method (common random numbers).

    Returns:
        ``{"records": per-slice dicts, "volumes": per-volume dicts}``; each volume dict has
        the metrics over all slices the method ran on and over the heavy subset only.
    """
    records: list[dict[str, Any]] = []
    volume_rows: list[dict[str, Any]] = []
    num_train = int(models.schedule.num_train_steps)
    by_volume: dict[str, list[tuple[int, common.SliceCase]]] = defaultdict(list)
    for position, case in enumerate(cases):
        by_volume[case.volume].append((position, case))
    for setting in settings:
        label = setting.label
        for volume, members in by_volume.items():
            accs: dict[str, _Volume] = defaultdict(_Volume)
            for position, case in members:
                prep = common.prepare_slice(case, setting, maps_method, device)
                in_subset = position < heavy_slices
                for spec in methods[label]:
                    auto = auto_t0s.get(label, {}).get(spec.num_steps or num_train)
                    heavy = spec.expected_nfe(auto or 0.0, num_train) > heavy_nfe
                    if heavy and not in_subset:
                        continue
                    if spec in BART_METHODS:
                        out = run_bart_method(spec, prep, (bart_lambdas or {})[label][spec.initializer])
                    else:
                        out = common.run_method(spec, prep, models, l1_lambdas.get(label), auto, seed + position)
                    pred = common.magnitude_for_metrics(out.image, case.target.shape)
                    per_slice = _volume_metrics([case.target], [pred])
                    records.append({
                        "setting": label, "method": spec.name, "volume": volume, "slice": case.index,
                        "position": position, "in_heavy_subset": in_subset, "nfe": out.nfe, "t0": out.t0,
                        "seconds": out.seconds, "prep_seconds": prep.prep_seconds, **per_slice,
                    })
                    acc = accs[spec.name]
                    acc.slices.append(case.index)
                    acc.preds.append(pred)
                    acc.targets.append(case.target)
                    acc.in_subset.append(in_subset)
                log(f"  {label} {volume} slice {case.index}: {len(methods[label])} methods done")
            for method, acc in accs.items():
                row = {"setting": label, "method": method, "volume": volume, "slices": len(acc.slices),
                       **_volume_metrics(acc.targets, acc.preds)}
                subset = [k for k, flag in enumerate(acc.in_subset) if flag]
                if subset:
                    sub = _volume_metrics([acc.targets[k] for k in subset], [acc.preds[k] for k in subset])
                    row.update({f"subset_{m}": v for m, v in sub.items()})
                volume_rows.append(row)
                if recon_dir is not None:
                    _save_volume(recon_dir, label, method, volume, acc)
    return {"records": records, "volumes": volume_rows}


def _spread_text(stats: dict[str, float], digits: int = 3) -> str:
    if not stats["n"]:
        return "-"
    fmt = common.format_cell
    return f"{fmt(stats['median'], digits)} [{fmt(stats['q25'], digits)}, {fmt(stats['q75'], digits)}]"


def aggregate(
    result: dict[str, Any], methods: Sequence[MethodSpec], settings: Sequence[MaskSetting], subset: bool = False
) -> list[dict[str, Any]]:
    """One row per (setting, method): means over volumes, medians and IQRs over slices.

    ``subset=True`` restricts everything to the heavy subset of slices (where all methods ran).
    """
    rows = []
    for setting in settings:
        for spec in methods:
            recs = [r for r in result["records"] if r["setting"] == setting.label and r["method"] == spec.name
                    and (r["in_heavy_subset"] or not subset)]
            vols = [v for v in result["volumes"] if v["setting"] == setting.label and v["method"] == spec.name]
            if subset:
                vols = [{m: v[f"subset_{m}"] for m in METRICS} for v in vols if "subset_psnr" in v]
            if not recs:
                continue
            diffusion = spec.t0 is not None
            from_noise = diffusion and spec.t0 != "auto" and float(spec.t0) >= 1
            row: dict[str, Any] = {
                "setting": setting.label, "method": spec.name, "family": spec.family,
                "initializer": None if from_noise else spec.initializer,
                "t0": spec.t0, "t0_used": recs[0]["t0"], "num_steps": spec.num_steps,
                "sampler": spec.sampler if diffusion else None, "dc_target": spec.dc_target if diffusion else None,
                "nfe": int(np.median([r["nfe"] for r in recs])), "slices": len(recs), "volumes": len(vols),
            }
            for metric in METRICS:
                row[metric] = float(np.mean([v[metric] for v in vols]))
                stats = common.spread([r[metric] for r in recs])
                row[f"{metric}_slices"] = stats
                row[f"{metric}_spread"] = _spread_text(stats, 4 if metric != "psnr" else 2)
            seconds = common.spread([r["seconds"] for r in recs])
            row["seconds_slices"] = seconds
            row["seconds"] = _spread_text(seconds, 2)
            row["seconds_median"] = seconds["median"]
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- outputs


def plot(rows: Sequence[dict[str, Any]], settings: Sequence[MaskSetting], path: Path) -> Path:
    """PSNR vs NFE (log x), one curve per family, 0-NFE baselines as horizontal lines."""
    common.use_agg()
    import matplotlib.pyplot as plt

    count = len(settings)
    columns = min(2, count)
    lines = (count + columns - 1) // columns
    figure, axes = plt.subplots(lines, columns, figsize=(7 * columns, 5 * lines), squeeze=False)
    styles = {"zero_filled": ":", "cg_sense": "-.", "l1_wavelet": "--", "unet": "-"}
    for ax, setting in zip(axes.flat, settings):
        mine = [r for r in rows if r["setting"] == setting.label]
        for row in mine:
            if row["nfe"] == 0:
                ax.axhline(row["psnr"], linestyle=styles.get(row["method"], ":"), color="grey"
                           if row["method"] != "unet" else "black", label=f"{row['method']} (0 NFE)")
        families: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in mine:
            if row["nfe"] > 0:
                families[row["family"]].append(row)
        for family, members in sorted(families.items()):
            members.sort(key=lambda r: r["nfe"])
            ax.plot([r["nfe"] for r in members], [r["psnr"] for r in members], marker="o", label=family)
        ax.set_xscale("log")
        ax.set_xlabel("score-network evaluations (NFE)")
        ax.set_ylabel("PSNR (dB), mean over volumes")
        ax.set_title(setting.label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[count:]:
        ax.set_visible(False)
    return common.save_figure(figure, path)


def markdown(payload: dict[str, Any]) -> str:
    """The markdown report: configuration, machine, main table and heavy-subset table."""
    config = payload["config"]
    lines = [
        "# Quality versus network evaluations",
        "",
        f"Command: `{config['command']}`",
        "",
        f"Data: `{config['data']}` ({config['num_slices']} slices from {config['num_volumes']} volumes); "
        f"models: {payload['models']}; ground truth: {config['target']}; coil maps: {config['maps']}; "
        f"device: {payload['machine']['device']}; "
        f"CPU: {payload['machine']['cpu_model']} ({payload['machine']['usable_cores']} usable cores, "
        f"{payload['machine']['torch_threads']} torch threads); torch {payload['machine']['torch']}.",
        "",
        f"Configuration: {'quick' if config['quick'] else 'full'}. Methods above {config['heavy_nfe']} NFE ran on the "
        f"first {config['heavy_slices']} slice(s) only (see the second table). {config['notes']}",
        "",
        "PSNR, SSIM, NMSE: fastMRI definitions per volume (data range = target volume max), mean over "
        "volumes; the bracketed columns give the median and quartiles over slices (per-slice metrics). "
        "NFE: score-network evaluations. s/slice: the method's own time, excluding the shared "
        "preparation (mask, coil maps).",
        "",
        f"Plan: {payload['plan']['seconds_per_step']:.3f} s per network + DC step measured at the start; "
        f"budget {payload['plan']['budget_minutes'] or 'none'} min; dropped to fit: "
        f"{', '.join(payload['plan']['dropped']) or 'nothing'}. Whole run: {config['wall_seconds'] / 60:.1f} min.",
        "",
        f"L1-wavelet lambda (scaled units), tuned on the val split: {payload['l1_lambda']}. "
        f"BART pics lambdas (BART's normalised units; ecalib maps, benchmarks.bart), tuned on the val split: "
        f"{payload.get('bart_lambda') or 'not run'}. "
        "t0 = auto (as the CLI and bundle resolve it): "
        + ("; ".join(f"{k}: {v['t0']:.4g} ({v['source']})" for k, v in payload["auto_t0"].items()) or "not run") + ".",
        "",
        "## All slices",
        "",
        common.markdown_table(payload["rows"], COLUMNS),
        f"## The {config['heavy_slices']} slice(s) where every method ran",
        "",
        common.markdown_table(payload["subset_rows"], COLUMNS),
    ]
    if payload["skipped"]:
        lines += ["## Skipped files", ""] + [f"- {message}" for message in payload["skipped"]] + [""]
    return "\n".join(lines)


def write_outputs(payload: dict[str, Any], settings: Sequence[MaskSetting], out_dir: Path) -> dict[str, Path]:
    """Write ``quality_vs_nfe.{json,md,png}`` into ``out_dir``."""
    out_dir = Path(out_dir)
    return {
        "json": common.write_json(out_dir / "quality_vs_nfe.json", payload),
        "md": common.write_text(out_dir / "quality_vs_nfe.md", markdown(payload)),
        "png": plot(payload["rows"], settings, out_dir / "quality_vs_nfe.png"),
    }


# --------------------------------------------------------------------------- main


def _stored_lambdas(path: Path) -> dict[str, float]:
    import json

    return json.loads(path.read_text()) if path.is_file() else {}


def study(
    cases: Sequence[common.SliceCase],
    val_cases: Sequence[common.SliceCase],
    settings: Sequence[MaskSetting],
    methods: Sequence[MethodSpec],
    models: Models,
    out_dir: Path,
    heavy_slices: int,
    heavy_nfe: int = HEAVY_NFE,
    maps: str = "acs",
    device: str = "cpu",
    seed: int = 0,
    l1_grid: Sequence[float] = L1_GRID,
    retune: bool = False,
    save_recons: bool = False,
    budget_minutes: float | None = None,
    val_source: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Tune the L1 lambda on ``val_cases``, resolve ``t0 = auto``, plan, evaluate on ``cases``, aggregate.

    The tuned lambda per setting is stored in ``out_dir/l1_lambda.json`` under the setting,
    the maps method and ``val_source`` (the val folder), and reused by later runs with the
    same three unless ``retune``. With ``budget_minutes`` the methods that would not fit (estimated
    from a measured network + DC step) are dropped in reverse priority order (:func:`plan`).

    Returns:
        the payload's data part: ``l1_lambda``, ``l1_tuning``, ``auto_t0``, ``plan``, ``rows``,
        ``subset_rows``, ``records``, ``volumes``.
    """
    started = time.perf_counter()
    methods, bart_lambdas = tune_bart_lambdas(val_cases, settings, methods, out_dir, val_source, retune, log)
    lambda_file = Path(out_dir) / "l1_lambda.json"
    stored = _stored_lambdas(lambda_file)
    l1_lambdas: dict[str, float] = {}
    l1_scores: dict[str, Any] = {}
    auto_t0s: dict[str, dict[str, Any]] = {}
    auto: dict[str, dict[int, float]] = {}
    needs_l1 = any(m.initializer == "l1_wavelet" for m in methods)
    autos = sorted({m.num_steps or models.schedule.num_train_steps for m in methods if m.t0 == "auto"})
    for setting in settings:
        label = setting.label
        key = f"{label} maps={maps} val={val_source}"
        if needs_l1 and key in stored and not retune:
            l1_lambdas[label] = float(stored[key]["lambda"])
            log(f"{label}: stored L1 lambda {l1_lambdas[label]:g} ({lambda_file}, {key})")
        elif needs_l1:
            log(f"{label}: tuning the L1-wavelet lambda over {list(l1_grid)}")
            val_preps = [common.prepare_slice(c, setting, maps, device) for c in val_cases]
            l1_lambdas[label], l1_scores[label] = tune_l1_lambda(val_preps, l1_grid, log)
            stored[key] = {"lambda": l1_lambdas[label], "val_psnr": l1_scores[label], "val_slices": len(val_preps)}
            common.write_json(lambda_file, stored)
        auto[label] = {}
        for steps in autos:
            found = resolve_auto_t0(setting, models, steps, "ddpm")
            auto_t0s[f"{label} N={steps}"] = found
            auto[label][steps] = found["t0"]
            log(f"{label}: t0=auto at N={steps} -> {found['t0']:.4f} ({found['source']})")
    probe = common.prepare_slice(cases[0], settings[0], maps, device)
    step_seconds = seconds_per_nfe(models, probe) if models.score_net is not None else 0.0
    if models.unet is not None:
        with torch.no_grad():  # warm-up: first calls are slow, keep them out of the times
            common.initial_estimate("unet", probe, models.unet, None)
    budget = None
    if budget_minutes is not None:
        reserve = (probe.prep_seconds + 5.0) * len(cases) * len(settings)  # maps + 0-NFE methods, estimated
        budget = 0.9 * (60.0 * budget_minutes - (time.perf_counter() - started) - reserve)
    chosen, dropped, estimate = plan(settings, methods, len(cases), heavy_slices, heavy_nfe, step_seconds, budget,
                                     auto, models.schedule.num_train_steps)
    log(f"plan: {step_seconds:.3f} s per network + DC step, ~{estimate / 60:.1f} min of diffusion"
        + (f"; dropped to fit {budget_minutes} min: {dropped}" if dropped else ""))
    result = evaluate(
        cases, settings, chosen, models, l1_lambdas, auto, heavy_slices, heavy_nfe, maps, device, seed,
        Path(out_dir) / "recons" if save_recons else None, log, bart_lambdas,
    )
    return {
        "l1_lambda": l1_lambdas,
        "bart_lambda": bart_lambdas,
        "l1_tuning": l1_scores,
        "auto_t0": auto_t0s,
        "plan": {"seconds_per_step": step_seconds, "estimated_diffusion_seconds": estimate,
                 "budget_minutes": budget_minutes, "dropped": dropped},
        "rows": aggregate(result, methods, settings),
        "subset_rows": aggregate(result, methods, settings, subset=True),
        "records": result["records"],
        "volumes": result["volumes"],
    }


def select_methods(methods: Sequence[MethodSpec], patterns: Sequence[str] | None) -> list[MethodSpec]:
    """The methods whose name matches one of the shell-style ``patterns`` (all when None)."""
    if not patterns:
        return list(methods)
    chosen = [m for m in methods if any(fnmatch.fnmatchcase(m.name, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"--methods {list(patterns)} matches none of {[m.name for m in methods]}")
    return chosen


def run(args: argparse.Namespace, log: Callable[[str], None] = print, models: Models | None = None) -> dict[str, Any]:
    """The whole study for parsed command-line ``args``; returns the written payload.

    Args:
        models: networks already in memory (tests); default: loaded from ``args.models``.
    """
    common.set_threads(args.threads)
    started = time.perf_counter()
    settings = common.mask_settings_by_label(args.settings or (QUICK_SETTINGS if args.quick else None))
    methods = select_methods(build_methods(args.quick), args.methods)
    max_slices = args.max_slices or (3 if args.quick else 20)
    heavy_slices = args.heavy_slices if args.heavy_slices is not None else (1 if args.quick else max_slices)
    models = models or common.load_models(args.models, args.device)
    if models.unet is None or models.score_net is None:
        missing = [name for name, net in (("unet", models.unet), ("score_net", models.score_net)) if net is None]
        raise FileNotFoundError(f"{args.models}: expected trained models, missing {missing}")
    test_dir = common.split_folder(args.data, "test")
    val_dir = common.split_folder(args.data, "val")
    notes = "" if val_dir != test_dir else "No val split found: the L1 lambda was tuned on the evaluated folder."
    cases, skipped = common.load_cases(test_dir, max_slices, log, args.target_key)
    val_cases, _ = common.load_cases(val_dir, args.val_slices, log, args.target_key)
    log(f"{len(cases)} test slices from {test_dir}, {len(val_cases)} val slices from {val_dir}")
    data = study(
        cases, val_cases, settings, methods, models, args.out, heavy_slices, args.heavy_nfe, args.maps,
        args.device, args.seed, args.l1_grid, args.retune, args.save_recons,
        args.budget_minutes if args.budget_minutes is not None else (QUICK_BUDGET_MINUTES if args.quick else None),
        str(val_dir), log,
    )
    payload = {
        "config": {
            "command": " ".join(["python -m benchmarks.quality_vs_nfe"] + list(args.argv)),
            "data": str(test_dir), "val_data": str(val_dir), "quick": bool(args.quick),
            "settings": [dataclasses.asdict(s) for s in settings], "methods": [dataclasses.asdict(m) for m in methods],
            "num_slices": len(cases), "num_volumes": len({c.volume for c in cases}), "heavy_slices": heavy_slices,
            "heavy_nfe": args.heavy_nfe, "maps": args.maps, "seed": args.seed, "notes": notes,
            "target": args.target_key or "the file's fastMRI target (reconstruction_rss)",
            "wall_seconds": time.perf_counter() - started,
        },
        "machine": common.machine_info(args.device),
        "models": models.description,
        **data,
        "skipped": skipped,
    }
    paths = write_outputs(payload, settings, Path(args.out))
    log(f"wrote {', '.join(str(p) for p in paths.values())} in {payload['config']['wall_seconds']:.0f} s")
    return payload


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=common.REPO_ROOT / "demo_data",
                        help="fastMRI-format folder, or a corpus root with test/ and val/ (default: demo_data)")
    parser.add_argument("--models", type=Path, default=common.DEFAULT_MODELS_DIR, help="folder with score_net.pt, unet.pt")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="the quick configuration (< 30 min on 2 CPU cores)")
    parser.add_argument("--max-slices", type=int, default=None, help="test slices (default 3 quick, 20 full)")
    parser.add_argument("--heavy-slices", type=int, default=None,
                        help=f"slices for methods above --heavy-nfe (default 1 quick, all full)")
    parser.add_argument("--heavy-nfe", type=int, default=HEAVY_NFE)
    parser.add_argument("--val-slices", type=int, default=2, help="val slices for the L1 lambda tuning")
    parser.add_argument("--settings", nargs="*", default=None,
                        help=f"mask settings (default: all; quick: {' '.join(QUICK_SETTINGS)})")
    parser.add_argument("--target-key", default=None,
                        help="dataset whose magnitude is the ground truth (default: the file's reconstruction_rss; "
                        "the demo corpus also has the noise-free target_complex)")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="only the methods matching these shell patterns, e.g. 'ccdf-ddpm-N100-*' unet")
    parser.add_argument("--maps", default="acs", choices=("espirit", "acs"),
                        help="coil maps from the undersampled k-space (default acs, as ccdf_mri.recon and training)")
    parser.add_argument("--l1-grid", type=float, nargs="+", default=list(L1_GRID))
    parser.add_argument("--retune", action="store_true", help="re-tune lambda even if l1_lambda.json has one")
    parser.add_argument("--save-recons", action="store_true", help="save magnitude outputs under OUT/recons")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help=f"drop the lowest-priority methods that would not fit (default {QUICK_BUDGET_MINUTES:g} "
                        "with --quick, none otherwise)")
    parser.add_argument("--seed", type=int, default=0)
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
