"""Writing one volume's outputs, atomically, with the record of what made them.

Outputs of volume ``<name>`` in ``output_dir``: ``<name>.nii.gz`` (``nifti``), the fastMRI
submission ``<name>.h5`` (dataset ``reconstruction``; ``h5``), ``<name>_dicom/`` (``dicom``),
``<name>_std.nii.gz`` (pixel standard deviation over posterior samples, when there are
several) and ``<name>.provenance.json`` (:mod:`ccdf_mri.io.provenance`: the input's identity,
every setting, the model hashes and the package version).

Resume: a volume is finished when its record exists, every output the record lists exists,
and the record matches the one the current run would write (:meth:`VolumeWriter.status`).
Writing order: outputs the old record lists that this write will not replace (a std map,
a format no longer asked for) and the old record are removed first, the outputs are
written (each atomically), the new record last; so an interrupted redo never leaves a record vouching for a mix of old
and new files, and a failed write removes what this call wrote.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ccdf_mri.app.options import parse_formats
from ccdf_mri.io.provenance import differences, read_record, record_path, write_record

PathLike = Union[str, os.PathLike]
SUFFIXES = {"nifti": ".nii.gz", "h5": ".h5", "dicom": "_dicom", "std": "_std.nii.gz"}


@dataclass(frozen=True)
class OutputStatus:
    """Whether a volume's outputs can be reused.

    Attributes:
        state: ``"missing"`` (no record), ``"done"`` (reusable) or ``"changed"`` (made
            differently, or incomplete).
        reasons: what differs (``"acceleration: 4 -> 8"``, ``"missing output x_std.nii.gz"``).
    """

    state: str
    reasons: Sequence[str] = ()


class VolumeWriter:
    """Write one volume's outputs into ``output_dir``, atomically, with its provenance record.

    Args:
        output_dir: folder, created when missing.
        formats: subset of ``("nifti", "h5", "dicom")``.
        overwrite: redo volumes even when their outputs match the current settings.
        overwrite_changed: redo volumes whose outputs were made with other settings or
            another input (default); False refuses them with the differing settings named.
        software_version: written into DICOM ``SoftwareVersions``.
    """

    def __init__(
        self,
        output_dir: PathLike,
        formats: Union[str, Sequence[str]] = ("nifti", "h5"),
        overwrite: bool = False,
        overwrite_changed: bool = True,
        software_version: Optional[str] = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.formats = parse_formats(formats)
        self.overwrite = bool(overwrite)
        self.overwrite_changed = bool(overwrite_changed)
        self.software_version = software_version

    def check_writable(self) -> None:
        """Create ``output_dir`` and check a file can be written there.

        Raises:
            PermissionError naming the folder when it cannot be written.
        """
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.output_dir, prefix=".write-test-"):
                pass  # a unique name: several ranks may check the same folder at once
        except OSError as error:
            raise PermissionError(f"{self.output_dir}: output folder cannot be written ({error.strerror or error})") from None

    def paths(self, name: str, with_std: bool = False) -> Dict[str, Path]:
        """``{format: path}`` of the outputs of volume ``name`` (plus ``"std"`` when asked)."""
        paths = {fmt: self.output_dir / f"{name}{SUFFIXES[fmt]}" for fmt in self.formats}
        if with_std:
            paths["std"] = self.output_dir / f"{name}{SUFFIXES['std']}"
        return paths

    def record_path(self, name: str) -> Path:
        """``<name>.provenance.json``."""
        return record_path(self.output_dir, name)

    def status(self, name: str, record: Mapping[str, Any]) -> OutputStatus:
        """Compare the stored record of ``name`` with ``record`` (what this run would write)."""
        try:
            old = read_record(self.record_path(name))
        except ValueError as error:
            return OutputStatus("changed", (str(error),))
        if old is None:
            return OutputStatus("missing")
        reasons = differences(old, record)
        listed = [self.output_dir / item for item in old.get("outputs", [])]
        wanted = self.paths(name, with_std=bool(record.get("settings", {}).get("num_samples", 1) > 1)).values()
        reasons += [f"missing output {path.name}" for path in dict.fromkeys([*listed, *wanted]) if not path.exists()]
        return OutputStatus("changed" if reasons else "done", tuple(reasons))

    def write(
        self,
        name: str,
        image: np.ndarray,
        header: Any = None,
        std: Optional[np.ndarray] = None,
        info: Any = None,
        record: Optional[Mapping[str, Any]] = None,
        description: str = "CCDF reconstruction",
    ) -> List[Path]:
        """Write ``image`` (and ``std``) ``(S, h, w)`` float32, then ``record``; returns the written paths.

        Args:
            name: the volume's output name.
            image: magnitude volume in the input's intensity units.
            header: :class:`ccdf_mri.io.FastMRIHeader` (geometry).
            std: pixel standard deviation, or None.
            info: :class:`ccdf_mri.io.ScanInfo` (patient, study, slice plane), one for all files.
            record: the provenance record (:func:`ccdf_mri.io.make_record`); None writes none.
            description: DICOM series description.
        """
        from ccdf_mri.io.writers import save_dicom_series, save_nifti, save_submission_h5

        paths = self.paths(name, with_std=std is not None)
        self._remove_stale(name, paths.values())
        _remove(self.record_path(name))
        written: List[Path] = []
        try:
            for fmt, path in paths.items():
                if fmt == "nifti":
                    save_nifti(path, image, header, info)
                elif fmt == "h5":
                    save_submission_h5(path, image)
                elif fmt == "dicom":
                    save_dicom_series(path, image, header, series_description=description, info=info,
                                      software_version=self.software_version)
                else:
                    save_nifti(path, std, header, info)
                written.append(path)
            if record is not None:
                full = {**record, "outputs": [path.name for path in written]}
                written.append(write_record(self.record_path(name), full))
        except BaseException:
            for path in written:
                _remove(path)
            raise
        return written

    def _remove_stale(self, name: str, keep: Sequence[Path]) -> None:
        """Remove the outputs an earlier record of ``name`` lists that this write will not
        replace (e.g. the std map of a run with more samples, a format no longer asked for),
        so no output of other settings is left beside the new ones. Only files a record
        names are touched: never an input or a file this writer did not make."""
        try:
            old = read_record(self.record_path(name))
        except ValueError:
            return
        keep = {path.name for path in keep}
        for item in (old or {}).get("outputs", []):
            if Path(item).name == item and item not in keep and item.startswith(name):
                _remove(self.output_dir / item)

    def read_done(self, name: str) -> Optional[np.ndarray]:
        """The ``reconstruction`` of an existing ``<name>.h5`` output, else the NIfTI's data, or None."""
        import h5py

        path = self.output_dir / f"{name}{SUFFIXES['h5']}"
        if path.is_file():
            with h5py.File(path, "r") as handle:
                return np.asarray(handle["reconstruction"], dtype=np.float32)
        path = self.output_dir / f"{name}{SUFFIXES['nifti']}"
        if path.is_file():
            import nibabel as nib

            return np.ascontiguousarray(np.moveaxis(np.asarray(nib.load(str(path)).dataobj, dtype=np.float32), -1, 0))
        return None


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()
