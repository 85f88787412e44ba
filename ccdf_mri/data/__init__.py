"""Datasets over folders of fastMRI-format files (index of slices, one file open per item)."""

from ccdf_mri.data.datasets import FastMRISliceDataset, MaskPolicy, PreparedSliceCache, list_fastmri_files, sidecar_path

__all__ = ["FastMRISliceDataset", "MaskPolicy", "PreparedSliceCache", "list_fastmri_files", "sidecar_path"]
