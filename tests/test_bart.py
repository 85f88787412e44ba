"""BART as the peer: the .cfl/.hdr format, our axis mapping, and BART's conventions against ours.

The format and mapping tests run everywhere; the ones that call ``bart`` are skipped, with
the reason, when it is not installed (CI). They check that ``bart fft -u`` is our centred
orthonormal FFT (orientation included: a 1-D transform along our W axis on a non-square
array), that ``pics -S`` returns the image in the k-space's units whatever its scale (so a
tuned lambda does not depend on the file's intensity units), and that ``ecalib`` with the
fair calibration rule plus ``pics`` recovers a simulated image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import bart
from ccdf_mri.physics.fft import fft2c, ifft1c, ifft2c

needs_bart = pytest.mark.skipif(not bart.bart_available(), reason=f"bart not installed: {bart.INSTALL_HINT}")


def _random_complex(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# --------------------------------------------------------------------------- no bart needed


def test_cfl_round_trip_is_fortran_order_on_a_non_square_4d_array(tmp_path):
    array = _random_complex((3, 5, 1, 4))
    bart.write_cfl(tmp_path / "x", array)
    lines = (tmp_path / "x.hdr").read_text().splitlines()
    assert lines[0] == "# Dimensions"
    assert [int(v) for v in lines[1].split()] == [3, 5, 1, 4] + [1] * 12
    raw = np.fromfile(tmp_path / "x.cfl", dtype=np.complex64)
    # column-major: dimension 0 varies fastest
    np.testing.assert_array_equal(raw[:3], array[:, 0, 0, 0])
    np.testing.assert_array_equal(raw[3:6], array[:, 1, 0, 0])
    np.testing.assert_array_equal(raw, array.ravel(order="F"))
    back = bart.read_cfl(tmp_path / "x.cfl")
    assert back.shape == (3, 5, 1, 4) and back.dtype == np.complex64
    np.testing.assert_array_equal(back, array)
    assert bart.read_cfl(tmp_path / "x", ndim=6).shape == (3, 5, 1, 4, 1, 1)


def test_read_cfl_rejects_a_size_mismatch_and_a_bad_header(tmp_path):
    bart.write_cfl(tmp_path / "x", _random_complex((4, 6)))
    (tmp_path / "x.hdr").write_text("# Dimensions\n4 7 1\n")
    with pytest.raises(ValueError, match="expected 28 complex64 values"):
        bart.read_cfl(tmp_path / "x")
    (tmp_path / "x.hdr").write_text("# Size\n4 6\n")
    with pytest.raises(ValueError, match="# Dimensions"):
        bart.read_cfl(tmp_path / "x")


def test_axis_mapping_puts_readout_phase_encode_and_coils_where_bart_expects_them():
    c, h, w = 3, 4, 5
    kspace = np.zeros((c, h, w), np.complex64)
    for ci in range(c):
        for hi in range(h):
            for wi in range(w):
                kspace[ci, hi, wi] = 100 * ci + 10 * hi + wi
    b = bart.to_bart(kspace)
    assert b.shape == (h, w, 1, c)
    assert b[2, 3, 0, 1] == 100 * 1 + 10 * 2 + 3
    np.testing.assert_array_equal(bart.from_bart(b), kspace)


def test_fair_calibration_rule():
    # 1-D masks: every read-out row of the centre lines, BART's 6x6 kernel while 5 positions fit across
    assert bart.fair_calibration(10, 256) == ((256, 10), 6)  # 8x, 4 % of 256 columns
    assert bart.fair_calibration(20, 256) == ((256, 20), 6)  # 4x, 8 %
    assert bart.fair_calibration(8, 32) == ((32, 8), 4)
    assert bart.fair_calibration(5, 64) == ((64, 5), 3)
    # 2-D masks: the centre square only
    assert bart.fair_calibration(12, 64, two_d=True) == ((12, 12), 5)
    with pytest.raises(ValueError, match="at least 4"):
        bart.fair_calibration(3, 256)
    line = np.zeros(64, np.float32)
    line[::4] = 1
    line[26:38] = 1
    assert bart.mask_calibration(line, 64) == ((64, 12), 6)
    assert bart.mask_calibration(np.broadcast_to(line, (64, 64)), 64) == ((64, 12), 6)  # broadcast 1-D mask
    square = np.zeros((64, 64), np.float32)
    square[::3, ::3] = 1
    square[26:38, 26:38] = 1
    assert bart.mask_calibration(square, 64) == ((12, 12), 5)


def test_run_bart_names_the_command_and_how_to_install_when_bart_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("BART", "bart-that-does-not-exist")
    assert not bart.bart_available()
    with pytest.raises(bart.BartError, match="apt-get install bart") as error:
        bart.run_bart(["version"], tmp_path)
    assert "bart-that-does-not-exist version" in str(error.value)


# --------------------------------------------------------------------------- bart needed


@needs_bart
def test_run_bart_reports_stderr_and_exit_status(tmp_path):
    with pytest.raises(bart.BartError, match=r"`bart fft -u 3 missing out`.*exit status"):
        bart.run_bart(["fft", "-u", "3", "missing", "out"], tmp_path)


@needs_bart
def test_bart_unitary_fft_is_our_centred_orthonormal_fft(tmp_path):
    x = _random_complex((3, 12, 10), seed=1)
    bart.write_cfl(tmp_path / "x", bart.to_bart(x))
    bart.run_bart(["fft", "-u", "-i", "3", "x", "inv"], tmp_path)
    bart.run_bart(["fft", "-u", "3", "x", "fwd"], tmp_path)
    bart.run_bart(["fft", "-u", "-i", "2", "x", "inv_w"], tmp_path)  # BART dim 1 = our W only
    bart.run_bart(["fft", "-i", "3", "x", "inv_plain"], tmp_path)
    ours = torch.from_numpy(x)
    np.testing.assert_allclose(bart.from_bart(bart.read_cfl(tmp_path / "inv", 4)), ifft2c(ours).numpy(), atol=2e-6)
    np.testing.assert_allclose(bart.from_bart(bart.read_cfl(tmp_path / "fwd", 4)), fft2c(ours).numpy(), atol=2e-6)
    np.testing.assert_allclose(bart.from_bart(bart.read_cfl(tmp_path / "inv_w", 4)), ifft1c(ours, dim=-1).numpy(), atol=2e-6)
    # without -u BART's inverse is not normalised: sqrt(H W) times the unitary one
    plain = bart.from_bart(bart.read_cfl(tmp_path / "inv_plain", 4))
    np.testing.assert_allclose(plain, np.sqrt(12 * 10) * ifft2c(ours).numpy(), rtol=1e-4, atol=1e-4)


def _phantom_case(size=64, coils=6, accel=3, lines=12, seed=0):
    """Shepp-Logan with smooth phase, birdcage maps, equispaced mask with a fully sampled centre."""
    import sigpy
    import sigpy.mri

    rng = np.random.default_rng(seed)
    magnitude = np.abs(sigpy.shepp_logan((size, size))).astype(np.float32)
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    image = (magnitude * np.exp(1j * (0.6 * xx + 0.3 * yy))).astype(np.complex64)
    maps = sigpy.mri.birdcage_maps((coils, size, size), r=1.5).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    kspace = fft2c(torch.from_numpy(maps * image[None])).numpy()
    kspace += (0.002 * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))).astype(np.complex64)
    mask = np.zeros(size, np.float32)
    mask[::accel] = 1
    mask[size // 2 - lines // 2: size // 2 + lines // 2] = 1
    return image, maps, kspace * mask, mask


@needs_bart
def test_pics_rescaled_output_follows_the_kspace_scale():
    image, maps, kspace, mask = _phantom_case()
    one = bart.bart_pics(kspace, maps, mask, "l1", 0.01, iters=30, extra_args=("-n",))
    thousand = bart.bart_pics(1000 * kspace, maps, mask, "l1", 0.01, iters=30, extra_args=("-n",))
    np.testing.assert_allclose(thousand, 1000 * one, rtol=0, atol=2e-3 * 1000 * np.abs(one).max())


@needs_bart
def test_ecalib_with_the_fair_rule_and_pics_recover_a_simulated_image():
    image, true_maps, kspace, mask = _phantom_case()
    region, kernel = bart.mask_calibration(mask, kspace.shape[-2])
    maps = bart.bart_ecalib(kspace, region, kernel)
    assert maps.shape == true_maps.shape
    inside = np.abs(image) > 0.1
    # maps agree with the true ones up to one phase per pixel: |<S_true, S_bart>| ~ 1
    coherence = np.abs((np.conj(true_maps) * maps).sum(0))
    assert np.median(coherence[inside]) > 0.97
    target = np.abs(image)
    for reg, lam, floor in (("l2", 1e-3, 36.0), ("l1", 1e-3, 40.0)):  # measured 40.0 and 44.2 dB
        recon, seconds = bart.bart_pics(kspace, maps, mask, reg, lam, with_seconds=True)
        assert recon.shape == image.shape and seconds > 0
        assert bart.slice_psnr(target, recon) > floor, reg
