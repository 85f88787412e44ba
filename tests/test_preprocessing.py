"""The one preprocessing path: training batches and reconstruction see the same network input.

Issue 12, item 1: a fastMRI-geometry file (640 x 368 k-space with 2x readout oversampling,
header recon matrix 320 x 320, zero-padded columns declared by the encoding limits) goes
through the training batch preparation (dataset -> collate -> ``undersample_batch``, what
``UNetPrepareBatch`` feeds the U-Net) and through the reconstruction's preprocessing
(``volume_batch`` -> the bundle's Compose) and gives the same network input, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import recon_data as rd
from ccdf_mri.app.describe import describe
from ccdf_mri.data.datasets import FastMRISliceDataset, MaskPolicy
from ccdf_mri.engines.batch import undersample_batch
from ccdf_mri.engines.prepare import UNetPrepareBatch
from ccdf_mri.io import FastMRIVolume, make_ismrmrd_header, write_fastmri_h5
from ccdf_mri.networks.complex import complex_to_channels
from ccdf_mri.physics.fft import fft2c
from ccdf_mri.preprocessing import make_preprocessing, volume_batch

ROWS, COLS, RECON = 640, 368, 320
LEFT, RIGHT = 18, 350  # acquired phase-encode columns [LEFT, RIGHT): the rest is zero padding


@pytest.fixture(scope="module")
def fastmri_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fastmri_geometry")
    maps = rd.coil_maps(ROWS, COLS, 4)
    image = np.stack([rd.phantom(ROWS, COLS, s) for s in range(2)])
    kspace = fft2c(torch.from_numpy(maps[None] * image[:, None])).numpy()
    kspace[..., :LEFT] = 0
    kspace[..., RIGHT:] = 0
    centre = COLS // 2 - LEFT  # fastMRI: left = W // 2 - center, right = left + maximum + 1
    header = make_ismrmrd_header((ROWS, COLS, 1), (RECON, RECON, 1), (440.0, 253.0, 5.0), (220.0, 220.0, 5.0),
                                 kspace_center=centre, kspace_max=RIGHT - LEFT - 1)
    target = np.abs(image[:, ROWS // 2 - RECON // 2 : ROWS // 2 + RECON // 2, COLS // 2 - RECON // 2 : COLS // 2 + RECON // 2])
    return write_fastmri_h5(folder / "file_brain_geometry.h5", kspace, header, {"patient_id": "p"},
                            {"reconstruction_rss": target.astype(np.float32)})


def test_training_and_reconstruction_inputs_are_identical(fastmri_file):
    dataset = FastMRISliceDataset(fastmri_file.parent, MaskPolicy("equispaced_fraction", (4,), (0.08,)), mask_mode="fixed")
    batch = next(iter(DataLoader(dataset, batch_size=2, shuffle=False)))
    training_input, _ = UNetPrepareBatch(map_method="acs", target_source="sense")(batch, "cpu")

    with FastMRIVolume(fastmri_file) as volume:
        sample = volume_batch(volume, [0, 1], None, "cpu")
    prepared = make_preprocessing("equispaced_fraction", 4, 0.08, maps="acs")(sample)
    inference_input = complex_to_channels(prepared["image"])

    assert training_input.shape == (2, 2, RECON, COLS)  # readout oversampling removed in both
    assert torch.equal(training_input, inference_input)
    # the padded columns carry no data and the retrospective mask leaves them unsampled
    assert not prepared["mask"][..., :LEFT].any() and not prepared["mask"][..., RIGHT:].any()
    assert torch.equal(undersample_batch(batch, "cpu")["scale"], prepared["scale"])


def test_a_batch_may_mix_files_of_one_shape(tmp_path):
    """Slices of different files (different headers, one k-space shape) form one training batch,
    each with its own file-seeded mask, as the same slices prepared one by one."""
    rd.write_volume(tmp_path / "a.h5")
    path = rd.write_volume(tmp_path / "b.h5")
    with FastMRIVolume(path) as volume:
        assert volume.kspace_shape[-1] == rd.SIZE
    dataset = FastMRISliceDataset(tmp_path, MaskPolicy("equispaced_fraction", (4,), (0.125,)), mask_mode="fixed")
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset), shuffle=False)))
    together = undersample_batch(batch, "cpu")
    for index in range(len(dataset)):
        single = undersample_batch(next(iter(DataLoader(torch.utils.data.Subset(dataset, [index]), batch_size=1))), "cpu")
        torch.testing.assert_close(together["image"][index : index + 1], single["image"])


def test_bundle_preprocessing_is_the_library_path():
    """configs/inference.json spells the Compose out (so parts can be overridden from the command
    line); it must stay the library's make_preprocessing."""
    from ccdf_mri.app.build import read_config

    parser = read_config(None, {"maps": "espirit", "acceleration": 8, "center_fraction": 0.04})
    bundle = parser.get_parsed_content("preprocessing")
    library = make_preprocessing("equispaced_fraction", 8, 0.04, maps="espirit", calib_width=24)
    assert describe(bundle) == describe(library)


def test_cached_maps_have_the_geometry_training_and_inference_use(tmp_path):
    """prepare_fastmri computes its sidecar maps and SENSE targets through the one path, so on a
    file with readout oversampling they are at the cropped geometry the dataset and the
    preprocessing use (and the batch with cached maps prepares without error)."""
    from ccdf_mri.data_prep import prepare_fastmri

    rd.write_volume(tmp_path / "data" / "over.h5", rows=2 * rd.SIZE)
    assert prepare_fastmri.main([str(tmp_path / "data"), "--out", str(tmp_path / "cache"), "--quiet", "--calib-width", "8"]) == 0
    dataset = FastMRISliceDataset(tmp_path / "data", MaskPolicy("equispaced_fraction", (4,), (0.125,)), mask_mode="fixed",
                                  maps_dir=tmp_path / "cache")
    item = dataset[0]
    assert item["maps"].shape == (rd.NUM_COILS, rd.SIZE, rd.SIZE) and item["target_complex"].shape == (rd.SIZE, rd.SIZE)
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    out = undersample_batch(batch, "cpu", target_source="file")
    assert out["image"].shape == (2, rd.SIZE, rd.SIZE) and torch.equal(out["maps"], batch["maps"])
