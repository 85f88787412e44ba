"""``ccdf-mri``: the command line, a thin front over :mod:`ccdf_mri.app` and the bundle.

Sub-commands::

    ccdf-mri recon INPUT... --out DIR [options]   reconstruct fastMRI .h5 files / folders
    ccdf-mri evaluate PRED_DIR TARGET_DIR          fastMRI metrics of submission files
    ccdf-mri info FILE...                          what is in a fastMRI file
    ccdf-mri bundle path | export DIR              where the shipped MONAI bundle is / copy it out
    ccdf-mri demo [...]                            the end-to-end demo (ccdf_mri.demo)
    ccdf-mri train CONFIG [--key value ...]        run a bundle training config
    ccdf-mri prepare NAME [args ...]               run a ccdf_mri.data_prep command

``recon`` builds its parts from the bundle's ``configs/inference.json`` (options override the
config's ids), so the CLI and ``python -m monai.bundle run`` reconstruct the same way. Exit
status: 0 when every input succeeded, 1 when any failed (after processing the others), 2 for
bad usage or setup (no inputs found, colliding output names, unwritable output folder, bad
option), 130 when interrupted (Ctrl-C). Heavy libraries are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ccdf_mri.choices import FORMATS, INITIALIZERS, MAP_METHODS, MASK_KINDS, SAMPLERS

# recon flags that set config ids other than their own name
FLAG_IDS = {"out": "output_dir", "models": "models_dir", "quiet": "progress"}


def _t0(text: str):
    from ccdf_mri.inferers.ccdf import check_t0

    try:
        return check_t0(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _formats(text: str):
    from ccdf_mri.app.options import parse_formats

    try:
        return ",".join(parse_formats(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_recon(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recon", help="reconstruct fastMRI .h5 files or folders of them")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="fastMRI .h5 files or folders of them (searched recursively; .h5 in any letter case)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--bundle", help="bundle folder (default: the one shipped with ccdf-mri, or $CCDF_MRI_BUNDLE)")
    p.add_argument("--models", help="models folder (default: <bundle>/models)")
    p.add_argument("--mask", choices=MASK_KINDS, help="retrospective mask for fully sampled files")
    p.add_argument("--acceleration", type=float, help="retrospective acceleration")
    p.add_argument("--center-fraction", type=float, help="fully sampled centre fraction")
    p.add_argument("--mask-file", help="a sampling mask (.npy, or .h5 with dataset 'mask') for files without their own")
    p.add_argument("--retrospective", action="store_true", default=None,
                   help="undersample retrospectively even k-space that is already undersampled "
                        "(default: its zero columns are detected and used as the mask)")
    p.add_argument("--initializer", choices=INITIALIZERS, help="how x0 is made")
    p.add_argument("--t0", type=_t0, help="start of the reverse diffusion in [0, 1], or 'auto'")
    p.add_argument("--steps", dest="num_steps", type=int,
                   help="N, levels of the full ladder (t0 = 1); t0 auto is calibrated for the bundle's N")
    p.add_argument("--sampler", choices=SAMPLERS)
    p.add_argument("--samples", dest="num_samples", type=int,
                   help="posterior samples averaged, >1 also writes an std map (default: the K models/calibration.json was fitted with)")
    p.add_argument("--maps", choices=MAP_METHODS, help="coil-map estimation")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--formats", type=_formats, help=f"comma-separated subset of {','.join(FORMATS)}")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, help="slices per batch")
    p.add_argument("--target-key", help="dataset scored in metrics.csv (default: the file's reconstruction_rss/esc)")
    p.add_argument("--patient-id", help="patient ID (and name) written into DICOM (default: the file's patient_id)")
    p.add_argument("--no-recursive", dest="recursive", action="store_false", default=None,
                   help="do not search input folders' subfolders")
    p.add_argument("--name-by-path", action="store_true", default=None,
                   help="name outputs by their path below the input folder (a__b__x; with several folders, below their common folder: dirA__x) when file names repeat")
    p.add_argument("--overwrite", action="store_true", default=None, help="redo every volume, even finished ones")
    p.add_argument("--no-overwrite-changed", dest="overwrite_changed", action="store_false", default=None,
                   help="refuse (instead of redo) volumes whose outputs were made with other settings or input")
    p.add_argument("--set", dest="config_overrides", action="append", default=[], metavar="ID=VALUE",
                   help="any other bundle config id, e.g. --set inferer#dc#lam=0.5 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary table")


def recon_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The bundle config overrides of a ``recon`` command line."""
    from ccdf_mri.app.build import RECON_KEYS

    keys = RECON_KEYS + ("mask_file", "retrospective", "patient_id", "recursive", "name_by_path",
                         "overwrite", "overwrite_changed", "device")
    overrides = {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}
    overrides["output_dir"] = args.out
    if args.models:
        overrides["models_dir"] = args.models
    if args.quiet:
        overrides["progress"] = False
    for item in args.config_overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set: expected ID=VALUE, found {item!r}")
        overrides[key] = _literal(value)
    return overrides


def cmd_recon(args: argparse.Namespace) -> int:
    """Run the reconstruction; return the exit status."""
    from ccdf_mri.app.build import from_bundle
    from ccdf_mri.app.options import default_device

    try:
        overrides = recon_overrides(args)
        if "device" in overrides:
            overrides["device"] = default_device(overrides["device"])
        reconstructor = from_bundle(args.bundle, overrides)
        report = reconstructor.run(args.inputs)
    except (ValueError, OSError) as error:
        from ccdf_mri.io import NameCollisionError

        hint = " (--name-by-path)" if isinstance(error, NameCollisionError) and not args.name_by_path else ""
        print(f"ccdf-mri recon: error: {error}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ccdf-mri recon: interrupted before any volume was started; nothing written", file=sys.stderr)
        return 130
    from ccdf_mri.app.reconstructor import RETROSPECTIVE_NOTE

    for result in report.results:  # decisions a user must know of: a detected mask, a redo
        for note in result.notes:
            if note != RETROSPECTIVE_NOTE:
                print(f"ccdf-mri recon: {result.name}: {note}", file=sys.stderr)
    if not args.quiet:
        print(report.table())
        if report.metrics_path is not None:
            print(f"metrics: {report.metrics_path}")
    for result in report.failed:
        print(f"ccdf-mri recon: failed: {result.error}", file=sys.stderr)
    if report.interrupted:
        print(f"ccdf-mri recon: {report.interruption_line()}", file=sys.stderr)
        return 130
    return 1 if report.failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print (and optionally write) the fastMRI metrics of ``PRED_DIR`` against ``TARGET_DIR``."""
    from ccdf_mri.app.evaluate import evaluate_folders
    from ccdf_mri.io import merge_metrics_csv

    try:
        report = evaluate_folders(args.pred_dir, args.target_dir)
    except (ValueError, OSError) as error:
        print(f"ccdf-mri evaluate: error: {error}", file=sys.stderr)
        return 2
    print(report.table())
    scored = {r.name: r.metrics for r in report.results if r.metrics}
    if args.csv and scored:
        merge_metrics_csv(args.csv, scored)
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

    from ccdf_mri.app.bundle import bundle_dir

    try:
        bundle = bundle_dir(args.bundle)
    except FileNotFoundError as error:
        print(f"ccdf-mri train: error: {error}", file=sys.stderr)
        return 2
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


def cmd_bundle(args: argparse.Namespace) -> int:
    """``bundle path``: print the bundle folder; ``bundle export DIR``: copy it to DIR."""
    from ccdf_mri.app.bundle import bundle_dir, export_bundle

    try:
        if args.action == "path":
            print(bundle_dir(args.bundle))
        else:
            print(export_bundle(args.destination, args.bundle))
    except (OSError, ValueError) as error:
        print(f"ccdf-mri bundle: error: {error}", file=sys.stderr)
        return 2
    return 0


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
    p = sub.add_parser("bundle", help="where the shipped MONAI bundle is, or copy it out for `python -m monai.bundle run`")
    p.add_argument("action", choices=("path", "export"))
    p.add_argument("destination", nargs="?", help="export: a new folder")
    p.add_argument("--bundle", help="another bundle folder than the shipped one")
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
    "bundle": cmd_bundle,
}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``ccdf-mri``; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.subcommand == "demo":
        args.demo_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.subcommand == "bundle" and args.action == "export" and not args.destination:
        parser.error("bundle export: expected a destination folder")
    return COMMANDS[args.subcommand](args)


if __name__ == "__main__":
    sys.exit(main())
