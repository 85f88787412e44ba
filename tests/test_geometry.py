"""One geometry: NIfTI and DICOM of the same volume place every pixel at the same patient point.

Each pixel (row, column, slice) is mapped through nibabel's affine of the written NIfTI
and, independently, through the written DICOM tags (ImagePositionPatient +
column * PixelSpacing[1] * row cosine + row * PixelSpacing[0] * column cosine, LPS -> RAS);
the two must agree, and so must the pixel values stored at that index in both files.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest

from ccdf_mri.io import make_ismrmrd_header, parse_ismrmrd_header
from ccdf_mri.io.geometry import LPS_TO_RAS, volume_geometry
from ccdf_mri.io.scan_info import ScanInfo, guess_slice_plane
from ccdf_mri.io.writers import save_dicom_series, save_nifti

SLICES, ROWS, COLS = 3, 40, 56
# recon FOV 100 x 84 mm over 40 x 56 pixels: 2.5 mm between rows, 1.5 mm between columns; 4 mm slices
HEADER = parse_ismrmrd_header(
    make_ismrmrd_header((80, 56, 1), (ROWS, COLS, 1), (200.0, 84.0, 6.0), (100.0, 84.0, 4.0))
)
SPACING = (2.5, 1.5, 4.0)
PIXELS = [(0, 0, 0), (10, 50, 0), (39, 0, 1), (0, 55, 2), (39, 55, 2), (17, 3, 1), (22, 41, 2)]


@pytest.fixture
def volume():
    # distinct values everywhere, so a transpose or flip between the files changes the values
    rng = np.random.default_rng(3)
    return (rng.random((SLICES, ROWS, COLS)) * 1000.0 + 10.0).astype(np.float32)


def _write(tmp_path, volume, plane):
    info = ScanInfo(slice_plane=plane, patient_id="p1")
    nifti = nib.load(save_nifti(tmp_path / "v.nii.gz", volume, HEADER, info))
    dicoms = [pydicom.dcmread(f) for f in save_dicom_series(tmp_path / "v_dicom", volume, HEADER, info=info)]
    return nifti, dicoms


def _dicom_ras(ds, row: int, col: int) -> np.ndarray:
    """RAS mm of pixel (row, col) of one DICOM slice, from its Image Plane tags only (PS3.3 C.7.6.2.1.1)."""
    position = np.array([float(v) for v in ds.ImagePositionPatient])
    cosines = np.array([float(v) for v in ds.ImageOrientationPatient])
    across, down = cosines[:3], cosines[3:]  # direction of increasing column, of increasing row
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    lps = position + col * col_spacing * across + row * row_spacing * down
    return (LPS_TO_RAS @ np.append(lps, 1.0))[:3]


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_nifti_and_dicom_agree_on_every_pixel(tmp_path, volume, plane):
    nifti, dicoms = _write(tmp_path, volume, plane)
    data = np.asarray(nifti.dataobj)
    assert data.shape == (ROWS, COLS, SLICES)
    slope = float(dicoms[0].RescaleSlope)
    for row, col, index in PIXELS:
        from_nifti = nib.affines.apply_affine(nifti.affine, [row, col, index])
        np.testing.assert_allclose(_dicom_ras(dicoms[index], row, col), from_nifti, atol=1e-4)
        dicom_value = dicoms[index].pixel_array[row, col] * slope + float(dicoms[index].RescaleIntercept)
        assert abs(dicom_value - data[row, col, index]) <= slope / 2 + 1e-4
        assert data[row, col, index] == volume[index, row, col]


def test_the_issue_pixel_lies_at_one_point(tmp_path):
    """Issue 10: pixel (row 10, column 200) of a 320 x 320 volume was at RAS (-117.5, 72.5) in
    the NIfTI and (-72.5, 117.5) in the DICOM; now both give the same point."""
    header = parse_ismrmrd_header(make_ismrmrd_header((640, 320, 1), (320, 320, 1), (280.0, 280.0, 3.0), (140.0, 140.0, 3.0)))
    volume = np.random.default_rng(0).random((2, 320, 320)).astype(np.float32)
    nifti = nib.load(save_nifti(tmp_path / "a.nii.gz", volume, header))
    ds = pydicom.dcmread(save_dicom_series(tmp_path / "a_dicom", volume, header)[0])
    np.testing.assert_allclose(nib.affines.apply_affine(nifti.affine, [10, 200, 0]), _dicom_ras(ds, 10, 200), atol=1e-4)


def test_dicom_slices_are_stacked_along_the_normal(tmp_path, volume):
    _, dicoms = _write(tmp_path, volume, "coronal")
    cosines = np.array([float(v) for v in dicoms[0].ImageOrientationPatient])
    normal = np.cross(cosines[:3], cosines[3:])
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in dicoms])
    np.testing.assert_allclose(np.diff(positions, axis=0), np.tile(normal * SPACING[2], (SLICES - 1, 1)), atol=1e-6)
    locations = [float(ds.SliceLocation) for ds in dicoms]
    np.testing.assert_allclose(locations, positions @ normal, atol=1e-4)
    for ds in dicoms:
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == pytest.approx(SPACING[2])


def test_dicom_geometry_matches_nibabels_dicom_reader(tmp_path, volume):
    """Parity with an independent implementation of the DICOM geometry (nibabel.nicom)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" notice of nibabel.nicom
        from nibabel.nicom import dicomwrappers

    nifti, _ = _write(tmp_path, volume, "sagittal")
    for index in range(SLICES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapper = dicomwrappers.wrapper_from_file(tmp_path / "v_dicom" / f"IM{index + 1:04d}.dcm")
            lps = wrapper.affine  # (row, column) of this slice -> LPS mm
            pixels = wrapper.get_data()
        for row, col in [(0, 0), (5, 50), (39, 55), (20, 7)]:
            point = (LPS_TO_RAS @ lps @ np.array([row, col, 0.0, 1.0]))[:3]
            np.testing.assert_allclose(point, nib.affines.apply_affine(nifti.affine, [row, col, index]), atol=1e-4)
        np.testing.assert_allclose(pixels, volume[index], atol=float(wrapper.dcm_data.RescaleSlope))


def test_geometry_convention():
    """The documented convention: centred, spacing from the header, axial rows go posterior,
    columns go left, slices go superior (LPS), i.e. nibabel axis codes P, L, S."""
    geometry = volume_geometry((SLICES, ROWS, COLS), HEADER)
    np.testing.assert_allclose(geometry.index_to_lps([(ROWS - 1) / 2, (COLS - 1) / 2, (SLICES - 1) / 2]), 0.0, atol=1e-12)
    np.testing.assert_allclose(nib.affines.voxel_sizes(geometry.ras), SPACING)
    assert nib.aff2axcodes(geometry.ras) == ("P", "L", "S")
    assert nib.aff2axcodes(volume_geometry((3, 4, 5), None, "coronal").ras) == ("I", "L", "P")
    assert nib.aff2axcodes(volume_geometry((3, 4, 5), None, "sagittal").ras) == ("I", "P", "R")
    np.testing.assert_allclose(nib.affines.voxel_sizes(volume_geometry((3, 4, 5), None).ras), 1.0)
    with pytest.raises(ValueError, match="plane: expected one of"):
        volume_geometry((3, 4, 5), None, "oblique")


def test_plane_guess_from_fastmri_names():
    assert guess_slice_plane("CORPD_FBK") == "coronal"
    assert guess_slice_plane(None, "AXFLAIR") == "axial"
    assert guess_slice_plane("sag_t2") == "sagittal"
    assert guess_slice_plane("T2_TSE", None) is None
    assert ScanInfo(acquisition="CORPDFS_FBK").plane == "coronal"
    assert ScanInfo(acquisition="CORPDFS_FBK", slice_plane="axial").plane == "axial"
