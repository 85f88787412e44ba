"""t0 calibration: the fixed t0 per acceleration and the estimator's factor per initializer."""

import json
import math

import pytest
import torch

from ccdf_mri import calibration
from ccdf_mri.diffusion import VPSchedule
from ccdf_mri.diffusion.t0 import EstimatedT0, load_t0_table
from recon_data import use_tiny_models, write_models, write_volume


@pytest.fixture()
def setup(tmp_path):
    data = tmp_path / "val"
    data.mkdir()
    write_volume(data / "val_a.h5")
    models = write_models(tmp_path / "models")
    return data, models


def test_calibration_writes_the_fixed_t0_and_a_factor_per_initializer(setup, monkeypatch, tmp_path):
    data, models = setup
    monkeypatch.setattr(calibration, "CENTER_FRACTIONS", {4.0: 0.125})  # 4 centre lines of 32
    use_tiny_models(monkeypatch)  # the calibration builds the bundle's parts
    args = ["--data", str(data), "--models", str(models), "--accelerations", "4", "--grid", "0.2", "0.5",
            "--steps", "10", "--initializers", "zero_filled", "cg_sense", "--records", str(tmp_path / "records.json")]
    assert calibration.main(args) == 0
    stored = json.loads((models / "calibration.json").read_text())
    errors = stored["nmse"]["4"]  # the bundle's default initializer (cg_sense)
    assert stored["t0"]["4"] == float(min(errors, key=errors.get))
    assert load_t0_table(models / "calibration.json") == {4.0: stored["t0"]["4"]}
    assert set(stored["factor"]) == {"zero_filled", "cg_sense", "default"}
    assert stored["factor"]["default"] == stored["factor"]["cg_sense"]  # the bundle's initializer, for uncalibrated ones
    for init, factor in stored["factor"].items():
        assert factor in calibration.FACTORS
        assert EstimatedT0(table=models / "calibration.json", initializer=init).factor == factor
    records = json.loads((tmp_path / "records.json").read_text())
    assert {r["initializer"] for r in records} == {"zero_filled", "cg_sense"} and all(set(r["grid"]) == {"0.2", "0.5"} for r in records)


def test_fit_factor_recovers_the_ratio_of_the_best_start_to_the_estimated_noise():
    """Slices whose PSNR(t0) peaks where sigma_{N'} = 2 sigma_hat give a factor of 2 (closed form)."""
    sub = VPSchedule().sub_schedule(1000)
    grid = calibration.T0_GRID
    rows = []
    for sigma_hat in (0.05, 0.1, 0.2):
        level = int(torch.searchsorted(sub.sigmas.double(), torch.tensor(2 * sigma_hat, dtype=torch.float64)))
        best = level / 1000
        rows.append({"sigma_hat": sigma_hat, "grid": {f"{t0:g}": {"psnr": 40 - 5 * abs(math.log(t0 / best))} for t0 in grid}})
    factor, means = calibration.fit_factor(rows, sub)
    assert factor == pytest.approx(2.0, rel=0.2)
    assert means[factor] == max(means.values())


def test_calibration_without_files_reports_the_folder(tmp_path, setup, capsys):
    _, models = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    assert calibration.main(["--data", str(empty), "--models", str(models)]) == 2
    assert "empty" in capsys.readouterr().err
    assert not (models / "calibration.json").exists()
