"""ESPIRiT in torch (ccdf_mri.physics.espirit): parity with sigpy's EspiritCalib, batching,
odd sizes, dtype/device, calibration errors, and the estimate_maps_espirit backends.

Agreement measure (as issue 11 states it): per pixel, the cosine of the angle between the two
coil vectors, ``|<s_ours, s_ref>| / (|s_ours| |s_ref|)`` (1 = equal up to a phase and a
scale), taken over the object's pixels (``|object| > 10 %`` of its maximum); a pixel where
either map set is zero scores 0. The check is on its 1st percentile.
"""

import subprocess
import sys

import numpy as np
import pytest
import sigpy.mri
import torch

from ccdf_mri.initializers import CGSense
from ccdf_mri.metrics import psnr
from ccdf_mri.physics import SenseOp, estimate_maps_espirit, fft2c, make_mask
from ccdf_mri.physics.espirit import espirit_maps, espirit_maps_and_eigenvalues
from ccdf_mri.simulation.coils import random_birdcage_maps

COILS, CALIB = 8, 24


def _object(shape):
    """Smooth complex object: a soft-edged ellipse with a slow intensity ramp and phase."""
    rows, cols = shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    envelope = np.exp(-(((x / 0.75) ** 2 + (y / 0.85) ** 2) ** 4))
    image = envelope * (1 + 0.4 * np.cos(2.5 * x + 1.0) * np.sin(1.5 * y)) * np.exp(1j * 0.8 * np.pi * x * y)
    return torch.from_numpy(image.astype(np.complex64))


def _case(shape, seed, acceleration=2):
    """(object, true maps, fully sampled k-space, mask (1,1,1,W), undersampled k-space)."""
    image = _object(shape)
    maps = torch.from_numpy(random_birdcage_maps(COILS, shape, np.random.default_rng(seed)))
    kspace = fft2c(maps * image)
    mask = make_mask("equispaced_fraction", (1, COILS) + tuple(shape), acceleration, (CALIB + 2) / shape[1], seed=0)
    return image, maps, kspace, mask, kspace * mask[0]


def _agreement(maps, ref, image):
    """1st percentile over the object's pixels of the per-pixel cosine (module docstring)."""
    inner = torch.linalg.vecdot(maps, ref, dim=0).abs()
    norms = torch.linalg.vector_norm(maps, dim=0) * torch.linalg.vector_norm(ref, dim=0)
    cosine = torch.where(norms > 0, inner / norms.clamp_min(1e-30), torch.zeros_like(inner))
    support = image.abs() > 0.1 * image.abs().max()
    return float(torch.quantile(cosine[support].double(), 0.01))


def _sigpy(kspace, **params):
    return torch.from_numpy(sigpy.mri.app.EspiritCalib(kspace.numpy(), show_pbar=False, **params).run())


def _cg_psnr(maps, mask, kspace, image):
    """PSNR (dB) of the magnitude of 20 CG-SENSE iterations against the object's magnitude."""
    recon = CGSense(num_iters=20)(SenseOp(maps[None], mask), kspace[None])[0]
    return psnr(image.abs().numpy()[None], recon.abs().numpy()[None])


@pytest.fixture(scope="module")
def case64():
    return _case((64, 64), seed=1)


def test_maps_agree_with_sigpy_up_to_phase_and_cg_sense_matches(case64):
    image, _, _, mask, undersampled = case64
    maps = espirit_maps(undersampled, calib_width=CALIB)
    reference = _sigpy(undersampled, calib_width=CALIB)
    assert maps.shape == undersampled.shape and maps.dtype == torch.complex64
    assert _agreement(maps, reference, image) >= 0.99
    ours, theirs = _cg_psnr(maps, mask, undersampled, image), _cg_psnr(reference, mask, undersampled, image)
    assert abs(ours - theirs) <= 0.1
    assert ours > 35  # noise-free data: both are close to the truth, not equally wrong


def test_converged_maps_equal_sigpy_including_phase_and_eigenvalues(case64):
    """With sigpy's iteration count, the maps (phase referenced to coil 0) and the eigenvalues
    equal sigpy's inside the object: same calibration block, kernels, operator and reference."""
    image, _, _, _, undersampled = case64
    params = dict(calib_width=20, thresh=0.05, kernel_width=5, crop=0.9)
    maps, eig = espirit_maps_and_eigenvalues(undersampled, num_iters=100, **params)
    ref_maps, ref_eig = sigpy.mri.app.EspiritCalib(
        undersampled.numpy(), show_pbar=False, output_eigenvalue=True, **params
    ).run()
    support = image.abs() > 0.1 * image.abs().max()
    assert (maps - torch.from_numpy(ref_maps))[:, support].abs().max() < 1e-4
    assert (eig - torch.from_numpy(np.asarray(ref_eig)).reshape(eig.shape))[support].abs().max() < 1e-4
    assert ((maps == 0).all(dim=0) == torch.from_numpy((ref_maps == 0).all(axis=0)))[support].all()


def test_odd_sizes_match_sigpy():
    """63 x 70: the calibration block start (H // 2 - rows // 2) and the image-space phase of
    the kernels follow the centred-FFT convention for odd sizes too (a one-pixel shift of the
    maps would exceed the 1e-4 bound)."""
    image, _, _, mask, undersampled = _case((63, 70), seed=2)
    maps = espirit_maps(undersampled, calib_width=CALIB, num_iters=100)
    reference = _sigpy(undersampled, calib_width=CALIB)
    assert maps.shape == (COILS, 63, 70)
    support = image.abs() > 0.1 * image.abs().max()
    assert (maps - reference)[:, support].abs().max() < 1e-4
    fast = espirit_maps(undersampled, calib_width=CALIB)
    assert _agreement(fast, reference, image) >= 0.99


def test_batched_equals_per_item(case64):
    other = _case((64, 64), seed=5)[4].flip(-2)  # other coils, object flipped up-down
    batch = torch.stack([case64[4], 3 * other])
    maps, eig = espirit_maps_and_eigenvalues(batch, calib_width=CALIB)
    assert maps.shape == batch.shape and eig.shape == (2, 64, 64)
    for index in range(2):
        single, single_eig = espirit_maps_and_eigenvalues(batch[index], calib_width=CALIB)
        torch.testing.assert_close(maps[index], single, atol=1e-5, rtol=0)
        torch.testing.assert_close(eig[index], single_eig, atol=1e-5, rtol=0)


def test_dtype_and_device_are_preserved(case64):
    undersampled = case64[4]
    double = espirit_maps(undersampled.to(torch.complex128), calib_width=CALIB)
    assert double.dtype == torch.complex128 and double.device == undersampled.device
    single = espirit_maps(undersampled, calib_width=CALIB)
    torch.testing.assert_close(double.to(torch.complex64), single, atol=1e-4, rtol=0)
    if torch.cuda.is_available():
        on_gpu = espirit_maps(undersampled.cuda(), calib_width=CALIB)
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), single, atol=1e-4, rtol=0)


def test_unit_norm_where_kept_zero_where_cropped(case64):
    undersampled = case64[4]
    maps, eig = espirit_maps_and_eigenvalues(undersampled, calib_width=CALIB, crop=0.95)
    norm = torch.linalg.vector_norm(maps, dim=0)
    kept = eig > 0.95
    assert 0 < int(kept.sum()) < kept.numel()
    torch.testing.assert_close(norm[kept], torch.ones_like(norm[kept]), atol=1e-5, rtol=0)
    assert bool((norm[~kept] == 0).all())
    assert float(eig.max()) <= 1 + 1e-4 and float(eig.min()) >= -1e-4


def test_phase_reference(case64):
    """Coil 0 (default, as sigpy): coil 0 is real and non-negative; "acs": the maps' phase
    follows the ACS maps' (their inner product is real and positive)."""
    image, undersampled = case64[0], case64[4]
    maps = espirit_maps(undersampled, calib_width=CALIB, crop=0)
    assert float(maps[0].imag.abs().max()) < 1e-6 and float(maps[0].real.min()) >= 0
    from ccdf_mri.physics import estimate_maps_acs

    aligned = espirit_maps(undersampled, calib_width=CALIB, crop=0, phase_ref="acs")
    inner = torch.linalg.vecdot(estimate_maps_acs(undersampled, CALIB), aligned, dim=0)
    inner = inner[image.abs() > 0.1 * image.abs().max()]  # where the low-resolution image is not ~0
    assert float(inner.imag.abs().max()) < 1e-5 and float(inner.real.min()) > 0.5
    torch.testing.assert_close(aligned.abs(), maps.abs(), atol=1e-5, rtol=0)


def test_rectangular_calibration_region(case64):
    """(rows, cols) = (n, n) is the square block; a taller block needs only the centre columns."""
    undersampled = case64[4]
    torch.testing.assert_close(espirit_maps(undersampled, (20, 20)), espirit_maps(undersampled, 20))
    _, _, kspace, _, _ = case64
    mask = make_mask("equispaced_fraction", (1, COILS, 64, 64), 4, 10 / 64, seed=0)
    maps = espirit_maps(kspace * mask[0], calib_width=(24, 10), kernel_width=4)
    assert bool((maps != 0).any())
    with pytest.raises(ValueError, match=r"calib_width=\(24, 12\) fully sampled centre lines .*found 10"):
        espirit_maps(kspace * mask[0], calib_width=(24, 12), kernel_width=4)


def test_bad_calibration_and_options_are_clear_errors(case64):
    kspace = case64[2]
    mask = make_mask("equispaced_fraction", (1, COILS, 64, 64), 2, 16 / 64, seed=0)
    with pytest.raises(ValueError, match=r"calib_width=24 fully sampled centre lines .*found 16"):
        espirit_maps(kspace * mask[0], calib_width=24)
    with pytest.raises(ValueError, match="kspace: expected a complex torch tensor"):
        espirit_maps(kspace.real)
    with pytest.raises(ValueError, match=r"kernel_width: expected 1..24"):
        espirit_maps(kspace, calib_width=24, kernel_width=25)
    with pytest.raises(ValueError, match="phase_ref: expected a coil index 0..7"):
        espirit_maps(kspace, phase_ref=8)
    with pytest.raises(ValueError, match="backend: expected 'torch' or 'sigpy'"):
        estimate_maps_espirit(kspace, backend="bart")


def test_estimate_maps_espirit_backends(case64):
    undersampled = case64[4]
    torch.testing.assert_close(estimate_maps_espirit(undersampled), espirit_maps(undersampled))
    params = dict(calib_width=20, thresh=0.05, kernel_width=5, crop=0.9)
    via_sigpy = estimate_maps_espirit(undersampled, backend="sigpy", **params)
    np.testing.assert_allclose(via_sigpy.numpy(), _sigpy(undersampled, **params).numpy(), atol=1e-6)


def test_importing_the_package_does_not_import_sigpy():
    code = "import sys, ccdf_mri.physics, ccdf_mri.physics.espirit; sys.exit('sigpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
