"""fastMRI ``.h5`` files: a lazy per-slice reader and an atomic writer.

Layout of a fastMRI file (the format of https://fastmri.org data):

- ``kspace``: complex, ``(slices, coils, rows, cols)`` multi-coil or ``(slices, rows, cols)``
  single-coil; rows = readout (often 2x oversampled), cols = phase encode;
- ``ismrmrd_header``: ISMRMRD XML as bytes (see :mod:`ccdf_mri.io.header`);
- ``reconstruction_rss`` / ``reconstruction_esc``: magnitude targets ``(slices, h, w)``
  (absent in test-set files);
- ``mask``: ``(cols,)`` sampling mask, only in test/challenge files, whose k-space is
  already undersampled;
- attrs: ``max``, ``norm``, ``acquisition``, ``patient_id`` and, in test files,
  ``acceleration`` and ``num_low_frequency``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, Optional, Tuple, Union

import h5py
import numpy as np
import torch

from ccdf_mri.io.atomic import atomic_path
from ccdf_mri.io.header import FastMRIHeader, parse_ismrmrd_header
from ccdf_mri.io.scan_info import ScanInfo, read_scan_info

if TYPE_CHECKING:
    from ccdf_mri.io.scan import VolumeScan

PathLike = Union[str, os.PathLike]
KSPACE_KEY = "kspace"
HEADER_KEY = "ismrmrd_header"
MASK_KEY = "mask"
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
STANDARD_ATTRS = ("max", "norm", "acquisition", "patient_id")


def _plain(value: Any) -> Any:
    """HDF5 attribute value -> plain Python (str, float, int or list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class FastMRIVolume:
    """Lazy reader of one fastMRI ``.h5`` volume.

    The file is opened once, validated (keys, dtype, rank, header, shapes) and then read
    one slice at a time; the k-space volume is never loaded whole. Use as a context
    manager or call :meth:`close`.

    Args:
        path: the ``.h5`` file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not an HDF5 file, missing ``kspace`` or ``ismrmrd_header``, real-valued
            k-space, wrong rank, header that is not ISMRMRD XML, k-space rows/cols that
            disagree with the header's encoded matrix, or a malformed mask/target. The
            message names the file, the key and the expected vs found value.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._file: Optional[h5py.File] = None
        self._open()

    # -- opening and validation -------------------------------------------------------
    def _error(self, key: str, message: str) -> ValueError:
        return ValueError(f"{self.path}: key '{key}': {message}")

    def _open(self) -> None:
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such fastMRI .h5 file")
        if not h5py.is_hdf5(self.path):
            raise ValueError(f"{self.path}: expected an HDF5 (fastMRI .h5) file, found a file that is not HDF5")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise ValueError(f"{self.path}: expected a readable HDF5 file, found one h5py cannot open ({error})") from None
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    def _dataset(self, key: str, required: bool = True) -> Optional[h5py.Dataset]:
        if key not in self._file:
            if required:
                raise self._error(key, f"expected a dataset '{key}', found keys {sorted(self._file.keys())}")
            return None
        item = self._file[key]
        if not isinstance(item, h5py.Dataset):
            raise self._error(key, f"expected a dataset, found {type(item).__name__}")
        return item

    def _validate(self) -> None:
        kspace = self._dataset(KSPACE_KEY)
        if kspace.dtype.kind != "c":
            raise self._error(KSPACE_KEY, f"expected complex k-space, found dtype {kspace.dtype}")
        if kspace.ndim not in (3, 4):
            raise self._error(
                KSPACE_KEY,
                "expected shape (slices, coils, rows, cols) or (slices, rows, cols), "
                f"found shape {kspace.shape}",
            )
        self._kspace = kspace
        self.is_multicoil = kspace.ndim == 4
        self.num_slices = int(kspace.shape[0])
        self.num_coils = int(kspace.shape[1]) if self.is_multicoil else 1
        rows, cols = (int(n) for n in kspace.shape[-2:])
        self.kspace_shape = (self.num_slices, self.num_coils, rows, cols)

        raw_header = self._dataset(HEADER_KEY)[()]
        if isinstance(raw_header, np.ndarray):
            raw_header = raw_header.tobytes() if raw_header.dtype.kind in "SV" else raw_header.item()
        if not isinstance(raw_header, (bytes, str)):
            raise self._error(HEADER_KEY, f"expected ISMRMRD XML bytes, found {type(raw_header).__name__}")
        self.header: FastMRIHeader = parse_ismrmrd_header(raw_header, self.path)
        self.header_xml: str = raw_header.decode("utf-8") if isinstance(raw_header, bytes) else raw_header
        enc_x, enc_y = self.header.encoded_matrix[:2]
        if (rows, cols) != (enc_x, enc_y):
            raise self._error(
                KSPACE_KEY,
                f"shape {kspace.shape} disagrees with the ismrmrd_header encoded matrix: expected "
                f"rows x cols = {enc_x} x {enc_y}, found {rows} x {cols}",
            )

        self.attrs: Dict[str, Any] = {name: _plain(value) for name, value in self._file.attrs.items()}
        for name in STANDARD_ATTRS:
            self.attrs.setdefault(name, None)
        self.acceleration: Optional[float] = self.attrs.get("acceleration")
        self.num_low_frequency: Optional[int] = self.attrs.get("num_low_frequency")

        self.mask: Optional[np.ndarray] = None
        mask = self._dataset(MASK_KEY, required=False)
        if mask is not None:
            values = np.asarray(mask[()]).astype(np.float32).reshape(-1)
            if mask.ndim != 1 or values.shape[0] != cols:
                raise self._error(MASK_KEY, f"expected shape ({cols},) (k-space cols), found {mask.shape}")
            if not np.isin(values, (0.0, 1.0)).all():
                raise self._error(MASK_KEY, "expected 0/1 values, found others")
            self.mask = values
        self.has_mask = self.mask is not None

        self.target_key: Optional[str] = None
        preferred = TARGET_KEYS if self.is_multicoil else TARGET_KEYS[::-1]
        for key in preferred:
            target = self._dataset(key, required=False)
            if target is None:
                continue
            if target.ndim != 3 or target.shape[0] != self.num_slices:
                raise self._error(key, f"expected shape ({self.num_slices}, h, w), found {target.shape}")
            self.target_key = self.target_key or key

    # -- access -----------------------------------------------------------------------
    def _check_index(self, index: int) -> int:
        if not -self.num_slices <= index < self.num_slices:
            raise IndexError(f"{self.path}: slice {index} out of range for {self.num_slices} slices")
        return index % self.num_slices

    def kspace_slice(self, index: int) -> np.ndarray:
        """K-space of one slice.

        Args:
            index: slice index (negative counts from the end).

        Returns:
            complex64 array ``(C, H, W)`` (``C = 1`` for single-coil files).

        Raises:
            ValueError: the slice holds NaN or Inf, or cannot be read (truncated file).
        """
        index = self._check_index(index)
        try:
            data = np.asarray(self._kspace[index], dtype=np.complex64)
        except OSError as error:
            raise self._error(KSPACE_KEY, f"slice {index} cannot be read ({error})") from None
        if not self.is_multicoil:
            data = data[None]
        if not np.isfinite(data).all():
            bad = int(np.size(data) - np.isfinite(data).sum())
            raise self._error(KSPACE_KEY, f"expected finite values, found {bad} NaN/Inf in slice {index}")
        return data

    def target_slice(self, index: int, key: Optional[str] = None) -> np.ndarray:
        """Magnitude target of one slice, float32 ``(h, w)``.

        Args:
            index: slice index.
            key: ``reconstruction_rss`` or ``reconstruction_esc`` (default :attr:`target_key`),
                or any other image dataset of the file, e.g. the simulated corpus's noise-free
                ``target_complex``; complex datasets give their magnitude.
        """
        index = self._check_index(index)
        key = key or self.target_key
        if key is None or key not in self._file:
            raise self._error(
                key or TARGET_KEYS[0],
                f"expected a target dataset (one of {TARGET_KEYS}), found keys {sorted(self._file.keys())}",
            )
        target = self._file[key][index]
        return np.asarray(np.abs(target) if np.iscomplexobj(target) else target, dtype=np.float32)

    def sample(self, index: int) -> Dict[str, Any]:
        """One slice as the dictionary the :mod:`ccdf_mri.transforms` expect.

        Returns:
            ``{"kspace": complex64 tensor (C, H, W), "meta": {...}}`` plus ``"mask"``
            (float32 tensor ``(1, 1, W)``) for test-set files and ``"target"`` (float32
            tensor ``(h, w)``) when the file has one. ``meta`` holds ``filename`` (the file
            name, which seeds retrospective masks), ``slice`` and ``header`` (the ISMRMRD XML
            as str, which the transforms parse); all of it collates in a ``DataLoader``.
        """
        item: Dict[str, Any] = {
            "kspace": torch.from_numpy(self.kspace_slice(index)),
            "meta": {"filename": self.path.name, "slice": index, "header": self.header_xml},
        }
        if self.mask is not None:
            item["mask"] = torch.from_numpy(self.mask).reshape(1, 1, -1)
        if self.target_key is not None:
            item["target"] = torch.from_numpy(self.target_slice(index))
        return item

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """``(S, h, w)`` of the reconstruction: the header's recon matrix, centre-cropped from
        the k-space size after removing readout oversampling (no crop along an axis already
        smaller), as ``ccdf_mri.recon.Postprocessing`` writes it."""
        rows, cols = self.kspace_shape[2:]
        rows = self.header.readout_crop_rows(rows) or rows
        return (self.num_slices, min(self.header.recon_matrix[0], rows), min(self.header.recon_matrix[1], cols))

    def scan_info(self, patient_id: Optional[str] = None, slice_plane: Optional[str] = None) -> ScanInfo:
        """Patient, study, scanner and sequence facts of this file for the writers
        (:func:`ccdf_mri.io.scan_info.read_scan_info` of the header XML and attributes).

        Args:
            patient_id: overrides the file's ``patient_id`` (e.g. a ``--patient-id`` flag).
            slice_plane: overrides the slice plane guessed from the protocol name.
        """
        return read_scan_info(self.header_xml, self.attrs, patient_id=patient_id, slice_plane=slice_plane)

    def scan(self, target_key: Optional[str] = None, check_target_shape: bool = True) -> "VolumeScan":
        """Read every slice once and check the whole volume before any reconstruction:
        :func:`ccdf_mri.io.scan.scan_volume` (k-space readable, finite, not all zero;
        the target present, finite, of the reconstruction's shape; the sampled columns)."""
        from ccdf_mri.io.scan import scan_volume

        return scan_volume(self, target_key, check_target_shape)

    def __len__(self) -> int:
        return self.num_slices

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield :meth:`kspace_slice` for each slice in order."""
        for index in range(self.num_slices):
            yield self.kspace_slice(index)

    # -- lifetime ---------------------------------------------------------------------
    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "FastMRIVolume":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> Dict[str, Any]:
        # h5py handles cannot be pickled (DataLoader workers): reopen in the receiver.
        return {"path": self.path}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.path = state["path"]
        self._file = None
        self._open()

    def __repr__(self) -> str:
        return f"FastMRIVolume('{self.path}', kspace={self.kspace_shape}, target={self.target_key})"


def is_fastmri_file(path: PathLike) -> bool:
    """True when ``path`` is an HDF5 file with a ``kspace`` dataset (no further checks)."""
    try:
        if not Path(path).is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as handle:
            return isinstance(handle.get(KSPACE_KEY), h5py.Dataset)
    except OSError:
        return False


def write_fastmri_h5(
    path: PathLike,
    kspace: np.ndarray,
    header_xml: Union[str, bytes],
    attrs: Optional[Mapping[str, Any]] = None,
    targets: Optional[Mapping[str, np.ndarray]] = None,
    mask: Optional[np.ndarray] = None,
    extra_attrs: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write a fastMRI-format ``.h5`` file atomically (temporary name, then rename).

    Args:
        path: output file.
        kspace: complex ``(S, C, H, W)`` (multi-coil) or ``(S, H, W)`` (single-coil);
            stored as complex64, chunked one slice per chunk.
        header_xml: ISMRMRD XML (e.g. from :func:`ccdf_mri.io.header.make_ismrmrd_header`).
        attrs: file attributes such as ``max``, ``norm``, ``acquisition``, ``patient_id``.
        targets: e.g. ``{"reconstruction_rss": (S, h, w) float array}``, stored as float32;
            complex ones (e.g. a noise-free ``target_complex``) as complex64.
        mask: ``(W,)`` 0/1 sampling mask (test-set files), stored as bool.
        extra_attrs: further attributes, e.g. ``acceleration``, ``num_low_frequency``.

    Returns:
        ``Path(path)``.

    Raises:
        ValueError: k-space not complex or of wrong rank, mask or target shape mismatch.
    """
    path = Path(path)
    kspace = np.asarray(kspace)
    if not np.iscomplexobj(kspace):
        raise ValueError(f"{path}: key 'kspace': expected complex k-space, found dtype {kspace.dtype}")
    if kspace.ndim not in (3, 4):
        raise ValueError(
            f"{path}: key 'kspace': expected shape (S, C, H, W) or (S, H, W), found {kspace.shape}"
        )
    if mask is not None and np.shape(mask) != (kspace.shape[-1],):
        raise ValueError(f"{path}: key 'mask': expected shape ({kspace.shape[-1]},), found {np.shape(mask)}")
    targets = dict(targets or {})
    for key, target in targets.items():
        if np.ndim(target) != 3 or np.shape(target)[0] != kspace.shape[0]:
            raise ValueError(f"{path}: key '{key}': expected shape ({kspace.shape[0]}, h, w), found {np.shape(target)}")
    xml = header_xml.encode("utf-8") if isinstance(header_xml, str) else bytes(header_xml)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset(
            KSPACE_KEY, data=kspace.astype(np.complex64, copy=False), chunks=(1,) + kspace.shape[1:]
        )
        handle.create_dataset(HEADER_KEY, data=np.bytes_(xml))
        for key, target in targets.items():  # complex targets (a noise-free image) stay complex
            target = np.asarray(target)
            handle.create_dataset(key, data=target.astype(np.complex64 if np.iscomplexobj(target) else np.float32))
        if mask is not None:
            handle.create_dataset(MASK_KEY, data=np.asarray(mask).astype(bool))
        for name, value in {**dict(attrs or {}), **dict(extra_attrs or {})}.items():
            if value is not None:
                handle.attrs[name] = value
    return path
