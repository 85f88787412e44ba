"""Output writers: NIfTI with geometry, the fastMRI submission ``.h5``, DICOM series.

All writers are atomic (:func:`ccdf_mri.io.atomic.atomic_path`): an interrupted write
leaves no partial output. Volumes are ``(S, H, W)`` with H the rows (readout, ISMRMRD x)
and W the columns (phase encode, ISMRMRD y); complex input is written as its magnitude.

Geometry: the pixel spacing is the header's recon field of view over the recon matrix
(``FastMRIHeader.pixel_spacing_mm``), the slice spacing its recon z field of view over
the recon z matrix (``slice_thickness_mm``); without a header, 1 mm everywhere. The
volume is centred on the origin.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import List, Optional, Tuple, Union

import h5py
import numpy as np
import torch

from ccdf_mri.io.atomic import atomic_path
from ccdf_mri.io.header import FastMRIHeader

PathLike = Union[str, os.PathLike]
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _as_volume(volume, path: Path) -> np.ndarray:
    """(S, H, W) array or tensor (real or complex) -> float32 magnitude numpy array."""
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu().numpy()
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a volume (slices, rows, cols), found shape {volume.shape}")
    if np.iscomplexobj(volume):
        volume = np.abs(volume)
    return volume.astype(np.float32, copy=False)


def volume_spacing(header: Optional[FastMRIHeader]) -> Tuple[float, float, float]:
    """``(row spacing, column spacing, slice spacing)`` in mm from the header (1 mm without one)."""
    if header is None:
        return 1.0, 1.0, 1.0
    return (*header.pixel_spacing_mm, header.slice_thickness_mm)


def nifti_affine(shape: Tuple[int, int, int], header: Optional[FastMRIHeader]) -> np.ndarray:
    """4x4 voxel-to-mm affine of a NIfTI array ``(H, W, S)`` centred on the origin.

    Args:
        shape: the NIfTI array shape ``(H, W, S)``.
        header: geometry source, or None for 1 mm voxels.
    """
    spacing = np.asarray(volume_spacing(header))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * spacing
    return affine


def save_nifti(path: PathLike, volume, header: Optional[FastMRIHeader] = None) -> Path:
    """Write a float32 NIfTI with slices along the third axis (``data[:, :, s] = volume[s]``).

    Args:
        path: output file (``.nii`` or ``.nii.gz``).
        volume: ``(S, H, W)`` magnitude (or complex, written as magnitude).
        header: the acquisition's geometry for the affine (mm), or None.

    Returns:
        ``Path(path)``.
    """
    import nibabel as nib

    path = Path(path)
    data = np.ascontiguousarray(np.moveaxis(_as_volume(volume, path), 0, -1))
    affine = nifti_affine(data.shape, header)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


def save_submission_h5(path: PathLike, reconstruction) -> Path:
    """Write the fastMRI submission file: dataset ``reconstruction`` float32 ``(S, H, W)``.

    Args:
        path: output ``.h5`` file.
        reconstruction: ``(S, H, W)`` magnitude in the input's intensity units.
    """
    path = Path(path)
    data = _as_volume(reconstruction, path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("reconstruction", data=data)
    return path


def _ds(value: float):
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def save_dicom_series(
    directory: PathLike,
    volume,
    header: Optional[FastMRIHeader] = None,
    series_description: str = "CCDF reconstruction",
    patient_id: str = "anonymous",
    series_number: int = 1,
    study_instance_uid: Optional[str] = None,
) -> List[Path]:
    """Write one MR Image Storage DICOM file per slice into ``directory`` (atomically as a folder).

    Pixels are uint16 with one ``RescaleSlope``/``RescaleIntercept`` for the series
    (``value = stored * slope + intercept``, so the quantisation error is at most slope/2).
    ``PixelSpacing`` is ``[row spacing, column spacing]`` mm, ``ImagePositionPatient`` the
    centre of the first pixel of each slice (slices stepped along z by ``SliceThickness``),
    ``ImageOrientationPatient`` the identity. UIDs are new (``pydicom.uid.generate_uid``).

    Args:
        directory: output folder; replaced as a whole when it exists.
        volume: ``(S, H, W)`` magnitude (or complex, written as magnitude).
        header: geometry source or None (1 mm).
        series_description: DICOM SeriesDescription.
        patient_id: PatientID and PatientName.
        series_number: DICOM SeriesNumber.
        study_instance_uid: to group several series in one study; new when None.

    Returns:
        the written files ``<directory>/IM0001.dcm ...`` in slice order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    directory = Path(directory)
    data = _as_volume(volume, directory)
    num_slices, rows, cols = data.shape
    row_mm, col_mm, slice_mm = volume_spacing(header)
    low, high = float(data.min()), float(data.max())
    slope = _ds((high - low) / 65535.0 if high > low else 1.0)
    intercept = _ds(low)
    stored = np.clip(np.rint((data - float(intercept)) / float(slope)), 0, 65535).astype("<u2")

    study_uid = study_instance_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    now = datetime.datetime.now()
    names = [f"IM{index + 1:04d}.dcm" for index in range(num_slices)]
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for index in range(num_slices):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
            ds.Modality = "MR"
            ds.PatientName = patient_id
            ds.PatientID = patient_id
            ds.ContentDate = ds.SeriesDate = ds.StudyDate = now.strftime("%Y%m%d")
            ds.ContentTime = ds.SeriesTime = ds.StudyTime = now.strftime("%H%M%S")
            ds.SeriesDescription = series_description
            ds.SeriesNumber = series_number
            ds.InstanceNumber = index + 1
            ds.ImageType = ["DERIVED", "SECONDARY"]
            ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "RM", "NONE", "2D"
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            z = (index - (num_slices - 1) / 2.0) * slice_mm
            ds.ImagePositionPatient = [
                _ds(-(cols - 1) / 2.0 * col_mm),
                _ds(-(rows - 1) / 2.0 * row_mm),
                _ds(z),
            ]
            ds.SliceLocation = _ds(z)
            ds.PixelSpacing = [_ds(row_mm), _ds(col_mm)]
            ds.SliceThickness = _ds(slice_mm)
            ds.SpacingBetweenSlices = _ds(slice_mm)
            ds.Rows, ds.Columns = rows, cols
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 0
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
            ds.PixelData = stored[index].tobytes()
            ds.save_as(tmp / names[index], enforce_file_format=True)
    return [directory / name for name in names]
