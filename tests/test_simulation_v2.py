"""Corpus v2: determinism, files, target / k-space consistency, phantoms, texture, SNR, contrasts, degradations."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from ccdf_mri.data_prep import make_demo_corpus
from ccdf_mri.io.fastmri import FastMRIVolume
from ccdf_mri.physics.fft import ifft2c
from ccdf_mri.simulation import TARGET_COMPLEX_KEY, TEMPLATE_NOTICE, CorpusConfig, coil_kspace, simulate_volume
from ccdf_mri.simulation.compose import TEXTURE, compose_magnitude
from ccdf_mri.simulation.corpus_v2 import (
    CorpusV2Config,
    build_corpus_v2,
    simulate_slices_v2,
    simulate_volume_v2,
    volume_kind,
)
from ccdf_mri.simulation.corpus import volume_path
from ccdf_mri.simulation.degrade import ghosting, lower_resolution, partial_fourier
from ccdf_mri.simulation.phantoms import abdomen_fractions, limb_fractions
from ccdf_mri.simulation.texture import bandpass_noise
from ccdf_mri.simulation.tissues import draw_contrast

SMALL = dict(size=64, num_coils=2, slices_per_volume=2)
CLEAN = dict(native_fraction=1.0, partial_fourier_fraction=0.0, ghost_fraction=0.0)
BRAIN_TISSUES = ("gm", "wm", "csf")


def test_same_seed_same_volume_and_images_only_path_matches_files(tmp_path):
    config = CorpusV2Config(**SMALL, seed=3)
    a, b = simulate_volume_v2(config, "train", 1), simulate_volume_v2(config, "train", 1)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.kspace, b.kspace)
    assert not np.allclose(np.abs(a.images), np.abs(simulate_volume_v2(config, "train", 2).images))
    build_corpus_v2(tmp_path, {"train": 2}, config)
    slices = simulate_slices_v2(3, size=64, split="train", seed=3, slices_per_volume=2, num_coils=2)
    with h5py.File(volume_path(tmp_path, "train", 0, "ccdf_v2"), "r") as f0, h5py.File(volume_path(tmp_path, "train", 1, "ccdf_v2"), "r") as f1:
        expected = np.concatenate([f0[TARGET_COMPLEX_KEY][()], f1[TARGET_COMPLEX_KEY][()][:1]])
    np.testing.assert_array_equal(slices, expected)


def test_variant_flag_writes_fastmri_files_and_resumes(tmp_path, capsys):
    out = tmp_path / "v2"
    args = ["--variant", "v2", "--out", str(out), "--num-train", "2", "--num-val", "1", "--num-test", "0",
            "--size", "64", "--coils", "3", "--slices", "2", "--quiet"]
    assert make_demo_corpus.main(args) == 0
    assert "3 volumes written" in capsys.readouterr().out
    paths = sorted(out.rglob("*.h5"))
    assert [p.name for p in paths] == ["ccdf_v2_train_0000.h5", "ccdf_v2_train_0001.h5", "ccdf_v2_val_0000.h5"]
    for path in paths:
        with FastMRIVolume(path) as volume:
            assert volume.is_multicoil and volume.num_slices == 2 and volume.num_coils == 3
            assert volume.header.encoded_matrix == (64, 64, 1)
            assert volume.attrs["variant"] == "v2" and volume.attrs["kind"] in ("brain", "limb", "abdomen")
            record = json.loads(volume.attrs["simulation"])
            assert record["kind"] == volume.attrs["kind"] and 10 <= record["snr"] <= 80
        with h5py.File(path, "r") as handle:
            assert handle[TARGET_COMPLEX_KEY].shape == (2, 64, 64) and handle[TARGET_COMPLEX_KEY].dtype == np.complex64
    assert TEMPLATE_NOTICE in (out / "README.md").read_text()
    assert json.loads((out / "corpus.json").read_text())["variant"] == "v2"
    assert make_demo_corpus.main(args) == 0
    assert "0 volumes written" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # v1-only options are refused for v2
        make_demo_corpus.parse_args(["--variant", "v2", "--out", str(out), "--snr", "20"])


@pytest.mark.parametrize("snr_range", [(10.0, 80.0), None])
def test_target_complex_is_the_sense_combination_of_the_kspace(snr_range):
    config = CorpusV2Config(**SMALL, seed=5, snr_range=snr_range)
    for index in range(3):
        volume = simulate_volume_v2(config, "train", index)
        coil_images = ifft2c(torch.from_numpy(volume.kspace)).numpy()
        combined = np.sum(np.conj(volume.maps)[None] * coil_images, axis=1)  # sum |S_c|^2 = 1
        residual = combined - volume.images
        if snr_range is None:
            assert np.abs(residual).max() < 1e-5 * np.abs(volume.images).max()
        else:  # the residual is the coil-combined white noise: variance sigma^2
            assert np.mean(np.abs(residual) ** 2) / volume.noise_std**2 == pytest.approx(1.0, abs=0.1)


def test_snr_is_drawn_in_range_and_matches_the_added_noise():
    config = CorpusV2Config(size=64, num_coils=2, slices_per_volume=1, seed=1)
    snrs = []
    for index in range(12):
        volume = simulate_volume_v2(config, "train", index)
        noise = volume.kspace - coil_kspace(volume.images, volume.maps)
        sigma = np.sqrt(np.mean(np.abs(noise) ** 2))
        assert sigma == pytest.approx(volume.noise_std, rel=0.1)
        snr = np.sqrt(np.mean(np.abs(volume.images[volume.support]) ** 2)) / sigma
        assert 10 / 1.1 <= snr <= 80 * 1.1 and snr == pytest.approx(volume.params.snr, rel=0.1)
        snrs.append(volume.params.snr)
    assert max(snrs) / min(snrs) > 2  # drawn, not fixed


def test_a_third_of_the_volumes_are_limbs_or_abdomens():
    config = CorpusV2Config(**SMALL)
    kinds = [volume_kind(config, "train", i) for i in range(300)]
    nonbrain = sum(k != "brain" for k in kinds) / len(kinds)
    assert 0.27 <= nonbrain <= 0.43  # 0.35 +- 3 binomial standard deviations
    assert kinds.count("limb") > 30 and kinds.count("abdomen") > 30
    volume = simulate_volume_v2(config, "train", kinds.index("limb"), with_kspace=False)
    assert volume.params.kind == "limb" and volume.params.acquisition.endswith("LIMB")


@pytest.mark.parametrize("kind", ["limb", "abdomen"])
def test_phantoms_are_bodies_of_fat_muscle_and_bone_without_brain_tissue(kind):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        if kind == "limb":
            slices, summary = limb_fractions((64, 64), 2, rng, np.stack([bandpass_noise((64, 64), 5.0, rng) for _ in range(2)]))
        else:
            slices, summary = abdomen_fractions((64, 64), 2, rng)
        assert summary["kind"] == kind
        for fractions in slices:
            assert not set(BRAIN_TISSUES) & set(fractions)
            tissues = {k: v for k, v in fractions.items() if not k.startswith("_")}
            total = sum(tissues.values())
            assert total.max() <= 1.0 + 1e-5
            body = total > 0.5
            assert 0.1 < body.mean() < 0.8  # one body filling part of the field of view
            soft = (tissues["fat"] + tissues["muscle"])[body].mean()
            bone = (tissues["cortex"] + tissues["marrow"]).sum()
            assert soft > 0.3 and bone > 5.0  # mostly fat and muscle, with bone


def test_brain_volumes_are_mostly_brain_tissue():
    config = CorpusV2Config(**SMALL, nonbrain_fraction=0.0, seed=2)
    volume = simulate_volume_v2(config, "val", 0, with_kspace=False)
    assert volume.params.kind == "brain" and volume.params.anatomy["split_q"][0] >= 0.32


def _high_frequency_fraction(images: np.ndarray) -> float:
    """Mean over slices of the energy above 0.25 cycles/pixel of |x| / 99th percentile."""
    out = []
    for image in np.abs(images):
        spectrum = np.abs(np.fft.fft2(image / np.percentile(image, 99))) ** 2
        f = np.fft.fftfreq(image.shape[0])
        radius = np.hypot(f[:, None], f[None, :])
        out.append(spectrum[radius > 0.25].sum() / spectrum.sum())
    return float(np.mean(out))


def test_texture_raises_high_frequency_energy():
    # 64 x 64 pixels of 1 mm: the centre of the head at the native scale of the template
    geometry = dict(size=64, fov_mm=64.0, slices_per_volume=2, num_coils=2)
    indices = range(6)
    v1 = np.mean([_high_frequency_fraction(simulate_volume(CorpusConfig(**geometry), "train", i, False).images) for i in indices])
    v2 = [
        np.mean([
            _high_frequency_fraction(simulate_volume_v2(CorpusV2Config(**geometry, **CLEAN, nonbrain_fraction=0.0, texture=t), "train", i, False).images)
            for i in indices
        ])
        for t in (False, True)
    ]
    assert v2[1] > 2.5 * v1  # measured 2.9x here, 4.3x over 12 volumes
    assert v2[1] > 1.15 * v2[0]  # texture on vs off, identical anatomy and contrast: 1.27x over 12 volumes


@pytest.mark.parametrize("tissue", ["wm", "muscle", "marrow"])
def test_texture_amplitude_is_a_few_percent_and_spatially_correlated(tissue):
    rng = np.random.default_rng(0)
    amplitude = TEXTURE[tissue][0][1]
    fractions = {tissue: np.ones((2, 64, 64), np.float32)}
    magnitude = compose_magnitude(fractions, {tissue: 0.7}, {tissue: amplitude}, rng)
    relative = magnitude / magnitude.mean()
    assert 0.01 <= amplitude <= 0.15
    assert relative.std() == pytest.approx(amplitude, rel=0.15)
    centred = relative - 1.0
    lag1 = np.mean(centred[:, :, 1:] * centred[:, :, :-1]) / np.mean(centred**2)
    assert lag1 > 0.3  # not white noise


def test_contrast_families_order_tissues_like_their_sequences():
    rng = np.random.default_rng(0)

    def fraction(family, holds, draws=40):
        return np.mean([holds(draw_contrast(rng, (family,)).values) for _ in range(draws)])

    assert fraction("T1", lambda v: v["wm"] > v["gm"] > v["csf"]) >= 0.9
    assert fraction("T2", lambda v: v["csf"] > v["gm"] > v["wm"]) >= 0.9
    assert fraction("FLAIR", lambda v: min(v["gm"], v["wm"]) > v["csf"]) >= 0.9  # CSF nulled
    assert fraction("STIR", lambda v: v["fat"] < v["muscle"] * 1.5 and v["fat"] < v["csf"]) >= 0.9  # fat nulled
    orders = {tuple(np.argsort([draw_contrast(rng, ("MIX",)).values[t] for t in BRAIN_TISSUES])) for _ in range(60)}
    assert len(orders) >= 5  # MIX: arbitrary orders, inverted ones included


def _square(size=64):
    image = np.zeros((1, size, size), np.complex64)
    image[0, 20:44, 24:40] = 1.0
    return image


def test_lower_resolution_truncates_kspace():
    blurred = lower_resolution(_square(), 1.0, (2.0, 4.0), "fourier", 0.0)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(blurred[0])))
    k = np.arange(64) - 32
    assert spectrum[np.abs(k) > 16, :].max() < 1e-4 and spectrum[:, np.abs(k) > 8].max() < 1e-4
    spline = lower_resolution(_square(), 1.0, (2.0, 2.0), "spline", 0.0)
    assert np.abs(np.diff(np.abs(spline[0]), axis=0)).max() < 0.6  # edges spread over > 1 pixel


def test_partial_fourier_zeroes_one_side_of_kspace():
    out = partial_fourier(_square(), -1, 0.6, 1)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(out[0])))
    k = np.arange(64) - 32
    assert spectrum[:, k > 0.1 * 64].max() < 1e-4 and spectrum[:, k < -20].max() > 1e-3


def test_ghosting_keeps_energy_and_puts_a_few_percent_along_phase_encode():
    from scipy import ndimage

    image = ndimage.gaussian_filter(_square().real, (0, 1.5, 1.5)).astype(np.complex64)  # band-limited object
    ghosted = ghosting(image, "periodic", 0.6, 0.08, 8.0, 0.3, np.random.default_rng(0))
    np.testing.assert_allclose(np.sum(np.abs(ghosted) ** 2), np.sum(np.abs(image) ** 2), rtol=1e-4)
    outside = np.abs(ghosted[0]) * (np.abs(image[0]) < 1e-3)
    assert 0.02 < outside.max() / np.abs(image).max() < 0.15  # ghosts of a few percent of the object
    energy = outside**2
    assert energy[16:48].sum() > 0.95 * energy.sum()  # in the object's rows: shifted along W only
