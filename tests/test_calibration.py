"""t0 calibration: the fixed t0 per acceleration and the estimator's factor per initializer."""

import json
import math

import pytest
import torch

from ccdf_mri import calibration, calibration_fit
from ccdf_mri.app.calibration_check import check_calibration
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
            "--steps", "10", "--initializers", "zero_filled", "l1_wavelet", "--records", str(tmp_path / "records.json"),
            "--samples", "1", "2", "--max-nfe", "8"]
    assert calibration.main(args) == 0
    stored = json.loads((models / "calibration.json").read_text())
    # the bundle's default initializer (l1_wavelet): K = 2 only where 2 x round(t0 x 10) <= 8
    assert set(stored["nmse"]["1"]["4"]) == {"0.2", "0.5"} and set(stored["nmse"]["2"]["4"]) == {"0.2"}
    k = stored["num_samples"]
    errors = stored["nmse"][str(k)]["4"]
    assert stored["t0"]["4"] == float(min(errors, key=errors.get))
    assert load_t0_table(models / "calibration.json") == {4.0: stored["t0"]["4"]}
    # the bundle runs the pair it was calibrated with
    from ccdf_mri.app.build import from_bundle

    recon = from_bundle(None, {"models_dir": str(models), "output_dir": str(tmp_path / "out"), "num_steps": 10, "progress": False})
    assert recon.inferer.num_samples == k
    # ... and its settings are those the calibration measured with; a changed DC weight is named
    assert check_calibration(recon.inferer, recon.settings()) == []
    other = from_bundle(None, {"models_dir": str(models), "output_dir": str(tmp_path / "out"), "num_steps": 10,
                               "progress": False, "inferer#dc#prior_std": 0.05})
    assert check_calibration(other.inferer, other.settings()) == ["inferer.dc.prior_std: 0.02 -> 0.05"]
    assert set(stored["factor"]) == {"zero_filled", "l1_wavelet", "default"}
    assert stored["factor"]["default"] == stored["factor"]["l1_wavelet"]  # the bundle's initializer, for uncalibrated ones
    for init, factor in stored["factor"].items():
        assert factor in calibration_fit.FACTORS
        assert EstimatedT0(table=models / "calibration.json", initializer=init).factor == factor
    saved = json.loads((tmp_path / "records.json").read_text())
    records = saved["records"]
    assert saved["fitted_with"] == stored["fitted_with"] and set(stored["fitted_with"]["initializers"]) == {"zero_filled", "l1_wavelet"}
    assert {r["initializer"] for r in records} == {"zero_filled", "l1_wavelet"} and all(set(r["grid"]) == {"0.2", "0.5"} for r in records)
    assert all(set(r["samples"]) == {"2"} for r in records if r["initializer"] == "l1_wavelet")
    assert not any("samples" in r for r in records if r["initializer"] == "zero_filled")
    # a rerun reproduces the one-sample curves whatever K the models' calibration now holds
    stored["num_samples"] = 2
    (models / "calibration.json").write_text(json.dumps(stored))
    assert calibration.main(args[:-5] + ["--records", str(tmp_path / "again.json"), "--samples", "1"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())["records"]
    assert [r["grid"] for r in again] == [r["grid"] for r in records]


def _rows(curves):
    """Rows of :func:`calibration.curves` with NMSE ``curves[K][acc][t0]`` on every slice."""
    rows = []
    for acc in curves[1]:
        for _ in range(3):
            row = {"acceleration": acc, "grid": {f"{t0:g}": {"nmse": e} for t0, e in curves[1][acc].items()}, "samples": {}}
            for k, per_acc in curves.items():
                if k > 1:
                    row["samples"][str(k)] = {f"{t0:g}": {"nmse": e} for t0, e in per_acc[acc].items()}
            rows.append(row)
    return rows


def test_fit_samples_chooses_the_pair_of_lowest_error_under_the_budget():
    """N = 1000, budget 50: K = 2 may start at t0 <= 0.025, K = 4 at t0 <= 0.01; the (K, t0)
    pair of lowest error wins even where an unaffordable start would be better."""
    curves = {
        1: {4.0: {0.01: 0.010, 0.025: 0.006, 0.05: 0.005}, 8.0: {0.01: 0.050, 0.025: 0.055, 0.05: 0.060}},
        2: {4.0: {0.01: 0.008, 0.025: 0.004, 0.05: 0.001}, 8.0: {0.01: 0.045, 0.025: 0.050, 0.05: 0.050}},
        4: {4.0: {0.01: 0.007, 0.025: 0.003, 0.05: 0.001}, 8.0: {0.01: 0.044, 0.025: 0.040, 0.05: 0.040}},
    }
    fit = calibration_fit.fit_samples(_rows(curves), [1, 2, 4], num_steps=1000, max_nfe=50)
    # K=1: 0.005 & 0.050; K=2: 0.004 & 0.045 (0.05 unaffordable); K=4: 0.007 & 0.044 (only 0.01)
    assert fit["num_samples"] == 2 and fit["t0"] == {"4": 0.025, "8": 0.01}
    assert set(fit["nmse"]["2"]["4"]) == {"0.01", "0.025"} and set(fit["nmse"]["4"]["8"]) == {"0.01"}
    expected = {k: (10 * math.log10(a) + 10 * math.log10(b)) / 2 for k, (a, b) in {1: (0.005, 0.05), 2: (0.004, 0.045), 4: (0.007, 0.044)}.items()}
    assert fit["nmse_db"] == {str(k): pytest.approx(v) for k, v in expected.items()}
    # without a budget K = 4 at t0 0.05 / 0.025 is best; a tie within the tolerance goes to the smaller K
    assert calibration_fit.fit_samples(_rows(curves), [1, 2, 4], 1000, None)["num_samples"] == 4
    tie = {1: {4.0: {0.01: 0.0101}}, 2: {4.0: {0.01: 0.0100}}}  # K = 2 better by < 1 %
    assert calibration_fit.fit_samples(_rows(tie), [1, 2], 1000, None)["num_samples"] == 1
    with pytest.raises(ValueError, match="budget of 5"):
        calibration_fit.fit_samples(_rows(curves), [1, 2], 1000, 5)


def test_fit_factor_recovers_the_ratio_of_the_best_start_to_the_estimated_noise():
    """Slices whose PSNR(t0) peaks where sigma_{N'} = 2 sigma_hat give a factor of 2 (closed form)."""
    sub = VPSchedule().sub_schedule(1000)
    grid = calibration.T0_GRID
    rows = []
    for sigma_hat in (0.05, 0.1, 0.2):
        level = int(torch.searchsorted(sub.sigmas.double(), torch.tensor(2 * sigma_hat, dtype=torch.float64)))
        best = level / 1000
        rows.append({"sigma_hat": sigma_hat, "grid": {f"{t0:g}": {"psnr": 40 - 5 * abs(math.log(t0 / best))} for t0 in grid}})
    factor, means = calibration_fit.fit_factor(rows, sub)
    assert factor == pytest.approx(2.0, rel=0.2)
    assert means[factor] == max(means.values())


def test_calibration_without_files_reports_the_folder(tmp_path, setup, capsys):
    _, models = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    assert calibration.main(["--data", str(empty), "--models", str(models)]) == 2
    assert "empty" in capsys.readouterr().err
    assert not (models / "calibration.json").exists()


def test_from_records_fits_the_union_of_runs_per_acceleration(tmp_path, capsys):
    """Runs per acceleration (their --records files) give the table of one run over both."""
    curves = {
        1: {4.0: {0.01: 0.010, 0.025: 0.006, 0.05: 0.005}, 8.0: {0.01: 0.050, 0.025: 0.055, 0.05: 0.060}},
        2: {4.0: {0.01: 0.008, 0.025: 0.004}, 8.0: {0.01: 0.045, 0.025: 0.050}},
    }
    rows = _rows(curves)
    for i, row in enumerate(rows):
        row.update(initializer="l1_wavelet", slice=f"s{i % 3}", sigma_hat=0.05)
        for t0, scores in [*row["grid"].items(), *row["samples"]["2"].items()]:
            scores["psnr"] = -10 * math.log10(scores["nmse"])
    paths = []
    for acc in (4.0, 8.0):
        paths.append(tmp_path / f"records_{acc:g}x.json")
        paths[-1].write_text(json.dumps([r for r in rows if r["acceleration"] == acc]))
    models = tmp_path / "models"
    models.mkdir()
    assert calibration.main(["--from-records", *map(str, paths), "--models", str(models), "--samples", "1", "2", "--max-nfe", "50"]) == 0
    stored = json.loads((models / "calibration.json").read_text())
    expected = calibration_fit.fit_samples(rows, [1, 2], 1000, 50)
    assert stored["num_samples"] == expected["num_samples"] == 2 and stored["t0"] == expected["t0"] == {"4": 0.025, "8": 0.01}
    assert stored["fit"]["l1_wavelet"]["num_samples"] == 2 and stored["slices"] == 3 and "records" in stored["data"]
    # the same file twice, or a file that is not records: a clear error, nothing written
    (models / "calibration.json").unlink()
    assert calibration.main(["--from-records", str(paths[0]), str(paths[0]), "--models", str(models)]) == 2
    assert "also in" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text(json.dumps([{"slice": "a"}]))
    assert calibration.main(["--from-records", str(tmp_path / "bad.json"), "--models", str(models)]) == 2
    assert "expected records with keys" in capsys.readouterr().err and not (models / "calibration.json").exists()
