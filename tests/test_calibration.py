"""t0 calibration: picks the measured best candidate and feeds ``t0="auto"``."""

import json

import pytest

from ccdf_mri import calibration
from ccdf_mri.diffusion.t0 import load_t0_table
from recon_data import use_tiny_models, write_models, write_volume


@pytest.fixture()
def setup(tmp_path):
    data = tmp_path / "val"
    data.mkdir()
    write_volume(data / "val_a.h5")
    models = write_models(tmp_path / "models")
    return data, models


def test_calibration_keeps_the_lowest_error_candidate_and_writes_the_table(setup, monkeypatch):
    data, models = setup
    monkeypatch.setattr(calibration, "CENTER_FRACTIONS", {4.0: 0.125})  # 4 centre lines of 32
    use_tiny_models(monkeypatch)  # the calibration builds the bundle's parts
    args = ["--data", str(data), "--models", str(models), "--accelerations", "4", "--candidates", "0.2", "0.5",
            "--steps", "10"]
    assert calibration.main(args) == 0
    stored = json.loads((models / "calibration.json").read_text())
    errors = stored["nmse"]["4"]
    best = min(errors, key=errors.get)
    assert stored["t0"]["4"] == float(best)
    assert load_t0_table(models / "calibration.json") == {4.0: float(best)}
    assert stored["initializer_nmse"]["4"] > 0


def test_calibration_without_files_reports_the_folder(tmp_path, setup, capsys):
    _, models = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    assert calibration.main(["--data", str(empty), "--models", str(models)]) == 2
    assert "empty" in capsys.readouterr().err
    assert not (models / "calibration.json").exists()
