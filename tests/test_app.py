"""The application layer (ccdf_mri.app: Reconstructor, writer, postprocessing, evaluate) and the
initializers, on tiny volumes and models built from the shipped bundle config."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

import recon_data as rd
from ccdf_mri import initializers
from ccdf_mri.app.build import from_bundle
from ccdf_mri.app.evaluate import evaluate_folders
from ccdf_mri.app.reconstructor import Reconstructor
from ccdf_mri.intensity import intensity_scale
from ccdf_mri.io import FastMRIVolume, find_inputs, make_ismrmrd_header, write_fastmri_h5
from ccdf_mri.metrics import volume_metrics
from ccdf_mri.physics import SenseOp, make_mask, mask_seed_from_name
from ccdf_mri.physics.masks import calibration_width
from ccdf_mri.preprocessing import make_preprocessing, volume_batch

FAST = {"num_steps": 10}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return rd.write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    rd.write_volume(folder / "file_a.h5")
    rd.write_volume(folder / "file_b.h5", rows=2 * rd.SIZE)
    return folder


def build(models: Path, out: Path, **options) -> Reconstructor:
    """The bundle's reconstructor (what ``ccdf-mri recon`` runs) for the tiny models."""
    return from_bundle(None, rd.bundle_overrides(models, out, **{**FAST, **options}))


def read_h5(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        return np.asarray(handle["reconstruction"])


def prepare(path: Path, indices=(0, 1, 2), **options) -> dict:
    """The preprocessing of the test options on slices ``indices`` of ``path``."""
    options = {"mask": "equispaced_fraction", **rd.OPTIONS, **options}
    with FastMRIVolume(path) as volume:
        return make_preprocessing(**options)(volume_batch(volume, list(indices)))


# ----------------------------------------------------------------------------- initializers
def _problem(seed: int = 0, num_coils: int = 4):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.from_numpy(rd.coil_maps(rd.SIZE, rd.SIZE, num_coils))[None]
    image = torch.from_numpy(rd.phantom(rd.SIZE, rd.SIZE, seed))[None]
    mask = make_mask("random", (num_coils, rd.SIZE, rd.SIZE), 3.0, 0.2, seed=seed)
    op = SenseOp(maps, mask)
    noise = 0.01 * torch.randn(op.kspace_shape, dtype=torch.complex64, generator=generator)
    return op, op(image) + noise * mask, image


def test_zero_filled_is_the_adjoint():
    op, kspace, _ = _problem()
    torch.testing.assert_close(initializers.make_initializer("zero_filled")(op, kspace), op.adjoint(kspace))


def test_cg_sense_matches_sigpy_sense_recon():
    import sigpy.mri.app

    op, kspace, _ = _problem(1)
    ours = initializers.CGSense(num_iters=6, discrepancy=False)(op, kspace)[0].numpy()
    mask = torch.broadcast_to(op.mask, kspace.shape)[0].numpy()
    theirs = sigpy.mri.app.SenseRecon(
        kspace[0].numpy(), op.maps[0].numpy(), lamda=0, weights=mask, max_iter=6, show_pbar=False
    ).run()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize("seed", [0, 3])
def test_cg_sense_stops_each_slice_at_its_noise_level(seed):
    """The discrepancy principle: the output is a plain CG iterate, the first whose data residual
    falls to the estimated noise energy; more noise -> an earlier iterate."""
    from ccdf_mri.physics.noise import estimate_kspace_noise

    generator = torch.Generator().manual_seed(seed)
    maps = torch.from_numpy(rd.coil_maps(rd.SIZE, rd.SIZE, 4))[None]
    y, x = torch.meshgrid(torch.linspace(-1, 1, rd.SIZE), torch.linspace(-1, 1, rd.SIZE), indexing="ij")
    image = (torch.exp(-((x - 0.1 * seed) ** 2 + y**2) / 0.15) * torch.exp(1j * x)).to(torch.complex64)[None]  # smooth: no signal in the k-space periphery
    mask = make_mask("equispaced_fraction", (4, rd.SIZE, rd.SIZE), 3.0, 0.2, seed=seed)
    op = SenseOp(maps, mask)
    iterations = []
    for level in (0.002, 0.2):
        noise = level * torch.randn(op.kspace_shape, dtype=torch.complex64, generator=generator)
        kspace = (op(image) + noise) * mask
        sigma = float(estimate_kspace_noise(kspace, mask)[0])
        # torch's complex normal has E|n|^2 = 1: sigma = level; signal left in the periphery can only raise it
        assert sigma >= 0.8 * level and (level < 0.1 or sigma == pytest.approx(level, rel=0.2))
        out = initializers.CGSense(30, discrepancy=True)(op, kspace)
        fixed = [initializers.CGSense(n, discrepancy=False)(op, kspace) for n in range(1, 31)]
        n = next(i + 1 for i, x in enumerate(fixed) if torch.allclose(x, out, atol=1e-5))
        limit = float(torch.broadcast_to(mask, kspace.shape).sum()) * sigma**2
        residual = lambda x: float((op(x) - kspace).abs().square().sum())  # noqa: E731
        assert residual(fixed[n - 1]) <= limit * 1.001 or n == 30
        assert n == 1 or residual(fixed[n - 2]) > limit * 0.999
        iterations.append(n)
    assert iterations[0] > iterations[1]


def test_cg_sense_reduces_the_normal_equation_residual():
    op, kspace, _ = _problem(2)
    rhs = op.adjoint(kspace)
    residuals = [
        torch.linalg.vector_norm(op.normal(initializers.CGSense(n, discrepancy=False)(op, kspace)) - rhs).item() for n in (1, 4, 16)
    ]
    assert residuals[0] > residuals[1] > residuals[2]


def test_l1_wavelet_recovers_fully_sampled_data_and_lam_shrinks():
    maps = torch.from_numpy(rd.coil_maps(rd.SIZE, rd.SIZE, 2))[None]
    image = torch.from_numpy(rd.phantom(rd.SIZE, rd.SIZE, 0))[None]
    op = SenseOp(maps, torch.ones(1, 1, 1, rd.SIZE))
    kspace = op(image)
    nearly_exact = initializers.L1Wavelet(lam=1e-6, max_iter=30)(op, kspace)
    assert torch.linalg.vector_norm(nearly_exact - image) / torch.linalg.vector_norm(image) < 1e-2
    shrunk = initializers.L1Wavelet(lam=0.5, max_iter=30)(op, kspace)
    assert torch.linalg.vector_norm(shrunk) < 0.95 * torch.linalg.vector_norm(nearly_exact)


def test_unet_initializer_is_residual_on_the_zero_filled_image():
    from ccdf_mri.networks.initializer import make_initializer_network

    network = make_initializer_network(channels=(4, 8), strides=(2,), num_res_units=0)
    for parameter in network.parameters():
        torch.nn.init.zeros_(parameter)
    op, kspace, _ = _problem(3)
    x0 = initializers.make_initializer("unet", network)(op, kspace)
    torch.testing.assert_close(x0, op.adjoint(kspace))


@pytest.mark.parametrize(
    "name, kwargs, message",
    [("magic", {}, "initializer"), ("unet", {}, "network"), ("cg_sense", {"cg_iters": 0}, "num_iters")],
)
def test_make_initializer_rejects_bad_options(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        initializers.make_initializer(name, **kwargs)


# ----------------------------------------------------------------------------- preprocessing
def test_retrospective_mask_is_fastmri_seeded_by_file_name(inputs):
    data = prepare(inputs / "file_a.h5")
    expected = make_mask(
        "equispaced_fraction", (4, 32, 32), 4.0, 0.125, seed=mask_seed_from_name("file_a.h5"), padding=(0, 32)
    )
    torch.testing.assert_close(data["mask"].reshape(-1), expected.reshape(-1))
    assert calibration_width(data["mask"]) == 4
    unsampled = expected.reshape(-1) == 0
    assert bool((data["kspace"][..., unsampled] == 0).all())
    # each slice divided by its own scale: the scaled zero-filled image has 99th percentile 1
    op = SenseOp(data["maps"], data["mask"])
    for image in op.adjoint(data["kspace"]):
        torch.testing.assert_close(intensity_scale(image), torch.tensor(1.0))
    torch.testing.assert_close(op.adjoint(data["kspace"]), data["image"])


def test_calibration_width_is_the_centred_fully_sampled_block():
    line = torch.zeros(1, 1, 1, 32)
    line[..., 13:20] = 1  # 7 centre columns, 3 left of 16 and 3 right: symmetric block of 7
    assert calibration_width(line) == 7
    line[..., 19] = 0  # 16 - 3 .. 16 + 2: a block of 6 remains (columns 13..18)
    assert calibration_width(line) == 6
    square = torch.zeros(1, 1, 32, 32)
    square[..., 12:20, 10:22] = 1
    assert calibration_width(square) == 8
    assert calibration_width(torch.zeros(1, 1, 1, 32)) == 0


def test_poisson2d_masks_reconstruct(models, inputs, tmp_path):
    report = build(models, tmp_path, mask="poisson2d", acceleration=3.0, center_fraction=0.2, t0=0.3).run(
        inputs / "file_a.h5"
    )
    assert report.results[0].status == "done", report.results[0].error
    assert np.isfinite(read_h5(tmp_path / "file_a.h5")).all()


def test_test_set_file_uses_its_own_mask(models, tmp_path):
    from ccdf_mri.diffusion.t0 import item_accelerations

    mask = np.zeros(rd.SIZE, dtype=np.float32)
    mask[14:18] = 1
    mask[::8] = 1
    rd.write_volume(tmp_path / "test_file.h5", mask=mask, target=False)
    reconstructor = build(models, tmp_path / "out", mask="random", acceleration=2.0, center_fraction=0.3)
    with FastMRIVolume(tmp_path / "test_file.h5") as volume:
        chosen, note = reconstructor.volume_mask(volume, volume.scan())
        data = reconstructor.preprocessing(volume_batch(volume, [0, 1], chosen))
    assert note == "the file's own mask"
    np.testing.assert_array_equal(data["mask"].reshape(-1).numpy(), mask)
    assert item_accelerations(SenseOp(data["maps"], data["mask"])) == pytest.approx([rd.SIZE / mask.sum()] * 2)


def test_readout_oversampling_is_cropped_and_geometry_written(models, inputs, tmp_path):
    report = build(models, tmp_path, initializer="zero_filled", t0=0.0).run(inputs / "file_b.h5")
    assert report.results[0].status == "done"
    nifti = nib.load(tmp_path / "file_b.nii.gz")
    assert nifti.shape == (rd.SIZE, rd.SIZE, rd.NUM_SLICES) and nifti.get_data_dtype() == np.float32
    np.testing.assert_allclose(nib.affines.voxel_sizes(nifti.affine), (2.0, 2.0, 3.0))
    np.testing.assert_allclose(np.moveaxis(nifti.get_fdata(), -1, 0), read_h5(tmp_path / "file_b.h5"), rtol=1e-6)


# ----------------------------------------------------------------------------- runs
def test_run_writes_outputs_and_fastmri_metrics(models, inputs, tmp_path):
    report = build(models, tmp_path, initializer="unet", t0=0.5, num_samples=2).run(inputs)
    assert [r.status for r in report.results] == ["done", "done"]
    # NFE: the mean network evaluations per slice, both samples (a float), 2 x round(0.5 * 10)
    assert all(r.nfe == 10.0 and isinstance(r.nfe, float) and r.t0 == 0.5 for r in report.results)
    rows = list(csv.reader(open(tmp_path / "metrics.csv")))
    assert rows[0] == ["volume", "nmse", "psnr", "ssim"] and [r[0] for r in rows[1:]] == ["file_a", "file_b", "mean"]
    for result, row in zip(report.results, rows[1:]):
        image = read_h5(tmp_path / f"{result.name}.h5")
        assert image.shape == (rd.NUM_SLICES, rd.SIZE, rd.SIZE) and image.dtype == np.float32
        with FastMRIVolume(inputs / f"{result.name}.h5") as volume:
            target = np.stack([volume.target_slice(i) for i in range(volume.num_slices)])
        expected = volume_metrics(target, image)
        assert [float(v) for v in row[1:]] == pytest.approx([expected[k] for k in ("nmse", "psnr", "ssim")], rel=1e-5)
        std = nib.load(tmp_path / f"{result.name}_std.nii.gz").get_fdata()
        assert std.shape == (rd.SIZE, rd.SIZE, rd.NUM_SLICES) and std.min() >= 0 and std.max() > 0
        record = json.loads((tmp_path / f"{result.name}.provenance.json").read_text())
        assert sorted(record["outputs"]) == sorted(f"{result.name}{s}" for s in (".h5", ".nii.gz", "_std.nii.gz"))
    assert "mean" in report.table() and "file_a" in report.table()


def test_metrics_can_score_another_dataset_such_as_a_noise_free_complex_target(models, tmp_path):
    (tmp_path / "in").mkdir()
    path = rd.write_volume(tmp_path / "in" / "file_c.h5")
    reference = (2.0 + 1.0j) * np.ones((rd.NUM_SLICES, rd.SIZE, rd.SIZE), np.complex64)
    with h5py.File(path, "a") as handle:
        handle["target_complex"] = reference
    default = build(models, tmp_path / "a", initializer="zero_filled", t0=0.0).run([path]).results[0]
    keyed = build(models, tmp_path / "b", initializer="zero_filled", t0=0.0, target_key="target_complex").run([path])
    image = read_h5(tmp_path / "b" / "file_c.h5")
    expected = volume_metrics(np.abs(reference), image)
    assert keyed.results[0].metrics == pytest.approx(expected, rel=1e-6)
    assert keyed.results[0].metrics["psnr"] != pytest.approx(default.metrics["psnr"], rel=1e-3)
    # a key the file does not have fails the volume before anything is reconstructed or written
    missing = build(models, tmp_path / "c", initializer="zero_filled", t0=0.0, target_key="nope").run([path])
    assert missing.results[0].status == "failed" and "nope" in missing.results[0].error
    assert not list((tmp_path / "c").iterdir())


def test_reconstruction_is_scale_equivariant(models, inputs, tmp_path):
    """Intensity scaling in, unscaling out: k-space times 10 gives images times 10 (same noise)."""
    louder = tmp_path / "loud"
    louder.mkdir()
    with h5py.File(inputs / "file_a.h5", "r") as src:
        header, kspace = src["ismrmrd_header"][()], src["kspace"][()]
    write_fastmri_h5(louder / "file_a.h5", 10 * kspace, header, {"max": 1.0})
    build(models, tmp_path / "one", t0=0.5).run(inputs / "file_a.h5")
    build(models, tmp_path / "ten", t0=0.5).run(louder / "file_a.h5")
    np.testing.assert_allclose(
        read_h5(tmp_path / "ten" / "file_a.h5"), 10 * read_h5(tmp_path / "one" / "file_a.h5"), rtol=2e-3, atol=1e-4
    )


def test_output_does_not_depend_on_batching_and_follows_the_seed(models, inputs, tmp_path):
    for batch_size, seed in ((1, 0), (3, 0), (3, 1)):
        build(models, tmp_path / f"{batch_size}_{seed}", t0=0.3, batch_size=batch_size, seed=seed).run(inputs / "file_a.h5")
    one, three, other = (read_h5(tmp_path / folder / "file_a.h5") for folder in ("1_0", "3_0", "3_1"))
    np.testing.assert_allclose(one, three, rtol=1e-4, atol=1e-5)
    assert not np.allclose(three, other, rtol=1e-3)


def test_t0_zero_returns_the_initializer_output(models, inputs, tmp_path):
    """t0 = 0 with the zero-filled initializer is |E^H y| * scale, cropped: no network evaluation."""
    report = build(models, tmp_path, initializer="zero_filled", t0=0.0).run(inputs / "file_a.h5")
    assert report.results[0].nfe == 0
    data = prepare(inputs / "file_a.h5")
    op = SenseOp(data["maps"], data["mask"])
    expected = (op.adjoint(data["kspace"]).abs() * data["scale"][:, None, None]).numpy()
    np.testing.assert_allclose(read_h5(tmp_path / "file_a.h5"), expected, rtol=1e-5, atol=1e-6)


def test_t0_zero_needs_no_score_network(models, inputs, tmp_path):
    unet_only = tmp_path / "models"
    unet_only.mkdir()
    for name in ("unet.pt", "unet.json"):
        shutil.copy(models / name, unet_only / name)
    reconstructor = build(unet_only, tmp_path / "out", initializer="unet", t0=0.0)
    assert reconstructor.network is None
    report = reconstructor.run(inputs / "file_a.h5")
    assert report.results[0].status == "done" and report.results[0].nfe == 0
    with pytest.raises(FileNotFoundError, match="score_net"):
        build(unet_only, tmp_path / "out2", initializer="unet", t0=0.2)


def test_dicom_on_request(models, inputs, tmp_path):
    import pydicom

    build(models, tmp_path, initializer="zero_filled", t0=0.0, formats="nifti,h5,dicom").run(inputs / "file_a.h5")
    files = sorted((tmp_path / "file_a_dicom").glob("*.dcm"))
    assert len(files) == rd.NUM_SLICES
    first = pydicom.dcmread(files[0])
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and [float(v) for v in first.PixelSpacing] == [2.0, 2.0]


def test_done_volumes_are_skipped_unless_overwrite(models, inputs, tmp_path):
    build(models, tmp_path, initializer="zero_filled", t0=0.0).run(inputs / "file_a.h5")
    stamp = (tmp_path / "file_a.nii.gz").stat().st_mtime_ns
    again = build(models, tmp_path, initializer="zero_filled", t0=0.0).run(inputs / "file_a.h5")
    assert again.results[0].status == "skipped" and again.results[0].metrics
    assert (tmp_path / "file_a.nii.gz").stat().st_mtime_ns == stamp
    forced = build(models, tmp_path, initializer="zero_filled", t0=0.0, overwrite=True).run(inputs / "file_a.h5")
    assert forced.results[0].status == "done"
    assert (tmp_path / "file_a.nii.gz").stat().st_mtime_ns != stamp


def test_resume_uses_the_provenance_record(models, inputs, tmp_path):
    """A finished volume is skipped only when its record matches this run (the input, every
    setting, the weights); another setting or a changed input redoes it, or with
    overwrite_changed=False refuses it naming the difference; a missing output redoes it."""
    work = tmp_path / "in"
    work.mkdir()
    shutil.copy(inputs / "file_a.h5", work / "file_a.h5")
    options = {"initializer": "zero_filled", "t0": 0.0}
    assert build(models, tmp_path / "out", **options).run(work).results[0].status == "done"
    refused = build(models, tmp_path / "out", **options, acceleration=2.0, overwrite_changed=False).run(work)
    assert refused.results[0].status == "failed"
    assert "acceleration: 4 -> 2" in refused.results[0].error and "overwrite_changed=False" in refused.results[0].error
    assert build(models, tmp_path / "out", **options, acceleration=2.0).run(work).results[0].status == "done"
    assert build(models, tmp_path / "out", **options, acceleration=2.0).run(work).results[0].status == "skipped"
    with h5py.File(work / "file_a.h5", "a") as handle:  # same name, other data
        handle["kspace"][0, 0, 0, 0] += 1.0
    assert build(models, tmp_path / "out", **options, acceleration=2.0).run(work).results[0].status == "done"
    (tmp_path / "out" / "file_a.nii.gz").unlink()
    again = build(models, tmp_path / "out", **options, acceleration=2.0, overwrite_changed=False).run(work)
    assert again.results[0].status == "failed" and "missing output file_a.nii.gz" in again.results[0].error
    assert build(models, tmp_path / "out", **options, acceleration=2.0).run(work).results[0].status == "done"
    assert (tmp_path / "out" / "file_a.nii.gz").is_file()


def test_t0_auto_uses_the_calibration_per_acceleration(models, inputs, tmp_path):
    calibrated = tmp_path / "models"
    shutil.copytree(models, calibrated)
    (calibrated / "calibration.json").write_text(json.dumps({"t0": {"4": 0.5, "8": 0.2}}))
    mask = np.zeros(rd.SIZE, dtype=np.float32)
    mask[14:18] = 1
    mask[::8] = 1  # 7 of 32 columns: acceleration ~4.6, nearest calibrated 4
    sparse = np.zeros(rd.SIZE, dtype=np.float32)
    sparse[14:18] = 1  # 4 of 32: acceleration 8
    rd.write_volume(tmp_path / "in" / "t4.h5", mask=mask, target=False)
    rd.write_volume(tmp_path / "in" / "t8.h5", mask=sparse, target=False)
    report = build(calibrated, tmp_path / "out", t0="auto", initializer="zero_filled").run(tmp_path / "in")
    assert [(r.t0, r.nfe) for r in report.results] == [(0.5, 5.0), (pytest.approx(0.2), 2.0)]


def test_per_slice_t0_from_the_bundle_is_estimated_within_the_network_budget(models, inputs, tmp_path):
    """The bundle with its per-slice selector (``--set inferer#t0_selector=@t0_per_slice``, not the default:
    benchmarks/results/real_validation/calibration_val.md): EstimatedT0 with calibration.json's
    factor for the initializer; a larger factor starts later, each slice's NFE (probes included)
    stays within max_nfe."""
    from ccdf_mri.diffusion.t0 import EstimatedT0

    results = {}
    for factor in (0.5, 4.0):
        calibrated = tmp_path / f"models_{factor}"
        shutil.copytree(models, calibrated)
        (calibrated / "calibration.json").write_text(json.dumps({"factor": {"zero_filled": factor}}))
        recon = build(calibrated, tmp_path / f"out_{factor}", t0="auto", initializer="zero_filled",
                      **{"inferer#t0_selector": "@t0_per_slice", "t0_per_slice#max_nfe": 8})
        assert isinstance(recon.inferer.t0_selector, EstimatedT0) and recon.inferer.t0_selector.factor == factor
        results[factor] = recon.run(inputs).results
    for low, high in zip(results[0.5], results[4.0]):
        assert low.status == high.status == "done"
        assert low.t0 < high.t0 <= 5 / FAST["num_steps"]  # (8 - 3 probes) / N
        assert high.nfe <= 8 and high.nfe == pytest.approx(round(high.t0 * FAST["num_steps"]) + 3)


def test_t0_auto_without_calibration_follows_theorem_2(tmp_path):
    from ccdf_mri.diffusion import VPSchedule
    from ccdf_mri.diffusion.t0 import PRIOR_NMSE, CalibratedT0, load_t0_table
    from ccdf_mri.diffusion.theory import select_t0

    sub = VPSchedule(num_train_steps=1000).sub_schedule(100)
    for name in ("unet", "zero_filled"):
        expected = select_t0(PRIOR_NMSE[name] * 2, sub, "ddim", 1)
        assert CalibratedT0(None, name, "ddim").t0_for(8.0, sub) == expected
        assert 0 < expected < 1
    short = VPSchedule(num_train_steps=100).sub_schedule(50)  # too short a ladder to contract enough
    assert CalibratedT0(None, "unet").t0_for(4.0, short) == 1.0
    assert CalibratedT0({4.0: 0.3, 8.0: 0.1}).t0_for(7.0, sub) == 0.1
    # a missing table is the Theorem-2 fallback; a broken one is an error naming the file
    assert load_t0_table(tmp_path / "calibration.json") is None
    (tmp_path / "calibration.json").write_text("{")
    with pytest.raises(ValueError, match="calibration.json"):
        CalibratedT0(tmp_path / "calibration.json")


# ----------------------------------------------------------------------------- bad input
def _bad_inputs(folder: Path, good: Path) -> dict:
    folder.mkdir()
    shutil.copy(good, folder / "good.h5")
    with h5py.File(folder / "not_fastmri.h5", "w") as handle:
        handle["image"] = np.zeros((2, 2))
    data = (folder / "good.h5").read_bytes()
    (folder / "truncated.h5").write_bytes(data[: len(data) // 2])
    kspace = np.zeros((2, 2, 30, rd.SIZE), np.complex64)
    header = make_ismrmrd_header((rd.SIZE, rd.SIZE, 1), (rd.SIZE, rd.SIZE, 1), (64, 64, 3), (64, 64, 3))
    write_fastmri_h5(folder / "wrong_shape.h5", kspace, header, {"max": 1.0})
    (folder / "text.h5").write_text("not hdf5")
    return {"not_fastmri": "kspace", "truncated": "truncated", "wrong_shape": "disagrees", "text": "HDF5"}


def test_bad_files_are_reported_and_the_rest_processed(models, inputs, tmp_path):
    expected = _bad_inputs(tmp_path / "in", inputs / "file_a.h5")
    report = build(models, tmp_path / "out", initializer="zero_filled", t0=0.0).run(tmp_path / "in")
    status = {r.name: r for r in report.results}
    assert status["good"].status == "done"
    for name, word in expected.items():
        assert status[name].status == "failed", name
        assert f"{name}.h5" in status[name].error
        assert word in status[name].error, status[name].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "good.h5", "good.nii.gz", "good.provenance.json", "metrics.csv"
    ]
    with pytest.raises(RuntimeError, match="4 of 5 input"):
        report.raise_if_failed()


def test_folders_expand_to_their_volumes_without_map_sidecars(tmp_path):
    for name in ("b.h5", "a.h5", "a.maps.h5", "notes.txt", "sub/c.H5"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    assert find_inputs([tmp_path, tmp_path / "a.h5", tmp_path / "z.h5"]) == [
        tmp_path / "a.h5",
        tmp_path / "b.h5",
        tmp_path / "sub" / "c.H5",  # recursive and any letter case by default
        tmp_path / "z.h5",
    ]


def test_missing_input_and_output_over_input(models, inputs, tmp_path):
    shutil.copy(inputs / "file_a.h5", tmp_path / "file_a.h5")
    report = build(models, tmp_path, initializer="zero_filled", t0=0.0).run([tmp_path / "file_a.h5", tmp_path / "gone.h5"])
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert "overwrite the input" in report.results[0].error and "gone.h5" in report.results[1].error
    assert FastMRIVolume(tmp_path / "file_a.h5").num_slices == rd.NUM_SLICES  # input untouched


def test_a_failed_write_leaves_nothing(models, inputs, tmp_path, monkeypatch):
    import ccdf_mri.io.writers as writers

    def broken(path, reconstruction):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "save_submission_h5", broken)
    report = build(models, tmp_path, initializer="zero_filled", t0=0.0).run(inputs / "file_a.h5")
    assert report.results[0].status == "failed" and "No space left" in report.results[0].error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"t0": 1.5}, "t0"),
        ({"t0": -0.1}, "t0"),
        ({"t0": "soon"}, "t0"),
        ({"mask": "spiral"}, "mask"),
        ({"maps": "magic"}, "maps"),
        ({"formats": "nifti,png"}, "formats"),
        ({"sampler": "euler"}, "sampler"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_fail_before_any_work(models, options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        build(models, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder_is_named(models, inputs, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    reconstructor = build(models, blocker / "out", initializer="zero_filled", t0=0.0)
    with pytest.raises(PermissionError, match="a_file/out"):
        reconstructor.run(inputs)


def test_evaluate_folders_matches_the_run_metrics(models, inputs, tmp_path):
    report = build(models, tmp_path, initializer="zero_filled", t0=0.0).run(inputs)
    evaluated = evaluate_folders(tmp_path, inputs)
    for ran, scored in zip(report.results, evaluated.results):
        assert scored.metrics == pytest.approx(ran.metrics, rel=1e-6)
    (tmp_path / "file_b.h5").unlink()
    assert [r.status for r in evaluate_folders(tmp_path, inputs).results] == ["done", "failed"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_keeps_data_on_the_device_and_matches_cpu(models, inputs, tmp_path):
    """device='cuda': the batch lives on the GPU; the deterministic part (t0 = 0, U-Net) equals
    the CPU result; the diffusion (CUDA random streams differ from CPU ones) is reproducible."""
    cuda = build(models, tmp_path / "cuda0", initializer="unet", t0=0.0, device="cuda")
    assert cuda.device.type == "cuda" and next(cuda.initializer.network.parameters()).is_cuda
    with FastMRIVolume(inputs / "file_a.h5") as volume:
        data = cuda.preprocessing(volume_batch(volume, [0, 1], None, cuda.device))
    assert data["kspace"].is_cuda and data["maps"].is_cuda and data["scale"].is_cuda
    cuda.run(inputs)
    build(models, tmp_path / "cpu0", initializer="unet", t0=0.0, device="cpu").run(inputs)
    for name in ("file_a.h5", "file_b.h5"):
        np.testing.assert_allclose(read_h5(tmp_path / "cuda0" / name), read_h5(tmp_path / "cpu0" / name), rtol=1e-3, atol=1e-4)
    for run in ("first", "second"):
        build(models, tmp_path / run, t0=0.5, device="cuda", num_samples=2).run(inputs)
    first, second = read_h5(tmp_path / "first" / "file_a.h5"), read_h5(tmp_path / "second" / "file_a.h5")
    assert np.isfinite(first).all()
    np.testing.assert_allclose(first, second, rtol=1e-4, atol=1e-5)


def test_prefetching_the_next_batch_changes_nothing(models, inputs, tmp_path):
    """The overlapped pipeline (next batch read and preprocessed in a background thread) gives
    bit-identical outputs to the plain loop."""
    outs = {}
    for prefetch in (True, False):
        recon = from_bundle(None, rd.bundle_overrides(models, tmp_path / str(prefetch), t0=0.5, num_steps=10, batch_size=1,
                                                      prefetch=prefetch))
        assert recon.prefetch is prefetch
        recon.run(inputs)
        outs[prefetch] = {p.name: read_h5(p) for p in sorted((tmp_path / str(prefetch)).glob("*.h5"))}
    assert outs[True].keys() == outs[False].keys() and len(outs[True]) == 2
    for name in outs[True]:
        np.testing.assert_array_equal(outs[True][name], outs[False][name])


def test_writing_in_the_background_overlaps_the_next_volume_and_changes_nothing(models, inputs, tmp_path, monkeypatch):
    """run() writes and scores a volume in a writer thread while the next one is reconstructed:
    the first volume's writing waits (here) until the second volume's reconstruction has
    started, which only an overlapped run can do; the outputs, metrics and order equal the
    plain loop's."""
    import threading

    next_started = threading.Event()
    original_compute, original_complete = Reconstructor.compute, Reconstructor.complete
    writer_threads = []

    def compute(self, path, name=None):
        if Path(path).name == "file_b.h5":
            next_started.set()
        return original_compute(self, path, name)

    def complete(self, job):
        writer_threads.append(threading.current_thread().name)
        if self.background_writes and job.result.name == "file_a":
            assert next_started.wait(timeout=60), "the next volume did not start while this one was written"
        return original_complete(self, job)

    monkeypatch.setattr(Reconstructor, "compute", compute)
    monkeypatch.setattr(Reconstructor, "complete", complete)
    reports, outs = {}, {}
    for background in (True, False):
        recon = from_bundle(None, rd.bundle_overrides(models, tmp_path / str(background), t0=0.3, num_steps=10,
                                                      background_writes=background))
        assert recon.background_writes is background
        reports[background] = recon.run(inputs)
        outs[background] = {p.name: read_h5(p) for p in sorted((tmp_path / str(background)).glob("*.h5"))}
    assert build(models, tmp_path / "auto").background_writes is False  # auto: CUDA only
    with pytest.raises(ValueError, match="background_writes"):
        build(models, tmp_path / "bad", background_writes="sometimes")
    assert all(name.startswith("ccdf-writer") for name in writer_threads[:2])
    assert not any(name.startswith("ccdf-writer") for name in writer_threads[2:])
    assert [r.name for r in reports[True].results] == [r.name for r in reports[False].results] == ["file_a", "file_b"]
    assert [r.metrics for r in reports[True].results] == [r.metrics for r in reports[False].results]
    assert all(r.status == "done" and r.metrics for r in reports[True].results)
    assert outs[True].keys() == outs[False].keys() and len(outs[True]) == 2
    for name in outs[True]:
        np.testing.assert_array_equal(outs[True][name], outs[False][name])
