"""Noise schedules, reverse-diffusion samplers, CCDF theory and the epsilon training loss."""

from ccdf_mri.diffusion import theory
from ccdf_mri.diffusion.samplers import (
    SAMPLERS,
    ComplexNoise,
    ddim_step,
    ddpm_step,
    item_generators,
    langevin_step,
    make_epsilon_fn,
    reverse_diffusion,
    sample,
    ve_step,
)
from ccdf_mri.diffusion.schedules import SubSchedule, VESchedule, VPSchedule
from ccdf_mri.diffusion.training import epsilon_loss

__all__ = [
    "SAMPLERS",
    "ComplexNoise",
    "SubSchedule",
    "VESchedule",
    "VPSchedule",
    "ddim_step",
    "ddpm_step",
    "epsilon_loss",
    "item_generators",
    "langevin_step",
    "make_epsilon_fn",
    "reverse_diffusion",
    "sample",
    "theory",
    "ve_step",
]
