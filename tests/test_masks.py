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
