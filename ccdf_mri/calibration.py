"""Calibrate how ``t0 = "auto"`` picks the start of CCDF, on validation slices; store it in the bundle.

``t0 = "auto"`` reads ``<models>/calibration.json``:

- ``"factor"`` (per initializer): :class:`ccdf_mri.diffusion.t0.EstimatedT0` starts each slice
  at ``factor`` times the noise level the score network assigns to its ``x0``
  (:func:`ccdf_mri.diffusion.t0.noise_level`). The factor is the one whose per-slice start
  maximises the mean PSNR over the validation slices, each slice's PSNR(t0) curve measured on a
  grid and interpolated in log t0 (:func:`ccdf_mri.calibration_fit.fit_factor`): prior knowledge, the slice decides.
- ``"t0"`` (per acceleration, the bundle's initializer): the best fixed ``t0`` of the grid
  (lowest mean NMSE, the cheapest within ``tolerance``), for :class:`ccdf_mri.diffusion.t0.CalibratedT0`.
- ``"num_samples"``: with ``--samples 1 2 4``, the number ``K`` of posterior samples averaged,
  fitted with ``"t0"`` as a pair under the budget ``--max-nfe`` (``K t0 N`` network evaluations
  per slice): for each ``K`` the best ``t0`` per acceleration as above, then the ``K`` whose
  errors are lowest (mean over accelerations of the mean NMSE in dB; the smallest ``K``
  within ``tolerance``). The bundle's ``num_samples`` reads it (:func:`ccdf_mri.diffusion.t0.calibrated_samples`).

Every slice runs the bundle's own parts (:func:`ccdf_mri.app.build.from_bundle`). Run::

    python -m ccdf_mri.calibration --data VALIDATION_FOLDER --models bundles/ccdf_mri_recon/models

or one run per acceleration (each with its own grid, e.g. in parallel) and a fit of their
per-slice curves together::

    python -m ccdf_mri.calibration --data V --models M --accelerations 4 --grid ... --records r4.json
    python -m ccdf_mri.calibration --data V --models M --accelerations 8 --grid ... --records r8.json
    python -m ccdf_mri.calibration --from-records r4.json r8.json --models M --samples 1 2 4 --max-nfe 50
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ccdf_mri.calibration_fit import fit_records, load_records, records_fitted_with, within_budget
from ccdf_mri.io import FastMRIVolume, atomic_path, find_inputs

CALIBRATION = "calibration.json"
CENTER_FRACTIONS = {4.0: 0.08, 8.0: 0.04}
T0_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
INITIALIZERS = ("zero_filled", "cg_sense", "l1_wavelet", "unet")


@dataclasses.dataclass
class Case:
    """One validation slice through the bundle's preprocessing (a batch of one) and its target."""

    name: str
    kind: str
    data: dict
    header: Any
    target: np.ndarray


def center_fraction(acceleration: float) -> float:
    """fastMRI's centre fraction of an acceleration (8 % at 4x, 4 % at 8x, else 0.32 / acceleration)."""
    return CENTER_FRACTIONS.get(float(acceleration), 0.32 / float(acceleration))


def prepare_cases(recon: Any, pairs: Sequence[tuple], target_key: Optional[str] = None) -> List[Case]:
    """``(file, slice)`` pairs through ``recon.preprocessing`` (each with its file-seeded mask)."""
    from ccdf_mri.preprocessing import volume_batch

    cases = []
    for path, index in pairs:
        with FastMRIVolume(path) as volume:
            data = recon.preprocessing(volume_batch(volume, [index], None, recon.device))
            target = volume.target_slice(index, target_key)
            cases.append(Case(f"{Path(path).stem}[{index}]", str(volume.attrs.get("kind", Path(path).parent.name)),
                              data, volume.header, target))
    return cases


def batched(cases: Sequence[Case]):
    """One batch from single-slice cases: ``(op, kspace, scale)``."""
    from ccdf_mri.physics import SenseOp

    maps = torch.cat([c.data["maps"] for c in cases])
    masks = torch.cat([c.data["mask"].reshape(1, 1, *c.data["mask"].shape[-2:]) for c in cases])
    return SenseOp(maps, masks), torch.cat([c.data["kspace"] for c in cases]), torch.cat([c.data["scale"].reshape(-1) for c in cases])


def magnitudes(cases: Sequence[Case], images: torch.Tensor, scale: torch.Tensor) -> List[np.ndarray]:
    """Scaled complex images -> magnitudes in the files' units, cropped to the recon matrix."""
    from ccdf_mri.app.postprocessing import make_postprocessing

    post = make_postprocessing()
    return [post({"pred": im[None], "std": None, "scale": s.reshape(1), "meta": {"header": c.header}})["pred"][0]
            for c, im, s in zip(cases, images, scale)]


def slice_scores(target: np.ndarray, image: np.ndarray) -> Dict[str, float]:
    """fastMRI NMSE / PSNR / SSIM of one slice (``data_range`` = the target's maximum)."""
    from ccdf_mri.metrics import volume_metrics

    return volume_metrics(target[None].astype(np.float32), image[None].astype(np.float32))


def ccdf_images(recon: Any, cases: Sequence[Case], x0: torch.Tensor, t0: Any, inferer: Any = None, batch: int = 4, seed: int = 0):
    """CCDF from ``x0`` (``batch`` slices at a time, per-slice seeds as the reconstructor's):
    ``(magnitudes, t0 per slice, NFE per slice)``."""
    from ccdf_mri.app.reconstructor import slice_seed

    inferer = inferer or recon.inferer
    images, t0s, nfes = [], [], []
    for start in range(0, len(cases), batch):
        part = cases[start : start + batch]
        op, kspace, scale = batched(part)
        gens = [torch.Generator(device=recon.device).manual_seed(slice_seed(seed, c.name, 0)) for c in part]
        result = inferer(x0[start : start + len(part)], recon.network, op, kspace, generator=gens, t0=t0)
        images += magnitudes(part, result.mean, scale)
        t0s += result.t0.tolist()
        nfes += result.nfe.double().tolist()
    return images, t0s, nfes


def named_initializers(names: Sequence[str], bundle: Optional[Path] = None, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Each named initializer as a run with ``--initializer NAME`` builds it: the bundle's
    ``initializer_fn`` with the bundle's options (``cg_lam``, ``l1_lam``, ...; the U-Net with its
    shipped weights), not the library defaults."""
    from ccdf_mri.app.build import build_part

    return {name: build_part("initializer_fn", bundle, {**(overrides or {}), "initializer": name}) for name in names}


@torch.no_grad()
def initial_estimates(recon: Any, cases: Sequence[Case], initializer: Any = None, batch: int = 4) -> torch.Tensor:
    """``x0`` of ``initializer`` (an ``(op, kspace) -> x0`` callable, :func:`named_initializers`;
    None: the bundle's configured one, ``recon.initializer``) for all cases, scaled."""
    init = recon.initializer if initializer is None else initializer
    if isinstance(init, str):
        raise TypeError(f"initial_estimates: expected an initializer object (named_initializers), found the name {init!r}")
    return torch.cat([init(*batched(cases[i : i + batch])[:2]) for i in range(0, len(cases), batch)])


def curves(recon: Any, cases: Sequence[Case], initializer: str, grid: Sequence[float], log=print,
           samples: Sequence[int] = (), max_nfe: Optional[int] = None, start: Any = None) -> List[dict]:
    """Per slice: scores of ``x0`` (from ``start``, the initializer object named ``initializer``;
    None: ``recon.initializer``), the network's noise level of ``x0``, scores of CCDF at each grid
    ``t0`` (``"grid"``, one sample) and, for each ``K > 1`` of ``samples``, of the mean of ``K``
    samples at each grid ``t0`` within ``max_nfe`` (``"samples": {K: {t0: scores}}``)."""
    from ccdf_mri.diffusion.samplers import make_epsilon_fn
    from ccdf_mri.diffusion.t0 import noise_level

    x0 = initial_estimates(recon, cases, start)
    _, _, scale = batched(cases)
    eps_fn = make_epsilon_fn(recon.network, recon.inferer.sub)
    sigma = torch.cat([noise_level(x0[i : i + 4], eps_fn, recon.inferer.sub) for i in range(0, len(cases), 4)])
    rows = [{"initializer": initializer, "slice": c.name, "kind": c.kind, "x0": slice_scores(c.target, im),
             "sigma_hat": float(s), "grid": {}} for c, im, s in zip(cases, magnitudes(cases, x0, scale), sigma)]
    for t0 in grid:
        images, _, _ = ccdf_images(recon, cases, x0, float(t0))
        for row, case, image in zip(rows, cases, images):
            row["grid"][f"{t0:g}"] = slice_scores(case.target, image)
        log(f"  {initializer} t0 {t0:g}: mean PSNR {np.mean([r['grid'][f'{t0:g}']['psnr'] for r in rows]):.2f} dB")
    for k in sorted({int(k) for k in samples if int(k) > 1}):
        inferer = copy.copy(recon.inferer)
        inferer.num_samples = k
        for t0 in within_budget(grid, k, recon.inferer.sub.num_steps, max_nfe):
            images, _, _ = ccdf_images(recon, cases, x0, float(t0), inferer=inferer)
            for row, case, image in zip(rows, cases, images):
                row.setdefault("samples", {}).setdefault(str(k), {})[f"{t0:g}"] = slice_scores(case.target, image)
            log(f"  {initializer} K={k} t0 {t0:g}: mean PSNR {np.mean([r['samples'][str(k)][f'{t0:g}']['psnr'] for r in rows]):.2f} dB")
    return rows


def pick_slices(files: Sequence[Path], slices_per_file: int, max_files: int) -> List[tuple]:
    """The central ``slices_per_file`` slices of the first ``max_files`` files."""
    pairs = []
    for path in list(files)[:max_files]:
        with FastMRIVolume(path) as volume:
            middle = volume.num_slices // 2
            start = max(0, middle - slices_per_file // 2)
            pairs += [(path, i) for i in range(start, min(volume.num_slices, start + slices_per_file))]
    return pairs


def calibrate(
    data: Sequence[Path],
    models_dir: Path,
    accelerations: Sequence[float] = (4.0, 8.0),
    grid: Sequence[float] = T0_GRID,
    initializers: Sequence[str] = INITIALIZERS,
    num_steps: int = 1000,
    slices_per_file: int = 1,
    max_files: int = 8,
    tolerance: float = 0.01,
    device: Optional[str] = None,
    target_key: Optional[str] = None,
    bundle: Optional[Path] = None,
    overrides: Optional[Dict[str, Any]] = None,
    max_nfe: Optional[int] = None,
    samples: Sequence[int] = (1,),
    log=print,
) -> Dict[str, Any]:
    """Fit ``factor`` per initializer, and the pair (``num_samples``, fixed ``t0`` per
    acceleration) for the bundle's initializer (see the module docstring).

    Returns:
        ``{"factor": {init: f}, "t0": {"4": t0, ...}, "num_samples": K, "nmse": {K: {"4": {t0: err}}},
        "fit": {...}, "records": [...], "fitted_with": {...}}`` (``fitted_with``: the settings measured
        with, :func:`ccdf_mri.app.calibration_check.fitted_with`; a run compares its own with them).
    """
    from ccdf_mri.app.build import from_bundle
    from ccdf_mri.app.options import default_device

    from ccdf_mri.app.build import from_bundle, read_config
    from ccdf_mri.app.calibration_check import fitted_with
    from ccdf_mri.app.describe import describe, flatten
    from ccdf_mri.app.options import default_device

    pairs = pick_slices(data, slices_per_file, max_files)
    if not pairs:
        raise ValueError(f"calibration: expected validation .h5 files with slices, found none in {list(data)}")
    device = default_device(device)
    default_init = read_config(bundle, overrides).get("initializer")
    records: List[dict] = []
    stamp: Dict[str, Any] = {}
    for acceleration in accelerations:
        config = {"models_dir": str(models_dir), "acceleration": float(acceleration),
                  "center_fraction": center_fraction(acceleration),
                  "t0": max(grid), "num_steps": num_steps, "num_samples": 1,  # the "grid" curves are one sample each
                  "device": device, "progress": False,
                  "output_dir": str(Path(models_dir) / ".calibration-unused"), **(overrides or {})}
        recon = from_bundle(bundle, config)
        starts = named_initializers(initializers, bundle, config)
        stamp = fitted_with(default_init, recon.settings(),
                            {name: flatten({"initializer": describe(init)}) for name, init in starts.items()})
        cases = prepare_cases(recon, pairs, target_key)
        log(f"{acceleration:g}x: {len(cases)} slices")
        for init in initializers:
            rows = curves(recon, cases, init, grid, log, samples if init == default_init else (), max_nfe, starts[init])
            for row in rows:
                row["acceleration"] = float(acceleration)
            records += rows
    result = fit_records(records, default_init, recon.inferer.sub, samples, max_nfe, tolerance, log)
    result["records"] = records
    result["fitted_with"] = stamp
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccdf_mri.calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="validation fastMRI folder or files (with targets)")
    parser.add_argument("--from-records", type=Path, nargs="+", default=None, metavar="RECORDS",
                        help="fit from the per-slice curves of earlier runs (their --records files, e.g. one per "
                             "acceleration) instead of running the network")
    parser.add_argument("--models", type=Path, required=True, help="models folder; calibration.json is written there")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder whose config builds the parts (default: the shipped one)")
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--grid", "--candidates", dest="grid", type=float, nargs="+", default=list(T0_GRID))
    parser.add_argument("--initializers", nargs="+", default=list(INITIALIZERS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--max-nfe", type=int, default=None,
                        help="network evaluations per slice (K samples x t0 N); the (K, t0) fit and EstimatedT0's factor fit respect it")
    parser.add_argument("--samples", type=int, nargs="+", default=[1],
                        help="numbers K of posterior samples to fit with t0 (the bundle's num_samples reads the choice)")
    parser.add_argument("--slices-per-file", type=int, default=1)
    parser.add_argument("--max-files", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--target-key", default=None, help="dataset scored against (default: reconstruction_rss/esc)")
    parser.add_argument("--records", type=Path, default=None, help="also write the per-slice curves (JSON) here")
    parser.add_argument("--set", dest="config_overrides", action="append", default=[], metavar="ID=VALUE",
                        help="bundle config overrides (e.g. network_def#channels=[...] for other weights)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        import ast

        overrides = {}
        for item in args.config_overrides:
            key, _, value = item.partition("=")
            try:
                overrides[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                overrides[key] = value
        if args.from_records:
            from ccdf_mri.app.build import read_config

            records = load_records(args.from_records)
            stamp = records_fitted_with(args.from_records)
            config = read_config(args.bundle, overrides)
            sub = config.get_parsed_content("schedule").sub_schedule(args.steps)
            result = fit_records(records, config.get("initializer"), sub, args.samples, args.max_nfe)
            if stamp is None:
                print("note: the records do not say which settings made them; calibration.json will not either, "
                      "so runs cannot check it against theirs", file=sys.stderr)
            else:
                result["fitted_with"] = stamp
            grid = sorted({float(t0) for r in records for t0 in r["grid"]})
            data = "records " + " ".join(str(p) for p in args.from_records)
        elif args.data is None:
            raise ValueError("expected --data (a validation folder) or --from-records, found neither")
        else:
            files = find_inputs(args.data)
            result = calibrate(files, args.models, args.accelerations, args.grid, args.initializers, args.steps,
                               args.slices_per_file, args.max_files, device=args.device, target_key=args.target_key,
                               bundle=args.bundle, overrides=overrides, max_nfe=args.max_nfe,
                               samples=args.samples)
            records, grid, data = result.pop("records"), args.grid, str(args.data)
            stamp = result.get("fitted_with")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result.update(num_steps=args.steps, max_nfe=args.max_nfe, grid=grid, data=data, slices=len({r["slice"] for r in records}),
                  target_key=args.target_key or "the file's fastMRI target", seconds=round(time.perf_counter() - start, 1),
                  command=" ".join(["python -m ccdf_mri.calibration", *(argv if argv is not None else sys.argv[1:])]))
    with atomic_path(args.models / CALIBRATION) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    if args.records is not None:
        with atomic_path(args.records) as tmp:
            tmp.write_text(json.dumps({"fitted_with": stamp, "records": records} if stamp else records) + "\n")
    print(json.dumps({k: result[k] for k in ("factor", "t0", "num_samples") if k in result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
