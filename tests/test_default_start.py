"""Issue 13: the default initial estimate never hurts: at least zero-filled SENSE quality on every
case, including out-of-distribution ones (no network involved: the default start is L1-wavelet compressed sensing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recon_data as rd
from ccdf_mri.app.build import read_config
from ccdf_mri.metrics import psnr
from ccdf_mri.physics import SenseOp, make_mask
from ccdf_mri.physics.fft import fft2c


def _cases():
    """(name, image) pairs: the smooth test phantom, a sharp checkerboard, a noise texture, a disc."""
    y, x = np.meshgrid(np.linspace(-1, 1, 48), np.linspace(-1, 1, 48), indexing="ij")
    rng = np.random.default_rng(0)
    yield "phantom", rd.phantom(48, 48, 1)
    yield "checkerboard (out of distribution)", ((np.floor(4 * x) + np.floor(4 * y)) % 2 + 0.2).astype(np.complex64)
    yield "texture (out of distribution)", (rng.random((48, 48)) * (x**2 + y**2 < 0.8)).astype(np.complex64)
    yield "disc with phase", ((x**2 + y**2 < 0.5) * np.exp(2j * x)).astype(np.complex64)


@pytest.mark.parametrize("acceleration", [4, 8])
@pytest.mark.parametrize(("name", "image"), list(_cases()), ids=[n for n, _ in _cases()])
def test_default_start_is_at_least_zero_filled(name, image, acceleration):
    parser = read_config(None, {"initializer": read_config().get("initializer")})
    initializer = parser.get_parsed_content("initializer_fn")
    assert read_config().get("initializer") != "unet"  # a network-free start: it cannot be out of distribution
    maps = torch.from_numpy(rd.coil_maps(48, 48, 4))[None]
    truth = torch.from_numpy(image)[None]
    mask = make_mask("equispaced_fraction", (4, 48, 48), acceleration, 0.17 if acceleration == 4 else 0.09, seed=1)
    op = SenseOp(maps, mask)
    gen = torch.Generator().manual_seed(2)
    clean = op(truth)
    # white noise at 30 dB below the mean k-space power of the object (the validation sets use 40 dB)
    noise = 10 ** (-30 / 20) * float(clean.abs().square().mean().sqrt()) * torch.randn(clean.shape, dtype=torch.complex64, generator=gen)
    kspace = (clean + noise) * mask
    reference = truth.abs().numpy()
    zero_filled = psnr(reference, op.adjoint(kspace).abs().numpy())
    start = psnr(reference, initializer(op, kspace).abs().numpy())
    assert start >= zero_filled, f"{name}, {acceleration}x: default start {start:.2f} dB < zero-filled {zero_filled:.2f} dB"
    assert fft2c is not None
