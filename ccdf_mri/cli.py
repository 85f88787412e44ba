"""``ccdf-mri``: the command line, a thin front over :mod:`ccdf_mri.recon` and the bundle.

Sub-commands::

    ccdf-mri recon INPUT... --out DIR [options]   reconstruct fastMRI .h5 files / folders
    ccdf-mri evaluate PRED_DIR TARGET_DIR          fastMRI metrics of submission files
    ccdf-mri info FILE...                          what is in a fastMRI file
    ccdf-mri demo [...]                            the end-to-end demo (ccdf_mri.demo)
    ccdf-mri train CONFIG [--key value ...]        run a bundle training config
    ccdf-mri prepare NAME [args ...]               run a data_prep command

The defaults of ``recon`` are the bundle's (``configs/inference.json``), so the CLI and
``python -m monai.bundle run`` reconstruct the same way. Exit status: 0 when every input
succeeded, 1 when any failed (after processing the others), 2 for bad usage or setup.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_ENV = "CCDF_MRI_BUNDLE"
RECON_KEYS = (
    "mask",
    "acceleration",
    "center_fraction",
    "initializer",
    "t0",
    "num_steps",
    "sampler",
    "num_samples",
    "maps",
    "formats",
    "seed",
    "batch_size",
    "target_key",
)


def bundle_dir(path: Optional[str] = None) -> Path:
    """The bundle folder: ``path``, else ``$CCDF_MRI_BUNDLE``, else ``<repo>/bundles/ccdf_mri_recon``."""
    return Path(path or os.environ.get(BUNDLE_ENV) or REPO_ROOT / "bundles" / "ccdf_mri_recon")


def bundle_defaults(bundle: Path) -> Dict[str, Any]:
    """The reconstruction options of the bundle's ``configs/inference.json`` (:data:`RECON_KEYS`)."""
    config = bundle / "configs" / "inference.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: bundle inference config not found (set --bundle or ${BUNDLE_ENV})")
    content = json.loads(config.read_text())
    missing = [key for key in RECON_KEYS if key not in content]
    if missing:
        raise ValueError(f"{config}: expected keys {missing} in the inference config, found none")
    return {key: content[key] for key in RECON_KEYS}


def _t0(text: str):
    from ccdf_mri.recon import check_t0

    try:
        return check_t0(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _formats(text: str):
    from ccdf_mri.recon import parse_formats

    try:
        return parse_formats(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_recon(sub: argparse._SubParsersAction) -> None:
    from ccdf_mri.physics import MASK_KINDS
    from ccdf_mri.recon import INITIALIZERS, MAP_METHODS, SAMPLERS

    p = sub.add_parser("recon", help="reconstruct fastMRI .h5 files or folders of them")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="fastMRI .h5 files or folders of them")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--bundle", help="bundle folder (default: the repository's bundles/ccdf_mri_recon)")
    p.add_argument("--models", help="models folder (default: <bundle>/models)")
    p.add_argument("--mask", choices=MASK_KINDS, help="retrospective mask for fully sampled files")
    p.add_argument("--acceleration", type=float, help="retrospective acceleration")
    p.add_argument("--center-fraction", type=float, help="fully sampled centre fraction")
    p.add_argument("--initializer", choices=INITIALIZERS, help="how x0 is made")
    p.add_argument("--t0", type=_t0, help="start of the reverse diffusion in [0, 1], or 'auto'")
    p.add_argument("--steps", dest="num_steps", type=int, help="reverse steps of the full ladder (t0 = 1)")
    p.add_argument("--sampler", choices=SAMPLERS)
    p.add_argument("--samples", dest="num_samples", type=int, help="posterior samples (>1 writes an std map)")
    p.add_argument("--maps", choices=MAP_METHODS, help="coil-map estimation")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--formats", type=_formats, help="comma-separated subset of nifti,h5,dicom")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, help="slices per batch")
    p.add_argument("--target-key", help="dataset scored in metrics.csv (default: the file's reconstruction_rss/esc)")
    p.add_argument("--overwrite", action="store_true", help="redo volumes whose outputs exist")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary table")


def cmd_recon(args: argparse.Namespace) -> int:
    """Run the reconstruction; return the exit status."""
    from ccdf_mri.recon import Reconstructor

    bundle = bundle_dir(args.bundle)
    try:
        options = bundle_defaults(bundle)
        options.update({key: getattr(args, key) for key in RECON_KEYS if getattr(args, key, None) is not None})
        reconstructor = Reconstructor.from_models(
            Path(args.models) if args.models else bundle / "models",
            args.out,
            overwrite=args.overwrite,
            device=args.device,
            progress=not args.quiet,
            **options,
        )
        report = reconstructor.run(args.inputs)
    except (ValueError, OSError) as error:
        print(f"ccdf-mri recon: error: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report.table())
        if report.metrics_path is not None:
            print(f"metrics: {report.metrics_path}")
    for result in report.failed:
        print(f"ccdf-mri recon: failed: {result.error}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print (and optionally write) the fastMRI metrics of ``PRED_DIR`` against ``TARGET_DIR``."""
    from ccdf_mri.recon import evaluate_folders, write_metrics_csv

    report = evaluate_folders(args.pred_dir, args.target_dir)
    print(report.table())
    scored = [(r.name, r.metrics) for r in report.results if r.metrics]
    if args.csv and scored:
        write_metrics_csv(args.csv, scored)
    return 1 if report.failed or not report.results else 0


def describe_file(path: str) -> str:
    """Human-readable description of a fastMRI file: shapes, geometry, acquisition, mask, target."""
    from ccdf_mri.io import FastMRIVolume

    with FastMRIVolume(path) as volume:
        h = volume.header
        lines = [
            f"file:            {volume.path}",
            f"kspace:          {volume.kspace_shape} (slices, coils, rows, cols), "
            f"{'multi-coil' if volume.is_multicoil else 'single-coil'}",
            f"encoded matrix:  {h.encoded_matrix}  FOV {h.encoded_fov_mm} mm",
            f"recon matrix:    {h.recon_matrix}  FOV {h.recon_fov_mm} mm",
            f"pixel spacing:   {tuple(round(v, 4) for v in h.pixel_spacing_mm)} mm, slice {h.slice_thickness_mm:.3g} mm",
            f"phase encodes:   centre {h.kspace_center}, maximum {h.kspace_max}, "
            f"acquired columns {h.padding_columns(volume.kspace_shape[-1])}",
            f"acquisition:     {volume.attrs.get('acquisition')}",
            f"patient_id:      {volume.attrs.get('patient_id')}",
            f"max / norm:      {volume.attrs.get('max')} / {volume.attrs.get('norm')}",
        ]
        if volume.has_mask:
            lines.append(
                f"mask:            {int(volume.mask.sum())} of {volume.mask.size} columns "
                f"(acceleration {volume.acceleration}, low frequencies {volume.num_low_frequency})"
            )
        else:
            lines.append("mask:            none (fully sampled; undersampled retrospectively)")
        if volume.target_key is not None:
            target_shape = (volume.num_slices, *volume.target_slice(0).shape)
            lines.append(f"target:          {volume.target_key} {target_shape}")
        else:
            lines.append("target:          none")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    """Describe each file; status 1 when any cannot be read."""
    status = 0
    for index, path in enumerate(args.files):
        try:
            print(("\n" if index else "") + describe_file(path))
        except (ValueError, OSError) as error:
            print(f"ccdf-mri info: error: {error}", file=sys.stderr)
            status = 1
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``ccdf_mri.demo.main`` (imported only when asked for)."""
    demo = importlib.import_module("ccdf_mri.demo")
    return int(demo.main(args.demo_args) or 0)


def _literal(text: str) -> Any:
    """A command-line value as Python: numbers, booleans, lists ... where it parses, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _overrides(pairs: Sequence[str], command: str) -> Dict[str, Any]:
    """``["--key", "value", ...]`` -> ``{"key": value}`` (monai.bundle overrides, values parsed as literals)."""
    if len(pairs) % 2 or any(not key.startswith("--") for key in pairs[::2]):
        raise ValueError(f"ccdf-mri {command}: expected overrides as '--key value' pairs, found {list(pairs)}")
    return {key[2:]: _literal(value) for key, value in zip(pairs[::2], pairs[1::2])}


def cmd_train(args: argparse.Namespace) -> int:
    """Run a bundle training config through ``monai.bundle.run``."""
    from monai.bundle import run

    bundle = bundle_dir(args.bundle)
    configs = bundle / "configs"
    config = Path(args.config) if args.config.endswith((".json", ".yaml")) else configs / f"{args.config}.json"
    if not config.is_file():
        available = sorted(p.stem for p in configs.glob("train*.json"))
        print(f"ccdf-mri train: error: {config}: config not found; available: {available}", file=sys.stderr)
        return 2
    try:
        overrides = _overrides(args.overrides, "train")
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    overrides.setdefault("bundle_root", str(bundle))
    run(
        config_file=str(config),
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        **overrides,
    )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Run ``ccdf_mri.data_prep.<command>.main`` (the dataset commands) with the remaining arguments."""
    import pkgutil

    from ccdf_mri import data_prep

    available = sorted(m.name for m in pkgutil.iter_modules(data_prep.__path__) if not m.name.startswith("_"))
    if args.name not in available:
        print(f"ccdf-mri prepare: error: {args.name!r}: no such command; available: {available}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"ccdf_mri.data_prep.{args.name}")
    try:
        return int(module.main(args.command_args) or 0)
    except SystemExit as stop:  # argparse --help / usage errors inside the command
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)


def build_parser() -> argparse.ArgumentParser:
    """The ``ccdf-mri`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="ccdf-mri",
        description="Come-Closer-Diffuse-Faster MRI reconstruction: reconstruct, evaluate and inspect fastMRI data.",
    )
    sub = parser.add_subparsers(dest="subcommand", required=True)
    _add_recon(sub)
    p = sub.add_parser("evaluate", help="fastMRI metrics of predictions against targets")
    p.add_argument("pred_dir", help="folder of <name>.h5 submission files (dataset 'reconstruction')")
    p.add_argument("target_dir", help="folder of fastMRI files with targets")
    p.add_argument("--csv", help="also write the metrics to this CSV file")
    p = sub.add_parser("info", help="describe fastMRI files")
    p.add_argument("files", nargs="+", metavar="FILE")
    sub.add_parser("demo", help="the end-to-end demo (further arguments go to ccdf_mri.demo)")
    p = sub.add_parser("train", help="run a bundle training config (monai.bundle run)")
    p.add_argument("config", help="config name in <bundle>/configs (e.g. train_score) or a path")
    p.add_argument("--bundle", help="bundle folder")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="'--key value' overrides")
    p = sub.add_parser("prepare", help="run a data_prep command")
    p.add_argument("name", help="a module of ccdf_mri.data_prep, e.g. make_demo_corpus")
    p.add_argument("command_args", nargs=argparse.REMAINDER)
    return parser


COMMANDS = {
    "recon": cmd_recon,
    "evaluate": cmd_evaluate,
    "info": cmd_info,
    "demo": cmd_demo,
    "train": cmd_train,
    "prepare": cmd_prepare,
}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``ccdf-mri``; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.subcommand == "demo":
        args.demo_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return COMMANDS[args.subcommand](args)


if __name__ == "__main__":
    sys.exit(main())
