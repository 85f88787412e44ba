"""Masks: bit-identical to fastMRI's mask functions (via MONAI's ports), sigpy Poisson parity, properties."""

import numpy as np
import pytest
import sigpy.mri
import torch
from monai.apps.reconstruction.transforms.array import EquispacedKspaceMask, RandomKspaceMask

from ccdf_mri.physics import MASK_KINDS, effective_acceleration, make_mask, mask_seed_from_name

SEEDS = [0, 42, 123456, mask_seed_from_name("file1000001.h5"), mask_seed_from_name("file_brain_AXT2_200_2000019.h5")]
CASES = [((640, 368), 4, 0.08), ((320, 320), 8, 0.04), ((15, 640, 372), 4, 0.08), ((256, 255), 6, 0.06)]


def _monai_mask(transform_cls, shape, acceleration, center_fraction, seed):
    """fastMRI's algorithm as MONAI ports it: seeded RandomState, k-space (..., H, W, 2)."""
    transform = transform_cls(center_fractions=[center_fraction], accelerations=[acceleration], spatial_dims=2)
    transform.R = np.random.RandomState(seed)  # fastMRI seeds with rng.seed(seed); tuples allowed
    transform(np.zeros((1, shape[-2], shape[-1], 2), dtype=np.float32))
    return transform.mask.numpy().reshape(-1)


@pytest.mark.parametrize("shape, acceleration, center_fraction", CASES)
@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: str(s)[:12])
def test_equispaced_and_random_match_fastmri_bit_for_bit(shape, acceleration, center_fraction, seed):
    for kind, transform_cls in (("equispaced_fraction", EquispacedKspaceMask), ("random", RandomKspaceMask)):
        mask = make_mask(kind, shape, acceleration, center_fraction, seed=seed)
        assert mask.shape == (1, 1, 1, shape[-1]) and mask.dtype == torch.float32
        expected = _monai_mask(transform_cls, shape, acceleration, center_fraction, seed)
        assert np.array_equal(mask.numpy().reshape(-1), expected), kind


def test_fastmri_centre_block_and_seed_convention():
    # W=368, 8%: round(29.44) = 29 centre lines starting at (368 - 29 + 1) // 2 = 170
    mask = make_mask("equispaced_fraction", (640, 368), 4, 0.08, seed=mask_seed_from_name("a.h5")).reshape(-1)
    assert mask[170:199].all() and mask.sum() > 29
    assert mask_seed_from_name("file1000001.h5") == (102, 105, 108, 101, 49, 48, 48, 48, 48, 48, 49, 46, 104, 53)
    again = make_mask("equispaced_fraction", (640, 368), 4, 0.08, seed=mask_seed_from_name("a.h5")).reshape(-1)
    assert torch.equal(mask, again)


def test_equispaced_effective_acceleration_is_near_nominal():
    for acceleration in (4, 8):
        mask = make_mask("equispaced_fraction", (320, 368), acceleration, 0.32 / acceleration, seed=1)
        assert abs(effective_acceleration(mask) - acceleration) < 0.3


def test_gaussian1d_properties():
    width, acceleration = 320, 4
    masks = torch.stack([make_mask("gaussian1d", (320, width), acceleration, 0.08, seed=s).reshape(-1) for s in range(200)])
    assert (masks.sum(1) == round(width / acceleration)).all()
    assert effective_acceleration(masks[0].reshape(1, 1, 1, width)) == width / 80
    start = (width - 26 + 1) // 2
    assert masks[:, start : start + 26].all()
    assert torch.equal(masks[3], make_mask("gaussian1d", (320, width), acceleration, 0.08, seed=3).reshape(-1))
    assert not torch.equal(masks[3], masks[4])
    frequency = masks.mean(0)
    near = torch.cat([frequency[start - 30 : start], frequency[start + 26 : start + 56]]).mean()
    far = torch.cat([frequency[:30], frequency[-30:]]).mean()
    assert near > 2 * far > 0


@pytest.mark.parametrize("shape, seed", [((32, 40), 0), ((48, 48), 7)])
def test_poisson2d_matches_sigpy(shape, seed):
    mask = make_mask("poisson2d", shape, 3, 0.125, seed=seed)
    calib = (round(shape[0] * 0.125), round(shape[1] * 0.125))
    expected = sigpy.mri.poisson(shape, 3, calib=calib, dtype=np.float32, seed=seed)
    assert mask.shape == (1, 1) + shape
    assert np.array_equal(mask.numpy()[0, 0], expected)
    assert abs(effective_acceleration(mask) - 3) < 0.1
    row0, col0 = int(shape[0] / 2 - calib[0] / 2), int(shape[1] / 2 - calib[1] / 2)
    assert mask[0, 0, row0 : row0 + calib[0], col0 : col0 + calib[1]].all()


def test_poisson2d_tuple_seed_is_deterministic():
    seed = mask_seed_from_name("file1.h5")
    assert torch.equal(make_mask("poisson2d", (32, 32), 3, 0.1, seed=seed), make_mask("poisson2d", (32, 32), 3, 0.1, seed=seed))


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_padding_zeroes_columns_outside_encoded_limits(kind):
    shape = (40, 48)
    plain = make_mask(kind, shape, 3, 0.1, seed=5)
    padded = make_mask(kind, shape, 3, 0.1, seed=5, padding=(4, 43))
    assert not padded[..., :4].any() and not padded[..., 43:].any()
    assert torch.equal(padded[..., 4:43], plain[..., 4:43])


def test_mask_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"kind: expected one of .*found 'radial'"):
        make_mask("radial", (32, 32), 4, 0.08)
    with pytest.raises(ValueError, match=r"shape: expected k-space shape \(\.\.\., H, W\), found \(32,\)"):
        make_mask("random", (32,), 4, 0.08)
    with pytest.raises(ValueError, match="acceleration: expected >= 1, found 0.5"):
        make_mask("random", (32, 32), 0.5, 0.08)
    with pytest.raises(ValueError, match=r"center_fraction: expected in \[0, 1\), found 1.5"):
        make_mask("random", (32, 32), 4, 1.5)
    with pytest.raises(ValueError, match=r"round\(W \* center_fraction\) \* acceleration < W=32, found 16 \* 4"):
        make_mask("equispaced_fraction", (32, 32), 4, 0.5)
    with pytest.raises(ValueError, match=r"padding: expected \(left, right\) with 0 <= left < right <= W=32, found \(10, 40\)"):
        make_mask("random", (32, 32), 4, 0.08, padding=(10, 40))
    with pytest.raises(ValueError, match="mask: expected at least one sampled entry"):
        effective_acceleration(torch.zeros(1, 1, 1, 8))


# ----------------------------------------------------------------------------- masks from data
from ccdf_mri.physics.masks import SampledColumns, detect_sampled_columns, load_mask_file  # noqa: E402


def _kspace(shape=(3, 4, 16, 40), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_fully_sampled_data_give_none_even_with_zero_padding():
    kspace = _kspace()
    assert detect_sampled_columns(kspace) is None
    kspace[..., :3] = 0  # zero padding (declared or not) and partial Fourier at the edges
    kspace[..., -5:] = 0
    assert detect_sampled_columns(kspace) is None
    assert detect_sampled_columns(kspace, padding=(3, 35)) is None


@pytest.mark.parametrize("kind", ["equispaced_fraction", "random", "gaussian1d"])
def test_undersampled_data_give_their_mask(kind):
    mask = make_mask(kind, (16, 40), 4, 0.1, seed=7, padding=(2, 38))
    kspace = _kspace() * mask.numpy()
    detected = detect_sampled_columns(kspace, padding=(2, 38))
    assert detected.shape == (1, 1, 1, 40) and detected.dtype == torch.float32
    assert torch.equal(detected, mask)
    assert torch.equal(detect_sampled_columns(torch.from_numpy(kspace)), mask)  # torch input too


def test_streaming_over_slices_is_the_union():
    kspace = _kspace()
    kspace[:, :, :, 10] = 0  # never acquired
    kspace[0, :, :, 20] = 0  # zero in one slice only: acquired in the others
    kspace[:, 1:, :, 30] = 0  # zero in all coils but one: acquired
    columns = SampledColumns()
    for index in range(kspace.shape[0]):
        columns.update(kspace[index])
    expected = np.ones(40, dtype=bool)
    expected[10] = False
    assert np.array_equal(columns.sampled, expected)
    assert torch.equal(columns.mask(), torch.from_numpy(expected.astype(np.float32)).reshape(1, 1, 1, 40))
    assert torch.equal(columns.mask(), detect_sampled_columns(kspace))


def test_detection_errors():
    with pytest.raises(ValueError, match="the k-space is zero"):
        detect_sampled_columns(np.zeros((2, 3, 4, 8), np.complex64))
    with pytest.raises(ValueError, match="no k-space seen"):
        SampledColumns().mask()
    columns = SampledColumns().update(np.ones((2, 4, 8)))
    with pytest.raises(ValueError, match=r"expected width W=8 as before, found shape \(2, 4, 9\)"):
        columns.update(np.ones((2, 4, 9)))
    with pytest.raises(ValueError, match="padding"):
        columns.mask(padding=(5, 3))


@pytest.mark.parametrize("stored", [(40,), (1, 40), (1, 1, 1, 40)])
def test_load_mask_file_npy_and_h5(tmp_path, stored):
    import h5py

    mask = make_mask("equispaced_fraction", (16, 40), 4, 0.1, seed=1)
    values = mask.numpy().reshape(stored)
    np.save(tmp_path / "m.npy", values.astype(bool))
    with h5py.File(tmp_path / "m.H5", "w") as handle:
        handle["mask"] = values
        handle["other"] = values
    assert torch.equal(load_mask_file(tmp_path / "m.npy", 40), mask)
    assert torch.equal(load_mask_file(tmp_path / "m.H5", 40), mask)
    assert torch.equal(load_mask_file(tmp_path / "m.H5", 40, key="other"), mask)


def test_load_mask_file_2d(tmp_path):
    mask = (np.random.default_rng(0).random((16, 40)) < 0.3).astype(np.float32)
    np.save(tmp_path / "m2.npy", mask)
    loaded = load_mask_file(tmp_path / "m2.npy", 40, height=16)
    assert loaded.shape == (1, 1, 16, 40) and np.array_equal(loaded.numpy()[0, 0], mask)
    with pytest.raises(ValueError, match=r"m2.npy: expected mask shape \(40,\) or \(1, 1, 1, 40\), found \(16, 40\)"):
        load_mask_file(tmp_path / "m2.npy", 40)


def test_load_mask_file_errors_name_file_key_and_shapes(tmp_path):
    import h5py

    with pytest.raises(FileNotFoundError, match="nope.npy: mask file not found"):
        load_mask_file(tmp_path / "nope.npy", 40)
    np.save(tmp_path / "short.npy", np.ones(32))
    with pytest.raises(ValueError, match=r"short.npy: expected mask shape \(40,\) or \(1, 1, 1, 40\), found \(32,\)"):
        load_mask_file(tmp_path / "short.npy", 40)
    np.save(tmp_path / "weights.npy", np.linspace(0, 1, 40))
    with pytest.raises(ValueError, match="weights.npy: expected 0/1 values, found 38 others"):
        load_mask_file(tmp_path / "weights.npy", 40)
    np.save(tmp_path / "empty.npy", np.zeros(40))
    with pytest.raises(ValueError, match="expected at least one sampled entry"):
        load_mask_file(tmp_path / "empty.npy", 40)
    with h5py.File(tmp_path / "m.h5", "w") as handle:
        handle["sampling"] = np.ones(40)
    with pytest.raises(ValueError, match=r"m.h5: key 'mask': expected a dataset 'mask', found keys \['sampling'\]"):
        load_mask_file(tmp_path / "m.h5", 40)
    (tmp_path / "m.txt").write_text("1 0 1")
    with pytest.raises(ValueError, match=r"m.txt: expected a mask file ending in .npy or .h5"):
        load_mask_file(tmp_path / "m.txt", 40)
    (tmp_path / "bad.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="bad.h5: expected an HDF5 file"):
        load_mask_file(tmp_path / "bad.h5", 40)
