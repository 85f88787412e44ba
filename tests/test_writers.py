"""Output writers: atomic rename, NIfTI geometry, submission h5, DICOM series read back."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest

from ccdf_mri.io import atomic_path, make_ismrmrd_header, parse_ismrmrd_header
from ccdf_mri.io.writers import save_dicom_series, save_nifti, save_submission_h5

HEADER = parse_ismrmrd_header(
    make_ismrmrd_header((64, 40, 1), (32, 24, 1), (240.0, 200.0, 4.5), (160.0, 96.0, 3.0))
)
SPACING = (160.0 / 32, 96.0 / 24, 3.0)  # rows, columns, slices (mm)


@pytest.fixture
def volume():
    return (np.random.default_rng(0).random((3, 32, 24)) * 250.0).astype(np.float32)


def test_atomic_path_renames_on_success_and_cleans_on_error(tmp_path):
    target = tmp_path / "out" / "result.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("result.nii.gz") and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "new"  # untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.nii.gz"]


def test_atomic_path_replaces_a_folder_and_requires_output(tmp_path):
    target = tmp_path / "series"
    for content in ("first", "second"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a.txt").write_text(content)
    assert (target / "a.txt").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
    with pytest.raises(FileNotFoundError, match="created nothing"):
        with atomic_path(tmp_path / "empty.h5"):
            pass


def test_nifti_values_and_geometry(tmp_path, volume):
    path = save_nifti(tmp_path / "recon.nii.gz", volume, HEADER)
    image = nib.load(path)
    data = np.asarray(image.dataobj)
    assert data.dtype == np.float32 and data.shape == (32, 24, 3)
    for index in range(3):
        np.testing.assert_array_equal(data[:, :, index], volume[index])
    np.testing.assert_allclose(image.header.get_zooms(), SPACING)
    np.testing.assert_allclose(nib.affines.voxel_sizes(image.affine), SPACING)
    assert nib.aff2axcodes(image.affine) == ("P", "L", "S")  # ccdf_mri.io.geometry: axial by default
    # centred on the origin: the middle of the volume maps to (0, 0, 0) mm
    centre = image.affine @ np.array([(32 - 1) / 2, (24 - 1) / 2, 1.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-9)
    assert image.header.get_xyzt_units()[0] == "mm"
    assert [p.name for p in tmp_path.iterdir()] == ["recon.nii.gz"]


def test_nifti_complex_input_without_header(tmp_path, volume):
    path = save_nifti(tmp_path / "c.nii", volume * np.exp(1j * 0.7), None)
    image = nib.load(path)
    np.testing.assert_allclose(np.asarray(image.dataobj)[:, :, 2], volume[2], rtol=1e-6)
    np.testing.assert_allclose(image.header.get_zooms(), (1.0, 1.0, 1.0))


def test_submission_h5(tmp_path, volume):
    path = save_submission_h5(tmp_path / "file1000001.h5", volume.astype(np.float64))
    with h5py.File(path, "r") as handle:
        assert list(handle.keys()) == ["reconstruction"]
        data = handle["reconstruction"][()]
    assert data.dtype == np.float32 and data.shape == volume.shape
    np.testing.assert_array_equal(data, volume)


def test_writers_reject_wrong_rank(tmp_path):
    with pytest.raises(ValueError, match=r"bad.h5: expected a volume \(slices, rows, cols\), found shape \(4, 4\)"):
        save_submission_h5(tmp_path / "bad.h5", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_dicom_series_read_back(tmp_path, volume):
    files = save_dicom_series(tmp_path / "dicom", volume, HEADER, series_description="CCDF t0=0.2", patient_id="p7")
    assert [f.name for f in files] == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]
    datasets = [pydicom.dcmread(f) for f in files]
    slope = float(datasets[0].RescaleSlope)
    for index, ds in enumerate(datasets):
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.Modality == "MR" and ds.SeriesDescription == "CCDF t0=0.2" and ds.PatientID == "p7"
        assert ds.InstanceNumber == index + 1 and (ds.Rows, ds.Columns) == (32, 24)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], SPACING[:2])
        assert float(ds.SliceThickness) == pytest.approx(3.0)
        assert ds.pixel_array.dtype == np.uint16
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.abs(values - volume[index]).max() <= slope / 2 + 1e-3
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    np.testing.assert_allclose(np.diff(z), 3.0)
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert slope == pytest.approx((volume.max() - volume.min()) / 65535, rel=1e-4)
    # a rerun replaces the series as a whole
    save_dicom_series(tmp_path / "dicom", volume[:2], HEADER, "again")
    assert sorted(p.name for p in (tmp_path / "dicom").iterdir()) == ["IM0001.dcm", "IM0002.dcm"]
    assert [p.name for p in tmp_path.iterdir()] == ["dicom"]


# Type 1 and type 2 attributes of the modules of the MR Image IOD (DICOM PS3.3 A.4) that the
# writer must always send: Patient, General Study, General Series, Frame of Reference,
# General Equipment, General Image, Image Plane, Image Pixel, MR Image, SOP Common.
MR_TYPE1 = (
    "StudyInstanceUID", "Modality", "SeriesInstanceUID", "FrameOfReferenceUID", "PixelSpacing",
    "ImageOrientationPatient", "ImagePositionPatient", "SamplesPerPixel", "PhotometricInterpretation",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData",
    "ImageType", "ScanningSequence", "SequenceVariant", "SOPClassUID", "SOPInstanceUID",
)
MR_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Laterality",
    "PatientPosition", "PositionReferenceIndicator", "Manufacturer", "InstanceNumber",
    "SliceThickness", "ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength",
    "RepetitionTime",
)
FULL_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <subjectInformation><patientName>Doe^Jane</patientName><patientBirthdate>1970-02-03</patientBirthdate>
    <patientGender>F</patientGender></subjectInformation>
  <studyInformation><studyDate>2019-05-01</studyDate><studyTime>10:11:12</studyTime><studyID>S1</studyID>
    <accessionNumber>A77</accessionNumber></studyInformation>
  <measurementInformation><patientPosition>FFS</patientPosition><protocolName>CORPD_FBK</protocolName></measurementInformation>
  <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor><systemModel>Skyra</systemModel>
    <systemFieldStrength_T>2.89</systemFieldStrength_T></acquisitionSystemInformation>
  <sequenceParameters><TR>2750</TR><TE>32</TE><TI>100</TI><flipAngle_deg>130</flipAngle_deg></sequenceParameters>
  <encoding><encodedSpace><matrixSize><x>64</x><y>24</y><z>1</z></matrixSize>
    <fieldOfView_mm><x>240</x><y>96</y><z>3</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>32</x><y>24</y><z>1</z></matrixSize>
    <fieldOfView_mm><x>160</x><y>96</y><z>3</z></fieldOfView_mm></reconSpace>
    <trajectory>cartesian</trajectory><echoTrainLength>4</echoTrainLength></encoding>
</ismrmrdHeader>"""


def _check_mr_dataset(ds) -> None:
    from pydicom.uid import UID

    for keyword in MR_TYPE1:
        assert keyword in ds and ds[keyword].value not in (None, "", b""), f"type 1 {keyword} missing or empty"
    for keyword in MR_TYPE2:
        assert keyword in ds, f"type 2 {keyword} missing"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID"):
        assert UID(ds[keyword].value).is_valid, f"{keyword} {ds[keyword].value} is not a valid UID"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len(ds.ImageType) >= 3 and ds.ImageType[0] == "DERIVED"


def test_dicom_tags_from_the_file(tmp_path, volume):
    """PatientID from the file's attributes (fastMRI ``patient_id``), the header's facts, empty type 2 otherwise."""
    from ccdf_mri.io.scan_info import read_scan_info

    header = parse_ismrmrd_header(FULL_XML)
    info = read_scan_info(FULL_XML, {"patient_id": "a1b2c3", "acquisition": "CORPD_FBK"})
    files = save_dicom_series(tmp_path / "d", volume, header, info=info, software_version="ccdf-mri 9")
    ds = pydicom.dcmread(files[1])
    _check_mr_dataset(ds)
    assert ds.PatientID == "a1b2c3" and str(ds.PatientName) == "Doe^Jane"
    assert (ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime) == ("19700203", "F", "20190501", "101112")
    assert (ds.StudyID, ds.AccessionNumber, ds.PatientPosition, ds.Manufacturer) == ("S1", "A77", "FFS", "SIEMENS")
    assert float(ds.RepetitionTime) == 2750 and float(ds.EchoTime) == 32 and ds.EchoTrainLength == 4
    assert float(ds.MagneticFieldStrength) == pytest.approx(2.89) and ds.SoftwareVersions == "ccdf-mri 9"
    # CORPD -> coronal: rows go inferior (DICOM column cosine -z)
    np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [1, 0, 0, 0, 0, -1])
    # an explicit patient ID (a --patient-id flag) wins over the file's
    ds = pydicom.dcmread(save_dicom_series(tmp_path / "e", volume, header, patient_id="X9", info=info)[0])
    assert ds.PatientID == "X9" and str(ds.PatientName) == "X9"


def test_dicom_unknown_type2_tags_are_present_and_empty(tmp_path, volume):
    ds = pydicom.dcmread(save_dicom_series(tmp_path / "d", volume, HEADER)[0])
    _check_mr_dataset(ds)
    for keyword in ("PatientID", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                    "ReferringPhysicianName", "Manufacturer", "StudyDate", "EchoTime"):
        assert ds[keyword].value in ("", None), keyword


@pytest.mark.parametrize("with_facts", [False, True])
def test_dicom_series_passes_dciodvfy(tmp_path, volume, with_facts):
    """dicom3tools' validator reports no errors (warnings, e.g. about RescaleSlope in MR, are allowed)."""
    import shutil
    import subprocess

    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    from ccdf_mri.io.scan_info import read_scan_info

    info = read_scan_info(FULL_XML, {"patient_id": "a1b2c3"}) if with_facts else None
    files = save_dicom_series(tmp_path / "d", volume, HEADER, info=info)
    for path in files:
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = (run.stdout + run.stderr).splitlines()
        assert any(line.strip() == "MRImage" for line in lines), lines  # it recognised the IOD
        errors = [line for line in lines if line.startswith("Error")]
        assert errors == [], f"{path.name}: {errors}"
