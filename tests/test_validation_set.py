"""The real-image validation set: its files, its ground truth, its val/test split.

The procedural part (limb, abdomen) and the split rule are tested everywhere; the Colin27
part needs the Debian package ``mricron-data`` and the real body slices need
``insighttoolkit5-examples``: those tests are skipped, with the reason, without them (CI).
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from ccdf_mri.data_prep import make_validation_set as mvs
from ccdf_mri.io.fastmri import FastMRIVolume
from ccdf_mri.physics.fft import ifft2c
from ccdf_mri.simulation import validation_sources as src
from ccdf_mri.simulation.validation_shapes import abdomen_slice, limb_slice, shape_slices

COLIN = src.MRICRON_DIR / src.COLIN_HEAD
needs_colin = pytest.mark.skipif(not COLIN.is_file(), reason=f"Colin27 ({COLIN}) absent: {src.MRICRON_HINT}")
needs_itk = pytest.mark.skipif(not (src.ITK_DATA_DIR / src.ITK_ABDOMEN).is_file(),
                               reason=f"ITK example data ({src.ITK_DATA_DIR}) absent: {src.ITK_HINT}")


def _coil_images(kspace: np.ndarray) -> np.ndarray:
    return ifft2c(torch.from_numpy(np.ascontiguousarray(kspace))).numpy()


# --------------------------------------------------------------------------- no source files needed


@pytest.mark.parametrize("make", [limb_slice, abdomen_slice])
def test_shapes_are_deterministic_normalised_and_leave_air_around_the_body(make):
    a = make(64, np.random.default_rng(3))
    b = make(64, np.random.default_rng(3))
    c = make(64, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (64, 64) and a.dtype == np.float32 and a.min() >= 0
    assert np.percentile(a, 99.5) == pytest.approx(1.0, rel=1e-4)
    foreground = np.mean(a > 0.05)
    assert 0.15 < foreground < 0.95
    assert a[0, 0] < 0.02 and a[-1, -1] < 0.02  # corners are air


def test_limb_contrasts_flip_fat_against_muscle():
    """Same draws, two contrasts: fat is brighter than muscle in PD and darker with fat suppression."""
    pd = limb_slice(96, np.random.default_rng(0), "pd")
    fs = limb_slice(96, np.random.default_rng(0), "pd_fs")
    body = pd > 0.05
    fatty = body & (pd > np.percentile(pd[body], 85))  # PD's brightest tissue: fat and marrow
    assert fs[fatty].mean() < 0.5 * pd[fatty].mean()


def test_shape_slices_rejects_unknown_kinds():
    assert shape_slices("limb", 2, 32, np.random.default_rng(0)).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="abdomen"):
        shape_slices("knee", 1, 32, np.random.default_rng(0))


def test_split_positions_are_disjoint_slabs_with_a_guard():
    positions = mvs.split_positions(-60.0, 90.0, {"val": 4, "test": 16}, np.random.default_rng(0))
    assert len(positions["val"]) == 4 and len(positions["test"]) == 16
    everything = positions["val"] + positions["test"]
    assert min(everything) >= -60 and max(everything) <= 90
    gap = min(abs(v - t) for v in positions["val"] for t in positions["test"])
    assert gap >= 2 * mvs.GUARD_MM
    width = 150.0 / mvs.NUM_BINS
    assert {int((v + 60) // width) for v in positions["val"]} <= set(mvs.VAL_BINS)


def test_procedural_build_gives_readable_files_whose_target_matches_the_kspace(tmp_path):
    counts = {"val": 1, "test": 2}
    clean = mvs.build(tmp_path / "clean", ["limb", "abdomen"], counts, 32, 4, None, seed=1, log=lambda _: None)
    noisy = mvs.build(tmp_path / "noisy", ["limb"], counts, 32, 4, 40.0, seed=1, log=lambda _: None)
    assert {e["split"] for e in clean["volumes"]} == {"val", "test"}
    assert len(clean["volumes"]) == 2 * 3 * 2 and (tmp_path / "clean" / "README.md").is_file()
    for entry in clean["volumes"]:
        path = tmp_path / "clean" / entry["file"]
        with FastMRIVolume(path) as volume:
            assert volume.kspace_shape == (entry["num_slices"], 4, 32, 32)
            assert volume.attrs["kind"] == entry["kind"] and volume.attrs["split"] == entry["split"]
        with h5py.File(path) as handle:
            kspace, target = handle["kspace"][()], handle["target_complex"][()]
        # sum_c |S_c|^2 = 1: the noise-free coil images' root sum of squares is |target|
        rss = np.sqrt((np.abs(_coil_images(kspace)) ** 2).sum(1))
        np.testing.assert_allclose(rss, np.abs(target), atol=1e-5)
    # the noisy build: the noise power in the coil images matches the requested 40 dB
    sigma2, power = [], []
    for entry in noisy["volumes"]:
        with h5py.File(tmp_path / "noisy" / entry["file"]) as handle:
            kspace, target = handle["kspace"][()], handle["target_complex"][()]
        excess = (np.abs(_coil_images(kspace)) ** 2).sum(1) - np.abs(target) ** 2
        sigma2.append(excess.mean() / kspace.shape[1])
        power.append(np.mean(np.abs(target[np.abs(target) > 0.05]) ** 2))
    assert 10 * np.log10(np.mean(power) / np.mean(sigma2)) == pytest.approx(40.0, abs=0.7)
    # val and test volumes are different images
    val = [e for e in clean["volumes"] if e["split"] == "val"]
    test = [e for e in clean["volumes"] if e["split"] == "test" and e["kind"] == val[0]["kind"]]
    with h5py.File(tmp_path / "clean" / val[0]["file"]) as a, h5py.File(tmp_path / "clean" / test[0]["file"]) as b:
        assert not np.allclose(np.abs(a["target_complex"][0]), np.abs(b["target_complex"][0]))


def test_build_is_deterministic_given_the_seed(tmp_path):
    for name in ("a", "b"):
        mvs.build(tmp_path / name, ["abdomen"], {"val": 0, "test": 1}, 32, 2, 40.0, seed=7, log=lambda _: None)
    for path in sorted((tmp_path / "a" / "test").glob("*.h5")):
        with h5py.File(path) as a, h5py.File(tmp_path / "b" / "test" / path.name) as b:
            np.testing.assert_array_equal(a["kspace"][()], b["kspace"][()])


# --------------------------------------------------------------------------- Colin27 / ITK data needed


@needs_colin
def test_colin_build_splits_each_orientation_into_disjoint_slabs(tmp_path):
    code = mvs.main(["--out", str(tmp_path), "--size", "48", "--coils", "2", "--test-per-part", "3",
                     "--val-per-part", "1", "--kinds", "colin_t1", "colin_lowres"])
    assert code == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for kind in ("colin_t1", "colin_lowres"):
        for orientation in src.ORIENTATIONS:
            parts = {e["split"]: e for e in manifest["volumes"] if e["kind"] == kind and e["part"] == orientation}
            assert parts["val"]["num_slices"] == 1 and parts["test"]["num_slices"] == 3
            val = [s["offset_mm"] for s in parts["val"]["slices"]]
            test = [s["offset_mm"] for s in parts["test"]["slices"]]
            assert min(abs(v - t) for v in val for t in test) >= 2 * mvs.GUARD_MM - 0.01
            with FastMRIVolume(tmp_path / parts["test"]["file"]) as volume:
                target = np.stack([volume.target_slice(k, "target_complex") for k in range(volume.num_slices)])
            assert np.mean(target > 0.1) > 0.2  # slices hold tissue
    low = [e for e in manifest["volumes"] if e["kind"] == "colin_lowres"][0]["slices"][0]
    assert 2.0 <= low["resolution_mm"] <= 3.1 and 3.0 <= low["thickness_mm"] <= 5.0


@needs_colin
def test_missing_colin_file_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="mricron-data"):
        mvs.Sources(tmp_path / "nowhere.nii.gz").get("colin")


@needs_itk
def test_real_body_variants_mask_the_background(tmp_path):
    manifest = mvs.build(tmp_path, ["real_body"], {"val": 1, "test": 2}, 48, 2, None, seed=0, log=lambda _: None)
    parts = sorted((e["split"], e["part"], e["num_slices"]) for e in manifest["volumes"])
    assert parts == [("test", "abdomen", 3), ("test", "ratlung", 3), ("val", "ratlung", 3)]
    with h5py.File(tmp_path / "test" / "real_body_abdomen.h5") as handle:
        target = np.abs(handle["target_complex"][()])
    assert np.all(target[:, 0, :] < 1e-3)  # the rows outside the body are zero, not the source's noise floor
