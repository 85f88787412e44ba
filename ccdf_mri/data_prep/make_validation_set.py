"""A real-image validation set, disjoint from the training corpus: Colin27 and more, degraded as real scans.

Nothing here uses the MNI ICBM152 template or the training-corpus generators. Kinds (see the
README written into ``--out`` for the details and the licences):

- ``colin_t1``: the Colin27 head (Debian ``mricron-data``, ``ch2.nii.gz``) as is;
- ``colin_lowres``: 2-3 mm in-plane, 3-5 mm thick slices, upsampled back (clinical scans);
- ``colin_epi``: EPI-like T2* blur and off-resonance distortion along the phase-encode axis;
- ``colin_t2like``: T2 (axial, sagittal) or FLAIR (coronal) contrast mapped from the T1;
- ``colin_oblique``: planes tilted 15-35 degrees and rotated in-plane;
- ``itk_t1``: a second individual's T1 head (Debian ``insighttoolkit5-examples``, 2x2x3 mm);
- ``real_body``: real non-brain MR slices (an abdomen; rat thoraxes), rotated/flipped/zoomed;
- ``limb``, ``abdomen``: procedural cross-sections (:mod:`ccdf_mri.simulation.validation_shapes`).

Each output file holds the slices of one kind and one orientation (or part) of one split:
``OUT/{val,test}/<kind>_<part>.h5`` in the fastMRI multi-coil format with ``target_complex``
(:func:`ccdf_mri.simulation.images.simulate_from_magnitude`, one random birdcage coil set and
one smooth phase per file, white noise at ``--snr-db``), plus ``OUT/manifest.json`` and
``OUT/README.md``. Val and test slices of one orientation of one head lie in disjoint slabs
(:func:`split_positions`). Kinds whose source package is missing are skipped with a message.

Example::

    python -m ccdf_mri.data_prep.make_validation_set --out validation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ccdf_mri.simulation import validation_sources as src
from ccdf_mri.simulation.images import simulate_from_magnitude
from ccdf_mri.simulation.validation_shapes import shape_slices
from ccdf_mri.simulation.writer import write_simulated_h5

KINDS = ("colin_t1", "colin_lowres", "colin_epi", "colin_t2like", "colin_oblique", "itk_t1", "real_body", "limb", "abdomen")
SPLITS = ("val", "test")
HEAD_FOV_MM = 240.0
ITK_FOV_MM = 256.0
NUM_BINS, VAL_BINS = 10, (2, 6)
GUARD_MM = 3.0
ORIENTATION_CODES = {"axial": "AX", "coronal": "COR", "sagittal": "SAG"}
T2LIKE_FLAIR = {"axial": False, "coronal": True, "sagittal": False}


def _rng(seed: int, *labels: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed] + [zlib.crc32(label.encode()) for label in labels]))


# --------------------------------------------------------------------------- slice positions


def tissue_range(volume: src.Volume, centre: np.ndarray, frame, fov_mm: float, min_fraction: float = 0.5) -> Tuple[float, float]:
    """Offsets (mm, along the frame's normal from ``centre``) where slices hold enough tissue.

    A plane counts when its tissue fraction (:func:`tissue_fraction`) is at least
    ``min_fraction`` of the largest over all offsets (1 mm steps).
    """
    normal, row, col = frame
    reach = float(np.linalg.norm(volume.extent_mm())) / 2
    offsets = np.arange(-reach, reach + 1.0, 2.0)
    fractions = np.array([src.tissue_fraction(volume, centre + s * normal, row, col, fov_mm) for s in offsets])
    good = offsets[fractions >= min_fraction * fractions.max()]
    return float(good.min()), float(good.max())


def split_positions(lo: float, hi: float, counts: Dict[str, int], rng: np.random.Generator) -> Dict[str, List[float]]:
    """Slice offsets for each split in disjoint slabs of ``[lo, hi]``.

    ``[lo, hi]`` is cut into :data:`NUM_BINS` equal slabs; ``val`` uses slabs :data:`VAL_BINS`,
    ``test`` the others. Every slab is shrunk by :data:`GUARD_MM` at both ends (at most 20 % of
    its width), so a val and a test slice are at least ``2 * GUARD_MM`` apart; the offsets of a
    split are stratified over the total length of its slabs, jittered in their strata.
    """
    width = (hi - lo) / NUM_BINS
    guard = min(GUARD_MM, 0.2 * width)
    out: Dict[str, List[float]] = {}
    for split, count in counts.items():
        bins = [b for b in range(NUM_BINS) if (b in VAL_BINS) == (split == "val")]
        intervals = [(lo + b * width + guard, lo + (b + 1) * width - guard) for b in bins]
        length = sum(b - a for a, b in intervals)
        positions = []
        for k in range(count):
            t = (k + rng.uniform(0.2, 0.8)) / count * length
            for a, b in intervals:
                if t <= b - a:
                    positions.append(a + t)
                    break
                t -= b - a
        out[split] = sorted(positions)
    return out


# --------------------------------------------------------------------------- per-kind slices


class Sources:
    """Lazily loaded source volumes (each read once)."""

    def __init__(self, colin_file: Optional[Path] = None):
        self.colin_file = colin_file
        self._cache: Dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key not in self._cache:
            self._cache[key] = self._load(key)
        return self._cache[key]

    def tissue_range(self, volume: src.Volume, frame, fov_mm: float) -> Tuple[float, float]:
        """:func:`tissue_range` about the volume's centre, computed once per volume, frame and field of view."""
        key = (volume.source, tuple(np.round(np.concatenate(frame), 6)), fov_mm)
        if key not in self._cache:
            self._cache[key] = tissue_range(volume, volume.centre_mm(), frame, fov_mm)
        return self._cache[key]

    def _load(self, key: str) -> Any:
        colin = self.colin_file or src.MRICRON_DIR / src.COLIN_HEAD
        if key == "colin":
            return src.inferior_taper(src.load_nifti_volume(colin, "colin27", src.MRICRON_HINT))
        if key in ("colin_t2", "colin_flair"):
            mask = src.load_nifti_volume(src.MRICRON_DIR / src.COLIN_BRAIN_MASK, "colin27_brain", src.MRICRON_HINT)
            return src.t2_like(self.get("colin"), mask, flair=key == "colin_flair")
        if key == "itk":
            return src.inferior_taper(src.load_nifti_volume(src.ITK_DATA_DIR / src.ITK_T1, "itk_t1", src.ITK_HINT))
        return src.read_image_2d(src.ITK_DATA_DIR / key, src.ITK_HINT)


def _head_slices(kind: str, volume: src.Volume, orientation: str, positions: Sequence[float], size: int,
                 fov_mm: float, rng: np.random.Generator, frame=None) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Slices of a head volume at ``positions`` (mm along the normal from the head's centre)."""
    normal, row, col = frame if frame is not None else src.plane_frame(orientation)
    centre = volume.centre_mm()
    images, notes = [], []
    for s in positions:
        point = centre + s * normal
        note: Dict[str, Any] = {"offset_mm": round(float(s), 2)}
        if kind == "colin_lowres":
            resolution, thickness = rng.uniform(2.0, 3.0), rng.uniform(3.0, 5.0)
            low = int(round(fov_mm / resolution))
            image = src.upsample(src.sample_plane(volume, point, row, col, fov_mm, low, 3, thickness, normal), size)
            note.update(resolution_mm=round(fov_mm / low, 3), thickness_mm=round(thickness, 2))
        else:
            image = src.sample_plane(volume, point, row, col, fov_mm, size)
        if kind == "colin_epi":
            image, params = src.epi_like(image, rng)
            note.update({k: round(v, 3) for k, v in params.items()})
        images.append(image)
        notes.append(note)
    return np.stack(images), notes


def _body_variants(image: np.ndarray, count: int, size: int, rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """``count`` rotated / flipped / zoomed copies of a real 2-D slice, background noise masked out."""
    from scipy import ndimage

    level = float(np.percentile(image, 99.5))
    body = ndimage.binary_fill_holes(ndimage.gaussian_filter(image, 2) > 0.08 * level)
    labels, num = ndimage.label(body)
    if num > 1:  # keep the largest component
        body = labels == (np.argmax(ndimage.sum(body, labels, range(1, num + 1))) + 1)
    soft = ndimage.gaussian_filter(ndimage.binary_dilation(body, iterations=3).astype(np.float32), 1.5)
    clean = image * soft
    images, notes = [], []
    for _ in range(count):
        quarter, flip = int(rng.integers(4)), bool(rng.integers(2))
        angle, zoom = float(rng.uniform(-15, 15)), float(rng.uniform(0.8, 1.1))
        out = np.rot90(clean, quarter)
        out = out[:, ::-1] if flip else out
        out = ndimage.rotate(out, angle, reshape=False, order=3, mode="constant")
        scale = size / max(out.shape) * zoom
        out = np.clip(ndimage.zoom(out, scale, order=3, grid_mode=True, mode="grid-constant"), 0, None)
        canvas = np.zeros((size, size), np.float32)
        h, w = min(size, out.shape[0]), min(size, out.shape[1])
        top, left = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
        canvas[(size - h) // 2:(size - h) // 2 + h, (size - w) // 2:(size - w) // 2 + w] = out[top:top + h, left:left + w]
        images.append(canvas)
        notes.append({"rot90": quarter, "flip": flip, "angle_deg": round(angle, 2), "zoom": round(zoom, 3)})
    return np.stack(images), notes


#: real_body parts: (source file, split) -> share of the per-part count (x 1.5 for test, abdomen + lung = 3 parts)
BODY_PARTS = {"test": (("abdomen", src.ITK_ABDOMEN, 1.5), ("ratlung", src.ITK_RAT_LUNGS[1], 1.5)),
              "val": (("ratlung", src.ITK_RAT_LUNGS[0], 3.0),)}


def plan_kind(kind: str, sources: Sources, counts: Dict[str, int], size: int, seed: int) -> List[Dict[str, Any]]:
    """The volumes of one kind: ``[{"split", "kind", "part", "magnitude" (S, H, W), "slices" notes, ...}]``.

    ``counts[split]`` is the number of slices per part (3 parts per split for every kind but
    ``real_body``, whose val part has 3x and test parts 1.5x the count).
    """
    volumes: List[Dict[str, Any]] = []
    if kind.startswith("colin") or kind == "itk_t1":
        base = sources.get("itk" if kind == "itk_t1" else "colin")
        fov = ITK_FOV_MM if kind == "itk_t1" else HEAD_FOV_MM
        for orientation in src.ORIENTATIONS:
            rng = _rng(seed, kind, orientation)
            frame = None
            if kind == "colin_oblique":  # one tilt per orientation: val and test planes stay parallel
                frame = src.plane_frame(orientation, rng.uniform(15, 35), rng.uniform(0, 360), rng.uniform(-20, 20))
            volume = base
            if kind == "colin_t2like":
                volume = sources.get("colin_flair" if T2LIKE_FLAIR[orientation] else "colin_t2")
            frame_used = frame if frame is not None else src.plane_frame(orientation)
            lo, hi = sources.tissue_range(base, frame_used, fov)
            positions = split_positions(lo, hi, counts, rng)
            for split in SPLITS:
                if not counts.get(split):
                    continue
                magnitude, notes = _head_slices(kind, volume, orientation, positions[split], size, fov, _rng(seed, kind, orientation, split), frame)
                contrast = ("FLAIR" if T2LIKE_FLAIR[orientation] else "T2") if kind == "colin_t2like" else "T1"
                volumes.append({"split": split, "kind": kind, "part": orientation, "magnitude": magnitude, "slices": notes,
                                "source": volume.source, "fov_mm": fov, "slice_mm": 1.0, "range_mm": [lo, hi],
                                "frame": [v.round(4).tolist() for v in frame_used], "contrast": contrast,
                                "acquisition": ORIENTATION_CODES[orientation] + contrast})
    elif kind == "real_body":
        for split in SPLITS:
            for part, file_name, share in BODY_PARTS[split] if counts.get(split) else ():
                rng = _rng(seed, kind, split, part)
                magnitude, notes = _body_variants(sources.get(file_name), int(round(share * counts[split])), size, rng)
                volumes.append({"split": split, "kind": kind, "part": part, "magnitude": magnitude, "slices": notes,
                                "source": str(src.ITK_DATA_DIR / file_name), "fov_mm": 300.0 if part == "abdomen" else 60.0,
                                "slice_mm": 5.0 if part == "abdomen" else 1.0, "acquisition": part.upper()})
    elif kind in ("limb", "abdomen"):
        for split in SPLITS:
            for part in range(3 if counts.get(split) else 0):
                rng = _rng(seed, kind, split, str(part))
                magnitude = shape_slices(kind, counts[split], size, rng)
                volumes.append({"split": split, "kind": kind, "part": f"v{part}", "magnitude": magnitude,
                                "slices": [{} for _ in range(counts[split])], "source": "ccdf_mri.simulation.validation_shapes",
                                "fov_mm": 160.0 if kind == "limb" else 380.0, "slice_mm": 3.0, "acquisition": kind.upper()})
    else:
        raise ValueError(f"kind: expected one of {KINDS}, found {kind!r}")
    return volumes


# --------------------------------------------------------------------------- writing


def write_volume(volume: Dict[str, Any], out: Path, coils: int, snr_db: Optional[float], seed: int) -> Dict[str, Any]:
    """Simulate coils, phase and noise for one planned volume and write ``out/<split>/<kind>_<part>.h5``.

    Returns:
        the manifest entry (everything but the arrays).
    """
    name = f"{volume['kind']}_{volume['part']}"
    path = out / volume["split"] / f"{name}.h5"
    rng = _rng(seed, "simulate", volume["split"], name)
    kspace, target, _ = simulate_from_magnitude(volume["magnitude"], coils, snr_db, rng)
    info = {k: v for k, v in volume.items() if k != "magnitude"}
    info.update(file=str(path.relative_to(out)), num_slices=int(kspace.shape[0]), coils=coils,
                snr_db=snr_db, seed=seed)
    extra = {"kind": volume["kind"], "split": volume["split"], "part": str(volume["part"]), "source": volume["source"],
             "seed": int(seed), "snr_db": float("nan") if snr_db is None else float(snr_db),
             "slices_json": json.dumps(volume["slices"])}
    fov = float(volume["fov_mm"])
    write_simulated_h5(path, kspace, target, (fov, fov), float(volume["slice_mm"]), volume["acquisition"],
                       f"validation_{volume['split']}_{name}", extra)
    return info


def build(out: Path, kinds: Sequence[str], counts: Dict[str, int], size: int, coils: int, snr_db: Optional[float],
          seed: int, colin_file: Optional[Path] = None, command: str = "", log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Build the set into ``out``; returns the manifest (also written to ``out/manifest.json``).

    Kinds whose source files are missing are skipped; the manifest lists them under ``skipped``.
    """
    from ccdf_mri.data_prep.validation_readme import write_readme

    start = time.perf_counter()
    out = Path(out)
    sources = Sources(colin_file)
    entries: List[Dict[str, Any]] = []
    skipped: Dict[str, str] = {}
    for kind in kinds:
        try:
            planned = plan_kind(kind, sources, counts, size, seed)
        except FileNotFoundError as error:
            skipped[kind] = str(error)
            log(f"skipped {kind}: {error}")
            continue
        for volume in planned:
            entries.append(write_volume(volume, out, coils, snr_db, seed))
        log(f"{kind}: " + ", ".join(f"{s} {sum(e['num_slices'] for e in entries if e['kind'] == kind and e['split'] == s)} slices" for s in SPLITS))
    manifest = {
        "command": command or "make_validation_set.build(...)",
        "size": size, "coils": coils, "snr_db": snr_db, "seed": seed, "counts_per_part": counts,
        "volumes": entries, "skipped": skipped, "seconds": round(time.perf_counter() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    write_readme(out / "README.md", manifest)
    return manifest


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m ccdf_mri.data_prep.make_validation_set",
        description=("Build a validation set of real MR images (Colin27 from the Debian package mricron-data, a second "
                     "head and real body slices from insighttoolkit5-examples) and out-of-distribution synthetic cases, as "
                     "simulated multi-coil fastMRI files split into val/ (tuning) and test/ (headline numbers)."),
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--size", type=int, default=256, help="matrix side (default 256)")
    parser.add_argument("--coils", type=int, default=8, help="receive coils (default 8)")
    parser.add_argument("--snr-db", type=float, default=40.0, help="k-space noise SNR in dB (default 40)")
    parser.add_argument("--no-noise", action="store_true", help="noise-free k-space")
    parser.add_argument("--test-per-part", type=int, default=8, help="test slices per orientation / part (3 parts: 24 per kind)")
    parser.add_argument("--val-per-part", type=int, default=2, help="val slices per orientation / part (default 2: 6 per kind)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="kinds to build (default all)")
    parser.add_argument("--colin-file", type=Path, default=None,
                        help=f"Colin27 NIfTI (default {src.MRICRON_DIR / src.COLIN_HEAD}; e.g. {src.COLIN_BETTER} for the skull-stripped 0.5 mm one)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build the set; exit status 0, or 1 when Colin27 (the core of the set) is missing."""
    args = parse_args(argv)
    counts = {"val": args.val_per_part, "test": args.test_per_part}
    command = "python -m ccdf_mri.data_prep.make_validation_set " + " ".join(sys.argv[1:] if argv is None else argv)
    manifest = build(args.out, args.kinds, counts, args.size, args.coils, None if args.no_noise else args.snr_db, args.seed,
                     args.colin_file, command)
    slices = {s: sum(e["num_slices"] for e in manifest["volumes"] if e["split"] == s) for s in SPLITS}
    print(f"make_validation_set -> {args.out}: {len(manifest['volumes'])} files, val {slices['val']} / test {slices['test']} slices, "
          f"{manifest['seconds']} s")
    colin_missing = [k for k in manifest["skipped"] if k.startswith("colin")]
    for kind, reason in manifest["skipped"].items():
        print(f"  skipped {kind}: {reason}")
    return 1 if colin_missing else 0


if __name__ == "__main__":
    sys.exit(main())
