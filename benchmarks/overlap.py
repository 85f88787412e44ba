"""Does the overlapped pipeline overlap? A timeline of ``Reconstructor.run`` over several volumes
with prefetch (next batch read and preprocessed in a thread) and background writes (a volume
written while the next is reconstructed) on and off (issue 11, item 2).

For each setting, interleaved over ``--repeats``: seconds per slice of one run over ``--volumes``
synthetic volumes (after a warm-up volume), and the timeline of the last repeat: when each
volume's compute (read, preprocess, reconstruct) and write (postprocess, write, score) began and
ended, in ms from the run's start. Overlap shows as a write that ends after the next compute began.

Example (the 2-core CPU; on a GPU machine add ``--device cuda``)::

    python -m benchmarks.overlap --geometry fastmri --volumes 3 --repeats 2 --name overlap_cpu
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common, speed
from benchmarks.step_cost import parse_sets

SETTINGS = {"both off": (False, False), "prefetch only": (True, False), "background writes only": (False, True),
            "both on": (True, True)}


def timeline(recon: Any, files: Sequence[Path]) -> tuple[float, list[tuple[str, str, float]]]:
    """Seconds of ``recon.run(files)`` and its events ``(phase, volume, ms from start)``."""
    events: list[tuple[str, str, float]] = []
    compute, complete = recon.compute, recon.complete
    start = time.perf_counter()

    def traced_compute(path: Any, name: Any = None) -> Any:
        events.append(("compute begins", Path(path).stem, 1000 * (time.perf_counter() - start)))
        job = compute(path, name)
        events.append(("compute ends", Path(path).stem, 1000 * (time.perf_counter() - start)))
        return job

    def traced_complete(job: Any) -> Any:
        events.append(("write begins", job.result.name, 1000 * (time.perf_counter() - start)))
        result = complete(job)
        events.append(("write ends", job.result.name, 1000 * (time.perf_counter() - start)))
        return result

    recon.compute, recon.complete = traced_compute, traced_complete
    try:
        start = time.perf_counter()
        report = recon.run(list(files))
        common.synchronize(str(recon.device))
        seconds = time.perf_counter() - start
    finally:
        del recon.compute, recon.complete
    common.require_done(report, "overlap run")
    return seconds, sorted(events, key=lambda event: event[2])


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ccdf_overlap_"))
    files = [speed.write_volume(work / f"vol{i}.h5", args.geometry, args.slices, seed=i) for i in range(args.volumes + 1)]
    overrides = parse_sets(args.set)
    recons = {}
    for name, (prefetch, background) in SETTINGS.items():
        recon, _ = speed.build_reconstructor({**overrides, "prefetch": prefetch, "background_writes": background},
                                             work / name.replace(" ", "_"), args.device, args.batch)
        recon.run(files[0])  # warm-up
        recons[name] = recon
    seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    events: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, recon in recons.items():
            elapsed, events[name] = timeline(recon, files[1:])
            seconds[name].append(elapsed / (args.volumes * args.slices))
    return {"machine": common.machine_info(args.device), "command": "python -m benchmarks.overlap " + " ".join(args.argv),
            "overrides": overrides, "volumes": args.volumes, "slices": args.slices, "batch": args.batch,
            "s_per_slice": {name: {"median": float(np.median(v)), "all": v} for name, v in seconds.items()},
            "timeline": events}


def to_markdown(result: dict[str, Any]) -> str:
    lines = ["# Overlapped pipeline: prefetch and background writes", "",
             f"Command: `{result['command']}`", "", f"Machine: {result['machine']}", "",
             f"{result['volumes']} volumes x {result['slices']} slices, batch {result['batch']}, overrides "
             f"{result['overrides'] or 'none'}; seconds per slice, median over repeats (all values in brackets).", "",
             "| setting | s / slice |", "|---|---:|"]
    lines += [f"| {name} | {row['median']:.4f} ({', '.join(f'{v:.4f}' for v in row['all'])}) |"
              for name, row in result["s_per_slice"].items()]
    lines += ["", "Timeline of the last repeat (ms from the run's start):", ""]
    for name, events in result["timeline"].items():
        lines.append(f"- {name}: " + "; ".join(f"{phase} {volume} {ms:.0f}" for phase, volume, ms in events))
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--geometry", default="fastmri", choices=("fastmri", "demo", "tiny"))
    parser.add_argument("--volumes", type=int, default=3)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=["initializer=zero_filled", "t0=0"], metavar="KEY=VALUE",
                        help="bundle config overrides (default: the zero-filled path)")
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    parser.add_argument("--name", default="overlap")
    args = parser.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = run(args)
    common.write_json(args.out / f"{args.name}.json", result)
    common.write_text(args.out / f"{args.name}.md", to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
