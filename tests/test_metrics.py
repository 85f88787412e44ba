"""Metrics follow fastMRI's evaluation: closed forms and parity with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ccdf_mri.metrics import nmse, psnr, ssim, volume_metrics


def _pair(seed: int, shape=(3, 40, 33), noise=0.1):
    rng = np.random.default_rng(seed)
    gt = rng.random(shape) * 3.0
    gt[:, 10:20, 5:15] += 2.0  # structure, so windows differ
    return gt, np.clip(gt + noise * rng.standard_normal(shape), 0, None)


@pytest.mark.parametrize("seed, shape, noise", [(0, (3, 40, 33), 0.1), (1, (2, 64, 64), 0.5), (2, (1, 7, 9), 1.0)])
def test_ssim_matches_skimage_per_slice_with_volume_range(seed, shape, noise):
    gt, pred = _pair(seed, shape, noise)
    expected = np.mean([structural_similarity(g, p, data_range=gt.max()) for g, p in zip(gt, pred)])
    assert ssim(gt, pred) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    forced = np.mean([structural_similarity(g, p, data_range=10.0) for g, p in zip(gt, pred)])
    assert ssim(gt, pred, maxval=10.0) == pytest.approx(forced, rel=1e-10, abs=1e-12)


def test_ssim_identity_and_window_limit():
    gt, _ = _pair(3)
    assert ssim(gt, gt) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(np.ones((1, 6, 20)), np.ones((1, 6, 20)))


def test_psnr_matches_skimage_and_closed_form():
    gt, pred = _pair(4)
    assert psnr(gt, pred) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=gt.max()), rel=1e-12)
    mse = np.mean((gt - pred) ** 2)
    assert psnr(gt, pred, maxval=2.0) == pytest.approx(10 * np.log10(4.0 / mse))


def test_nmse_closed_forms():
    gt, pred = _pair(5)
    assert nmse(gt, np.zeros_like(gt)) == pytest.approx(1.0)
    assert nmse(gt, 1.1 * gt) == pytest.approx(0.01)
    assert nmse(gt, pred) == pytest.approx(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def test_volume_metrics_accepts_tensors_and_checks_shapes():
    gt, pred = _pair(6)
    result = volume_metrics(torch.from_numpy(gt).float(), torch.from_numpy(pred).float())
    assert set(result) == {"nmse", "psnr", "ssim"}
    assert result["psnr"] == pytest.approx(psnr(gt, pred), rel=1e-5)
    with pytest.raises(ValueError, match=r"found \(3, 40, 33\) and \(3, 40, 32\)"):
        nmse(gt, pred[..., :32])
    with pytest.raises(ValueError, match="complex"):
        psnr(gt.astype(complex), pred)
