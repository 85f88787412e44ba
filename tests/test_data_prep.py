"""data_prep commands: outputs, resumption and bad-input behaviour (report, go on, exit non-zero)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

from ccdf_mri.io.fastmri import FastMRIVolume
from ccdf_mri.physics.fft import ifft2c
from ccdf_mri.simulation import CorpusConfig, simulate_volume, write_simulated_h5
from ccdf_mri.data_prep import images_to_kspace, make_demo_corpus, prepare_fastmri

CORPUS_ARGS = ["--size", "64", "--coils", "4", "--slices", "2", "--quiet"]


def test_make_demo_corpus_builds_resumes_and_reports_a_bad_template(tmp_path, capsys):
    out = tmp_path / "corpus"
    args = ["--out", str(out), "--num-train", "1", "--num-val", "1", "--num-test", "1", *CORPUS_ARGS]
    assert make_demo_corpus.main(args) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.h5"))
    assert files == ["test/ccdf_demo_test_0000.h5", "train/ccdf_demo_train_0000.h5", "val/ccdf_demo_val_0000.h5"]
    assert "3 volumes written" in capsys.readouterr().out
    assert make_demo_corpus.main(args) == 0
    assert "0 volumes written" in capsys.readouterr().out and (out / "README.md").is_file()
    code = make_demo_corpus.main(["--out", str(tmp_path / "x"), "--template-dir", str(tmp_path), *CORPUS_ARGS])
    assert code != 0
    assert "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz" in capsys.readouterr().err


def _dicom(path, pixels, series_uid, instance, with_pixels=True):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 3, "T2 AX"
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, 5.0 * instance]
    ds.PixelSpacing, ds.SliceThickness = [0.9, 0.9], 5.0
    if with_pixels:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_images_to_kspace_converts_good_inputs_and_reports_bad_ones(tmp_path, capsys):
    import nibabel as nib
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    (inputs / "series").mkdir(parents=True)
    volume = np.zeros((24, 20, 3), np.float32)
    volume[4:20, 4:16] = rng.uniform(100, 200, (16, 12, 3))
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.2, 4.0, 1.0])), str(inputs / "head.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((8, 8, 2, 4), np.float32), np.eye(4)), str(inputs / "bold.nii.gz"))
    uid = generate_uid()
    for i in range(3):
        _dicom(inputs / "series" / f"im{i}.dcm", rng.integers(0, 1000, (16, 18)), uid, i + 1)
    _dicom(inputs / "series" / "nopixels.dcm", None, uid, 9, with_pixels=False)
    (inputs / "notes.txt").write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code = images_to_kspace.main([str(inputs), str(empty), "--out", str(out), "--coils", "3", "--quiet"])
    captured = capsys.readouterr()
    assert code != 0
    for name in ("bold.nii.gz", "nopixels.dcm", "notes.txt", "empty"):
        assert name in captured.err, name
    assert "time axis" in captured.err and "without pixel data" in captured.err
    outputs = sorted(p.name for p in out.glob("*.h5"))
    assert len(outputs) == 2 and "head.h5" in outputs
    with FastMRIVolume(out / "head.h5") as head:
        assert head.kspace_shape == (3, 3, 20, 24)  # slices along z, rows = y, cols = x
        assert head.header.recon_fov_mm == pytest.approx((24.0, 24.0, 4.0))
    series_file = out / [n for n in outputs if n != "head.h5"][0]
    with FastMRIVolume(series_file) as series:
        assert series.kspace_shape == (3, 3, 16, 18)


def _small_fastmri(path, seed=0):
    config = CorpusConfig(size=32, num_coils=4, slices_per_volume=2, snr_db=40.0, fov_mm=240.0, seed=seed)
    vol = simulate_volume(config, "test", 0)
    write_simulated_h5(path, vol.kspace, vol.images, (240.0, 240.0), 3.0, "AXT1", path.stem)
    return vol


PREP_ARGS = ["--calib-width", "12", "--kernel-width", "4", "--quiet"]


def test_prepare_fastmri_caches_maps_targets_index_and_resumes(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    vol = _small_fastmri(data / "a.h5")
    (data / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(64))
    (data / "readme.txt").write_text("mixed folder")
    code = prepare_fastmri.main([str(data), *PREP_ARGS])
    captured = capsys.readouterr()
    assert code != 0 and "corrupt.h5" in captured.err and "readme.txt" in captured.err
    sidecar = data / "a.maps.h5"
    with h5py.File(sidecar, "r") as handle:
        maps, target, done = handle["maps"][()], handle["target_complex"][()], handle["done"][()]
    assert maps.shape == (2, 4, 32, 32) and done.all()
    support = np.abs(vol.images) > 0.2 * np.abs(vol.images).max()
    # ESPIRiT maps fix the phase only up to a smooth common factor: compare magnitudes
    err = np.abs(np.abs(target) - np.abs(vol.images))[support] / np.abs(vol.images)[support]
    assert np.median(err) < 0.1
    index = (data / "slice_index.json").read_text()
    assert '"file": "a.h5"' in index and '"num_slices": 2' in index

    # resume: mark slice 1 as not done in a partial sidecar; only that slice is recomputed
    partial = data / "a.maps.h5.partial"
    os.replace(sidecar, partial)
    with h5py.File(partial, "a") as handle:
        handle["done"][1] = False
        handle["maps"][1] = 0
    code = prepare_fastmri.main([str(data), *PREP_ARGS])
    assert code != 0 and "maps computed for 1 slices" in capsys.readouterr().out
    with h5py.File(sidecar, "r") as handle:
        np.testing.assert_allclose(handle["maps"][1], maps[1], atol=1e-5)
    assert not partial.exists()


def test_prepare_fastmri_empty_folder_fails_with_a_message(tmp_path, capsys):
    assert prepare_fastmri.main([str(tmp_path), "--quiet"]) != 0
    assert "no .h5 files found" in capsys.readouterr().err


def test_sense_target_of_cached_maps_matches_the_file(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    _small_fastmri(data / "b.h5", seed=3)
    assert prepare_fastmri.main([str(data), *PREP_ARGS]) == 0
    with FastMRIVolume(data / "b.h5") as volume, h5py.File(data / "b.maps.h5", "r") as handle:
        kspace = torch.from_numpy(volume.kspace_slice(0))
        maps = torch.from_numpy(handle["maps"][0])
        expected = (maps.conj() * ifft2c(kspace)).sum(0).numpy()
        np.testing.assert_allclose(handle["target_complex"][0], expected, atol=1e-5)


def test_commands_run_as_scripts():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "data_prep/make_demo_corpus.py", "--help"], capture_output=True, text=True, timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0 and "--num-train" in result.stdout
