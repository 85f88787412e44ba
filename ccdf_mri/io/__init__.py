"""fastMRI file reading, ISMRMRD header geometry and atomic output writers."""

from ccdf_mri.io.atomic import atomic_path
from ccdf_mri.io.fastmri import FastMRIVolume, is_fastmri_file, write_fastmri_h5
from ccdf_mri.io.header import FastMRIHeader, make_ismrmrd_header, parse_ismrmrd_header
from ccdf_mri.io.writers import save_dicom_series, save_nifti, save_submission_h5

__all__ = [
    "FastMRIHeader",
    "FastMRIVolume",
    "atomic_path",
    "is_fastmri_file",
    "make_ismrmrd_header",
    "parse_ismrmrd_header",
    "save_dicom_series",
    "save_nifti",
    "save_submission_h5",
    "write_fastmri_h5",
]
