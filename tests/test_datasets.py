"""FastMRISliceDataset: shapes, keys, dtypes, mask policies, sidecars, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pytest
import torch

from ccdf_mri.data.datasets import FastMRISliceDataset, MaskPolicy, calibration_width, sidecar_path
from ccdf_mri.physics import estimate_maps_acs
from ccdf_mri.io.fastmri import write_fastmri_h5
from ccdf_mri.io.header import make_ismrmrd_header
from ccdf_mri.physics import fft2c, make_mask, mask_seed_from_name

SIZE = 64
COILS = 4
# centre fractions large enough for >= 4 calibration lines at 64 columns
TEST_POLICY = MaskPolicy("equispaced_fraction", (4, 8), (0.125, 0.0625))


def smooth_field(rng: np.random.Generator, size: int, cutoff: int = 3) -> np.ndarray:
    """A smooth random complex field ``(size, size)`` (low-pass filtered noise)."""
    spectrum = np.zeros((size, size), dtype=np.complex128)
    centre = size // 2
    block = rng.standard_normal((2 * cutoff + 1, 2 * cutoff + 1, 2)) @ np.array([1.0, 1j])
    spectrum[centre - cutoff : centre + cutoff + 1, centre - cutoff : centre + cutoff + 1] = block
    return np.fft.ifft2(np.fft.ifftshift(spectrum)) * size


def phantom(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """Random ellipses with a smooth phase: a complex64 image ``(size, size)``."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = np.zeros((size, size))
    for _ in range(4):
        cy, cx = rng.uniform(-0.3, 0.3, 2)
        ry, rx = rng.uniform(0.2, 0.6, 2)
        image += rng.uniform(0.3, 1.0) * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
    phase = np.angle(smooth_field(rng, size, 2))
    return (image * np.exp(1j * 0.5 * phase)).astype(np.complex64)


def coil_maps(rng: np.random.Generator, coils: int = COILS, size: int = SIZE) -> np.ndarray:
    """Smooth coil maps ``(coils, size, size)`` with ``sum_c |S_c|^2 = 1``."""
    maps = np.stack([smooth_field(rng, size, 1) + 0.5 for _ in range(coils)])
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))).astype(np.complex64)


def write_tiny_corpus(
    root: Path, files: Sequence[int] = (2, 1, 1), slices: int = 2, coils: int = COILS, seed: int = 0
) -> Path:
    """``root/{train,val,test}/tiny_<split>_<i>.h5``: multi-coil (or single-coil when ``coils == 0``)
    fastMRI files with ``reconstruction_rss`` and the noise-free ``target_complex``."""
    rng = np.random.default_rng(seed)
    header = make_ismrmrd_header((SIZE, SIZE, 1), (SIZE, SIZE, 1), (220.0, 220.0, 3.0), (220.0, 220.0, 3.0))
    for split, count in zip(("train", "val", "test"), files):
        (root / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            images = np.stack([phantom(rng) for _ in range(slices)])
            if coils:
                maps = coil_maps(rng, coils)
                kspace = fft2c(torch.from_numpy(maps[None] * images[:, None])).numpy()
            else:
                kspace = fft2c(torch.from_numpy(images)).numpy()
            path = write_fastmri_h5(
                root / split / f"tiny_{split}_{index}.h5",
                kspace,
                header,
                attrs={"max": float(np.abs(images).max()), "norm": 1.0, "acquisition": "AXT1", "patient_id": "x"},
                targets={"reconstruction_rss": np.abs(images)},
            )
            with h5py.File(path, "a") as handle:
                handle["target_complex"] = images
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def test_items_have_the_documented_shapes_keys_and_dtypes(corpus):
    dataset = FastMRISliceDataset(corpus / "train", TEST_POLICY, mask_mode="random")
    assert len(dataset) == 4  # 2 files x 2 slices
    item = dataset[1]
    assert item["kspace"].shape == (COILS, SIZE, SIZE) and item["kspace"].dtype == torch.complex64
    assert item["mask"].shape == (1, 1, SIZE) and item["mask"].dtype == torch.float32
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["target"].shape == (SIZE, SIZE) and item["target"].dtype == torch.float32
    assert item["target_complex"].shape == (SIZE, SIZE) and item["target_complex"].dtype == torch.complex64
    assert item["acceleration"] in (4.0, 8.0)
    assert item["num_low_frequency"] == {4.0: 8, 8.0: 4}[item["acceleration"]]
    assert {k: item["meta"][k] for k in ("filename", "slice")} == {"filename": "tiny_train_0.h5", "slice": 1}
    assert "ismrmrdHeader" in item["meta"]["header"]  # the preprocessing crops the readout as it declares
    assert "maps" not in item
    with h5py.File(corpus / "train" / "tiny_train_0.h5") as handle:
        np.testing.assert_array_equal(item["kspace"].numpy(), handle["kspace"][1])
        np.testing.assert_array_equal(item["target_complex"].numpy(), handle["target_complex"][1])
    assert item["target_complex"].imag.abs().max() > 0


def test_single_coil_files_give_one_coil(tmp_path):
    root = write_tiny_corpus(tmp_path, files=(1, 0, 0), coils=0)
    item = FastMRISliceDataset(root / "train", TEST_POLICY)[0]
    assert item["kspace"].shape == (1, SIZE, SIZE)


def test_validation_masks_are_fixed_by_file_name(corpus):
    dataset = FastMRISliceDataset(corpus / "val", TEST_POLICY, mask_mode="fixed")
    first = [dataset[i]["mask"] for i in range(len(dataset))]
    again = [dataset[i]["mask"] for i in range(len(dataset))]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(first[0], first[1])  # same file: same mask for every slice
    # the mask is fastMRI's: seeded by the code points of the file name
    seed = mask_seed_from_name("tiny_val_0.h5")
    acceleration = dataset[0]["acceleration"]
    centre = dict(zip(TEST_POLICY.accelerations, TEST_POLICY.center_fractions))[acceleration]
    expected = make_mask("equispaced_fraction", (SIZE, SIZE), acceleration, centre, seed=seed)
    torch.testing.assert_close(first[0], expected.reshape(1, 1, SIZE))


def test_training_masks_vary_and_follow_the_global_seed(corpus):
    dataset = FastMRISliceDataset(corpus / "train", TEST_POLICY, mask_mode="random")
    torch.manual_seed(0)
    masks = [dataset[0]["mask"] for _ in range(8)]
    assert len({tuple(m.reshape(-1).tolist()) for m in masks}) > 1
    assert {dataset[0]["acceleration"] for _ in range(16)} == {4.0, 8.0}
    torch.manual_seed(0)
    again = [dataset[0]["mask"] for _ in range(8)]
    for a, b in zip(masks, again):
        torch.testing.assert_close(a, b)


def test_cached_maps_and_targets_come_from_the_sidecar(tmp_path):
    root = write_tiny_corpus(tmp_path, files=(1, 0, 0))
    path = root / "train" / "tiny_train_0.h5"
    maps = (np.arange(2 * COILS * SIZE * SIZE).reshape(2, COILS, SIZE, SIZE) * (1 + 1j)).astype(np.complex64)
    target = (np.ones((2, SIZE, SIZE)) * 3j).astype(np.complex64)
    with h5py.File(sidecar_path(path), "w") as handle:
        handle["maps"], handle["target_complex"] = maps, target
    dataset = FastMRISliceDataset(root / "train", TEST_POLICY)
    assert len(dataset) == 2  # the sidecar is not a volume
    item = dataset[1]
    np.testing.assert_array_equal(item["maps"].numpy(), maps[1])
    np.testing.assert_array_equal(item["target_complex"].numpy(), target[1])
    assert "maps" not in FastMRISliceDataset(root / "train", TEST_POLICY, use_cached_maps=False)[1]


def test_file_masks_win_and_centre_slices_are_kept(tmp_path):
    header = make_ismrmrd_header((SIZE, SIZE, 1), (SIZE, SIZE, 1), (220.0, 220.0, 3.0), (220.0, 220.0, 3.0))
    mask = np.zeros(SIZE)
    mask[::4] = 1
    mask[SIZE // 2 - 3 : SIZE // 2 + 3] = 1
    kspace = np.ones((6, 2, SIZE, SIZE), np.complex64) * mask
    write_fastmri_h5(tmp_path / "test_file.h5", kspace, header, mask=mask, extra_attrs={"acceleration": 4, "num_low_frequency": 6})
    dataset = FastMRISliceDataset(tmp_path, TEST_POLICY, max_slices_per_file=2)
    assert [dataset.index[i][1] for i in range(len(dataset))] == [2, 3]
    item = dataset[0]
    np.testing.assert_array_equal(item["mask"].reshape(-1).numpy(), mask)
    assert item["num_low_frequency"] == 6 and item["acceleration"] == 4.0


def test_bad_files_are_skipped_and_an_empty_folder_is_an_error(tmp_path):
    write_tiny_corpus(tmp_path, files=(1, 0, 0))
    (tmp_path / "train" / "broken.h5").write_bytes(b"not hdf5")
    dataset = FastMRISliceDataset(tmp_path / "train", TEST_POLICY)
    assert len(dataset) == 2
    assert [p.name for p, _ in dataset.skipped] == ["broken.h5"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found none"):
        FastMRISliceDataset(tmp_path / "empty", TEST_POLICY)
    with pytest.raises(FileNotFoundError, match="missing"):
        FastMRISliceDataset(tmp_path / "missing", TEST_POLICY)
    with pytest.raises(ValueError, match="mask_mode"):
        FastMRISliceDataset(tmp_path / "train", TEST_POLICY, mask_mode="sometimes")
    with pytest.raises(ValueError, match="center_fractions"):
        MaskPolicy("equispaced_fraction", (4, 8), (0.08,))


def test_calibration_width_is_the_centred_fully_sampled_block():
    mask = np.zeros(64)
    mask[28:36] = 1  # fastMRI's 8 centre lines of 64
    assert calibration_width(mask) == 8
    mask[36] = 1  # an extra line on the right keeps the block centred: 9 is valid
    assert calibration_width(mask.reshape(1, 1, 64)) == 9
    mask[36], mask[27] = 0, 1  # an extra line on the left is not part of the centred block
    assert calibration_width(mask) == 8
    kspace = torch.ones(2, 64, 64, dtype=torch.complex64) * torch.from_numpy(mask).float()
    estimate_maps_acs(kspace, calib_width=calibration_width(mask))  # accepted
    with pytest.raises(ValueError):
        estimate_maps_acs(kspace, calib_width=calibration_width(mask) + 1)
    square = np.zeros((64, 64))
    square[26:38, 26:38] = 1
    assert calibration_width(square) == 12 and calibration_width(np.zeros(8)) == 0


def test_two_dimensional_masks_and_transforms(corpus):
    policy = MaskPolicy("poisson2d", (4,), (0.125,))
    dataset = FastMRISliceDataset(corpus / "val", policy, mask_mode="fixed", transform=lambda d: {**d, "seen": True})
    item = dataset[0]
    assert item["mask"].shape == (1, SIZE, SIZE) and item["seen"]
    assert item["num_low_frequency"] == calibration_width(item["mask"].numpy()) >= 4
