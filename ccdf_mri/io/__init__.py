"""fastMRI file reading, ISMRMRD header geometry, output writers, discovery and provenance."""

from ccdf_mri.io.atomic import atomic_path
from ccdf_mri.io.discovery import NameCollisionError, NoInputsError, find_inputs, output_names, volume_name
from ccdf_mri.io.fastmri import FastMRIVolume, is_fastmri_file, write_fastmri_h5
from ccdf_mri.io.geometry import VolumeGeometry, volume_geometry
from ccdf_mri.io.header import FastMRIHeader, make_ismrmrd_header, parse_ismrmrd_header
from ccdf_mri.io.provenance import (
    differences,
    file_sha256,
    input_identity,
    make_record,
    model_hashes,
    read_record,
    record_path,
    write_record,
)
from ccdf_mri.io.scan import VolumeScan, scan_volume
from ccdf_mri.io.scan_info import ScanInfo, read_scan_info
from ccdf_mri.io.tables import merge_metrics_csv, read_metrics_csv
from ccdf_mri.io.writers import save_dicom_series, save_nifti, save_submission_h5

__all__ = [
    "FastMRIHeader",
    "FastMRIVolume",
    "NameCollisionError",
    "NoInputsError",
    "ScanInfo",
    "VolumeGeometry",
    "VolumeScan",
    "atomic_path",
    "differences",
    "file_sha256",
    "find_inputs",
    "input_identity",
    "is_fastmri_file",
    "make_ismrmrd_header",
    "make_record",
    "merge_metrics_csv",
    "model_hashes",
    "output_names",
    "parse_ismrmrd_header",
    "read_metrics_csv",
    "read_record",
    "read_scan_info",
    "record_path",
    "save_dicom_series",
    "save_nifti",
    "save_submission_h5",
    "scan_volume",
    "volume_geometry",
    "volume_name",
    "write_fastmri_h5",
    "write_record",
]
