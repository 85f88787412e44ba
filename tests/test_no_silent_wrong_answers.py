"""Issue 10, "no silent wrong answers": one test per case a new user hit, through ``ccdf-mri recon``.

Each test builds its case on small generated files, runs the command line with the tiny test
models (``--set`` overrides of the shipped bundle config) and checks the corrected behaviour:
resume that compares the provenance of the outputs, names that cannot collide, merged
``metrics.csv``, inputs that say what they are, detected undersampling, odd matrix sizes,
single coil, one geometry for NIfTI and DICOM, complete DICOM tags, checks of the whole
volume before any work, and Ctrl-C.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

import recon_data as rd
from ccdf_mri import cli
from ccdf_mri.app.reconstructor import Reconstructor
from ccdf_mri.io import make_ismrmrd_header, write_fastmri_h5
from ccdf_mri.physics.fft import fft2c, ifft2c


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return rd.write_models(tmp_path_factory.mktemp("models"))


def recon(models: Path, inputs, out: Path, *extra: str) -> int:
    """``ccdf-mri recon INPUTS --out OUT`` with the tiny models; later options win."""
    tiny = [arg for key, value in rd.TINY_MODEL_OVERRIDES.items() for arg in ("--set", f"{key}={value}")]
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
    args = [
        "recon", *map(str, inputs), "--out", str(out), "--models", str(models), *tiny,
        "--steps", "10", "--t0", "0.2", "--center-fraction", "0.125", "--maps", "acs", "--quiet", *extra,
    ]
    return cli.main(args)


def read_h5(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return np.asarray(handle["reconstruction"])


def metrics_rows(path: Path) -> list:
    return list(csv.reader(open(path)))


def write_scan(path: Path, rows: int, cols: int, num_coils: int = 2, num_slices: int = 1,
               spacing=(2.0, 2.0), acquisition: str = "CORPD_FBK", attrs=None) -> Path:
    """A fully sampled fastMRI file of any matrix (rows x cols) and pixel spacing, with a target."""
    maps = rd.coil_maps(rows, cols, num_coils)
    images = np.stack([rd.phantom(rows, cols, s) for s in range(num_slices)])
    kspace = fft2c(torch.from_numpy(maps[None] * images[:, None])).numpy()
    rss = np.sqrt((np.abs(ifft2c(torch.from_numpy(kspace)).numpy()) ** 2).sum(1)).astype(np.float32)
    fov = (rows * spacing[0], cols * spacing[1], 3.0)
    header = make_ismrmrd_header((rows, cols, 1), (rows, cols, 1), fov, fov)
    if num_coils == 1:
        kspace = kspace[:, 0]
    facts = {"max": float(rss.max()), "norm": float(np.linalg.norm(rss)), "acquisition": acquisition,
             "patient_id": "p0", **(attrs or {})}
    return write_fastmri_h5(path, kspace, header, facts, {"reconstruction_rss": rss})


def no_reconstruction(monkeypatch) -> list:
    """Make any reconstruction a test failure; returns the list of calls (stays empty)."""
    calls: list = []

    def forbidden(self, volume, mask=None):
        calls.append(volume.path)
        raise AssertionError(f"{volume.path} was reconstructed")

    monkeypatch.setattr(Reconstructor, "reconstruct", forbidden)
    return calls


# ----------------------------------------------------------------------------- 1. resume
def test_rerun_with_other_settings_redoes_the_volume_and_an_identical_rerun_skips(models, tmp_path, capsys):
    rd.write_volume(tmp_path / "in" / "x.h5")
    out = tmp_path / "out"
    assert recon(models, tmp_path / "in", out) == 0
    previous, stamp = read_h5(out / "x.h5"), (out / "x.h5").stat().st_mtime_ns
    capsys.readouterr()
    assert recon(models, tmp_path / "in", out) == 0  # identical: skipped, nothing rewritten
    assert (out / "x.h5").stat().st_mtime_ns == stamp and "redone" not in capsys.readouterr().err
    options: list = []
    for extra, difference in (
        (["--acceleration", "2"], "acceleration: 4 -> 2"),
        (["--t0", "0.4"], "t0: 0.2 -> 0.4"),
        (["--samples", "2"], "num_samples: 1 -> 2"),
    ):
        options += extra
        assert recon(models, tmp_path / "in", out, *options) == 0
        err = capsys.readouterr().err
        assert "x: redone" in err and difference in err, err
        image = read_h5(out / "x.h5")
        assert not np.array_equal(image, previous), difference
        previous = image
        record = json.loads((out / "x.provenance.json").read_text())
        assert record["settings"]["inferer.t0"] == (0.4 if "--t0" in options else 0.2)
    std = nib.load(out / "x_std.nii.gz").get_fdata()  # --samples 2 writes the std map
    assert std.shape == (rd.SIZE, rd.SIZE, rd.NUM_SLICES) and std.max() > 0
    stamp = (out / "x.h5").stat().st_mtime_ns
    assert recon(models, tmp_path / "in", out, *options) == 0  # identical again: skipped
    assert (out / "x.h5").stat().st_mtime_ns == stamp and "redone" not in capsys.readouterr().err
    # back to one sample: redone, and the std map of the two-sample run does not stay behind
    assert recon(models, tmp_path / "in", out, *options, "--samples", "1") == 0
    assert not (out / "x_std.nii.gz").exists()


# ----------------------------------------------------------------------------- 2. names
def test_two_inputs_with_one_name_are_an_error_before_any_work(models, tmp_path, capsys, monkeypatch):
    first = rd.write_volume(tmp_path / "dirA" / "x.h5")
    second = rd.write_volume(tmp_path / "dirB" / "x.h5", rows=2 * rd.SIZE)  # other data
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        calls = no_reconstruction(patch)
        assert recon(models, [tmp_path / "dirA", tmp_path / "dirB"], out) == 2
    err = capsys.readouterr().err
    assert str(first) in err and str(second) in err and "--name-by-path" in err
    assert "output name 'x'" in err and not calls and not out.exists()
    assert recon(models, [tmp_path / "dirA", tmp_path / "dirB"], out, "--name-by-path") == 0
    rows = metrics_rows(out / "metrics.csv")
    assert [row[0] for row in rows[1:]] == ["dirA__x", "dirB__x", "mean"]
    # each output is its own input's reconstruction, scored against its own target
    assert recon(models, tmp_path / "dirB", tmp_path / "alone") == 0
    np.testing.assert_array_equal(read_h5(out / "dirB__x.h5"), read_h5(tmp_path / "alone" / "x.h5"))
    assert rows[2][1:] == metrics_rows(tmp_path / "alone" / "metrics.csv")[1][1:]
    assert not np.array_equal(read_h5(out / "dirA__x.h5"), read_h5(out / "dirB__x.h5"))


# ----------------------------------------------------------------------------- 3. metrics.csv
def test_a_rerun_that_skips_keeps_the_metrics_of_earlier_runs(models, tmp_path):
    rd.write_volume(tmp_path / "in" / "a.h5")
    rd.write_volume(tmp_path / "in" / "b.h5", rows=2 * rd.SIZE)
    out = tmp_path / "out"
    assert recon(models, tmp_path / "in" / "a.h5", out) == 0
    row_a = metrics_rows(out / "metrics.csv")[1]
    assert recon(models, tmp_path / "in", out) == 0  # a skipped, b done
    rows = metrics_rows(out / "metrics.csv")
    assert [row[0] for row in rows] == ["volume", "a", "b", "mean"] and rows[1] == row_a
    assert recon(models, tmp_path / "in" / "b.h5", out) == 0  # b skipped: a's row stays
    assert metrics_rows(out / "metrics.csv") == rows
    assert recon(models, tmp_path / "in" / "a.h5", out, "--t0", "0.4") == 0  # a redone: its row updated in place
    again = metrics_rows(out / "metrics.csv")
    assert [row[0] for row in again] == ["volume", "a", "b", "mean"]
    assert again[2] == rows[2] and again[1] != rows[1]
    mean = np.mean([[float(v) for v in row[1:]] for row in again[1:3]], axis=0)
    np.testing.assert_allclose([float(v) for v in again[3][1:]], mean, rtol=1e-5)


# ----------------------------------------------------------------------------- 4. inputs
def test_no_inputs_is_an_error_saying_where_it_looked_and_subfolders_and_upper_case_are_found(models, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert recon(models, empty, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "no input files" in err and str(empty) in err and "subfolders" in err
    rd.write_volume(tmp_path / "nested" / "site1" / "a.h5")
    rd.write_volume(tmp_path / "nested" / "site2" / "deep" / "B.H5")
    assert recon(models, tmp_path / "nested", tmp_path / "out", "--initializer", "zero_filled", "--t0", "0") == 0
    assert (tmp_path / "out" / "a.h5").is_file() and (tmp_path / "out" / "B.h5").is_file()
    assert [row[0] for row in metrics_rows(tmp_path / "out" / "metrics.csv")[1:]] == ["a", "B", "mean"]
    assert recon(models, tmp_path / "nested", tmp_path / "flat", "--no-recursive") == 2
    assert "subfolders were not searched" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 5. undersampled input
def test_already_undersampled_kspace_is_detected_and_its_columns_used_as_the_mask(models, tmp_path, capsys):
    sampled = np.zeros(rd.SIZE, np.float32)
    sampled[::2] = 1
    sampled[14:18] = 1  # 2x with a 4-column centre: a user's own accelerated scan
    rd.write_volume(tmp_path / "test_style" / "x.h5", mask=sampled)  # with a 'mask' dataset
    path = shutil.copytree(tmp_path / "test_style", tmp_path / "own") / "x.h5"
    with h5py.File(path, "a") as handle:  # the same k-space without a 'mask' dataset
        del handle["mask"]
        for key in ("acceleration", "num_low_frequency"):
            del handle.attrs[key]
    zero_filled = ("--initializer", "zero_filled", "--t0", "0")
    assert recon(models, tmp_path / "test_style", tmp_path / "reference", *zero_filled) == 0
    capsys.readouterr()
    assert recon(models, path, tmp_path / "detected", *zero_filled) == 0
    assert "already undersampled" in capsys.readouterr().err  # said, not silent
    record = json.loads((tmp_path / "detected" / "x.provenance.json").read_text())
    assert "already undersampled" in record["settings"]["mask"]["source"]
    np.testing.assert_array_equal(read_h5(tmp_path / "detected" / "x.h5"), read_h5(tmp_path / "reference" / "x.h5"))
    # --retrospective: undersampled again (4x on top of 2x), as asked
    assert recon(models, path, tmp_path / "again", *zero_filled, "--retrospective") == 0
    record = json.loads((tmp_path / "again" / "x.provenance.json").read_text())
    assert record["settings"]["mask"]["source"].startswith("retrospective")
    assert not np.allclose(read_h5(tmp_path / "again" / "x.h5"), read_h5(tmp_path / "reference" / "x.h5"))
    # --mask-file: a fully sampled file with the user's mask equals the test-set file with that mask
    user = np.zeros(rd.SIZE, np.float32)
    user[1::3] = 1
    user[13:19] = 1
    np.save(tmp_path / "mask.npy", user)
    rd.write_volume(tmp_path / "full" / "y.h5")
    rd.write_volume(tmp_path / "masked" / "y.h5", mask=user)
    assert recon(models, tmp_path / "full", tmp_path / "by_file", *zero_filled, "--mask-file", str(tmp_path / "mask.npy")) == 0
    assert recon(models, tmp_path / "masked", tmp_path / "by_dataset", *zero_filled) == 0
    np.testing.assert_allclose(read_h5(tmp_path / "by_file" / "y.h5"), read_h5(tmp_path / "by_dataset" / "y.h5"), rtol=1e-6)
    record = json.loads((tmp_path / "by_file" / "y.provenance.json").read_text())
    assert "mask.npy" in record["settings"]["mask"]["source"]


# ----------------------------------------------------------------------------- 6. matrix sizes
@pytest.mark.parametrize("rows, cols", [(250, 250), (255, 260)])
def test_odd_matrix_sizes_reconstruct_with_the_networks(models, tmp_path, rows, cols):
    write_scan(tmp_path / "in" / "odd.h5", rows, cols)
    common = ("--center-fraction", "0.08", "--initializer", "unet")
    assert recon(models, tmp_path / "in", tmp_path / "ccdf", *common, "--t0", "0.2") == 0
    assert recon(models, tmp_path / "in", tmp_path / "unet", *common, "--t0", "0") == 0
    image = read_h5(tmp_path / "ccdf" / "odd.h5")
    assert image.shape == (1, rows, cols) and np.isfinite(image).all()
    assert not np.allclose(image, read_h5(tmp_path / "unet" / "odd.h5"))  # the score network ran


# ----------------------------------------------------------------------------- 7. single coil
def test_single_coil_zero_filled_is_the_inverse_fft_of_the_masked_kspace(models, tmp_path):
    from ccdf_mri.physics import make_mask, mask_seed_from_name

    rd.write_volume(tmp_path / "in" / "one.h5", num_coils=1, rows=2 * rd.SIZE)  # 2x readout oversampling
    assert recon(models, tmp_path / "in", tmp_path / "out", "--initializer", "zero_filled", "--t0", "0") == 0
    with h5py.File(tmp_path / "in" / "one.h5", "r") as handle:
        kspace = torch.from_numpy(handle["kspace"][()])  # (S, 2H, W)
    mask = make_mask("equispaced_fraction", tuple(kspace.shape), 4.0, 0.125, seed=mask_seed_from_name("one.h5"),
                     padding=(0, rd.SIZE)).reshape(1, 1, -1)
    top = rd.SIZE // 2
    expected = ifft2c(kspace * mask).abs().numpy()[:, top : top + rd.SIZE]  # |F^-1 M y|, cropped to the recon matrix
    image = read_h5(tmp_path / "out" / "one.h5")
    assert image.shape == expected.shape == (rd.NUM_SLICES, rd.SIZE, rd.SIZE)
    np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-5 * expected.max())
    # with the networks (t0 > 0) a single-coil file reconstructs too
    assert recon(models, tmp_path / "in", tmp_path / "ccdf", "--initializer", "unet", "--t0", "0.3") == 0
    assert np.isfinite(read_h5(tmp_path / "ccdf" / "one.h5")).all()


def test_single_coil_maps_have_unit_modulus_and_keep_the_zero_filled_magnitude():
    from ccdf_mri.physics import SenseOp
    from ccdf_mri.physics.dc import ProjectionDC
    from ccdf_mri.transforms import EstimateCoilMaps

    image = torch.from_numpy(np.stack([rd.phantom(rd.SIZE, rd.SIZE, s) for s in range(2)]))
    mask = torch.zeros(1, 1, 1, rd.SIZE)
    mask[..., ::3] = 1
    mask[..., 12:20] = 1
    kspace = fft2c(image)[:, None] * mask  # (B, 1, H, W)
    maps = EstimateCoilMaps("acs", calib_width=8)(kspace, mask)
    assert maps.shape == kspace.shape
    torch.testing.assert_close(maps.abs(), torch.ones_like(maps.abs()))
    op = SenseOp(maps, mask)
    assert op.is_single_coil  # unit-modulus single maps: the exact k-space replacement DC
    plain = ifft2c(kspace[:, 0])
    zero_filled = op.adjoint(kspace)
    torch.testing.assert_close(zero_filled.abs(), plain.abs())  # equal up to the phase
    torch.testing.assert_close(zero_filled * maps[:, 0], plain)
    # the DC shortcut with unit-modulus maps is the projection: measured columns kept exactly
    x_prime = torch.randn(image.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    out = ProjectionDC()(x_prime, op, kspace)
    torch.testing.assert_close(op(out), kspace, rtol=0, atol=1e-4)
    unmeasured = fft2c(maps[:, 0] * out) * (1 - mask[:, 0])
    torch.testing.assert_close(unmeasured, fft2c(maps[:, 0] * x_prime) * (1 - mask[:, 0]), rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- 8. geometry
def test_nifti_and_dicom_place_every_pixel_at_the_same_patient_coordinate(models, tmp_path):
    import pydicom

    # non-square pixels and a coronal protocol: a transpose or a flip between the formats shows
    write_scan(tmp_path / "in" / "g.h5", 24, 40, num_slices=3, spacing=(2.0, 2.5), acquisition="CORPD_FBK")
    assert recon(models, tmp_path / "in", tmp_path / "out", "--initializer", "zero_filled", "--t0", "0",
                 "--formats", "nifti,dicom", "--center-fraction", "0.1") == 0
    nifti = nib.load(tmp_path / "out" / "g.nii.gz")
    data = np.asarray(nifti.dataobj)  # (rows, cols, slices)
    rows, cols = np.meshgrid(np.arange(24), np.arange(40), indexing="ij")
    files = sorted((tmp_path / "out" / "g_dicom").glob("*.dcm"))
    assert len(files) == 3
    for path in files:
        ds = pydicom.dcmread(path)
        k = int(ds.InstanceNumber) - 1
        position = np.array(ds.ImagePositionPatient, float)
        across, down = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
        lps = position + cols[..., None] * col_spacing * across + rows[..., None] * row_spacing * down
        dicom_ras = lps * np.array([-1.0, -1.0, 1.0])
        index = np.stack([rows, cols, np.full_like(rows, k), np.ones_like(rows)], -1).astype(float)
        nifti_ras = (index @ nifti.affine.T)[..., :3]
        np.testing.assert_allclose(dicom_ras, nifti_ras, atol=1e-3)
        values = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(values, data[:, :, k], atol=float(ds.RescaleSlope))  # same pixel, same value


# ----------------------------------------------------------------------------- 9. DICOM tags
TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Laterality",
          "PatientPosition", "PositionReferenceIndicator", "Manufacturer", "InstanceNumber",
          "SliceLocation", "ScanOptions", "EchoTrainLength")


def test_dicom_patient_from_the_file_or_the_flag_and_every_type_2_tag(models, tmp_path):
    import pydicom

    rd.write_volume(tmp_path / "in" / "d.h5")  # attrs patient_id 'p0'
    common = ("--initializer", "zero_filled", "--t0", "0", "--formats", "dicom")
    assert recon(models, tmp_path / "in", tmp_path / "file", *common) == 0
    assert recon(models, tmp_path / "in", tmp_path / "flag", *common, "--patient-id", "study-17") == 0
    from_file = [pydicom.dcmread(p) for p in sorted((tmp_path / "file" / "d_dicom").glob("*.dcm"))]
    from_flag = pydicom.dcmread(sorted((tmp_path / "flag" / "d_dicom").glob("*.dcm"))[0])
    assert len(from_file) == rd.NUM_SLICES
    assert from_file[0].PatientID == "p0" and str(from_file[0].PatientName) == "p0"
    assert from_flag.PatientID == "study-17" and str(from_flag.PatientName) == "study-17"
    for ds in from_file:
        missing = [tag for tag in TYPE_2 if tag not in ds]
        assert missing == [], missing
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed; tags checked, validator not run")
    for path in sorted((tmp_path / "file" / "d_dicom").glob("*.dcm")):
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        lines = (run.stdout + run.stderr).splitlines()
        assert any(line.strip() == "MRImage" for line in lines), lines
        assert [line for line in lines if line.startswith("Error")] == []


# ----------------------------------------------------------------------------- 10.-11. checks first
def test_a_missing_target_key_fails_before_any_reconstruction(models, tmp_path, capsys, monkeypatch):
    rd.write_volume(tmp_path / "in" / "t.h5")
    calls = no_reconstruction(monkeypatch)
    assert recon(models, tmp_path / "in", tmp_path / "out", "--target-key", "foo") == 1
    err = capsys.readouterr().err
    assert "'foo'" in err and "t.h5" in err and "reconstruction_rss" in err  # names the key and what there is
    assert calls == [] and sorted(os.listdir(tmp_path / "out")) == []


def test_nan_in_a_later_slice_fails_before_the_first_slice_is_reconstructed(models, tmp_path, capsys, monkeypatch):
    path = rd.write_volume(tmp_path / "in" / "n.h5")
    rd.write_volume(tmp_path / "in" / "ok.h5")
    with h5py.File(path, "a") as handle:
        handle["kspace"][2, 1, 5, 7] = np.nan
    reconstructed = []
    original = Reconstructor.reconstruct

    def spy(self, volume, mask=None):
        reconstructed.append(volume.path.name)
        return original(self, volume, mask)

    monkeypatch.setattr(Reconstructor, "reconstruct", spy)
    assert recon(models, tmp_path / "in", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "n.h5" in err and "slice 2" in err and "NaN" in err
    assert reconstructed == ["ok.h5"]  # the bad file was never started; the good one was done
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.csv", "ok.h5", "ok.nii.gz", "ok.provenance.json"]


# ----------------------------------------------------------------------------- 12. Ctrl-C
def _interrupt_on(monkeypatch, name: str) -> None:
    original = Reconstructor.reconstruct

    def interrupted(self, volume, mask=None):
        if volume.path.name == name:
            raise KeyboardInterrupt
        return original(self, volume, mask)

    monkeypatch.setattr(Reconstructor, "reconstruct", interrupted)


def test_ctrl_c_exits_130_with_one_line_and_nothing_half_written(models, tmp_path, capsys, monkeypatch):
    rd.write_volume(tmp_path / "in" / "a.h5")
    rd.write_volume(tmp_path / "in" / "b.h5")
    rd.write_volume(tmp_path / "in" / "c.h5")
    with monkeypatch.context() as patch:
        _interrupt_on(patch, "b.h5")
        assert recon(models, tmp_path / "in", tmp_path / "out") == 130
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "1 of 3 volume(s) finished (a)" in lines[0] and "2 not (b, c)" in lines[0] and "rerun" in lines[0]
    assert sorted(os.listdir(tmp_path / "out")) == ["a.h5", "a.nii.gz", "a.provenance.json", "metrics.csv"]
    assert recon(models, tmp_path / "in", tmp_path / "out") == 0  # resumed: a skipped, b and c done
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted([f"{v}{s}" for v in "abc" for s in (".h5", ".nii.gz", ".provenance.json")] + ["metrics.csv"])


def test_ctrl_c_while_writing_removes_the_volume_being_written(models, tmp_path, capsys, monkeypatch):
    import ccdf_mri.io.writers as writers

    rd.write_volume(tmp_path / "in" / "a.h5")
    original = writers.save_nifti

    def interrupted(path, *args, **kwargs):
        if Path(path).name.endswith("_std.nii.gz"):
            raise KeyboardInterrupt
        return original(path, *args, **kwargs)

    monkeypatch.setattr(writers, "save_nifti", interrupted)
    assert recon(models, tmp_path / "in", tmp_path / "out", "--samples", "2") == 130
    assert "0 of 1 volume(s) finished" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out") == []  # no .h5 / .nii.gz / record of the half-written volume


def test_a_run_interrupted_inside_a_volume_and_resumed_equals_an_uninterrupted_run(models, tmp_path, monkeypatch):
    from ccdf_mri.inferers import CCDFInferer

    rd.write_volume(tmp_path / "in" / "a.h5")
    rd.write_volume(tmp_path / "in" / "b.h5", rows=2 * rd.SIZE)
    options = ("--batch-size", "1", "--samples", "2", "--t0", "0.3")
    calls = []
    original = CCDFInferer.__call__

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # volume b, second slice: the middle of a volume
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(CCDFInferer, "__call__", interrupted)
        assert recon(models, tmp_path / "in", tmp_path / "resumed", *options) == 130
    assert not list((tmp_path / "resumed").glob("b*"))
    assert recon(models, tmp_path / "in", tmp_path / "resumed", *options) == 0
    assert recon(models, tmp_path / "in", tmp_path / "straight", *options) == 0
    for name in ("a.h5", "b.h5"):
        np.testing.assert_array_equal(read_h5(tmp_path / "resumed" / name), read_h5(tmp_path / "straight" / name))
    for name in ("a_std.nii.gz", "b_std.nii.gz", "b.nii.gz"):
        np.testing.assert_array_equal(nib.load(tmp_path / "resumed" / name).get_fdata(),
                                      nib.load(tmp_path / "straight" / name).get_fdata())
    assert (tmp_path / "resumed" / "metrics.csv").read_text() == (tmp_path / "straight" / "metrics.csv").read_text()
