"""Tiny fastMRI volumes and tiny random-initialised models for the recon / CLI / bundle tests.

Volumes are 32x32 (or 64x32 with 2x readout oversampling), 4 coils, 3 slices: a smooth
phantom times smooth coil profiles, transformed with the project's centred FFT, with an
RSS target cropped to the recon matrix, as fastMRI files store them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ccdf_mri.io import make_ismrmrd_header, write_fastmri_h5
from ccdf_mri.physics.fft import fft2c, ifft2c

NUM_SLICES = 3
NUM_COILS = 4
SIZE = 32
# Options that make a 32-column k-space usable: 4 fully sampled centre columns (ACS maps).
OPTIONS = {"acceleration": 4.0, "center_fraction": 0.125, "maps": "acs"}


def phantom(rows: int, cols: int, index: int) -> np.ndarray:
    """A smooth complex test object ``(rows, cols)``: an ellipse with texture and a phase ramp."""
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    inside = ((x / 0.7) ** 2 + (y / (0.8 * SIZE / rows)) ** 2) < 1
    texture = 1.0 + 0.3 * np.cos(3 * x + index) * np.sin(2 * y)
    return (inside * texture * np.exp(1j * 0.5 * x)).astype(np.complex64)


def coil_maps(rows: int, cols: int, num_coils: int) -> np.ndarray:
    """Smooth coil profiles ``(C, rows, cols)`` with sum of squares 1."""
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    maps = []
    for c in range(num_coils):
        angle = 2 * np.pi * c / num_coils
        maps.append(np.exp(-((x - np.cos(angle)) ** 2 + (y - np.sin(angle)) ** 2)) * np.exp(1j * angle))
    maps = np.stack(maps)
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))).astype(np.complex64)


def write_volume(
    path: Path,
    rows: int = SIZE,
    num_coils: int = NUM_COILS,
    num_slices: int = NUM_SLICES,
    mask: Optional[np.ndarray] = None,
    target: bool = True,
) -> Path:
    """Write a fastMRI-format file; ``rows = 2 * SIZE`` gives 2x readout oversampling.

    With ``mask`` (``(SIZE,)`` 0/1) the file is a test-set file: k-space already masked,
    ``mask`` dataset and ``acceleration`` / ``num_low_frequency`` attributes, no target.
    """
    maps = coil_maps(rows, SIZE, num_coils)
    images = np.stack([phantom(rows, SIZE, s) for s in range(num_slices)])
    coil_images = torch.from_numpy(maps[None] * images[:, None])
    kspace = fft2c(coil_images).numpy()
    rss = np.sqrt((np.abs(ifft2c(torch.from_numpy(kspace)).numpy()) ** 2).sum(1))
    top = (rows - SIZE) // 2
    targets = {"reconstruction_rss": rss[:, top : top + SIZE].astype(np.float32)} if target else None
    extra = None
    if mask is not None:
        kspace = kspace * mask
        centre = SIZE // 2
        low = int(np.argmin(mask[centre:])) + int(np.argmin(mask[:centre][::-1]))
        extra = {"acceleration": float(SIZE / mask.sum()), "num_low_frequency": low}
    if num_coils == 1:
        kspace = kspace[:, 0]
    header = make_ismrmrd_header((rows, SIZE, 1), (SIZE, SIZE, 1), (2.0 * rows, 64.0, 3.0), (64.0, 64.0, 3.0))
    attrs = {"max": float(rss.max()), "norm": float(np.linalg.norm(rss)), "acquisition": "CORPD_FBK", "patient_id": "p0"}
    return write_fastmri_h5(path, kspace, header, attrs, targets, mask=mask, extra_attrs=extra)


def write_models(folder: Path, num_train_steps: int = 20, seed: int = 0) -> Path:
    """Tiny random score network and U-Net initializer in the export format of training (seeded)."""
    from ccdf_mri.networks.initializer import make_initializer_network
    from ccdf_mri.networks.score import make_score_network

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    score_kwargs = {"channels": [8, 8], "norm_num_groups": 4, "num_res_blocks": 1}
    unet_kwargs = {"channels": [4, 8], "strides": [2], "num_res_units": 0}
    for name, factory, kwargs, extra in (
        (
            "score_net",
            make_score_network,
            score_kwargs,
            {"schedule": "VPSchedule", "schedule_kwargs": {"num_train_steps": num_train_steps}},
        ),
        ("unet", make_initializer_network, unet_kwargs, {}),
    ):
        network = factory(**kwargs)
        # untrained, both networks are exact no-ops (zero-initialised output layers): give
        # every all-zero parameter small random values so the pipeline really runs them
        for parameter in network.parameters():
            if not parameter.detach().any():
                torch.nn.init.normal_(parameter, std=0.05)
        torch.save(network.state_dict(), folder / f"{name}.pt")
        record = {"factory": f"{factory.__module__}.{factory.__name__}", "kwargs": kwargs, **extra}
        (folder / f"{name}.json").write_text(json.dumps(record))
    return folder


# Bundle config overrides that make the shipped inference config build the tiny models above.
TINY_MODEL_OVERRIDES = {
    "network_def#channels": [8, 8],
    "network_def#norm_num_groups": 4,
    "network_def#num_res_blocks": 1,
    "initializer_def#channels": [4, 8],
    "initializer_def#strides": [2],
    "initializer_def#num_res_units": 0,
    "schedule#num_train_steps": 20,
}


def bundle_overrides(models: Path, out: Path, **options) -> dict:
    """Overrides of the shipped bundle's inference config for the tiny models in ``models``."""
    return {"models_dir": str(models), "output_dir": str(out), "progress": False, **TINY_MODEL_OVERRIDES, **OPTIONS, **options}


def use_tiny_models(monkeypatch) -> None:
    """Make every bundle config read in this test (``ccdf_mri.app.build.read_config``, behind
    ``from_bundle``: the CLI, the demo, the calibration) build the tiny models above."""
    from ccdf_mri.app import build

    original = build.read_config

    def tiny(bundle=None, overrides=None):
        return original(bundle, {**TINY_MODEL_OVERRIDES, **(overrides or {})})

    monkeypatch.setattr(build, "read_config", tiny)
