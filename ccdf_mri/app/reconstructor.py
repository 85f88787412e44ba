"""Batch reconstruction of fastMRI volumes: the one engine behind the CLI and the bundle.

Build it from its parts (what the bundle config declares; :func:`ccdf_mri.app.build.from_bundle`
does it for the CLI), then call :meth:`Reconstructor.run` (sigpy-app style). Per input file
(:meth:`Reconstructor.process`):

1. **scan** the whole volume once (:meth:`ccdf_mri.io.FastMRIVolume.scan`): every slice finite
   and of the declared shape, the target dataset present, the sampled columns; a bad file fails
   here, before any reconstruction;
2. **the mask**: the file's own (fastMRI test files), else ``mask_file``, else the sampled
   columns of already-undersampled k-space (unless ``retrospective``), else a retrospective
   mask seeded from the file name (made by the preprocessing); the choice is logged and noted;
3. **resume**: the provenance record this run would write (input identity, the mask, every
   setting of every part, the network weights' hashes, the version) is compared with the
   stored one; equal -> skipped, different -> redone (or refused without ``overwrite_changed``);
4. **reconstruct** a batch of slices at a time: ``preprocessing`` (the one path,
   :mod:`ccdf_mri.preprocessing`), ``initializer`` -> ``x0``, ``inferer`` (CCDF), with one
   random generator per slice seeded by ``(seed, file name, slice)`` so outputs do not depend
   on batching or sharding;
5. **postprocessing** (:mod:`ccdf_mri.app.postprocessing`): unscale, magnitude, crop, write;
6. **score** against the target when the file has one.

Steps 1-4 are :meth:`Reconstructor.compute`, 5-6 :meth:`Reconstructor.complete`; :meth:`run`
does 5-6 of a volume in a background thread while the next volume goes through 1-4.

:meth:`Reconstructor.run` expands inputs (:func:`ccdf_mri.io.find_inputs`), names outputs
(:func:`ccdf_mri.io.output_names`; a collision is an error before any work), shards files over
``torch.distributed`` ranks, merges ``metrics.csv`` across runs, and on Ctrl-C stops with a
report of what finished.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm.auto import tqdm

import ccdf_mri
from ccdf_mri.app.calibration_check import check_calibration
from ccdf_mri.app.describe import describe, flatten
from ccdf_mri.app.report import ComputedVolume, RunReport, VolumeResult
from ccdf_mri.io import FastMRIVolume, find_inputs, make_record, merge_metrics_csv, output_names
from ccdf_mri.io.provenance import array_sha256
from ccdf_mri.metrics import volume_metrics
from ccdf_mri.physics import SenseOp
from ccdf_mri.physics.masks import load_mask_file
from ccdf_mri.preprocessing import volume_batch

PathLike = Union[str, os.PathLike]
logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())  # messages reach the application's handlers, never stderr by default

CAUGHT = (ValueError, OSError, KeyError, RuntimeError)
RETROSPECTIVE_NOTE = "retrospective mask seeded from the file name"


def slice_seed(seed: int, name: str, index: int) -> int:
    """Seed of the random numbers of slice ``index`` of file ``name`` (independent of batching)."""
    return (int(seed) * 1_000_003 + zlib.crc32(f"{name}:{index}".encode())) % (2**62)


def _distributed() -> Tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Reconstructor:
    """Reconstruct fastMRI volumes with CCDF and write their outputs.

    Args:
        network: the score network ``(B, 2, H, W), (B,) -> (B, 2, H, W)`` (None is fine when
            the inferer's ``t0`` is 0: it then returns ``x0`` without calling it).
        inferer: a :class:`ccdf_mri.inferers.CCDFInferer`.
        initializer: ``(op, kspace) -> x0`` (:mod:`ccdf_mri.initializers`).
        preprocessing: the preprocessing ``Compose`` (:func:`ccdf_mri.preprocessing.make_preprocessing`).
        postprocessing: the postprocessing ``Compose`` (:func:`ccdf_mri.app.postprocessing.make_postprocessing`),
            which writes through ``writer``.
        writer: :class:`ccdf_mri.app.writer.VolumeWriter` (output folder, formats, resume rules).
        device: where the data and networks live.
        batch_size: slices per batch.
        seed: base seed of the per-slice random generators.
        progress: progress bars (files, slices, diffusion steps).
        target_key: dataset scored in ``metrics.csv``; None = the file's fastMRI target.
        mask_file: a user's mask (``.npy`` / ``.h5``) for every input without its own.
        retrospective: undersample retrospectively even when the k-space is already undersampled.
        patient_id: overrides the files' patient ID in DICOM outputs.
        recursive: search input folders' subfolders.
        name_by_path: name outputs by their path below the input folder (``a__b__x``) instead
            of refusing two inputs with the same file name.
        prefetch: read and preprocess the next batch of a volume in a background thread
            (:meth:`batches`). Off in the bundle: it measured slower wherever it was measured
            (2-core CPU, 2 batches per volume: 7.75 s against 5.89 s per slice; H200 machine, one
            batch per volume: 5-11 % slower), for the OpenMP reason given below.
        background_writes: :meth:`run` (``ccdf-mri recon``) and the bundle's evaluator
            (:class:`ccdf_mri.app.engine.ReconstructionEvaluator`) write and score a volume in a
            background thread while the next one is reconstructed (outputs are the same; at most
            one volume waits).
            ``"auto"``: on CUDA only. Measured (``benchmarks/results/gpu/overlap_*.md``,
            ``benchmarks/results/overlap_cpu.md``): 18-19 % less time per slice on the H200
            machine; on the 2-core CPU 39 % more, since torch work in a second thread brings a
            second OpenMP team that spins on the same cores (it slows the main thread's next
            volume too).
    """

    def __init__(
        self,
        network: Optional[torch.nn.Module],
        inferer: Any,
        initializer: Callable[[SenseOp, torch.Tensor], torch.Tensor],
        preprocessing: Callable[[Dict[str, Any]], Dict[str, Any]],
        postprocessing: Callable[[Dict[str, Any]], Dict[str, Any]],
        writer: Any,
        device: Union[str, torch.device, None] = None,
        batch_size: int = 8,
        seed: int = 0,
        progress: bool = True,
        target_key: Optional[str] = None,
        mask_file: Optional[PathLike] = None,
        retrospective: bool = False,
        patient_id: Optional[str] = None,
        recursive: bool = True,
        name_by_path: bool = False,
        prefetch: bool = True,
        background_writes: Union[bool, str] = "auto",
    ) -> None:
        from ccdf_mri.app.options import default_device

        if int(batch_size) < 1:
            raise ValueError(f"batch_size: expected >= 1, found {batch_size}")
        if mask_file is not None and not Path(mask_file).is_file():
            raise FileNotFoundError(f"{mask_file}: mask file not found")
        self.network = network
        self.inferer = inferer
        self.initializer = initializer
        self.preprocessing = preprocessing
        self.postprocessing = postprocessing
        self.writer = writer
        self.device = default_device(device)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.progress = bool(progress)
        self.target_key = target_key
        self.mask_file = None if mask_file is None else Path(mask_file)
        self.retrospective = bool(retrospective)
        self.patient_id = patient_id
        self.recursive = bool(recursive)
        self.name_by_path = bool(name_by_path)
        self.prefetch = bool(prefetch)
        if background_writes not in (True, False, "auto"):
            raise ValueError(f"background_writes: expected true, false or 'auto', found {background_writes!r}")
        self.background_writes = self.device.type == "cuda" if background_writes == "auto" else bool(background_writes)
        self._settings: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ settings
    def settings(self) -> Dict[str, Any]:
        """Everything that changes an output, from the parts themselves (for provenance records):
        preprocessing, initializer (with its network's weight hash), inferer (schedule, sampler,
        t0 or its selector, steps, samples, DC map), score network hash, seed."""
        if self._settings is None:
            self._settings = flatten({
                "preprocessing": describe(self.preprocessing),
                "initializer": describe(self.initializer),
                "inferer": describe(self.inferer),
                "network": describe(self.network),
                "seed": self.seed,
                "num_samples": int(getattr(self.inferer, "num_samples", 1)),
            })
            check_calibration(self.inferer, self._settings)  # warns once when t0 'auto' was fitted for other parts
        return self._settings

    # ------------------------------------------------------------------ one volume
    def volume_mask(self, volume: FastMRIVolume, scan: Any) -> Tuple[Optional[torch.Tensor], str]:
        """The mask for ``volume`` and why: ``(mask or None, note)``; None = retrospective from the file name."""
        if volume.mask is not None:
            return torch.from_numpy(np.asarray(volume.mask, np.float32)).reshape(1, 1, 1, -1), "the file's own mask"
        if self.mask_file is not None:
            rows = scan.kspace_shape[2]
            rows = volume.header.readout_crop_rows(rows) or rows
            return load_mask_file(self.mask_file, scan.kspace_shape[3], rows), f"mask file {self.mask_file}"
        if scan.detected_mask is not None and not self.retrospective:
            note = (
                f"already undersampled k-space: using its sampled columns as the mask "
                f"(acceleration {scan.detected_acceleration:.2f}; --retrospective undersamples it again)"
            )
            return scan.detected_mask, note
        return None, RETROSPECTIVE_NOTE

    @torch.no_grad()
    def reconstruct(self, volume: FastMRIVolume, mask: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        """Reconstruct one open volume, a batch of slices at a time.

        Returns:
            ``{"pred": complex (S, H, W) scaled, "std": real (S, H, W) scaled or None,
            "scale": (S,), "t0": (S,), "nfe": (S,)}`` on the CPU.
        """
        name = volume.path.name
        preds, stds, scales, t0s, nfes = [], [], [], [], []
        bar = tqdm(total=volume.num_slices, desc=Path(name).stem, unit="slice", leave=False, disable=not self.progress)
        for indices, data in self.batches(volume, mask):
            op = SenseOp(data["maps"], data["mask"])
            x0 = self.initializer(op, data["kspace"])
            generators = [torch.Generator(device=self.device).manual_seed(slice_seed(self.seed, name, i)) for i in indices]
            result = self.inferer(x0, self.network, op, data["kspace"], generator=generators)
            preds.append(result.mean.cpu())
            if result.std is not None:
                stds.append(result.std.cpu())
            scales.append(data["scale"].reshape(-1).cpu())
            t0s.append(result.t0.cpu())
            nfes.append(result.nfe.cpu())
            bar.update(len(indices))
        bar.close()
        return {
            "pred": torch.cat(preds),
            "std": torch.cat(stds) if stds else None,
            "scale": torch.cat(scales),
            "t0": torch.cat(t0s),
            "nfe": torch.cat(nfes),
        }

    def batches(self, volume: FastMRIVolume, mask: Optional[torch.Tensor] = None) -> Iterator[Tuple[List[int], Dict[str, Any]]]:
        """``(slice indices, preprocessed batch)`` of a volume, in order.

        With ``prefetch`` the next batch is read (HDF5) and preprocessed (crop, mask, coil maps,
        SENSE, scale) in a background thread while the caller computes on the current one: the
        overlapped pipeline that keeps a GPU busy (the file is only read by that thread).
        """
        starts = list(range(0, volume.num_slices, self.batch_size))

        def load(start: int) -> Tuple[List[int], Dict[str, Any]]:
            indices = list(range(start, min(start + self.batch_size, volume.num_slices)))
            return indices, self.preprocessing(volume_batch(volume, indices, mask, self.device))

        if not self.prefetch:
            for start in starts:
                yield load(start)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccdf-prefetch") as pool:
            pending = pool.submit(load, starts[0])
            for following in starts[1:] + [None]:
                batch = pending.result()
                if following is not None:
                    pending = pool.submit(load, following)
                yield batch

    def record(self, path: Path, mask: Optional[torch.Tensor], note: str) -> Dict[str, Any]:
        """The provenance record this run would write for ``path`` with ``mask``."""
        settings = {**self.settings(), "mask": {"source": note, "sha256": None if mask is None else array_sha256(mask.cpu().numpy())}}
        return make_record(path, settings, {}, ccdf_mri.__version__)

    def process(self, path: PathLike, name: Optional[str] = None) -> VolumeResult:
        """Reconstruct, write and score one file; errors become a failed result naming the file."""
        return self.complete(self.compute(path, name))

    def compute(self, path: PathLike, name: Optional[str] = None) -> "ComputedVolume":
        """Steps 1-4 of one file (scan, mask, resume, reconstruct) and reading its target;
        :meth:`complete` writes and scores (:meth:`run` calls it in a background thread)."""
        from ccdf_mri.io.discovery import volume_name

        path = Path(path)
        job = ComputedVolume(VolumeResult(name=name or volume_name(path), path=str(path), status="failed"))
        result, name = job.result, job.result.name
        try:
            outputs = [*self.writer.paths(name, with_std=True).values(), self.writer.record_path(name)]
            if path.exists() and any(out.exists() and out.resolve() == path.resolve() for out in outputs):
                raise ValueError(f"{path}: an output would overwrite the input; choose another output folder")
            with FastMRIVolume(path) as volume:
                scan = volume.scan(self.target_key)
                result.slices = volume.num_slices
                mask, note = self.volume_mask(volume, scan)
                result.notes.append(note)
                if note != RETROSPECTIVE_NOTE:
                    logger.info("%s: %s", path, note)
                record = self.record(path, mask, note)
                status = self.writer.status(name, record)
                if status.state == "done" and not self.writer.overwrite:
                    result.status = "skipped"
                    job.image = self.writer.read_done(name)
                else:
                    if status.state == "changed" and not self.writer.overwrite and not self.writer.overwrite_changed:
                        raise ValueError(
                            f"{path}: the outputs of '{name}' in {self.writer.output_dir} were made differently "
                            f"({'; '.join(status.reasons)}); not overwritten because of --no-overwrite-changed "
                            "(overwrite_changed=False); rerun without it to redo them"
                        )
                    if status.state == "changed":
                        result.notes.append(f"redone: its outputs were made differently ({'; '.join(status.reasons)})")
                        logger.info("%s: redoing '%s': %s", path, name, "; ".join(status.reasons))
                    start = time.perf_counter()
                    job.out = self.reconstruct(volume, mask)
                    job.meta = {"name": name, "header": volume.header, "record": record,
                                "info": volume.scan_info(patient_id=self.patient_id)}
                    result.seconds = time.perf_counter() - start
                    result.nfe = float(job.out["nfe"].double().mean())
                    result.t0 = float(job.out["t0"].mean())
                if scan.target_key is not None:
                    job.target_key = scan.target_key
                    job.target = np.stack([volume.target_slice(i, scan.target_key) for i in range(volume.num_slices)])
        except CAUGHT as error:
            result.fail(path, error)
        return job

    def complete(self, job: "ComputedVolume") -> VolumeResult:
        """Step 5-6 of one file: write the outputs of :meth:`compute` and score them."""
        result = job.result
        if result.error:
            return result
        try:
            image = job.image
            if job.out is not None:
                start = time.perf_counter()
                done = self.postprocessing({**job.out, "meta": job.meta})
                result.seconds += time.perf_counter() - start
                result.outputs = [str(p) for p in done.get("outputs", [])]
                result.status = "done"
                image = done["pred"]
            if job.target is not None and image is not None:
                if job.target.shape != image.shape:
                    raise ValueError(
                        f"{result.path}: key '{job.target_key}': expected the reconstruction's shape "
                        f"{image.shape}, found {job.target.shape}"
                    )
                result.metrics = volume_metrics(job.target, image)
        except CAUGHT as error:
            result.fail(Path(result.path), error)
        return result

    # ------------------------------------------------------------------ many
    def plan(self, inputs: Union[PathLike, Sequence[PathLike]]) -> List[Tuple[int, Path, str]]:
        """This rank's share of the inputs: ``[(input index, file, output name)]``.

        Expands ``inputs`` (:func:`ccdf_mri.io.find_inputs`), names the outputs
        (:func:`ccdf_mri.io.output_names`) and checks the output folder, all before any work.

        Raises:
            ccdf_mri.io.NoInputsError: no input file found (the message says where it looked).
            ccdf_mri.io.NameCollisionError: two inputs would write the same outputs.
            PermissionError: the output folder cannot be written.
        """
        inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        files = find_inputs(inputs, recursive=self.recursive, exclude=[self.writer.output_dir])
        names = output_names(files, roots=inputs, by_relative_path=self.name_by_path)
        self.writer.check_writable()
        rank, world = _distributed()
        return [(index, Path(path), names[Path(path)]) for index, path in enumerate(files)][rank::world]

    def finish(self, local: Sequence[Tuple[int, VolumeResult]], interrupted: bool = False) -> RunReport:
        """Gather the results of all ranks, merge ``metrics.csv`` (rank 0), log the summary."""
        rank, world = _distributed()
        local = list(local)
        if world > 1 and not interrupted:
            gathered: List[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, local)
            local = [item for part in gathered for item in part]
        results = [result for _, result in sorted(local, key=lambda item: item[0])]
        report = RunReport(results, interrupted=interrupted)
        scored = {r.name: r.metrics for r in results if r.metrics}
        if rank == 0 and scored:
            report.metrics_path = merge_metrics_csv(self.writer.output_dir / "metrics.csv", scored)
        if rank == 0:
            logger.info("summary\n%s", report.table())
        return report

    def run(self, inputs: Union[PathLike, Sequence[PathLike]]) -> RunReport:
        """Reconstruct every input file (files or folders of ``*.h5``) and write the outputs.

        Under ``torch.distributed`` each rank takes ``files[rank::world]``; the results are
        gathered on every rank and rank 0 merges ``metrics.csv`` (one row per output, kept
        across runs). Ctrl-C stops the run after cleaning up the volume in progress (nothing
        half-written); the report then has ``interrupted`` set and lists what finished.

        Raises:
            see :meth:`plan` (before any work).
        """
        mine = self.plan(inputs)
        local: List[Tuple[int, VolumeResult]] = []
        interrupted = False
        bar = tqdm(mine, desc="volumes", unit="file", disable=not self.progress or _distributed()[0] != 0)
        writing: Optional[Tuple[int, Any]] = None  # (index, future) of the volume being written
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccdf-writer") as pool:
            try:
                for index, path, name in bar:
                    job = self.compute(path, name)
                    if not self.background_writes:
                        local.append((index, self.complete(job)))
                        continue
                    if writing is not None:  # at most one volume waits to be written
                        local.append((writing[0], writing[1].result()))
                    writing = (index, pool.submit(self.complete, job))
                if writing is not None:
                    local.append((writing[0], writing[1].result()))
            except KeyboardInterrupt:
                interrupted = True
                done = {index for index, _ in local}
                if writing is not None and writing[0] not in done:
                    try:  # let the volume being written finish (or clean up after itself)
                        local.append((writing[0], writing[1].result()))
                    except BaseException:  # noqa: BLE001 - interrupted inside the writer: it counts as not finished
                        pass
                done = {index for index, _ in local}
                local += [(i, VolumeResult(name, str(p), "not started")) for i, p, name in mine if i not in done]
            finally:
                bar.close()
        return self.finish(local, interrupted)
