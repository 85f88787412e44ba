"""Simulation library: coil maps, noise level, determinism, anatomical split, corpus files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from ccdf_mri.io.fastmri import FastMRIVolume
from ccdf_mri.physics.fft import ifft2c
from ccdf_mri.simulation import (
    ORIENTATIONS,
    SPLIT_BANDS,
    TARGET_COMPLEX_KEY,
    TEMPLATE_NOTICE,
    CorpusConfig,
    build_corpus,
    coil_kspace,
    draw_volume_params,
    load_template,
    normalize_maps,
    random_birdcage_maps,
    simulate_kspace,
    simulate_slices,
    simulate_volume,
    template_paths,
    volume_path,
)
from ccdf_mri.simulation.images import read_nifti, simulate_from_magnitude

SMALL = dict(size=64, num_coils=4, slices_per_volume=2, snr_db=30.0)


def test_birdcage_maps_are_normalised_and_random():
    a = random_birdcage_maps(4, (48, 64), np.random.default_rng(0))
    b = random_birdcage_maps(4, (48, 64), np.random.default_rng(1))
    assert a.shape == (4, 48, 64) and a.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(a) ** 2, axis=0), 1.0, atol=1e-5)
    assert not np.allclose(a, b)  # radius, rotation, gains and phases differ


def test_normalize_maps_with_support_zeroes_the_background():
    rng = np.random.default_rng(3)
    maps = rng.standard_normal((3, 16, 16)) + 1j * rng.standard_normal((3, 16, 16))
    support = np.zeros((16, 16), bool)
    support[4:12, 2:10] = True
    out = normalize_maps(maps, support)
    np.testing.assert_allclose(np.sum(np.abs(out) ** 2, axis=0)[support], 1.0, atol=1e-5)
    assert np.all(out[:, ~support] == 0)


@pytest.mark.parametrize("snr_db", [10.0, 30.0])
def test_added_noise_has_the_requested_snr(snr_db):
    rng = np.random.default_rng(5)
    images = np.zeros((4, 64, 64), np.complex64)
    images[:, 16:48, 8:56] = (rng.uniform(0.5, 1.0, (4, 32, 48)) * np.exp(1j * rng.uniform(-3, 3, (4, 32, 48))))
    maps = random_birdcage_maps(4, (64, 64), rng)
    noisy, sigma = simulate_kspace(images, maps, snr_db, rng)
    noise = noisy - coil_kspace(images, maps)
    power = np.mean(np.abs(images[np.abs(images) > 0]) ** 2)
    measured = 10 * np.log10(power / np.mean(np.abs(noise) ** 2))
    assert abs(measured - snr_db) < 0.05
    # circular white noise: equal real / imaginary variance, uncorrelated
    np.testing.assert_allclose(noise.real.var(), sigma**2 / 2, rtol=0.02)
    np.testing.assert_allclose(noise.imag.var(), sigma**2 / 2, rtol=0.02)
    assert abs(np.corrcoef(noise.real.ravel(), noise.imag.ravel())[0, 1]) < 0.02


def test_coil_images_combine_to_the_target():
    rng = np.random.default_rng(2)
    images = (rng.standard_normal((2, 32, 32)) + 1j * rng.standard_normal((2, 32, 32))).astype(np.complex64)
    maps = random_birdcage_maps(3, (32, 32), rng)
    coil_images = ifft2c(torch.from_numpy(coil_kspace(images, maps))).numpy()
    combined = np.sum(np.conj(maps)[None] * coil_images, axis=1)  # SENSE adjoint, sum |S|^2 = 1
    np.testing.assert_allclose(combined, images, atol=1e-5)


def test_same_seed_gives_identical_volumes_and_other_seeds_differ():
    config = CorpusConfig(**SMALL, seed=7)
    a, b = simulate_volume(config, "train", 3), simulate_volume(config, "train", 3)
    np.testing.assert_array_equal(a.kspace, b.kspace)
    np.testing.assert_array_equal(a.images, b.images)
    c = simulate_volume(CorpusConfig(**SMALL, seed=8), "train", 3)
    assert not np.allclose(np.abs(a.images), np.abs(c.images))


def test_same_seed_gives_bit_identical_files(tmp_path):
    config = CorpusConfig(**SMALL, seed=1)
    for out in ("a", "b"):
        summary = build_corpus(tmp_path / out, {"test": 1}, config)
        assert not summary.failed
    first, second = (volume_path(tmp_path / out, "test", 0).read_bytes() for out in ("a", "b"))
    assert first == second


def _draw(split, orientation, count=40):
    template = load_template()
    rng = np.random.default_rng(11)
    return [draw_volume_params(template, split, 6, rng, orientations=(orientation,)) for _ in range(count)]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_splits_use_disjoint_anatomy(orientation):
    template = load_template()
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[orientation]
    extent = template.brain_hi[axis] - template.brain_lo[axis]
    intervals = {}
    for split in SPLIT_BANDS:
        params = _draw(split, orientation)
        qs = np.array([q for p in params for q in p.split_q])
        for p in params:  # every volume lies inside one band of its split
            assert any(a <= min(p.split_q) and max(p.split_q) <= b for a, b in SPLIT_BANDS[split])
        intervals[split] = qs
    # positions of different splits are at least the band gap apart (in mm along the normal)
    scale = extent / 2 if orientation == "sagittal" else extent
    for s1, s2 in (("train", "val"), ("train", "test"), ("val", "test")):
        gap = np.min(np.abs(intervals[s1][:, None] - intervals[s2][None, :])) * scale
        assert gap >= 0.04 * scale - 1e-6


def test_corpus_files_read_back_as_fastmri(tmp_path):
    config = CorpusConfig(**SMALL, seed=2)
    summary = build_corpus(tmp_path, {"train": 1, "val": 1, "test": 1}, config)
    assert len(summary.written) == 3 and summary.slices == 6
    for split in ("train", "val", "test"):
        path = volume_path(tmp_path, split, 0)
        with FastMRIVolume(path) as volume:
            assert volume.is_multicoil and volume.num_slices == 2 and volume.num_coils == 4
            assert volume.header.encoded_matrix == (64, 64, 1)
            assert volume.header.recon_fov_mm[:2] == (256.0, 256.0)
            assert volume.attrs["patient_id"] == path.stem and volume.attrs["acquisition"][-2:] in ("T1", "T2", "PD")
            rss_all = []
            for i in range(volume.num_slices):
                coil_images = ifft2c(torch.from_numpy(volume.kspace_slice(i))).numpy()
                rss = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0))
                np.testing.assert_allclose(volume.target_slice(i), rss, rtol=1e-4, atol=1e-6)
                rss_all.append(rss)
            assert volume.attrs["max"] == pytest.approx(np.max(rss_all), rel=1e-5)
            assert volume.attrs["norm"] == pytest.approx(np.linalg.norm(np.stack(rss_all)), rel=1e-4)
        with h5py.File(path, "r") as handle:
            target = handle[TARGET_COMPLEX_KEY][()]
            assert target.shape == (2, 64, 64) and target.dtype == np.complex64
            assert json.loads(handle.attrs["simulation"])["orientation"] in ORIENTATIONS
    readme = (tmp_path / "README.md").read_text()
    assert TEMPLATE_NOTICE in readme
    manifest = json.loads((tmp_path / "corpus.json").read_text())
    assert manifest["files"]["test"] == ["test/ccdf_demo_test_0000.h5"]


def test_simulate_slices_equals_the_corpus_targets(tmp_path):
    config = CorpusConfig(**SMALL, seed=4)
    build_corpus(tmp_path, {"train": 2}, config)
    slices = simulate_slices(3, size=64, split="train", seed=4, slices_per_volume=2, num_coils=4)
    assert slices.shape == (3, 64, 64) and slices.dtype == np.complex64
    with h5py.File(volume_path(tmp_path, "train", 0), "r") as a, h5py.File(volume_path(tmp_path, "train", 1), "r") as b:
        expected = np.concatenate([a[TARGET_COMPLEX_KEY][()], b[TARGET_COMPLEX_KEY][()][:1]])
    np.testing.assert_array_equal(slices, expected)


def test_contrasts_order_tissues_as_expected():
    template = load_template()
    rng = np.random.default_rng(0)
    t1 = draw_volume_params(template, "train", 1, rng, contrasts=("T1",))
    t2 = draw_volume_params(template, "train", 1, rng, contrasts=("T2",))
    gm, wm, csf = 0, 1, 2
    assert t1.tissue[wm] > t1.tissue[gm] > t1.tissue[csf]
    assert t2.tissue[csf] > t2.tissue[gm] > t2.tissue[wm]


def test_missing_template_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"):
        template_paths(tmp_path)


def test_nifti_with_time_axis_is_rejected(tmp_path):
    import nibabel as nib

    path = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 3, 5), np.float32), np.eye(4)), str(path))
    with pytest.raises(ValueError, match=r"fmri\.nii\.gz.*time axis"):
        read_nifti(path)


def test_simulate_from_magnitude_keeps_the_magnitude():
    rng = np.random.default_rng(0)
    magnitude = np.zeros((2, 32, 40), np.float32)
    magnitude[:, 8:24, 10:30] = rng.uniform(0.5, 1.0, (2, 16, 20))
    kspace, target, maps = simulate_from_magnitude(magnitude, 3, None, rng)
    assert kspace.shape == (2, 3, 32, 40)
    np.testing.assert_allclose(np.abs(target), magnitude / np.percentile(magnitude, 99.5), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, atol=1e-5)
