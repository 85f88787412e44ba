"""BART's setup for the benchmarks: the lambdas tuned on validation data, and the ecalib calibration rule.

Two commands (BART must be installed: ``apt-get install bart``):

- ``tune``: for each mask setting and regulariser, the ``pics`` lambda of a grid with the highest
  median PSNR (fastMRI, magnitude, against the noise-free ``target_complex``) on the val split;
  stored in ``OUT/bart_lambda.json`` (read back with :func:`lookup_lambda`);
- ``ecalib-rule``: PSNR of ``pics`` with ecalib maps from several (calibration region, kernel)
  choices, BART's defaults among them, per slice: the evidence for
  :func:`benchmarks.bart.fair_calibration`; ``OUT/bart_ecalib_rule.{json,md}``.

Examples::

    python -m benchmarks.bart_study tune --data /work/validation --out benchmarks/results
    python -m benchmarks.bart_study ecalib-rule --data /work/validation --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmarks import bart
from benchmarks.bart import BartCase

SETTINGS = ["equispaced_fraction-4x", "equispaced_fraction-8x"]
#: ecalib variants of the calibration study: name -> (region or None, kernel or None); "fair" = the rule
ECALIB_VARIANTS = {
    "bart_default": (None, None),
    "fair": "fair",
    "k4": ("lines", 4),
    "k5": ("lines", 5),
    "k6_r48": ("48", 6),
}


def cases_for_setting(slices: Sequence[Any], setting: Any) -> list[BartCase]:
    """BART cases of ``benchmarks.common.SliceCase`` slices under one ``MaskSetting``.

    The mask is the one :func:`benchmarks.common.prepare_slice` draws (seeded with the file
    name, same padding), so BART sees exactly the samples the other methods see.
    """
    from ccdf_mri.physics import make_mask, mask_seed_from_name

    cases = []
    for item in slices:
        kspace = item.kspace.numpy() if hasattr(item.kspace, "numpy") else np.asarray(item.kspace)
        mask = make_mask(setting.kind, (1,) + tuple(kspace.shape), setting.acceleration, setting.center_fraction,
                         seed=mask_seed_from_name(item.volume), padding=item.padding).numpy()
        mask2d = np.broadcast_to(mask.reshape(mask.shape[-2:]), kspace.shape[-2:]).astype(np.float32)
        cases.append(BartCase(kspace * mask2d[None], mask2d, item.target, f"{item.volume}[{item.index}]"))
    return cases


def lookup_lambda(path: Path, setting: str, reg: str, val: Optional[str] = None) -> float:
    """The lambda stored by ``tune`` for a setting and regulariser (and val folder, when given).

    Raises:
        KeyError: nothing stored for them (the message lists what is stored).
    """
    stored = json.loads(Path(path).read_text())
    keys = [k for k, v in stored.items() if v["setting"] == setting and v["reg"] == reg and (val is None or v["val"] == str(val))]
    if not keys:
        raise KeyError(f"{path}: no tuned lambda for setting {setting!r}, reg {reg!r}, val {val!r}; stored: {sorted(stored)}")
    return float(stored[keys[-1]]["lambda"])


def _load(args: argparse.Namespace, split: str) -> tuple[Path, list[Any], list[str]]:
    from benchmarks import common

    folder = common.split_folder(args.data, split)
    # default: one slice (the middle one) of every file, so every kind of the set is seen;
    # fewer slices than files: files evenly spread over the (name-sorted) list
    files = len(common.list_h5(folder))
    count = args.slices or files
    slices, skipped = common.load_cases(folder, max(count, files), print, args.target_key)
    if count < len(slices):
        slices = [slices[k] for k in common._evenly_spaced(len(slices), count)]
    return folder, slices, skipped


def _provenance(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import common

    return {"bart": bart.bart_version(), "command": "python -m benchmarks.bart_study " + " ".join(args.argv),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "machine": common.machine_info("cpu")}


def tune_command(args: argparse.Namespace) -> int:
    """``tune``: lambdas per setting and regulariser into ``OUT/bart_lambda.json``."""
    from benchmarks import common

    val_dir, slices, skipped = _load(args, "val")
    out = Path(args.out) / "bart_lambda.json"
    stored = json.loads(out.read_text()) if out.is_file() else {}
    for setting in common.mask_settings_by_label(args.settings):
        cases = cases_for_setting(slices, setting)
        for reg in args.regs:
            grid = args.grid or bart.LAMBDA_GRID
            print(f"{setting.label}: tuning bart pics -{reg} over {list(grid)} on {len(cases)} val slices of {val_dir}")
            record: dict[str, Any] = {}
            best = bart.tune_lambda(cases, reg, grid, args.iters, record)
            region, kernel = bart.mask_calibration(cases[0].mask, cases[0].kspace.shape[-2])
            stored[f"{setting.label} reg={reg} val={val_dir}"] = {
                "lambda": best, "reg": reg, "setting": setting.label, "val": str(val_dir), "val_slices": len(cases),
                "target": args.target_key, "iters": args.iters or bart.DEFAULT_ITERS[reg], "median_psnr": record["median_psnr"],
                "pics_seconds_per_slice": common.spread(record["seconds"]),
                "ecalib_seconds_per_slice": common.spread([c.ecalib_seconds for c in cases]),
                "ecalib": {"region": region, "kernel": kernel, "rule": "benchmarks.bart.fair_calibration"},
                **_provenance(args), "skipped": skipped,
            }
            print(f"{setting.label} -{reg}: lambda {best:g}")
            common.write_json(out, stored)
    lines = ["# BART pics lambdas tuned on validation data", "",
             "Median PSNR (dB, fastMRI, magnitude against the noise-free target) of `bart pics -S` with ecalib maps "
             "(benchmarks.bart.fair_calibration) per lambda; the best is used everywhere else. Lambda is in BART's "
             "normalised units (benchmarks/bart.py). Seconds: median wall time of one `bart pics` process per slice.", ""]
    for key, entry in stored.items():
        grid = ", ".join(f"{lam}: {psnr:.2f}" for lam, psnr in entry["median_psnr"].items())
        lines += [f"- `{key}`: **lambda {entry['lambda']:g}**, {entry['val_slices']} slices, {entry['iters']} iterations, "
                  f"pics {entry['pics_seconds_per_slice']['median']:.1f} s/slice, ecalib "
                  f"{entry['ecalib_seconds_per_slice']['median']:.1f} s/slice (OMP_NUM_THREADS={entry['omp_num_threads']}); "
                  f"{grid}. Command: `{entry['command']}`"]
    common.write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


def ecalib_command(args: argparse.Namespace) -> int:
    """``ecalib-rule``: pics PSNR per slice for each ecalib variant; ``OUT/bart_ecalib_rule.{json,md}``."""
    from benchmarks import common

    folder, slices, skipped = _load(args, args.split)
    records: list[dict[str, Any]] = []
    for setting in common.mask_settings_by_label(args.settings):
        base = cases_for_setting(slices, setting)
        for case in base:
            lines = bart.mask_calibration(case.mask, case.kspace.shape[-2])[0][1]
            row: dict[str, Any] = {"setting": setting.label, "slice": case.name, "lines": lines}
            for name in args.variants:
                variant = ECALIB_VARIANTS[name]
                if variant == "fair":
                    ecalib = None
                else:
                    region, kernel = variant
                    rows = 24 if region == "lines" else int(region) if region else None
                    ecalib = ((rows, lines) if rows else None, kernel)
                trial = BartCase(case.kspace, case.mask, case.target, case.name, ecalib=ecalib)
                try:
                    image, _ = bart.reconstruct(trial, args.reg, args.lam)
                    row[name] = bart.slice_psnr(case.target, image)
                except bart.BartError as error:
                    row[name] = float("nan")
                    row[f"{name}_error"] = str(error)[-300:]
            records.append(row)
            print(f"{setting.label} {case.name}: " + ", ".join(f"{n} {row[n]:.2f}" for n in args.variants))
    summary = []
    for setting in args.settings:
        rows = [r for r in records if r["setting"] == setting]
        for name in args.variants:
            values = np.array([r[name] for r in rows], float)
            loss = np.array([np.nanmax([r[n] for n in args.variants]) - r[name] for r in rows], float)
            summary.append({"setting": setting, "ecalib": name, "slices": len(rows), "median_psnr": float(np.nanmedian(values)),
                            "min_psnr": float(np.nanmin(values)), "median_loss_to_best": float(np.nanmedian(loss)),
                            "max_loss_to_best": float(np.nanmax(loss)), "slices_losing_over_1db": int(np.sum(loss > 1.0))})
    payload = {"data": str(folder), "reg": args.reg, "lam": args.lam, "variants": {k: str(ECALIB_VARIANTS[k]) for k in args.variants},
               "summary": summary, "records": records, "skipped": skipped, **_provenance(args)}
    out = Path(args.out)
    common.write_json(out / "bart_ecalib_rule.json", payload)
    columns = (("setting", "setting"), ("ecalib", "ecalib"), ("slices", "slices"), ("median_psnr", "median PSNR (dB)"),
               ("min_psnr", "min PSNR"), ("median_loss_to_best", "median loss to best"), ("max_loss_to_best", "max loss"),
               ("slices_losing_over_1db", "slices losing > 1 dB"))
    text = [f"# ecalib calibration choices before `bart pics -{args.reg} -r {args.lam:g}`", "",
            f"Data: {folder} ({len(slices)} slices). Command: `{payload['command']}`. BART {payload['bart']}.",
            "Variants: bart_default = `ecalib -m1` (24x24 region, 6x6 kernel); kN = `-r 24:lines -k N`; k6_r48 = "
            "`-r 48:lines -k 6`; fair = benchmarks.bart.fair_calibration (`-r H:lines -k 6` for 10 or more lines). "
            "Loss to best: dB below the best variant on the same slice.", "",
            common.markdown_table(summary, columns)]
    common.write_text(out / "bart_ecalib_rule.md", "\n".join(text))
    print(f"wrote {out / 'bart_ecalib_rule.json'} and .md")
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bart_study", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tune = sub.add_parser("tune", help="tune the pics lambdas on the val split; OUT/bart_lambda.json")
    rule = sub.add_parser("ecalib-rule", help="pics PSNR for several ecalib calibration choices; OUT/bart_ecalib_rule.*")
    for p in (tune, rule):
        p.add_argument("--data", type=Path, required=True, help="a folder of fastMRI files or a root with val/ and test/")
        p.add_argument("--settings", nargs="*", default=SETTINGS)
        p.add_argument("--slices", type=int, default=None, help="slices, spread over the files (default: one per file)")
        p.add_argument("--target-key", default="target_complex", help="ground truth (default the noise-free target_complex)")
        p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    tune.add_argument("--regs", nargs="+", default=list(bart.REGULARIZERS), choices=bart.REGULARIZERS)
    tune.add_argument("--grid", type=float, nargs="+", default=None, help=f"lambdas (default {list(bart.LAMBDA_GRID)})")
    tune.add_argument("--iters", type=int, default=None, help=f"pics iterations (default {bart.DEFAULT_ITERS})")
    rule.add_argument("--split", default="val", choices=("val", "test"))
    rule.add_argument("--reg", default="l2", choices=bart.REGULARIZERS)
    rule.add_argument("--lam", type=float, default=0.01)
    rule.add_argument("--variants", nargs="+", default=list(ECALIB_VARIANTS), choices=list(ECALIB_VARIANTS))
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not bart.bart_available():
        print(f"bart not installed: {bart.INSTALL_HINT}", file=sys.stderr)
        return 2
    return tune_command(args) if args.command == "tune" else ecalib_command(args)


if __name__ == "__main__":
    sys.exit(main())
