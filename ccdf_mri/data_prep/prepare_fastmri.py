"""Prepare a fastMRI folder for training: cached ESPIRiT maps, complex targets, a slice index.

For every multi-coil ``<name>.h5`` it writes the sidecar ``<name>.maps.h5`` (in ``--out``,
default next to the file) holding

- ``maps`` ``(S, C, H, W)`` complex64: ESPIRiT maps of each slice
  (:func:`ccdf_mri.physics.estimate_maps_espirit`, on the full k-space grid, readout
  oversampling included);
- ``target_complex`` ``(S, H, W)`` complex64: SENSE-combined image
  ``sum_c conj(S_c) F^H k_c`` of the fully sampled k-space (absent for files with a
  ``mask``, whose k-space is undersampled);
- ``done`` ``(S,)`` bool and attrs ``source``, ``calib_width``, ``thresh``,
  ``kernel_width``, ``crop``.

The sidecar is filled in ``<name>.maps.h5.partial`` slice by slice (a rerun skips the
slices marked done) and renamed to ``<name>.maps.h5`` when complete, so a finished
sidecar is never partial. Finally ``slice_index.json`` lists every readable file (paths
relative to the index) with its shape, sidecar and one ``[file_number, slice]`` entry
per slice.

Example::

    python -m ccdf_mri.data_prep.prepare_fastmri /data/fastmri/multicoil_train --out /data/cache
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import h5py
import numpy as np
import torch

from ccdf_mri.io.atomic import atomic_path
from ccdf_mri.io.fastmri import FastMRIVolume
from ccdf_mri.physics import sense_combine
from ccdf_mri.preprocessing import FULL_KEY, make_preprocessing
from ccdf_mri.simulation.batch import BatchReport

SIDECAR_SUFFIX = ".maps.h5"
PARTIAL_SUFFIX = ".partial"
INDEX_NAME = "slice_index.json"
_OWN_OUTPUTS = (SIDECAR_SUFFIX, SIDECAR_SUFFIX + PARTIAL_SUFFIX, INDEX_NAME)


def sidecar_path(path: Path, out_dir: Optional[Path]) -> Path:
    """``<out_dir or path's folder>/<stem>.maps.h5``."""
    return (out_dir or path.parent) / (path.stem + SIDECAR_SUFFIX)


def find_inputs(folder: Path, report: BatchReport) -> List[Path]:
    """The ``.h5`` files under ``folder`` (recursive); other files are reported as bad input."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith(".") or path.name.endswith(_OWN_OUTPUTS):
            continue
        if path.suffix.lower() == ".h5":
            files.append(path)
        else:
            report.fail(str(path), f"{path}: not a fastMRI .h5 file (expected only .h5 files in {folder})")
    return files


def _sidecar_matches(handle: h5py.File, source: str, shape: tuple, settings: dict) -> bool:
    if "maps" not in handle or "done" not in handle or tuple(handle["maps"].shape) != shape:
        return False
    if handle.attrs.get("source") != source:
        return False
    return all(handle.attrs.get(key) == value for key, value in settings.items())


def _open_partial(partial: Path, source: str, shape: tuple, settings: dict, with_target: bool, report: BatchReport) -> h5py.File:
    if partial.exists():
        try:
            handle = h5py.File(partial, "a")
            if _sidecar_matches(handle, source, shape, settings):
                return handle
            handle.close()
            report.info(f"{partial}: made with other settings or another file; starting it again")
        except OSError:
            report.info(f"{partial}: unreadable partial sidecar; starting it again")
        partial.unlink()
    handle = h5py.File(partial, "w")
    s, c, h, w = shape
    handle.create_dataset("maps", shape=shape, dtype=np.complex64, chunks=(1, c, h, w))
    if with_target:
        handle.create_dataset("target_complex", shape=(s, h, w), dtype=np.complex64, chunks=(1, h, w))
    handle.create_dataset("done", data=np.zeros(s, dtype=bool))
    handle.attrs["source"] = source
    for key, value in settings.items():
        handle.attrs[key] = value
    return handle


def prepare_file(path: Path, out_dir: Optional[Path], settings: dict, device: Optional[str], report: BatchReport) -> dict:
    """Compute (or complete) the sidecar of one file; return its slice-index entry.

    Raises:
        ValueError / FileNotFoundError: unreadable or malformed file (the message names it).
    """
    with FastMRIVolume(path) as volume:
        entry = {
            "file": str(path), "maps": None, "num_slices": volume.num_slices, "num_coils": volume.num_coils,
            "kspace_shape": list(volume.kspace_shape), "multicoil": volume.is_multicoil,
            "acquisition": volume.attrs.get("acquisition"), "target_key": volume.target_key,
            "has_mask": volume.has_mask, "complex_target": False, "slices_computed": 0,
        }
        if not volume.is_multicoil:
            return entry  # single coil: no maps; the complex target is the inverse FFT itself
        calib = settings["calib_width"]
        if volume.num_low_frequency:
            calib = min(calib, int(volume.num_low_frequency))
        file_settings = {**settings, "calib_width": calib}
        final = sidecar_path(path, out_dir)
        entry["maps"], entry["complex_target"] = str(final), not volume.has_mask
        s, c, rows, w = volume.kspace_shape
        shape = (s, c, volume.header.readout_crop_rows(rows) or rows, w)  # the preprocessing crops the readout
        if final.exists():
            try:
                with h5py.File(final, "r") as handle:
                    if _sidecar_matches(handle, path.name, shape, file_settings) and bool(np.all(handle["done"][()])):
                        return entry
            except OSError:
                pass
            report.info(f"{final}: stale or unreadable sidecar; computing it again")
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        handle = _open_partial(partial, path.name, shape, file_settings, not volume.has_mask, report)
        try:
            done = handle["done"][()]
            todo = [i for i in range(volume.num_slices) if not done[i]]
            # the one preprocessing path (readout crop, ESPIRiT), on the fully sampled k-space (or the
            # test file's own mask): the maps and targets training reads have the geometry inference sees
            preprocessing = make_preprocessing(maps="espirit", calib_width=calib, keep_fully_sampled=True,
                                               thresh=settings["thresh"], kernel_width=settings["kernel_width"],
                                               crop=settings["crop"])
            mask = volume.mask.reshape(1, 1, 1, -1) if volume.has_mask else np.ones((1, 1, 1, w), np.float32)
            for i in report.progress(todo, desc=path.name, unit="slice", leave=False):
                sample = {"kspace": torch.from_numpy(volume.kspace_slice(i))[None].to(device),
                          "mask": torch.as_tensor(mask, dtype=torch.float32), "meta": {"filename": path.name, "header": volume.header}}
                out = preprocessing(sample)
                maps = out["maps"][0]
                handle["maps"][i] = maps.cpu().numpy().astype(np.complex64)
                if not volume.has_mask:
                    handle["target_complex"][i] = sense_combine(out[FULL_KEY], out["maps"])[0].cpu().numpy()
                handle.flush()
                handle["done"][i] = True
                handle.flush()
            entry["slices_computed"] = len(todo)
        finally:
            handle.close()
        os.replace(partial, final)
    return entry


def write_index(index_path: Path, entries: List[dict]) -> None:
    """Write ``slice_index.json`` atomically; paths relative to its folder where possible."""
    root = index_path.parent.resolve()

    def rel(p: Optional[str]) -> Optional[str]:
        if p is None:
            return None
        try:
            return os.path.relpath(Path(p).resolve(), root)
        except ValueError:  # other drive
            return str(Path(p).resolve())

    files = [{**e, "file": rel(e["file"]), "maps": rel(e["maps"])} for e in entries]
    for e in files:
        e.pop("slices_computed", None)
    slices = [[n, s] for n, e in enumerate(files) for s in range(e["num_slices"])]
    with atomic_path(index_path) as tmp:
        tmp.write_text(json.dumps({"files": files, "num_slices": len(slices), "slices": slices}) + "\n")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m ccdf_mri.data_prep.prepare_fastmri",
        description=(
            "Cache ESPIRiT coil maps and complex SENSE-combined targets of a fastMRI folder in sidecar files "
            "<name>.maps.h5 (resumable: finished slices are skipped) and write slice_index.json. Bad files are "
            "reported and skipped; the exit status is non-zero when any file failed."
        ),
    )
    parser.add_argument("folder", help="folder of fastMRI .h5 files (searched recursively)")
    parser.add_argument("--out", default=None, help="folder for the sidecars and the index (default: next to the files)")
    parser.add_argument("--calib-width", type=int, default=24, help="ESPIRiT calibration width (default 24)")
    parser.add_argument("--thresh", type=float, default=0.02, help="ESPIRiT singular-value threshold (default 0.02)")
    parser.add_argument("--kernel-width", type=int, default=6, help="ESPIRiT kernel width (default 6)")
    parser.add_argument("--crop", type=float, default=0.95, help="ESPIRiT eigenvalue crop (default 0.95)")
    parser.add_argument("--device", default=None, help="torch device for the maps: cpu (default), cuda, cuda:1 ...")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the preparation; return the exit status (0 ok, 1 some input failed)."""
    args = parse_args(argv)
    start = time.perf_counter()
    report = BatchReport(quiet=args.quiet)
    folder = Path(args.folder)
    if not folder.is_dir():
        report.fail(str(folder), f"{folder}: no such folder")
        return report.exit_code
    out_dir = Path(args.out) if args.out else None
    settings = {"calib_width": args.calib_width, "thresh": args.thresh, "kernel_width": args.kernel_width, "crop": args.crop}
    device = None if args.device in (None, "cpu") else int(args.device) if str(args.device).isdigit() else args.device
    files = find_inputs(folder, report)
    if not files:
        report.fail(str(folder), f"{folder}: no .h5 files found (empty folder?)")
    entries, computed = [], 0
    for path in report.progress(files, desc="files", unit="file"):
        try:
            entry = prepare_file(path, out_dir, settings, device, report)
        except (ValueError, FileNotFoundError, OSError, KeyError) as error:
            report.fail(str(path), str(error) if str(path) in str(error) else f"{path}: {error}")
            continue
        computed += entry["slices_computed"]
        entries.append(entry)
        report.ok(str(path))
    index_path = (out_dir or folder) / INDEX_NAME
    if entries:
        write_index(index_path, entries)
    total = sum(e["num_slices"] for e in entries)
    print(
        f"prepare_fastmri {folder}: {len(entries)} files ({total} slices) indexed in "
        f"{index_path if entries else '(no index written)'}, maps computed for {computed} slices, "
        f"{len(report.errors)} failed, {time.perf_counter() - start:.1f} s"
    )
    for line in report.summary_lines("files")[1:]:
        print(line)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
