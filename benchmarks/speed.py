"""Speed of ``ccdf-mri recon``: the stages of the overlapped pipeline, whole runs, the roofline.

Everything is built from the bundle config (``configs/inference.json`` with ``--set``
overrides, e.g. ``--set inferer#channels_last=true inferer#amp_dtype=bfloat16``), as
``ccdf-mri recon`` builds it (:func:`ccdf_mri.app.build.read_config`), on a synthetic
fastMRI-format volume (``--geometry demo``: 256x256, 8 coils; ``fastmri``: 640x368 k-space with
2x readout oversampling, 15 coils, 320x320 images) or the file ``--data``. Measured, per slice,
on batches of ``--batch`` slices:

- the stages of :meth:`ccdf_mri.app.reconstructor.Reconstructor.batches` (what the prefetch
  thread overlaps with the computation): reading the slices (HDF5), readout crop + mask, coil
  maps (ACS and ESPIRiT in torch), SENSE + intensity scale;
- the initializer and the t0 selector of the config;
- the CCDF reverse steps: per step the score network, the data consistency (DC) and the rest
  (sampler arithmetic, noise, complex <-> channels), and the seconds per slice of all steps;
- writing the outputs (postprocessing: unscale, magnitude, crop, NIfTI + h5 + provenance);
- whole runs (``Reconstructor.run``, what ``ccdf-mri recon`` calls) with ``prefetch`` on and
  off, interleaved, and their peak memory;
- a roofline line for the network step: FLOPs (``FlopCounterMode``) over its time against
  the CPU's peak and the measured copy bandwidth (:mod:`benchmarks.roofline`).

Outputs: ``<name>.json`` and ``<name>.md`` in ``--out`` (default name ``speed_<device>``).

Example::

    OMP_NUM_THREADS=1 python -m benchmarks.speed --threads 1 --quick
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common, roofline
from benchmarks.step_cost import load_load, parse_sets

#: geometry name -> (k-space rows, columns, coils, recon rows, recon columns)
GEOMETRIES = {"demo": (256, 256, 8, 256, 256), "fastmri": (640, 368, 15, 320, 320), "tiny": (64, 72, 4, 32, 64)}


def write_volume(path: Path, geometry: str, slices: int, seed: int = 0) -> Path:
    """A synthetic fastMRI-format volume: an ellipse with texture and smooth phase, Gaussian-bump
    coil maps, 1e-3 complex noise; header with the geometry's readout oversampling; RSS target."""
    from ccdf_mri.io import make_ismrmrd_header, write_fastmri_h5
    from ccdf_mri.physics.fft import fft2c, ifft2c

    rows, cols, coils, recon_rows, recon_cols = GEOMETRIES[geometry]
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, rows), torch.linspace(-1, 1, cols), indexing="ij")
    oversampling = rows // recon_rows
    angles = torch.linspace(0, 2 * math.pi, coils + 1)[:-1]
    maps = torch.stack([torch.exp(-((x - torch.cos(a)) ** 2 + (oversampling * y - torch.sin(a)) ** 2)) * torch.exp(1j * a)
                        for a in angles]).to(torch.complex64)
    images = []
    for s in range(slices):
        inside = ((x / 0.8) ** 2 + (oversampling * y / 0.8) ** 2) < 1
        texture = 1 + 0.3 * torch.cos(9 * x + s) * torch.sin(13 * oversampling * y)
        images.append(inside * texture * torch.exp(1j * 0.3 * x))
    coil_images = torch.stack(images).to(torch.complex64)[:, None] * maps
    kspace = fft2c(coil_images)
    kspace = kspace + 1e-3 * torch.randn(kspace.shape, generator=gen, dtype=torch.complex64)
    rss = ifft2c(kspace).abs().pow(2).sum(1).sqrt()
    top, left = (rows - recon_rows) // 2, (cols - recon_cols) // 2
    rss = rss[:, top : top + recon_rows, left : left + recon_cols].numpy().astype(np.float32)
    header = make_ismrmrd_header((rows, cols, 1), (recon_rows, recon_cols, 1), (2.0 * rows / oversampling, float(cols), 4.5),
                                 (float(recon_rows), float(recon_cols), 4.5), kspace_center=cols // 2, kspace_max=cols - 1)
    write_fastmri_h5(path, kspace.numpy(), header, {"max": float(rss.max()), "acquisition": "CORPD_FBK"},
                     {"reconstruction_rss": rss})
    return path


def build_reconstructor(overrides: dict[str, Any], output_dir: Path, device: str, batch: int) -> tuple[Any, dict[str, Any]]:
    """The bundle's ``reconstructor`` writing to ``output_dir`` (always overwriting: timings redo
    the work), and the config's ``maps`` / ``initializer`` / ``t0`` / ``num_steps`` values."""
    from ccdf_mri.app.build import read_config

    settings = {"output_dir": str(output_dir), "overwrite": True, "progress": False, "device": device,
                "batch_size": batch, **overrides}
    parser = read_config(None, settings)
    values = {key: parser.get_parsed_content(key) for key in ("maps", "initializer", "t0", "num_steps", "acceleration")}
    return parser.get_parsed_content("reconstructor", lazy=False), values


def time_stages(recon: Any, path: Path, repeats: int, device: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Seconds per batch of each stage (medians over ``repeats`` after a warm-up) and the batch size."""
    from ccdf_mri.app.reconstructor import RETROSPECTIVE_NOTE
    from ccdf_mri.io import FastMRIVolume
    from ccdf_mri.physics import SenseOp
    from ccdf_mri.preprocessing import volume_batch
    from ccdf_mri.transforms import EstimateCoilMapsd

    stages: dict[str, Any] = {}
    timed = lambda fn: common.time_repeats(fn, repeats, device)  # noqa: E731
    with FastMRIVolume(path) as volume:
        indices = list(range(min(recon.batch_size, volume.num_slices)))
        stages["read"] = timed(lambda: volume_batch(volume, indices, None, recon.device))
        sample = volume_batch(volume, indices, None, recon.device)
        crop, mask, maps, sense, scale = recon.preprocessing.transforms[-5:]
        stages["crop_mask"] = timed(lambda: mask(crop(sample)))
        masked = mask(crop(sample))
        calib = maps.estimate.calib_width
        for method in ("acs", "espirit"):
            log(f"  coil maps {method}")
            estimator = EstimateCoilMapsd("kspace", method=method, calib_width=calib)
            stages[f"maps_{method}"] = timed(lambda estimator=estimator: estimator(masked))
        with_maps = maps(masked)
        stages["sense_scale"] = timed(lambda: scale(sense(with_maps)))
        data = scale(sense(with_maps))
        stages["preprocessing_total"] = timed(lambda: recon.preprocessing(volume_batch(volume, indices, None, recon.device)))
        op = SenseOp(data["maps"], data["mask"])
        with torch.no_grad():
            stages["initializer"] = timed(lambda: recon.initializer(op, data["kspace"]))
            x0 = recon.initializer(op, data["kspace"])
            stages["image_shape"] = list(x0.shape[-2:])
            stages["t0"] = timed(lambda: recon.inferer.resolve_t0(x0, recon.network, op, data["kspace"]))
        log("  CCDF steps")
        stages["ccdf"] = time_ccdf(recon, x0, op, data["kspace"], repeats, device)
        out = recon.reconstruct(volume)
        meta = {"name": "speed_write", "header": volume.header, "info": volume.scan_info(),
                "record": recon.record(path, None, RETROSPECTIVE_NOTE)}
        stages["write_volume"] = timed(lambda: recon.postprocessing({**out, "meta": dict(meta)}))
        stages["write_volume"]["slices"] = volume.num_slices
    stages["batch"] = len(indices)
    return stages


def time_ccdf(recon: Any, x0: torch.Tensor, op: Any, kspace: torch.Tensor, repeats: int, device: str) -> dict[str, Any]:
    """The inferer on one batch: seconds per call and per step of the network, DC and the rest."""
    inferer, batch = recon.inferer, x0.shape[0]
    timed_net = common.TimedNetwork(recon.network, device)
    timed_dc, plain_dc = common.TimedDC(inferer.dc, device), inferer.dc
    generators = lambda: [torch.Generator(device=x0.device).manual_seed(b) for b in range(batch)]  # noqa: E731
    totals, nets, dcs, steps = [], [], [], 0
    inferer.dc = timed_dc
    try:
        with torch.no_grad(), common.PeakMemory(device) as memory:
            for repeat in range(repeats + 1):  # the first call is the warm-up
                timed_net.seconds = timed_dc.seconds = 0.0
                timed_net.calls = timed_dc.calls = 0
                common.synchronize(device)
                start = time.perf_counter()
                result = inferer(x0, timed_net, op, kspace, generator=generators())
                common.synchronize(device)
                if repeat:
                    totals.append(time.perf_counter() - start)
                    nets.append(timed_net.seconds)
                    dcs.append(timed_dc.seconds)
                    steps = timed_net.calls
    finally:
        inferer.dc = plain_dc
    total, net, dc = (float(np.median(v)) for v in (totals, nets, dcs))
    per = max(steps, 1)
    return {"seconds": common.spread(totals), "per_slice": total / batch, "steps": steps, "nfe": result.nfe.tolist(),
            "t0": result.t0.tolist(), "network_per_step": net / per, "dc_per_step": dc / per,
            "rest_per_step": (total - net - dc) / per, "dc_fraction": dc / total if total else float("nan"),
            "peak_mib": memory.peak_mib}


def time_runs(recon: Any, path: Path, repeats: int, device: str) -> dict[str, Any]:
    """Whole ``Reconstructor.run`` with prefetch on and off, interleaved; seconds per slice."""
    times: dict[str, list[float]] = {"prefetch_on": [], "prefetch_off": []}
    peaks: dict[str, float] = {}
    recon.run(path)  # warm-up
    slices = None
    for _ in range(repeats):
        for name, flag in (("prefetch_on", True), ("prefetch_off", False)):
            recon.prefetch = flag
            with common.PeakMemory(device) as memory:
                common.synchronize(device)
                start = time.perf_counter()
                report = recon.run(path)
                common.synchronize(device)
                times[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks.get(name, 0.0), memory.peak_mib)
            result = report.results[0]
            if result.status != "done":
                raise RuntimeError(f"{path}: run {name} {result.status}: {result.error}")
            slices = result.slices
    recon.prefetch = True
    return {name: {**common.spread([t / slices for t in values]), "peak_mib": peaks[name], "slices": slices}
            for name, values in times.items()}


def network_roofline(recon: Any, shape: tuple[int, int, int], seconds_per_call: float) -> dict[str, Any]:
    """Roofline of one network call on a ``(B, H, W)`` batch taking ``seconds_per_call``."""
    sub, network = recon.inferer.sub, recon.network
    level = max(1, sub.num_steps // 50)
    x = torch.randn(shape, dtype=torch.complex64, device=recon.device)
    inputs = torch.view_as_real(x).permute(0, 3, 1, 2).contiguous()
    t = torch.full((shape[0],), int(sub.timesteps[level]), dtype=torch.long, device=recon.device)
    cost = roofline.network_cost(lambda: network(inputs, t), network)
    dtype = "bfloat16" if getattr(recon.inferer, "amp_dtype", None) is not None else "float32"
    peak = roofline.cpu_peak(torch.get_num_threads(), dtype)
    return roofline.roofline(cost, seconds_per_call, peak, roofline.stream_bandwidth())


def markdown(payload: dict[str, Any]) -> str:
    """The report: stages (ms per slice), CCDF split, whole runs, roofline."""
    machine, stages, runs = payload["machine"], payload["stages"], payload["runs"]
    batch, ms = stages["batch"], 1000.0
    ccdf = stages["ccdf"]
    names = [("read", "read slices (HDF5)"), ("crop_mask", "readout crop + mask"), ("maps_acs", "coil maps: ACS"),
             ("maps_espirit", "coil maps: ESPIRiT (torch)"), ("sense_scale", "SENSE + intensity scale"),
             ("preprocessing_total", f"preprocessing as configured (maps: {payload['config']['maps']})"),
             ("initializer", f"initializer ({payload['config']['initializer']})"), ("t0", "t0 selector")]
    rows = [{"stage": label, "ms": ms * stages[key]["median"] / batch, "q25": ms * stages[key]["q25"] / batch,
             "q75": ms * stages[key]["q75"] / batch} for key, label in names]
    rows.append({"stage": f"CCDF, {ccdf['steps']} steps", "ms": ms * ccdf["per_slice"],
                 "q25": ms * ccdf["seconds"]["q25"] / batch, "q75": ms * ccdf["seconds"]["q75"] / batch})
    write = stages["write_volume"]
    rows.append({"stage": "write outputs (postprocessing)", "ms": ms * write["median"] / write["slices"],
                 "q25": ms * write["q25"] / write["slices"], "q75": ms * write["q75"] / write["slices"]})
    lines = [
        f"# Speed of ccdf-mri recon on {machine['device']}" + (f" ({machine['gpu']})" if "gpu" in machine else ""),
        "",
        f"Command: `{payload['command']}`. Load average at start / end: {payload['load_start']} / {payload['load_end']}.",
        "",
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, {machine['torch_threads']} torch threads, "
        f"torch {machine['torch']}, MONAI {machine['monai']}. Bundle config with overrides {payload['config']['overrides']}; "
        f"networks: {payload['config']['network']}. Volume: {payload['config']['volume']}. Medians over "
        f"{payload['config']['repeats']} repeats after a warm-up.",
        "",
        f"## Stages, per slice (batches of {batch} slices)",
        "",
        common.markdown_table(rows, [("stage", "stage"), ("ms", "ms / slice"), ("q25", "q25"), ("q75", "q75")]),
        f"One CCDF step (batch of {batch}): network {ms * ccdf['network_per_step']:.1f} ms, DC "
        f"{ms * ccdf['dc_per_step']:.1f} ms, rest (sampler arithmetic, noise, complex <-> channels) "
        f"{ms * ccdf['rest_per_step']:.1f} ms; DC share {100 * ccdf['dc_fraction']:.1f} %. NFE per slice "
        f"{ccdf['nfe']}, t0 {ccdf['t0']}.",
        "",
        "## Whole runs (`Reconstructor.run`, as `ccdf-mri recon`: scan, preprocess, reconstruct, write, score)",
        "",
        common.markdown_table([{"mode": name, **values} for name, values in runs.items()],
                              [("mode", "mode"), ("median", "s / slice"), ("q25", "q25"), ("q75", "q75"),
                               ("slices", "slices"), ("peak_mib", "peak MiB")]),
        "Peak memory: " + payload["memory_note"],
        "",
        "## Roofline of the network step",
        "",
        roofline.roofline_line(f"one network call on {batch} slices", payload["roofline"]),
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """All measurements for parsed ``args``; writes ``<name>.{json,md}``."""
    common.set_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: CUDA is not available on this machine")
    overrides = {"models_dir": str(args.models), **parse_sets(args.set)}
    repeats = args.repeats or (1 if args.quick else 3)
    load_start = load_load()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.data
        if path is None:
            slices = args.slices or (4 if args.quick else 8)
            path = write_volume(Path(tmp) / f"synthetic_{args.geometry}.h5", args.geometry, slices)
        recon, values = build_reconstructor(overrides, Path(tmp) / "out", args.device, args.batch)
        log("stages")
        stages = time_stages(recon, path, repeats, args.device, log)
        log("whole runs")
        runs = time_runs(recon, path, repeats, args.device)
        line = network_roofline(recon, (stages["batch"], *stages["image_shape"]), stages["ccdf"]["network_per_step"])
    memory_note = ("torch.cuda.max_memory_allocated above the memory in use before (tensors only)." if args.device == "cuda"
                   else "resident set size above the size at the start, sampled every 2 ms; process peak RSS "
                   f"{common.process_peak_rss_mib():.0f} MiB.")
    payload = {
        "command": " ".join(["python -m benchmarks.speed"] + list(args.argv)), "load_start": load_start,
        "load_end": load_load(), "machine": common.machine_info(args.device),
        "config": {"overrides": overrides, "repeats": repeats, **values,
                   "network": f"{args.models} via the config's network_def",
                   "volume": str(args.data) if args.data else f"synthetic {args.geometry} {GEOMETRIES[args.geometry]}"},
        "stages": stages, "runs": runs, "roofline": line, "memory_note": memory_note,
    }
    name = args.name or f"speed_{args.device}"
    common.write_json(args.out / f"{name}.json", payload)
    common.write_text(args.out / f"{name}.md", markdown(payload))
    log(markdown(payload))
    return payload


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--models", type=Path, default=common.DEFAULT_MODELS_DIR)
    parser.add_argument("--set", nargs="*", default=[], metavar="ID=VALUE",
                        help="bundle config overrides, e.g. inferer#channels_last=true inferer#amp_dtype=bfloat16")
    parser.add_argument("--geometry", default="demo", choices=sorted(GEOMETRIES))
    parser.add_argument("--data", type=Path, default=None, help="a fastMRI .h5 file instead of the synthetic volume")
    parser.add_argument("--slices", type=int, default=None, help="slices of the synthetic volume (default 8, quick 4)")
    parser.add_argument("--batch", type=int, default=4, help="slices per batch")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 4 slices")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--name", default=None, help="result file stem (default speed_<device>)")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
