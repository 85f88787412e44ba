"""GPU check of ``ccdf-mri recon`` at fastMRI geometry, ready for one device call (issue 11, item 4).

What it measures (everything built from the shipped bundle config and models, as
``ccdf-mri recon`` builds it; results under ``--out``, written after every step so a run cut
short still reports what finished):

1. environment: GPUs, torch, CUDA, MONAI;
2. data: synthetic fastMRI-geometry volumes (640x368 k-space with 2x readout oversampling,
   15 coils, 320x320 images; 8 slices each);
3. coil maps: ESPIRiT in torch and ACS on a batch of 8, on the readout-cropped k-space
   (320x368, what the pipeline calibrates on) and on the raw 640x368 one; ms per slice;
4. the pipeline's stages (``benchmarks.speed.time_stages``): read, crop + mask, maps, SENSE,
   initializer, the CCDF steps split into network / DC / rest, writing;
5. whole runs (``Reconstructor.run``, batch 8, warm-up volume first) of: zero-filled (t0 = 0),
   the defaults (ESPIRiT maps, L1-wavelet start with the automatic weight, N = 1000, t0 auto:
   20 steps at 4x) in float32
   and bf16 autocast, channels-last on and off, with K = 1 and K = 4 posterior samples:
   seconds per slice, NFE, peak GPU memory;
6. a profile of one batch (:mod:`benchmarks.gpu_profile`): the score network under each speed
   option with its FLOPs, and traces of the inferer and the initializer (device busy time,
   kernel launches, synchronisations, top kernels);
7. quality, float32 vs bf16: PSNR / SSIM / NMSE of the default reconstruction on ``--demo``
   (a folder of demo test files, e.g. the subset ``--write-demo-subset`` makes);
8. ``torchrun`` over all GPUs of the machine (``monai.bundle run`` with
   ``multi_gpu_inference.json``, NCCL): time, and outputs equal to the single-process run.

Device call (one; prepare here first, everything under ``.carry/``, which git ignores)::

    python -m benchmarks.gpu_check --write-demo-subset .carry/demo_test   # 1 slice x 4 demo test files, 19 MiB
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .carry/wheels monai==1.6.1 pytorch-ignite==0.5.5 sigpy==0.1.27 pywavelets==1.9.0 \
        nibabel==5.4.2 pydicom==3.0.2 fire==0.7.1 termcolor==3.3.0   # what the device image lacks
    # device.run(carry=[".carry"], timeout_s=540):
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl \
      && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \
      && python3 -m benchmarks.gpu_check --out $OUT --demo .carry/demo_test 2>&1 | tee $OUT/gpu_check.log

It writes ``gpu_check.json``, ``gpu_check.md`` (and the log) to ``$OUT``; copy them to
``benchmarks/results/gpu/`` (see its README.md). On one H200 all steps took 123-168 s
(2026-12-04); optional steps stop at ``--budget-s`` (420 s); ``--runs`` and ``--skip`` rerun parts.

``--smoke`` runs the same steps at tiny sizes on the CPU (64x72 k-space with 2x readout oversampling, 4 coils, 2 slices)
in under a minute; the test suite runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import common, gpu_profile, speed

CONFIGS = common.REPO_ROOT / "bundles" / "ccdf_mri_recon" / "configs"
#: the whole-run configurations of step 5: name -> bundle config overrides
RUNS: dict[str, dict[str, Any]] = {
    "zero-filled (t0 = 0)": {"initializer": "zero_filled", "t0": 0.0},
    "zero-filled, no prefetch, no background writes": {"initializer": "zero_filled", "t0": 0.0, "prefetch": False,
                                                       "background_writes": False},
    "defaults as shipped (K calibrated)": {},
    "defaults as shipped, no prefetch, no background writes": {"prefetch": False, "background_writes": False},
    "defaults fp32, K = 1": {"num_samples": 1, "inferer#channels_last": False},
    "defaults fp32 channels-last, K = 1": {"num_samples": 1, "inferer#channels_last": True},
    "defaults bf16, K = 1": {"num_samples": 1, "inferer#amp_dtype": "bfloat16", "inferer#channels_last": False},
    "defaults bf16 channels-last, K = 1": {"num_samples": 1, "inferer#amp_dtype": "bfloat16", "inferer#channels_last": True},
    "defaults fp32 cudnn.benchmark, K = 1": {"num_samples": 1, "inferer#channels_last": False, "_cudnn_benchmark": True},
    "defaults bf16 cudnn.benchmark, K = 1": {"num_samples": 1, "inferer#amp_dtype": "bfloat16", "inferer#channels_last": False,
                                             "_cudnn_benchmark": True},
    "defaults fp32 compiled, K = 1": {"num_samples": 1, "inferer#channels_last": False, "inferer#compile": True},
    "defaults bf16 compiled, K = 1": {"num_samples": 1, "inferer#amp_dtype": "bfloat16", "inferer#channels_last": False,
                                      "inferer#compile": True},
    "defaults fp32, K = 4": {"num_samples": 4, "inferer#channels_last": False},
    "defaults bf16, K = 4": {"num_samples": 4, "inferer#amp_dtype": "bfloat16", "inferer#channels_last": False},
}


class Check:
    """Accumulates results and rewrites ``gpu_check.{json,md}`` after every step."""

    def __init__(self, out: Path, budget_s: float, log: Callable[[str], None]) -> None:
        self.out, self.budget_s, self.log = out, budget_s, log
        self.skip: list[str] = []
        self.start = time.perf_counter()
        self.results: dict[str, Any] = {"steps": {}, "skipped": [], "errors": {}}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def step(self, name: str, fn: Callable[[], Any], optional: bool = True) -> Any:
        """Run ``fn`` as step ``name``; errors are recorded (not raised); past the budget optional steps are skipped."""
        if optional and any(name.startswith(skipped.replace("-", " ")) for skipped in self.skip):
            self.results["skipped"].append(f"{name} (--skip)")
            return None
        if optional and self.elapsed() > self.budget_s:
            self.results["skipped"].append(f"{name} (time budget of {self.budget_s:.0f} s spent)")
            self.log(f"[{self.elapsed():.0f} s] skip {name}: budget spent")
            self.save()
            return None
        self.log(f"[{self.elapsed():.0f} s] {name}")
        begin = time.perf_counter()
        try:
            value = fn()
            self.results["steps"][name] = {"seconds": time.perf_counter() - begin, "result": value}
        except Exception as error:  # noqa: BLE001 - a device check reports every failure and goes on
            value = None
            self.results["errors"][name] = f"{type(error).__name__}: {error}\n{traceback.format_exc()[-2000:]}"
            self.log(f"  FAILED: {type(error).__name__}: {error}")
        self.results["elapsed_s"] = self.elapsed()
        self.save()
        return value

    def save(self) -> None:
        common.write_json(self.out / "gpu_check.json", self.results)
        common.write_text(self.out / "gpu_check.md", markdown(self.results))


def environment(device: str) -> dict[str, Any]:
    import monai

    info = {"torch": torch.__version__, "monai": monai.__version__, "python": sys.version.split()[0],
            "device": device, "cpu_count": os.cpu_count()}
    if device == "cuda":
        info.update({"cuda": torch.version.cuda, "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                     "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30})
    return info


def peak_memory(device: str) -> Any:
    """Context measuring peak memory: CUDA allocator peak, or sampled RSS on the CPU (MiB)."""
    return common.PeakMemory(device)


def time_maps(path: Path, device: str, repeats: int) -> dict[str, Any]:
    """ESPIRiT (torch) and ACS maps of one batch, cropped and raw k-space: ms per slice."""
    from ccdf_mri.io import FastMRIVolume
    from ccdf_mri.preprocessing import make_preprocessing, volume_batch
    from ccdf_mri.transforms import EstimateCoilMapsd

    crop, mask = make_preprocessing().transforms[:2]
    out: dict[str, Any] = {}
    with FastMRIVolume(path) as volume:
        sample = volume_batch(volume, list(range(volume.num_slices)), None, device)
    batch = sample["kspace"].shape[0]
    for label, data in (("cropped", mask(crop(sample))), ("raw", mask(sample))):
        for method in ("espirit", "acs"):
            estimator = EstimateCoilMapsd("kspace", method=method)
            timing = common.time_repeats(lambda: estimator(data), repeats, device)
            out[f"{method} {label} {tuple(data['kspace'].shape[1:])}"] = {"ms_per_slice": 1000 * timing["median"] / batch,
                                                                          "batch": batch, **timing}
    return out


def whole_run(name: str, overrides: dict[str, Any], files: Sequence[Path], work: Path, device: str, batch: int) -> dict[str, Any]:
    """Build the bundle's reconstructor with ``overrides``; warm up on ``files[0]``, time one run
    over ``files[1:]`` (more than one volume, so that writing a volume in the background while the
    next is reconstructed shows). ``_cudnn_benchmark`` (not a config key) sets
    ``torch.backends.cudnn.benchmark`` for the run."""
    overrides = dict(overrides)
    benchmark, previous = overrides.pop("_cudnn_benchmark", False), torch.backends.cudnn.benchmark
    recon, values = speed.build_reconstructor(overrides, work / "runs" / name.replace(" ", "_").replace(",", "").replace(".", ""),
                                              device, batch)
    torch.backends.cudnn.benchmark = benchmark
    try:
        recon.run(files[0])
        with peak_memory(device) as memory:
            common.synchronize(device)
            start = time.perf_counter()
            report = recon.run(list(files[1:]))
            common.synchronize(device)
            seconds = time.perf_counter() - start
    finally:
        torch.backends.cudnn.benchmark = previous
    common.require_done(report, name)
    slices = sum(r.slices for r in report.results)
    return {"s_per_slice": seconds / slices, "slices": slices, "volumes": len(report.results),
            "nfe": float(np.mean([r.nfe for r in report.results])), "t0": float(np.mean([r.t0 for r in report.results])),
            "peak_mib": memory.peak_mib, "overrides": overrides, "config": values}


def quality(demo: Path, work: Path, device: str, batch: int, models: dict[str, Any]) -> dict[str, Any]:
    """The defaults in float32 and bf16 on the demo files: per-volume metrics and seconds per slice.

    Scored against the noise-free image (``ccdf_mri.demo.TARGET_KEY``, as ``make demo`` scores;
    the demo files' ``reconstruction_rss`` is the noisy fully sampled image) when the files have
    it, else against the file's fastMRI target; a volume that fails is an error."""
    target_key = common.noise_free_target_key(demo)
    out: dict[str, Any] = {"target_key": target_key or "the fastMRI target"}
    for label, overrides in (("fp32", {"inferer#channels_last": False}),
                             ("bf16", {"inferer#amp_dtype": "bfloat16", "inferer#channels_last": False})):
        overrides = {**models, **overrides, "target_key": target_key}
        recon, _ = speed.build_reconstructor(overrides, work / "quality" / label, device, batch)
        start = time.perf_counter()
        report = recon.run(demo)
        seconds = time.perf_counter() - start
        common.require_done(report, f"quality {label} ({demo})")
        volumes = {r.name: {**r.metrics, "nfe": r.nfe, "t0": r.t0, "status": r.status} for r in report.results}
        slices = sum(r.slices or 0 for r in report.results)
        out[label] = {"volumes": volumes, "s_per_slice": seconds / max(slices, 1), "slices": slices,
                      "psnr_mean": float(np.mean([v["psnr"] for v in volumes.values() if "psnr" in v]))}
    out["psnr_delta_bf16_minus_fp32"] = {name: out["bf16"]["volumes"][name]["psnr"] - out["fp32"]["volumes"][name]["psnr"]
                                         for name in out["fp32"]["volumes"] if "psnr" in out["fp32"]["volumes"][name]}
    return out


def torchrun(files: Sequence[Path], work: Path, device: str, batch: int, models: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """``monai.bundle run`` under torchrun on all GPUs (1 CPU process with gloo on the CPU) vs one process."""
    import h5py

    procs = max(1, torch.cuda.device_count()) if device == "cuda" else 1
    folder = work / "torchrun_in"
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        target = folder / path.name
        if not target.exists():
            target.symlink_to(path.resolve())
    common_args = ["--bundle_root", str(CONFIGS.parent), "--models_dir", str(models), "--dataset_dir", str(folder),
                   "--batch_size", str(batch), "--progress", "False"]
    common_args += [arg for key, value in overrides.items() if key != "models_dir" for arg in (f"--{key}", str(value))]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if device != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    out: dict[str, Any] = {"processes": procs}
    runs = {
        "single": [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"),
                   "--output_dir", str(work / "single")],
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
                     str(procs), "-m", "monai.bundle", "run", "--config_file",
                     str([str(CONFIGS / "inference.json"), str(CONFIGS / "multi_gpu_inference.json")]),
                     "--output_dir", str(work / "multi")],
    }
    for label, command in runs.items():
        start = time.perf_counter()
        done = subprocess.run(command + common_args, env=env, capture_output=True, text=True, timeout=300)
        out[label] = {"rc": done.returncode, "wall_s": time.perf_counter() - start,
                      "tail": (done.stdout + done.stderr)[-1500:] if done.returncode else ""}
    if out["single"]["rc"] == 0 and out["torchrun"]["rc"] == 0:
        differences = []
        for path in files:
            with h5py.File(work / "single" / path.name) as a, h5py.File(work / "multi" / path.name) as b:
                x, y = a["reconstruction"][()], b["reconstruction"][()]
                differences.append(float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-12)))
        out["max_relative_difference"] = max(differences)
    return out


def write_demo_subset(source: Path, destination: Path, slices_per_file: int = 1, max_files: int = 4) -> list[Path]:
    """Copy the middle ``slices_per_file`` slices of the first ``max_files`` demo test files (all
    datasets and attributes kept), small enough to travel to the device machine."""
    import h5py

    files = common.list_h5(common.split_folder(source, "test"))[:max_files]
    destination.mkdir(parents=True, exist_ok=True)
    written = []
    for path in files:
        with h5py.File(path, "r") as src, h5py.File(destination / path.name, "w") as dst:
            count = src["kspace"].shape[0]
            start = max(0, count // 2 - slices_per_file // 2)
            chosen = slice(start, start + slices_per_file)
            for key, item in src.items():
                data = item[()]
                dst.create_dataset(key, data=data[chosen] if getattr(data, "ndim", 0) >= 3 else data)
            for key, value in src.attrs.items():
                dst.attrs[key] = value
        written.append(destination / path.name)
    return written


def markdown(results: dict[str, Any]) -> str:
    """A short report of what finished."""
    steps = results["steps"]
    lines = ["# GPU check of ccdf-mri recon", ""]
    env = steps.get("environment", {}).get("result") or {}
    lines += [f"Environment: {json.dumps(env)}; smoke: {results.get('smoke')}; elapsed {results.get('elapsed_s', 0):.0f} s.", ""]
    maps = steps.get("coil maps", {}).get("result")
    if maps:
        lines += ["## Coil maps (batch of one volume)", "", "| maps | ms / slice |", "|---|---:|"]
        lines += [f"| {name} | {row['ms_per_slice']:.1f} |" for name, row in maps.items()] + [""]
    rows = [(name[len("run: "):], step["result"]) for name, step in steps.items() if name.startswith("run: ") and step["result"]]
    if rows:
        lines += ["## Whole runs (Reconstructor.run, warm-up volume first)", "",
                  "| configuration | s / slice | NFE | t0 | peak MiB |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {r['s_per_slice']:.4f} | {r['nfe']:.0f} | {r['t0']:.3g} | {r['peak_mib']:.0f} |" for name, r in rows]
        lines.append("")
    stages = steps.get("stages", {}).get("result")
    if stages:
        batch, ccdf = stages["batch"], stages["ccdf"]
        parts = ", ".join(f"{key} {1000 * stages[key]['median'] / batch:.2f}" for key in
                          ("read", "crop_mask", "maps_acs", "maps_espirit", "sense_scale", "preprocessing_total", "initializer", "t0"))
        lines += ["## Stages (ms per slice)", "", parts + f"; CCDF {1000 * ccdf['per_slice']:.2f} ({ccdf['steps']} steps: "
                  f"network {1000 * ccdf['network_per_step']:.2f}, DC {1000 * ccdf['dc_per_step']:.2f}, rest "
                  f"{1000 * ccdf['rest_per_step']:.2f} ms per step of the batch); writing a volume "
                  f"{1000 * stages['write_volume']['median'] / stages['write_volume']['slices']:.2f}.", ""]
    profiled = steps.get("profile", {}).get("result")
    if profiled:
        lines += gpu_profile.markdown(profiled)
    q = steps.get("quality fp32 vs bf16", {}).get("result")
    if q:
        lines += ["## Quality on the demo files, fp32 vs bf16", "",
                  f"Mean PSNR fp32 {q['fp32']['psnr_mean']:.3f} dB, bf16 {q['bf16']['psnr_mean']:.3f} dB; per volume bf16 - fp32: "
                  + ", ".join(f"{k} {v:+.4f}" for k, v in q["psnr_delta_bf16_minus_fp32"].items())
                  + f"; s / slice fp32 {q['fp32']['s_per_slice']:.3f}, bf16 {q['bf16']['s_per_slice']:.3f}.", ""]
    tr = steps.get("torchrun", {}).get("result")
    if tr:
        lines += ["## torchrun", "", f"{tr['processes']} process(es): rc {tr['torchrun']['rc']} in {tr['torchrun']['wall_s']:.1f} s "
                  f"(single process rc {tr['single']['rc']}, {tr['single']['wall_s']:.1f} s); max relative difference "
                  f"{tr.get('max_relative_difference')}.", ""]
    if results["errors"]:
        lines += ["## Errors", ""] + [f"- {name}: {text.splitlines()[0]}" for name, text in results["errors"].items()] + [""]
    if results["skipped"]:
        lines += ["Skipped: " + "; ".join(results["skipped"]), ""]
    return "\n".join(lines)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """All steps (see the module docstring); returns the results dict."""
    device = "cpu" if args.smoke and args.device == "auto" else ("cuda" if args.device == "auto" else args.device)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: CUDA is not available (use --smoke for the CPU check of this script)")
    geometry, slices, batch = ("tiny", 2, 2) if args.smoke else ("fastmri", 8, 8)
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.budget_s, log)
    check.skip = list(args.skip)
    check.results["smoke"] = bool(args.smoke)
    check.results["command"] = "python -m benchmarks.gpu_check " + " ".join(args.argv)
    work = Path(tempfile.mkdtemp(prefix="ccdf_gpu_check_"))
    models = {"models_dir": str(args.models)}
    if args.smoke:  # t0 auto stays 0.02 at 4x: 5 reverse steps instead of 20
        models["num_steps"] = 250
    check.step("environment", lambda: environment(device), optional=False)
    files = check.step("data", lambda: [speed.write_volume(work / f"file{i}.h5", geometry, slices, seed=i) for i in range(3)],
                       optional=False)
    if not files:
        return check.results
    check.step("coil maps", lambda: time_maps(files[1], device, args.repeats))
    for name, overrides in RUNS.items():
        if (args.smoke and ("channels-last" in name or "compiled" in name)) or not any(part in name for part in args.runs):
            continue
        check.step(f"run: {name}", lambda o=overrides, n=name: whole_run(n, {**models, **o}, files, work, device, batch))
    check.step("stages", lambda: speed.time_stages(speed.build_reconstructor(models, work / "stages", device, batch)[0],
                                                  files[1], args.repeats, device, log))
    check.step("profile", lambda: gpu_profile.profile_batch(speed.build_reconstructor(models, work / "profile", device, batch)[0],
                                                            files[1], device, args.repeats, log))
    if args.demo is not None and Path(args.demo).is_dir():
        check.step("quality fp32 vs bf16", lambda: quality(Path(args.demo), work, device, batch, models))
    else:
        check.results["skipped"].append(f"quality fp32 vs bf16 (no --demo folder: {args.demo})")
    check.step("torchrun", lambda: torchrun(files, work, device, batch, args.models, models))
    check.save()
    log(markdown(check.results))
    return check.results


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", common.RESULTS_DIR / "gpu_check")))
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"), help="auto: cuda, or cpu with --smoke")
    parser.add_argument("--models", type=Path, default=common.DEFAULT_MODELS_DIR)
    parser.add_argument("--demo", type=Path, default=None, help="folder of demo test files for the fp32 vs bf16 quality")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU check of this script)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", nargs="+", default=[""], metavar="TEXT",
                        help="only the whole runs whose name contains one of these (default: all)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="STEP",
                        help="steps to leave out: coil-maps, stages, profile, quality, torchrun")
    parser.add_argument("--budget-s", type=float, default=420.0, help="optional steps are skipped after this many seconds")
    parser.add_argument("--write-demo-subset", type=Path, default=None, metavar="DIR",
                        help="only write a small subset of demo_data/corpus/test to DIR (to carry to the device)")
    parser.add_argument("--demo-source", type=Path, default=common.REPO_ROOT / "demo_data" / "corpus")
    parser.add_argument("--slices-per-file", type=int, default=1)
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.write_demo_subset is not None:
        for path in write_demo_subset(args.demo_source, args.write_demo_subset, args.slices_per_file):
            print(path, f"{path.stat().st_size / 2**20:.1f} MiB")
        return 0
    results = run(args)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
