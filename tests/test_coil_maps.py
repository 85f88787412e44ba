"""Coil maps: ESPIRiT (sigpy parity, SENSE image of a phantom), ACS maps, calibration errors."""

import numpy as np
import pytest
import sigpy
import sigpy.mri
import torch

from ccdf_mri.physics import (
    ProjectionDC,
    SenseOp,
    estimate_maps_acs,
    estimate_maps_espirit,
    fft2c,
    make_mask,
    rss,
    sense_combine,
)

SIZE, COILS, CALIB = 64, 8, 24


@pytest.fixture(scope="module")
def phantom():
    """Shepp-Logan image, rss-normalised birdcage maps, full and undersampled k-space, mask."""
    image = torch.from_numpy(sigpy.shepp_logan((SIZE, SIZE))).to(torch.complex64)
    maps = torch.from_numpy(sigpy.mri.birdcage_maps((COILS, SIZE, SIZE))).to(torch.complex64)
    maps = maps / rss(maps, dim=0)
    kspace = fft2c(maps * image)
    mask = make_mask("equispaced_fraction", (SIZE, SIZE), 2, CALIB / SIZE, seed=0)
    return image, maps, kspace, mask, kspace * mask[0]


def _support_error(estimate, image):
    support = image.abs() > 0
    return (torch.linalg.vector_norm((estimate.abs() - image.abs())[support]) / torch.linalg.vector_norm(image[support])).item()


def test_espirit_maps_give_sense_image_close_to_truth(phantom):
    image, _, kspace, mask, undersampled = phantom
    maps = estimate_maps_espirit(undersampled, calib_width=CALIB)
    assert maps.shape == undersampled.shape and maps.dtype == torch.complex64
    assert _support_error(sense_combine(kspace[None], maps[None])[0], image) < 1e-3
    op = SenseOp(maps[None], mask)
    recon = ProjectionDC(num_iters=50)(torch.zeros(op.image_shape, dtype=torch.complex64), op, undersampled[None])[0]
    zero_filled = sense_combine(undersampled[None], maps[None])[0]
    assert _support_error(recon, image) < 0.15 < _support_error(zero_filled, image)


def test_espirit_matches_sigpy_with_the_given_parameters(phantom):
    """backend="sigpy" forwards the options; the torch default is checked in test_espirit.py."""
    undersampled = phantom[4]
    params = dict(calib_width=20, thresh=0.05, kernel_width=5, crop=0.9)
    maps = estimate_maps_espirit(undersampled, backend="sigpy", **params)
    expected = sigpy.mri.app.EspiritCalib(undersampled.numpy(), show_pbar=False, **params).run()
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-6)
    cropped = estimate_maps_espirit(undersampled, calib_width=20, crop=0.999)
    assert (cropped == 0).sum() > (maps == 0).sum()


def test_espirit_batched_equals_per_item(phantom):
    undersampled = phantom[4]
    batch = torch.stack([undersampled, 2 * undersampled.flip(-1)])
    maps = estimate_maps_espirit(batch, calib_width=CALIB)
    assert maps.shape == batch.shape
    assert torch.allclose(maps[1], estimate_maps_espirit(batch[1], calib_width=CALIB), atol=1e-6)


def test_acs_maps_are_unit_rss_and_combine_to_the_image(phantom):
    image, _, kspace, _, undersampled = phantom
    maps = estimate_maps_acs(torch.stack([undersampled, undersampled]), calib_width=CALIB)
    assert maps.shape == (2, COILS, SIZE, SIZE) and maps.dtype == torch.complex64
    assert torch.allclose(rss(maps, dim=1), torch.ones(2, SIZE, SIZE), atol=1e-5)
    assert _support_error(sense_combine(kspace[None], maps[:1])[0], image) < 1e-2
    single = estimate_maps_acs(undersampled, calib_width=CALIB)
    assert torch.allclose(single, maps[0])


def test_acs_window_uses_only_the_calibration_block(phantom):
    undersampled = phantom[4].clone()
    maps = estimate_maps_acs(undersampled, calib_width=CALIB)
    undersampled[..., : SIZE // 2 - CALIB // 2] = 5.0  # outside the block: must not matter
    undersampled[..., :3, :] = -2.0
    assert torch.equal(estimate_maps_acs(undersampled, calib_width=CALIB), maps)


@pytest.mark.parametrize("estimate", [estimate_maps_espirit, estimate_maps_acs])
def test_too_few_centre_lines_is_a_clear_error(phantom, estimate):
    kspace = phantom[2]
    mask = make_mask("equispaced_fraction", (SIZE, SIZE), 2, 16 / SIZE, seed=0)
    with pytest.raises(ValueError, match=r"calib_width=24 fully sampled centre lines .*found 16"):
        estimate(kspace * mask[0], calib_width=24)
    with pytest.raises(ValueError, match="kspace: expected a complex torch tensor"):
        estimate(kspace.real, calib_width=24)
    with pytest.raises(ValueError, match=r"kspace: expected \(C, H, W\) or \(B, C, H, W\), found shape \(64, 64\)"):
        estimate(kspace[0], calib_width=24)
