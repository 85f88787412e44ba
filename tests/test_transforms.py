"""k-space transforms: readout crop, undersampling, coil maps, SENSE combine, scaling, MONAI wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose

from ccdf_mri.intensity import intensity_scale
from ccdf_mri.io import FastMRIVolume, make_ismrmrd_header, parse_ismrmrd_header, write_fastmri_h5
from ccdf_mri.physics import estimate_maps_acs, fft2c, ifft2c, make_mask, mask_seed_from_name
from ccdf_mri.transforms import (
    CropReadoutOversampling,
    CropReadoutOversamplingd,
    EstimateCoilMaps,
    EstimateCoilMapsd,
    ScaleIntensityByZeroFilled,
    ScaleIntensityByZeroFilledd,
    SenseCombine,
    SenseCombined,
    UndersampleKspace,
    UndersampleKspaced,
)

COILS, H, W = 4, 32, 32


def _phantom(seed: int = 0, coils: int = COILS, height: int = H, width: int = W):
    """Image (H, W) with full support, smooth maps (C, H, W) with sum_c |S_c|^2 = 1, k-space F S x."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    image = (1.0 + 0.5 * torch.cos(3 * xx) * torch.sin(2 * yy) + 0.05 * torch.rand(height, width, generator=gen))
    image = image * torch.exp(1j * 0.3 * xx)
    centres = torch.linspace(-1, 1, coils)
    maps = torch.stack([torch.exp(-((xx - c) ** 2 + (yy + c) ** 2)) * torch.exp(1j * c * yy) for c in centres])
    maps = maps / maps.abs().square().sum(0).sqrt()
    image, maps = image.to(torch.complex64), maps.to(torch.complex64)
    return image, maps, fft2c(maps * image)


@pytest.fixture
def oversampled_file(tmp_path):
    """Multi-coil file with 2x readout oversampling: 128 rows, recon matrix x = 64."""
    rng = np.random.default_rng(3)
    shape = (2, 3, 128, 40)
    kspace = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    xml = make_ismrmrd_header((128, 40, 1), (64, 64, 1), (240.0, 240.0, 4.5), (120.0, 120.0, 3.0), 18, 35)
    return write_fastmri_h5(tmp_path / "file1000007.h5", kspace, xml, {"acquisition": "CORPD_FBK"}), kspace


def test_crop_readout_keeps_centre_rows_of_the_image():
    _, _, kspace = _phantom()
    cropped = CropReadoutOversampling(16)(kspace.numpy())
    assert cropped.shape == (COILS, 16, W) and cropped.dtype == torch.complex64
    torch.testing.assert_close(ifft2c(cropped), ifft2c(kspace)[:, 8:24, :], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected to keep 1..32 readout rows, found num_rows=40"):
        CropReadoutOversampling(40)(kspace)
    with pytest.raises(ValueError, match="key 'kspace': expected complex data, found dtype torch.float32"):
        CropReadoutOversampling(16)(kspace.real)


def test_crop_readout_from_file_header(oversampled_file):
    path, kspace = oversampled_file
    with FastMRIVolume(path) as volume:
        sample = volume.sample(1)
    out = CropReadoutOversamplingd()(sample)
    assert out["kspace"].shape == (3, 64, 40)
    expected = ifft2c(torch.from_numpy(kspace[1]))[:, 32:96, :]
    torch.testing.assert_close(ifft2c(out["kspace"]), expected, rtol=1e-5, atol=1e-5)
    # recon x equal to encoded x: nothing to crop
    sample["meta"]["header"] = parse_ismrmrd_header(
        make_ismrmrd_header((128, 40, 1), (128, 40, 1), (1, 1, 1), (1, 1, 1))
    )
    assert CropReadoutOversamplingd()(sample)["kspace"] is sample["kspace"]


def test_undersample_seeded_from_file_name_with_header_padding(oversampled_file):
    path, _ = oversampled_file
    with FastMRIVolume(path) as volume:
        sample = volume.sample(0)
        header = volume.header
    transform = UndersampleKspaced(kind="random", acceleration=4, center_fraction=0.08)
    out = transform(sample)
    left, right = header.padding_columns(40)
    assert (left, right) == (2, 38)
    expected = make_mask("random", (3, 128, 40), 4, 0.08, seed=mask_seed_from_name("file1000007.h5"), padding=(2, 38))
    assert out["mask"].shape == (1, 1, 40) and out["mask"].dtype == torch.float32
    torch.testing.assert_close(out["mask"], expected.reshape(1, 1, 40))
    assert out["mask"][..., :2].sum() == 0 and out["mask"][..., 38:].sum() == 0
    sampled = out["mask"][0, 0].bool()
    torch.testing.assert_close(out["kspace"][..., sampled], sample["kspace"][..., sampled])
    assert out["kspace"][..., ~sampled].abs().sum() == 0
    again = transform({**sample, "meta": dict(sample["meta"])})
    torch.testing.assert_close(again["mask"], out["mask"])  # same file -> same mask
    sample["meta"]["filename"] = "file1000008.h5"
    assert not torch.equal(transform(sample)["mask"], out["mask"])


def test_undersample_uses_a_given_mask_and_reports_problems():
    _, _, kspace = _phantom()
    given = torch.zeros(W)
    given[::3] = 1
    out = UndersampleKspaced(kind="equispaced_fraction")({"kspace": kspace, "mask": given})
    torch.testing.assert_close(out["mask"], given.reshape(1, 1, W))
    torch.testing.assert_close(out["kspace"], kspace * given)
    with pytest.raises(ValueError, match="key 'meta': expected 'filename'"):
        UndersampleKspaced()({"kspace": kspace})
    with pytest.raises(ValueError, match=r"key 'mask': expected a mask broadcastable .* found shape \(31,\)"):
        UndersampleKspaced()({"kspace": kspace, "mask": torch.ones(W - 1)})
    masked, mask = UndersampleKspace("poisson2d", 3, 0.1, seed=5)(kspace)
    assert mask.shape == (1, H, W) and torch.equal(masked, kspace * mask)
    fixed = UndersampleKspaced(kind="gaussian1d", acceleration=4, center_fraction=0.1, seed=11)
    torch.testing.assert_close(fixed({"kspace": kspace})["mask"], fixed({"kspace": kspace})["mask"])


def test_sense_combine_recovers_the_image_with_true_maps():
    image, maps, kspace = _phantom()
    out = SenseCombined()({"kspace": kspace, "maps": maps})
    assert out["image"].shape == (H, W)
    torch.testing.assert_close(out["image"], image, rtol=1e-4, atol=1e-4)  # sum |S|^2 = 1
    with pytest.raises(ValueError, match="key 'maps': expected coil maps"):
        SenseCombined()({"kspace": kspace})
    with pytest.raises(ValueError, match=r"key 'maps': expected the k-space shape \(4, 32, 32\), found \(3, 32, 32\)"):
        SenseCombine()(kspace, maps[:3])


def test_coil_maps_wiring_single_coil_and_espirit_quality():
    image, maps, kspace = _phantom(1)
    acs = EstimateCoilMapsd(method="acs", calib_width=12)({"kspace": kspace})["maps"]
    torch.testing.assert_close(acs, estimate_maps_acs(kspace, calib_width=12))
    # one coil: phase-only maps (|S| = 1) from the calibration region, whatever the method;
    # the combined image keeps the magnitude of the plain inverse FFT and loses its smooth phase
    single = EstimateCoilMaps("espirit", calib_width=12)(kspace[:1])
    assert single.shape == kspace[:1].shape
    torch.testing.assert_close(single.abs(), torch.ones(single.shape))
    combined = SenseCombine()(kspace[:1], single)
    torch.testing.assert_close(combined.abs(), ifft2c(kspace[:1])[0].abs())
    assert combined.imag.abs().mean() < 0.1 * combined.real.abs().mean()  # 0.05 here; 0.7 for the plain IFFT
    assert ifft2c(kspace[:1])[0].imag.abs().mean() > 0.5 * ifft2c(kspace[:1])[0].real.abs().mean()
    with pytest.raises(ValueError, match="expected one of"):
        EstimateCoilMaps("sos")
    espirit = EstimateCoilMaps("espirit", calib_width=12, crop=0.0)(kspace)
    combined = SenseCombine()(kspace, espirit)
    # ESPIRiT maps are unit-norm like the true ones: |S^H F^-1 y| = |x| away from the FOV edge
    # (the true maps are not periodic, so the 4-pixel border is excluded; maps of 1/2 give 0.24)
    inner = (slice(4, -4), slice(4, -4))
    error = (combined.abs() - image.abs())[inner].norm() / image.abs()[inner].norm()
    assert error < 1e-2


def test_scale_and_inverse_in_compose():
    image, maps, kspace = _phantom(2)
    data = {"kspace": kspace * 1e-4, "maps": maps, "image": image * 1e-4}
    transform = ScaleIntensityByZeroFilledd()
    out = transform(data)
    scale = intensity_scale(image * 1e-4)
    torch.testing.assert_close(out["scale"], scale)
    torch.testing.assert_close(out["image"], data["image"] / scale)
    torch.testing.assert_close(out["kspace"], data["kspace"] / scale)
    assert torch.equal(out["maps"], maps)
    assert torch.quantile(out["image"].abs().flatten(), 0.99) == pytest.approx(1.0, rel=1e-5)
    back = Compose([CropReadoutOversamplingd(num_rows=H), transform]).inverse(out)
    torch.testing.assert_close(back["image"], data["image"])
    scaled, factor = ScaleIntensityByZeroFilled()(data["image"])
    torch.testing.assert_close(ScaleIntensityByZeroFilled.inverse(scaled, factor), data["image"])


def _pipeline(**mask):
    return Compose(
        [
            CropReadoutOversamplingd(),
            UndersampleKspaced(kind="equispaced_fraction", acceleration=3, center_fraction=0.25, **mask),
            EstimateCoilMapsd(method="acs", calib_width=8),
            SenseCombined(),
            ScaleIntensityByZeroFilledd(),
        ]
    )


def test_pipeline_on_a_file(oversampled_file):
    path, _ = oversampled_file
    with FastMRIVolume(path) as volume:
        out = _pipeline()(volume.sample(0))
    assert out["kspace"].shape == out["maps"].shape == (3, 64, 40)
    assert out["image"].shape == (64, 40) and out["image"].dtype == torch.complex64
    assert out["mask"].shape == (1, 1, 40) and out["scale"].ndim == 0


def test_dataset_and_dataloader_batch():
    items = []
    for seed in range(4):
        _, _, kspace = _phantom(seed)
        items.append({"kspace": kspace.numpy(), "meta": {"filename": f"file{seed}.h5", "slice": seed}})
    loader = DataLoader(Dataset(items, transform=_pipeline()), batch_size=2, shuffle=False, num_workers=0)
    batches = list(loader)
    assert len(batches) == 2
    batch = batches[0]
    assert batch["kspace"].shape == (2, COILS, H, W) and batch["kspace"].dtype == torch.complex64
    assert batch["image"].shape == (2, H, W) and batch["scale"].shape == (2,)
    assert batch["meta"]["filename"] == ["file0.h5", "file1.h5"]
    single = _pipeline()(items[1])
    torch.testing.assert_close(batch["image"][1], single["image"])
    torch.testing.assert_close(batch["mask"][1], single["mask"])
    restored = ScaleIntensityByZeroFilledd().inverse(batch)
    torch.testing.assert_close(restored["image"][1], single["image"] * single["scale"])


def test_dataloader_over_file_samples(oversampled_file):
    path, kspace = oversampled_file
    with FastMRIVolume(path) as volume:
        samples = [volume.sample(index) for index in range(volume.num_slices)]
    loader = DataLoader(Dataset(samples, transform=_pipeline()), batch_size=2, num_workers=0)
    (batch,) = list(loader)
    assert batch["kspace"].shape == (2, 3, 64, 40)  # readout crop read from the header XML
    assert batch["meta"]["filename"] == ["file1000007.h5"] * 2
    torch.testing.assert_close(batch["mask"][0], batch["mask"][1])  # one mask per file name


@pytest.mark.parametrize("lines", [10, 20])
def test_espirit_crop_follows_the_calibration_width(lines):
    """Without a crop argument the maps are ESPIRiT's with espirit_crop(lines): 0.9 below 16 fully
    sampled centre lines (the 10 lines of 8x at 256), 0.95 from 16; an explicit crop wins."""
    from ccdf_mri.physics import estimate_maps_espirit
    from ccdf_mri.transforms.array import espirit_calibration, espirit_crop

    assert espirit_crop(lines) == (0.9 if lines < 16 else 0.95)
    _, _, kspace = _phantom(3, height=48, width=48)
    mask = torch.zeros(1, 1, 48)
    mask[..., 24 - lines // 2 : 24 - lines // 2 + lines] = 1
    mask[..., ::3] = 1
    sampled = kspace * mask
    region, kernel = espirit_calibration(lines, 48)
    expected = {crop: estimate_maps_espirit(sampled, calib_width=region, kernel_width=kernel, phase_ref="acs", crop=crop)
                for crop in (0.9, 0.95, 0.5)}
    if lines == 10:  # with few lines the eigenvalue dips below 0.95 on this phantom: the crop matters
        assert not torch.equal(expected[0.9], expected[0.95])
    torch.testing.assert_close(EstimateCoilMaps("espirit", calib_width=24)(sampled, mask), expected[espirit_crop(lines)])
    torch.testing.assert_close(EstimateCoilMaps("espirit", calib_width=24, crop=0.5)(sampled, mask), expected[0.5])
