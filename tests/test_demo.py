"""``make demo``'s driver: builds the test split if absent, runs three methods, writes table and figure."""

import json

import numpy as np
import pytest

import recon_data as rd
from ccdf_mri import demo
from ccdf_mri.io import FastMRIVolume
from ccdf_mri.metrics import volume_metrics


def test_demo_builds_data_reconstructs_three_ways_and_writes_a_figure(tmp_path, capsys, monkeypatch):
    rd.use_tiny_models(monkeypatch)  # the demo runs the bundle's parts
    models = rd.write_models(tmp_path / "models", num_train_steps=20)
    (models / "calibration.json").write_text(json.dumps({"t0": {"4": 0.25}, "num_samples": 2}))
    args = ["--data", str(tmp_path / "corpus"), "--out", str(tmp_path / "out"), "--models", str(models),
            "--volumes", "1", "--slices", "2", "--steps", "8", "--quiet"]
    assert demo.main(args) == 0
    files = sorted((tmp_path / "corpus" / "test").glob("*.h5"))
    assert len(files) == 1
    table = capsys.readouterr().out
    for method in demo.METHODS:
        assert method in table
        assert (tmp_path / "out" / method / f"{files[0].stem}.nii.gz").exists()
    # the CCDF row used the calibrated pair: t0 0.25 and K = 2 samples, 2 x round(0.25 * 8) = 4 evaluations
    ccdf_row = next(line for line in table.splitlines() if line.startswith("ccdf"))
    assert ccdf_row.split()[-2:] == ["4", "0.25"]
    assert (tmp_path / "out" / "ccdf" / f"{files[0].stem}_std.nii.gz").exists()
    assert (tmp_path / "out" / "demo_comparison.png").stat().st_size > 10_000
    # the table's PSNR is the fastMRI PSNR against the noise-free image
    with FastMRIVolume(files[0]) as volume:
        target = np.stack([volume.target_slice(i, demo.TARGET_KEY) for i in range(volume.num_slices)])
    import h5py

    with h5py.File(tmp_path / "out" / "start" / f"{files[0].stem}.h5") as handle:
        psnr = volume_metrics(target, handle["reconstruction"][()])["psnr"]
    start_row = next(line for line in table.splitlines() if line.startswith("start"))
    assert float(start_row.split()[1]) == pytest.approx(psnr, abs=0.01)


def test_demo_without_models_names_the_missing_files(tmp_path, capsys):
    assert demo.main(["--models", str(tmp_path), "--data", str(tmp_path / "d"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "score_net.pt" in err and str(tmp_path) in err
