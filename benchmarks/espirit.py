"""ESPIRiT coil maps in torch (``ccdf_mri.physics.espirit``) against sigpy and BART.

Questions:

1. Speed: how much faster than ``sigpy.mri.app.EspiritCalib`` (the former default) at
   8 coils 256x256 and at the fastMRI geometry (15 coils, 640x368 k-space cropped to
   320x368 in the read-out), per slice and batched? Target: >= 20x at 8 coils 256x256 on the
   CPU; <= 30 ms per slice at 15 coils on a GPU.
2. Parity: do our maps agree with ``bart ecalib -m1`` and sigpy's on the same k-space, and
   does CG-SENSE with our maps score the same PSNR as with theirs (target: within 0.1 dB)?

Agreement measure: per pixel ``|<s_ours, s_ref>| / (|s_ours| |s_ref|)`` (1 = equal up to a
phase), at the 1st percentile and the median over the object's pixels (``|noise-free
target| > 10 %`` of its maximum) that both sets keep; with the shares of object pixels that
exactly one set crops ("crop differs") and that both crop ("object cropped").

Options are matched: sigpy takes ours as they are; BART's ``-t`` thresholds the *squared*
singular values (``-t thresh^2``: this script's check ``thresh_semantics`` shows the kept
subspaces then coincide), ``-c crop``. The 4 %-centre 8x mask has 10 centre lines at 256
columns: a 6x6 kernel in a 10x10 block gives 25 kernel positions for 288 unknowns. So at 8x
three settings are compared: the block and kernel of ``benchmarks.bart.fair_calibration``
(all read-out rows x the centre lines; ours and BART, as sigpy takes only square blocks),
10x10 with k = 4 (all three), and 10x10 with k = 6, which is what
``benchmarks.common.prepare_slice`` uses today (all three).

CG-SENSE: 10 iterations (``ccdf_mri.initializers.CGSense``, started from 0) with each map
set; PSNR of the magnitude against the magnitude of the corpus's noise-free
``target_complex`` (``ccdf_mri.metrics.psnr``), averaged over slices.

Command (2-core CPU, < 5 minutes)::

    python -m benchmarks.espirit --threads 1,2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from benchmarks import common

DEFAULT_DATA = common.REPO_ROOT / "demo_data" / "corpus" / "test"
ESPIRIT = dict(thresh=0.02, crop=0.95)  # sigpy's defaults, used by all three


# --------------------------------------------------------------------------- data


def simulated_slice(coils: int, shape: tuple[int, int], seed: int, image_rows: Optional[int] = None,
                    snr_db: float = 30.0) -> torch.Tensor:
    """Fully sampled noisy k-space ``(C, H, W)`` of a smooth object under random birdcage coils.

    ``image_rows`` < H simulates read-out oversampling: the object fills the central
    ``image_rows`` rows of the H-row field of view.
    """
    from ccdf_mri.physics import fft2c
    from ccdf_mri.simulation.coils import random_birdcage_maps

    rng = np.random.default_rng(seed)
    rows, cols = shape
    inner = image_rows or rows
    y, x = np.meshgrid(np.linspace(-1, 1, inner), np.linspace(-1, 1, cols), indexing="ij")
    envelope = np.exp(-(((x / 0.8) ** 2 + (y / 0.9) ** 2) ** 4))
    image = envelope * (1 + 0.4 * np.cos(4 * x + 1) * np.sin(3 * y)) * np.exp(1j * 0.8 * np.pi * x * y)
    padded = np.zeros(shape, dtype=np.complex64)
    padded[(rows - inner) // 2 : (rows - inner) // 2 + inner] = image
    maps = random_birdcage_maps(coils, shape, rng)
    kspace = fft2c(torch.from_numpy(maps * padded))
    sigma = np.sqrt(np.mean(np.abs(padded) ** 2)) * 10 ** (-snr_db / 20)
    noise = rng.standard_normal((2,) + kspace.shape).astype(np.float32) * sigma / np.sqrt(2)
    return kspace + torch.complex(torch.from_numpy(noise[0]), torch.from_numpy(noise[1]))


def fastmri_geometry_slice(seed: int, coils: int = 15) -> torch.Tensor:
    """15 coils, 640x368 k-space (2x read-out oversampling) cropped to 320x368."""
    from ccdf_mri.transforms.array import crop_readout

    return crop_readout(simulated_slice(coils, (640, 368), seed, image_rows=320), 320)


def corpus_slices(folder: Path, count: int) -> list[tuple[str, torch.Tensor, np.ndarray]]:
    """``count`` (name, k-space (C, H, W), |target_complex|) from the middle slices of the files."""
    import h5py

    slices = []
    for path in common.list_h5(folder):
        with h5py.File(path, "r") as handle:
            index = handle["kspace"].shape[0] // 2
            slices.append((f"{path.name}[{index}]", torch.from_numpy(handle["kspace"][index]),
                           np.abs(handle["target_complex"][index])))
        if len(slices) == count:
            break
    if not slices:
        raise FileNotFoundError(f"{folder}: expected fastMRI-format .h5 files with 'kspace' and 'target_complex', found none")
    return slices


# --------------------------------------------------------------------------- speed


def _sigpy_maps(kspace: torch.Tensor, calib: int, kernel: int, crop: float = ESPIRIT["crop"]) -> torch.Tensor:
    from ccdf_mri.physics.coil_maps import estimate_maps_espirit

    return estimate_maps_espirit(kspace, calib_width=calib, kernel_width=kernel, thresh=ESPIRIT["thresh"],
                                 crop=crop, backend="sigpy")


def _clock(fn, device: str) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call of ``fn``."""
    common.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    common.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(samples: list[tuple[float, float]], per: int = 1) -> dict[str, float]:
    walls = [w / per for w, _ in samples]
    cpus = [c / per for _, c in samples]
    return {"wall": float(np.median(walls)), "wall_min": float(min(walls)), "cpu": float(np.median(cpus)),
            "n": len(samples)}


def speed_rows(device: str, threads: list[int], repeats: int, sigpy_repeats: int, batch: int) -> list[dict[str, Any]]:
    """Per-slice times of ours (batch 1 and ``batch``, for each torch thread count) and sigpy
    (batch 1, CPU, its own threading) on the same simulated slices.

    On a shared machine the load changes from minute to minute, so the runs are interleaved:
    each sigpy run is followed by ``repeats // sigpy_repeats`` runs of ours per thread count;
    wall-clock and process CPU time (all threads; it does not count waiting for cores) are
    both recorded. One untimed warm-up call each.
    """
    from ccdf_mri.physics.espirit import espirit_maps

    cases = [("8 coils, 256x256", lambda s: simulated_slice(8, (256, 256), s)),
             ("15 coils, 640x368 -> 320x368", lambda s: fastmri_geometry_slice(s))]
    per_round = max(1, repeats // sigpy_repeats)
    rows = []
    for label, make in cases:
        slices = torch.stack([make(seed) for seed in range(batch)])
        one, many = slices[:1].to(device), slices.to(device)
        ours_fn = lambda: espirit_maps(one, 24, 6, **ESPIRIT)  # noqa: E731
        sigpy_fn = lambda: _sigpy_maps(slices[0], 24, 6)  # noqa: E731
        sigpy_fn()
        theirs: list[tuple[float, float]] = []
        ours: dict[int, list[tuple[float, float]]] = {count: [] for count in threads}
        batched: dict[int, list[tuple[float, float]]] = {count: [] for count in threads}
        for count in threads:
            torch.set_num_threads(count)
            ours_fn()
        for _ in range(sigpy_repeats):
            theirs.append(_clock(sigpy_fn, "cpu"))
            for count in threads:
                torch.set_num_threads(count)
                ours[count] += [_clock(ours_fn, device) for _ in range(per_round)]
                batched[count].append(_clock(lambda: espirit_maps(many, 24, 6, **ESPIRIT), device))
        sig = _summary(theirs)
        for count in threads:
            mine, mine_batched = _summary(ours[count]), _summary(batched[count], per=batch)
            row = {"case": label, "shape": tuple(slices.shape[1:]), "device": device, "torch_threads": count,
                   "batch": batch, "sigpy": sig, "ours": mine, "ours_batched_per_slice": mine_batched,
                   "sigpy_wall_s": sig["wall"], "sigpy_cpu_s": sig["cpu"], "ours_wall_s": mine["wall"],
                   "ours_wall_min_s": mine["wall_min"], "ours_cpu_s": mine["cpu"],
                   "ours_batched_wall_s": mine_batched["wall"], "ours_batched_cpu_s": mine_batched["cpu"],
                   "speedup_wall": sig["wall"] / mine["wall"], "speedup_cpu": sig["cpu"] / mine["cpu"],
                   "speedup_batched_wall": sig["wall"] / mine_batched["wall"]}
            rows.append(row)
            print(f"[speed] {label}, {count} thread(s): ours {mine['wall'] * 1e3:.1f} ms (cpu {mine['cpu'] * 1e3:.1f}), "
                  f"batched {mine_batched['wall'] * 1e3:.1f} ms/slice, sigpy {sig['wall']:.2f} s (cpu {sig['cpu']:.2f})",
                  file=sys.stderr)
    return rows


# --------------------------------------------------------------------------- parity


def agreement(maps: torch.Tensor, ref: torch.Tensor, support: torch.Tensor) -> dict[str, float]:
    """Module docstring's measure over ``support`` ``(H, W)`` for maps ``(C, H, W)``."""
    inner = torch.linalg.vecdot(maps, ref, dim=0).abs()
    norms = torch.linalg.vector_norm(maps, dim=0) * torch.linalg.vector_norm(ref, dim=0)
    kept_a, kept_b = (maps != 0).any(dim=0), (ref != 0).any(dim=0)
    both = support & kept_a & kept_b
    cosine = (inner / norms.clamp_min(1e-30))[both].double()
    out = {"one_cropped": float((kept_a != kept_b)[support].double().mean()),
           "both_cropped": float((~kept_a & ~kept_b)[support].double().mean())}
    if cosine.numel():
        out.update(q01=float(torch.quantile(cosine, 0.01)), median=float(cosine.median()))
    return out


def cg_sense_psnr(maps: torch.Tensor, mask: torch.Tensor, kspace: torch.Tensor, truth: np.ndarray) -> float:
    from ccdf_mri.initializers import CGSense
    from ccdf_mri.metrics import psnr
    from ccdf_mri.physics import SenseOp

    image = CGSense(num_iters=10)(SenseOp(maps[None].to(torch.complex64), mask), kspace[None])[0]
    return psnr(truth[None], image.abs().numpy()[None])


def parity_settings(lines: int, height: int) -> list[dict[str, Any]]:
    """Map sets compared for a mask with ``lines`` fully sampled centre lines (H = ``height``)."""
    from benchmarks.bart import fair_calibration

    square = min(24, lines)
    if lines >= 20:
        return [{"label": f"{square}x{square}, k=6", "ours": (square, 6), "bart": ((square, square), 6), "sigpy": (square, 6)}]
    (rows, cols), kernel = fair_calibration(lines, height)
    return [
        {"label": f"{rows}x{cols}, k={kernel} (bart.fair_calibration)", "ours": ((rows, cols), kernel),
         "bart": ((rows, cols), kernel), "sigpy": None},
        {"label": f"{square}x{square}, k=4", "ours": (square, 4), "bart": ((square, square), 4), "sigpy": (square, 4)},
        {"label": f"{square}x{square}, k=6 (today)", "ours": (square, 6), "bart": ((square, square), 6), "sigpy": (square, 6)},
    ]


def parity_rows(slices, with_bart: bool, with_sigpy: bool) -> list[dict[str, Any]]:
    from benchmarks.bart import bart_ecalib
    from ccdf_mri.physics import calibration_width, estimate_maps_acs, make_mask
    from ccdf_mri.physics.espirit import espirit_maps

    rows = []
    for acceleration, fraction in ((4, 0.08), (8, 0.04)):
        records: dict[str, list[dict[str, Any]]] = {}
        for name, full, truth in slices:
            mask = make_mask("equispaced_fraction", (1,) + tuple(full.shape), acceleration, fraction, seed=0)
            kspace = full * mask[0]
            lines = calibration_width(mask)
            support = torch.from_numpy(truth > 0.1 * truth.max())
            acs_psnr = cg_sense_psnr(estimate_maps_acs(kspace, min(24, lines)), mask, kspace, truth)
            for setting in parity_settings(lines, full.shape[-2]):
                (calib, kernel) = setting["ours"]
                ours = espirit_maps(kspace, calib, kernel, **ESPIRIT)
                record = {"ours_psnr": cg_sense_psnr(ours, mask, kspace, truth), "acs_psnr": acs_psnr}
                if with_bart:
                    (region, bkernel) = setting["bart"]
                    bart = torch.from_numpy(bart_ecalib(kspace.numpy(), region, bkernel, extra_args=(
                        "-t", f"{ESPIRIT['thresh'] ** 2:g}", "-c", f"{ESPIRIT['crop']:g}")))
                    record.update({f"bart_{k}": v for k, v in agreement(ours, bart, support).items()})
                    record["bart_psnr"] = cg_sense_psnr(bart, mask, kspace, truth)
                if with_sigpy and setting["sigpy"] is not None:
                    scalib, skernel = setting["sigpy"]
                    theirs = _sigpy_maps(kspace, scalib, skernel)
                    record.update({f"sigpy_{k}": v for k, v in agreement(ours, theirs, support).items()})
                    record["sigpy_psnr"] = cg_sense_psnr(theirs, mask, kspace, truth)
                records.setdefault(setting["label"], []).append(record)
                print(f"[parity] {acceleration}x {setting['label']} {name}: {record}", file=sys.stderr)
        for label, items in records.items():
            row: dict[str, Any] = {"mask": f"equispaced {acceleration}x, {int(fraction * 100)}% centre", "setting": label,
                                   "slices": len(items)}
            for key in sorted({key for item in items for key in item}):
                values = [item[key] for item in items if key in item]
                row[key] = min(values) if key.endswith("q01") else float(np.mean(values))
            if "bart_psnr" in row:
                row["ours_minus_bart_db"] = row["ours_psnr"] - row["bart_psnr"]
            if "sigpy_psnr" in row:
                row["ours_minus_sigpy_db"] = row["ours_psnr"] - row["sigpy_psnr"]
            rows.append(row)
    return rows


def versus_acs(slices) -> list[dict[str, Any]]:
    """How ESPIRiT maps differ from ACS maps (4x, 8 % centre): background, phase, scale.

    Per slice, on the SENSE combination of the *fully sampled* k-space with each map set:
    the share of background pixels (noise-free target < 1 % of its maximum) and of object
    pixels where the maps are zero; the median |phase| of the image over the object; the median
    magnitude ratio to the ACS-map image over the object; and the median sum |S_c|^2 there.
    """
    from ccdf_mri.intensity import intensity_scale
    from ccdf_mri.physics import SenseOp, calibration_width, estimate_maps_acs, make_mask, sense_combine
    from ccdf_mri.physics.espirit import espirit_maps

    rows = []
    for name, full, truth in slices:
        mask = make_mask("equispaced_fraction", (1,) + tuple(full.shape), 4, 0.08, seed=0)
        calib = min(24, calibration_width(mask))
        kspace = full * mask[0]
        obj = torch.from_numpy(truth > 0.1 * truth.max())
        background = torch.from_numpy(truth < 0.01 * truth.max())
        sets = {"acs": estimate_maps_acs(kspace, calib),
                "espirit (phase: coil 0)": espirit_maps(kspace, calib, 6, **ESPIRIT),
                "espirit (phase: acs)": espirit_maps(kspace, calib, 6, phase_ref="acs", **ESPIRIT)}
        reference = sense_combine(full[None], sets["acs"][None])[0]
        acs_scale = intensity_scale(SenseOp(sets["acs"][None], mask).adjoint(kspace[None]))
        for label, maps in sets.items():
            image = sense_combine(full[None], maps[None])[0]
            zero = (maps == 0).all(dim=0)
            scale = intensity_scale(SenseOp(maps[None], mask).adjoint(kspace[None]))
            rows.append({"slice": name, "maps": label,
                         "background_zero": float(zero[background].double().mean()),
                         "object_zero": float(zero[obj].double().mean()),
                         "object_phase_rad": float(image.angle().abs()[obj].median()),
                         "magnitude_ratio_to_acs": float((image.abs() / reference.abs().clamp_min(1e-12))[obj].median()),
                         "sum_sq_maps": float(maps.abs().square().sum(dim=0)[obj].median()),
                         "scale_ratio_to_acs": float(scale / acs_scale)})
    return rows


def thresh_semantics(slice_: tuple[str, torch.Tensor, np.ndarray]) -> dict[str, Any]:
    """Which BART ``-t`` reproduces our ``thresh``: ``thresh`` itself or ``thresh^2``?"""
    from benchmarks.bart import bart_ecalib
    from ccdf_mri.physics.espirit import espirit_maps

    _, kspace, truth = slice_
    support = torch.from_numpy(truth > 0.1 * truth.max())
    ours = espirit_maps(kspace, 24, 6, **ESPIRIT)
    out = {}
    for label, value in (("t=thresh", ESPIRIT["thresh"]), ("t=thresh^2", ESPIRIT["thresh"] ** 2)):
        bart = torch.from_numpy(bart_ecalib(kspace.numpy(), 24, 6, extra_args=("-t", f"{value:g}", "-c", f"{ESPIRIT['crop']:g}")))
        out[label] = agreement(ours, bart, support)
    return out


# --------------------------------------------------------------------------- report


def _with_text(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows with ``<key>_text`` = the value to 6 decimals (agreements are all close to 1)."""
    return [dict(row, **{f"{key}_text": f"{row[key]:.6f}" for key in keys if row.get(key) is not None}) for row in rows]


def report(payload: dict[str, Any]) -> str:
    lines = ["# ESPIRiT coil maps: torch vs sigpy vs BART", "",
             f"Command: `{payload['command']}`", "",
             f"Machine: {payload['machine']['cpu_model']}, {payload['machine']['usable_cores']} usable cores, "
             f"torch {payload['machine']['torch']} with {payload['machine']['torch_threads']} threads, device "
             f"{payload['machine']['device']}; load average {payload['load_average_start']} at the start and "
             f"{payload['load_average_end']} at the end (the machine is shared).", "",
             "## Speed (seconds per slice, medians)", "",
             common.markdown_table(payload["speed"], [
                 ("case", "case"), ("torch_threads", "torch threads"), ("ours_wall_s", "ours wall"),
                 ("ours_wall_min_s", "ours wall (min)"), ("ours_cpu_s", "ours CPU"),
                 ("ours_batched_wall_s", f"ours wall, batch {payload['batch']} (per slice)"),
                 ("sigpy_wall_s", "sigpy wall"), ("sigpy_cpu_s", "sigpy CPU"),
                 ("speedup_wall", "speed-up (wall)"), ("speedup_cpu", "speed-up (CPU)"),
                 ("speedup_batched_wall", "speed-up, batched (wall)")]),
             "Wall: median wall-clock time; CPU: median process CPU time (all threads), which does not "
             "count waiting for cores that other jobs hold. Runs interleaved (each sigpy run followed by "
             "runs of ours), so both see the same load. sigpy runs on the CPU with its own (numpy) "
             "threading. Options: 24x24 calibration block, k = 6, "
             "thresh 0.02, crop 0.95, 4 power iterations (ours; sigpy runs 100). Data: simulated "
             "smooth object, random birdcage coils, 30 dB SNR.", "",
             "On a shared machine the times of the same call vary between runs (sigpy's too): compare "
             "within a row. When other jobs hold the cores, 2 torch threads can be far slower than 1 "
             "(each of the many small parallel ops waits for a descheduled thread; compare the median "
             "with the minimum).", ""]
    if payload.get("parity"):
        lines += ["## Parity and CG-SENSE PSNR (dB)", "", f"Data: {payload['parity_data']}.", "",
                  common.markdown_table(_with_text(payload["parity"], ("bart_q01", "sigpy_q01")), [
                      ("mask", "mask"), ("setting", "calibration"), ("bart_q01_text", "agree BART q1"),
                      ("bart_one_cropped", "crop differs (BART)"), ("bart_both_cropped", "object cropped"),
                      ("sigpy_q01_text", "agree sigpy q1"),
                      ("ours_psnr", "PSNR ours"), ("bart_psnr", "PSNR BART"), ("sigpy_psnr", "PSNR sigpy"),
                      ("acs_psnr", "PSNR ACS maps"), ("ours_minus_bart_db", "ours - BART"),
                      ("ours_minus_sigpy_db", "ours - sigpy")]),
                  "Agreement q1: the lowest 1st percentile over the slices; PSNR: mean over slices. "
                  "sigpy takes square blocks only (see the module docstring).", ""]
    if payload.get("versus_acs"):
        lines += ["## ESPIRiT vs ACS maps (4x, 8 % centre; SENSE image of the fully sampled k-space)", "",
                  common.markdown_table(payload["versus_acs"], [
                      ("slice", "slice"), ("maps", "maps"), ("background_zero", "background zero"),
                      ("object_zero", "object zero"), ("object_phase_rad", "median |phase| (rad)"),
                      ("magnitude_ratio_to_acs", "median |x| / |x_acs|"), ("sum_sq_maps", "median sum |S|^2"),
                      ("scale_ratio_to_acs", "intensity scale / ACS's")]),
                  "Object: noise-free target > 10 % of its maximum; background: < 1 %. Intensity scale: "
                  "`ccdf_mri.intensity.intensity_scale` of the zero-filled SENSE image of the undersampled "
                  "k-space (99th percentile of its magnitude), as the pipeline computes it.", ""]
    if payload.get("thresh_semantics"):
        lines += ["## BART's -t", "", "Agreement (1st percentile) of our maps (thresh 0.02) with BART's:", ""]
        for label, value in payload["thresh_semantics"].items():
            lines.append(f"- `{label}`: q1 {value.get('q01', float('nan')):.6f}, crop differs on "
                         f"{value['one_cropped']:.2%} of object pixels")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="device of the torch implementation (sigpy stays on the CPU)")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to time, comma separated; "
                        "the first is used for the rest")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs of ours (batch 1) per thread count")
    parser.add_argument("--sigpy-repeats", type=int, default=3, help="timed runs of sigpy")
    parser.add_argument("--batch", type=int, default=8, help="slices per batched call")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of corpus .h5 files for parity")
    parser.add_argument("--slices", type=int, default=3, help="parity slices (one per file)")
    parser.add_argument("--no-bart", action="store_true", help="skip BART even when installed")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--render", type=Path, default=None, help="only rewrite the markdown of this results JSON")
    args = parser.parse_args(argv)
    if args.render is not None:
        import json

        common.write_text(args.render.with_suffix(".md"), report(json.loads(args.render.read_text())))
        return 0
    threads = [int(v) for v in str(args.threads).split(",") if v.strip()]
    common.set_threads(threads[0])
    from benchmarks.bart import bart_available, bart_version

    with_bart = not args.no_bart and bart_available()
    payload: dict[str, Any] = {
        "command": "python -m benchmarks.espirit " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": common.machine_info(args.device), "bart": bart_version() if with_bart else None,
        "load_average_start": [round(v, 2) for v in os.getloadavg()], "batch": args.batch,
        "espirit": dict(ESPIRIT, num_iters=4),
    }
    payload["speed"] = speed_rows(args.device, threads, args.repeats, args.sigpy_repeats, args.batch)
    common.set_threads(threads[0])
    if args.data.is_dir():
        slices = corpus_slices(args.data, args.slices)
        payload["parity_data"] = f"{len(slices)} middle slices of {args.data} (noise-free target_complex as truth)"
        payload["parity"] = parity_rows(slices, with_bart, with_sigpy=True)
        payload["versus_acs"] = versus_acs(slices)
        if with_bart:
            payload["thresh_semantics"] = thresh_semantics(slices[0])
    else:
        print(f"[parity] {args.data}: no corpus folder, parity skipped "
              "(build one with python -m data_prep.make_demo_corpus)", file=sys.stderr)
    payload["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    suffix = "" if args.device == "cpu" else f"_{torch.device(args.device).type}"
    common.write_json(args.out / f"espirit{suffix}.json", payload)
    common.write_text(args.out / f"espirit{suffix}.md", report(payload))
    print(report(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
