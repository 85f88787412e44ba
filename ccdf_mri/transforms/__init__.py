"""MONAI transforms for k-space: array versions and dictionary versions (suffix ``d``)."""

from ccdf_mri.transforms.array import (
    CropReadoutOversampling,
    EstimateCoilMaps,
    ScaleIntensityByZeroFilled,
    SenseCombine,
    UndersampleKspace,
    crop_readout,
)
from ccdf_mri.transforms.dictionary import (
    CropReadoutOversamplingd,
    EstimateCoilMapsd,
    ScaleIntensityByZeroFilledd,
    SenseCombined,
    UndersampleKspaced,
)

__all__ = [
    "CropReadoutOversampling",
    "CropReadoutOversamplingd",
    "EstimateCoilMaps",
    "EstimateCoilMapsd",
    "ScaleIntensityByZeroFilled",
    "ScaleIntensityByZeroFilledd",
    "SenseCombine",
    "SenseCombined",
    "UndersampleKspace",
    "UndersampleKspaced",
    "crop_readout",
]
