"""MRI physics in torch: centred FFTs, the SENSE operator, CG, data consistency, masks, coil maps.

Everything runs on the caller's device, batched over dim 0, in complex64 or complex128.
"""

from ccdf_mri.physics.cg import batch_dot_real, conjugate_gradient
from ccdf_mri.physics.coil_maps import estimate_maps_acs, estimate_maps_espirit
from ccdf_mri.physics.coils import compress_coils, rss, sense_combine
from ccdf_mri.physics.dc import GradientDC, ProjectionDC, ProximalDC
from ccdf_mri.physics.espirit import espirit_maps, espirit_maps_and_eigenvalues
from ccdf_mri.physics.fft import fft1c, fft2c, ifft1c, ifft2c
from ccdf_mri.physics.masks import (
    MASK_KINDS,
    calibration_width,
    effective_acceleration,
    make_mask,
    mask_seed_from_name,
)
from ccdf_mri.physics.sense import SenseOp

__all__ = [
    "calibration_width",
    "MASK_KINDS",
    "GradientDC",
    "ProjectionDC",
    "ProximalDC",
    "SenseOp",
    "batch_dot_real",
    "compress_coils",
    "conjugate_gradient",
    "effective_acceleration",
    "estimate_maps_acs",
    "estimate_maps_espirit",
    "espirit_maps",
    "espirit_maps_and_eigenvalues",
    "fft1c",
    "fft2c",
    "ifft1c",
    "ifft2c",
    "make_mask",
    "mask_seed_from_name",
    "rss",
    "sense_combine",
]
