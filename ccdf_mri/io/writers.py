"""Output writers: NIfTI with geometry, the fastMRI submission ``.h5``, DICOM series.

All writers are atomic (:func:`ccdf_mri.io.atomic.atomic_path`): an interrupted write
leaves no partial output. Volumes are ``(S, H, W)`` with H the rows (readout, ISMRMRD x)
and W the columns (phase encode, ISMRMRD y); complex input is written as its magnitude.

Geometry: one affine for NIfTI and DICOM, :func:`ccdf_mri.io.geometry.volume_geometry`
(spacing from the header's recon field of view and matrix, volume centred on the origin,
plane axial unless ``ScanInfo.plane`` says otherwise). Give both writers the same
``header`` and ``info`` and they place every pixel at the same patient coordinate.
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
from ccdf_mri.io.geometry import volume_geometry, volume_spacing  # noqa: F401  (volume_spacing: public here before)
from ccdf_mri.io.header import FastMRIHeader
from ccdf_mri.io.scan_info import ScanInfo

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


def nifti_affine(shape: Tuple[int, int, int], header: Optional[FastMRIHeader], info: Optional[ScanInfo] = None) -> np.ndarray:
    """4x4 voxel-to-RAS-mm affine of a NIfTI array ``(H, W, S)`` (:mod:`ccdf_mri.io.geometry`).

    Args:
        shape: the NIfTI array shape ``(H, W, S)``.
        header: geometry source, or None for 1 mm voxels.
        info: gives the slice plane (``info.plane``; axial when None).
    """
    rows, cols, num_slices = shape
    return volume_geometry((num_slices, rows, cols), header, _plane(info)).nifti_affine


def _plane(info: Optional[ScanInfo]) -> Optional[str]:
    return info.plane if info is not None else None


def save_nifti(path: PathLike, volume, header: Optional[FastMRIHeader] = None, info: Optional[ScanInfo] = None) -> Path:
    """Write a float32 NIfTI with slices along the third axis (``data[:, :, s] = volume[s]``).

    The affine (qform and sform, code 1) is :attr:`VolumeGeometry.nifti_affine` of
    :func:`ccdf_mri.io.geometry.volume_geometry`: the same patient positions as
    :func:`save_dicom_series` given the same ``header`` and ``info``.

    Args:
        path: output file (``.nii`` or ``.nii.gz``).
        volume: ``(S, H, W)`` magnitude (or complex, written as magnitude).
        header: the acquisition's geometry for the affine (mm), or None.
        info: the slice plane (``info.plane``); pass the same as to the DICOM writer.

    Returns:
        ``Path(path)``.
    """
    import nibabel as nib

    path = Path(path)
    volume = _as_volume(volume, path)
    data = np.ascontiguousarray(np.moveaxis(volume, 0, -1))
    affine = volume_geometry(volume.shape, header, _plane(info)).nifti_affine
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


def _dicom_date_time(now: datetime.datetime) -> Tuple[str, str]:
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _text(value: Optional[object]) -> str:
    """A type-2 value: the text, or empty when unknown."""
    return "" if value is None else str(value)


def _optional_ds(value: Optional[float]):
    return "" if value is None else _ds(value)


def save_dicom_series(
    directory: PathLike,
    volume,
    header: Optional[FastMRIHeader] = None,
    series_description: str = "CCDF reconstruction",
    patient_id: Optional[str] = None,
    series_number: int = 1,
    study_instance_uid: Optional[str] = None,
    info: Optional[ScanInfo] = None,
    software_version: Optional[str] = None,
) -> List[Path]:
    """Write one MR Image Storage DICOM file per slice into ``directory`` (atomically as a folder).

    Pixels are uint16 with one ``RescaleSlope``/``RescaleIntercept`` for the series
    (``value = stored * slope + intercept``, so the quantisation error is at most slope/2).
    The Image Plane tags come from :func:`ccdf_mri.io.geometry.volume_geometry` (the affine
    :func:`save_nifti` uses): ``PixelSpacing`` ``[row spacing, column spacing]`` mm,
    ``ImageOrientationPatient`` and ``ImagePositionPatient`` (centre of the first pixel of
    each slice) in LPS, ``SliceThickness`` = ``SpacingBetweenSlices``.

    Metadata: every type 1 and type 2 attribute of the MR Image IOD's modules (Patient,
    General Study, General Series, Frame of Reference, General Equipment, General Image,
    Image Plane, Image Pixel, MR Image, SOP Common) is written; type-2 values that
    ``info`` does not know are empty. Patient ID / name: ``patient_id`` when given, else
    ``info.patient_id`` / ``info.patient_name`` (the fastMRI file's ``patient_id`` attribute
    through :func:`ccdf_mri.io.scan_info.read_scan_info`), else empty. Study date/time are
    the acquisition's when the header has them, else empty; series and content date/time
    are the time of writing. ``ImageType`` is ``DERIVED\\SECONDARY\\OTHER``, the character
    set UTF-8 (``ISO_IR 192``). UIDs are new (``pydicom.uid.generate_uid``).

    Args:
        directory: output folder; replaced as a whole when it exists.
        volume: ``(S, H, W)`` magnitude (or complex, written as magnitude).
        header: geometry source or None (1 mm).
        series_description: DICOM SeriesDescription.
        patient_id: overrides the patient ID and name (e.g. a ``--patient-id`` flag).
        series_number: DICOM SeriesNumber.
        study_instance_uid: to group several series in one study; new when None.
        info: patient, study, scanner and sequence facts and the slice plane
            (:class:`ccdf_mri.io.scan_info.ScanInfo`); pass the same as to :func:`save_nifti`.
        software_version: DICOM SoftwareVersions (e.g. ``"ccdf-mri 0.3.0"``).

    Returns:
        the written files ``<directory>/IM0001.dcm ...`` in slice order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    directory = Path(directory)
    data = _as_volume(volume, directory)
    info = info or ScanInfo()
    if patient_id is not None:
        info = info.with_overrides(patient_id=patient_id, patient_name=patient_id)
    num_slices, rows, cols = data.shape
    geometry = volume_geometry(data.shape, header, _plane(info))
    low, high = float(data.min()), float(data.max())
    slope = _ds((high - low) / 65535.0 if high > low else 1.0)
    intercept = _ds(low)
    stored = np.clip(np.rint((data - float(intercept)) / float(slope)), 0, 65535).astype("<u2")

    study_uid = study_instance_uid or generate_uid()
    series_uid, frame_uid = generate_uid(), generate_uid()
    today, now = _dicom_date_time(datetime.datetime.now())
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
            # SOP Common
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            # Patient
            ds.PatientName = _text(info.patient_name)
            ds.PatientID = _text(info.patient_id)
            ds.PatientBirthDate = _text(info.patient_birth_date)
            ds.PatientSex = _text(info.patient_sex)
            # General Study
            ds.StudyInstanceUID = study_uid
            ds.StudyDate, ds.StudyTime = _text(info.study_date), _text(info.study_time)
            ds.ReferringPhysicianName = _text(info.referring_physician)
            ds.StudyID = _text(info.study_id)
            ds.AccessionNumber = _text(info.accession_number)
            if info.study_description:
                ds.StudyDescription = info.study_description
            # General Series
            ds.Modality = "MR"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = series_number
            ds.Laterality = ""
            ds.PatientPosition = _text(info.patient_position)
            ds.SeriesDate, ds.SeriesTime = today, now
            ds.SeriesDescription = series_description
            if info.protocol_name:
                ds.ProtocolName = info.protocol_name
            # Frame of Reference
            ds.FrameOfReferenceUID = frame_uid
            ds.PositionReferenceIndicator = ""
            # General Equipment
            ds.Manufacturer = _text(info.manufacturer)
            if info.model:
                ds.ManufacturerModelName = info.model
            if info.institution:
                ds.InstitutionName = info.institution
            if software_version:
                ds.SoftwareVersions = software_version
            # General Image
            ds.InstanceNumber = index + 1
            ds.ContentDate, ds.ContentTime = today, now
            ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
            # Image Plane
            plane = geometry.dicom_plane(index)
            ds.ImagePositionPatient = [_ds(v) for v in plane["ImagePositionPatient"]]
            ds.ImageOrientationPatient = [_ds(v) for v in plane["ImageOrientationPatient"]]
            ds.PixelSpacing = [_ds(v) for v in plane["PixelSpacing"]]
            ds.SliceThickness = _ds(plane["SliceThickness"])
            ds.SpacingBetweenSlices = _ds(plane["SpacingBetweenSlices"])
            ds.SliceLocation = _ds(plane["SliceLocation"])
            # MR Image
            ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "RM", "NONE", "2D"
            ds.ScanOptions = ""
            ds.RepetitionTime = _optional_ds(info.repetition_time_ms)
            ds.EchoTime = _optional_ds(info.echo_time_ms)
            ds.EchoTrainLength = "" if info.echo_train_length is None else int(info.echo_train_length)
            # InversionTime is type 2C, allowed only with ScanningSequence IR: not written
            if info.flip_angle_deg is not None:
                ds.FlipAngle = _ds(info.flip_angle_deg)
            if info.field_strength_t is not None:
                ds.MagneticFieldStrength = _ds(info.field_strength_t)
            # Image Pixel
            ds.Rows, ds.Columns = rows, cols
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation = 0
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
            ds.PixelData = stored[index].tobytes()
            ds.save_as(tmp / names[index], enforce_file_format=True)
    return [directory / name for name in names]
