"""What training needs beyond MONAI's engines: on-device batch preparation (undersampling,
coil maps, SENSE, intensity scaling), epsilon-training batches on the diffusion schedule,
losses, slice metrics, resumable checkpoints and the final model export."""

from ccdf_mri.engines.batch import undersample_batch
from ccdf_mri.engines.checkpoints import (
    ModelExporter,
    ResumeFromCheckpoint,
    TrainerCheckpointSaver,
    WallClockLimit,
    load_exported_network,
)
from ccdf_mri.engines.losses import L1SSIMLoss
from ccdf_mri.engines.metrics import SliceMagnitudeMetric
from ccdf_mri.engines.prepare import EpsilonPrepareBatch, OneStepDenoiseInferer, UNetPrepareBatch

__all__ = [
    "EpsilonPrepareBatch",
    "L1SSIMLoss",
    "ModelExporter",
    "OneStepDenoiseInferer",
    "ResumeFromCheckpoint",
    "SliceMagnitudeMetric",
    "TrainerCheckpointSaver",
    "UNetPrepareBatch",
    "WallClockLimit",
    "load_exported_network",
    "undersample_batch",
]
