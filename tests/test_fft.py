"""Centred orthonormal FFT: parity with sigpy and with the fastMRI numpy formula."""

import numpy as np
import pytest
import sigpy
import torch

from ccdf_mri.physics import fft1c, fft2c, ifft1c, ifft2c

SHAPES = [(2, 3, 16, 16), (1, 2, 9, 12), (3, 7, 10)]


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return torch.from_numpy(data).to(dtype)


def _fastmri_numpy_fft2c(x: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_fft2c_matches_sigpy_and_numpy(shape, dtype):
    x = _random(shape, dtype)
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    k = fft2c(x)
    assert k.dtype == dtype and k.shape == x.shape
    reference = sigpy.fft(x.numpy().astype(np.complex128), axes=(-2, -1))
    np.testing.assert_allclose(k.numpy(), reference, rtol=0, atol=tol * np.abs(reference).max())
    np.testing.assert_allclose(k.numpy(), _fastmri_numpy_fft2c(x.numpy().astype(np.complex128)), atol=tol * np.abs(reference).max())
    inverse = sigpy.ifft(x.numpy().astype(np.complex128), axes=(-2, -1))
    np.testing.assert_allclose(ifft2c(x).numpy(), inverse, atol=tol * np.abs(inverse).max())


def test_fft2c_is_unitary_and_inverted_by_ifft2c():
    x = _random((2, 4, 11, 16), torch.complex128, seed=1)
    k = fft2c(x)
    assert torch.allclose(torch.linalg.vector_norm(k), torch.linalg.vector_norm(x), rtol=1e-12)
    assert torch.allclose(ifft2c(k), x, atol=1e-12)


def test_dc_sits_at_centre_index():
    x = torch.ones(1, 6, 7, dtype=torch.complex128)
    k = fft2c(x)
    assert abs(k[0, 3, 3].item() - np.sqrt(42)) < 1e-12
    assert torch.count_nonzero(k.abs() > 1e-9) == 1


def test_fft1c_along_both_axes_equals_fft2c():
    x = _random((2, 9, 8), torch.complex128, seed=2)
    assert torch.allclose(fft1c(fft1c(x, -1), -2), fft2c(x), atol=1e-12)
    assert torch.allclose(ifft1c(fft1c(x, -2), -2), x, atol=1e-12)
