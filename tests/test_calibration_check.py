"""A run compares its settings with those its t0 calibration was fitted with, and says when they differ."""

import json
import logging

import pytest

from ccdf_mri import calibration
from ccdf_mri.app.build import from_bundle
from ccdf_mri.app.calibration_check import calibration_differences, check_calibration, fitted_with
from ccdf_mri.app.describe import describe, flatten
from ccdf_mri.calibration_fit import records_fitted_with
from recon_data import bundle_overrides, use_tiny_models, write_models


@pytest.fixture()
def models(tmp_path, monkeypatch):
    use_tiny_models(monkeypatch)
    return write_models(tmp_path / "models")


def _recon(models, tmp_path, **options):
    return from_bundle(None, {**bundle_overrides(models, tmp_path / "out"), "num_steps": 10, **options})


def _initializer_settings(recon):
    return flatten({"initializer": describe(recon.initializer)})


def _stamp(recon, others=()):
    starts = {"l1_wavelet": _initializer_settings(recon), **{name: _initializer_settings(other) for name, other in others}}
    return fitted_with("l1_wavelet", recon.settings(), starts)


def test_named_initializers_have_the_bundles_options_not_the_library_defaults(models, tmp_path):
    """The calibration and the oracle measure the starts a run with --initializer NAME uses
    (the bundle's cg_lam 0.01, not make_initializer's 0)."""
    config = bundle_overrides(models, tmp_path / "out")
    starts = calibration.named_initializers(["cg_sense", "l1_wavelet", "unet"], None, config)
    for name, start in starts.items():
        assert describe(start) == describe(_recon(models, tmp_path, initializer=name).initializer), name
    assert starts["cg_sense"].lam == 0.01


def test_a_run_with_the_calibrated_settings_matches_and_a_changed_part_is_named(models, tmp_path, caplog):
    recon = _recon(models, tmp_path)
    stamp = _stamp(recon)
    (models / "calibration.json").write_text(json.dumps({"t0": {"4": 0.2}, "fitted_with": stamp}))
    assert check_calibration(recon.inferer, _recon(models, tmp_path).settings()) == []
    changed = _recon(models, tmp_path, **{"inferer#dc#prior_std": 0.05, "sampler": "ddim"})
    with caplog.at_level(logging.WARNING):
        changed.settings()  # the run's first use of its settings checks them, once
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "inferer.dc.prior_std: 0.02 -> 0.05" in warnings[0] and "inferer.sampler: 'ddpm' -> 'ddim'" in warnings[0]
    assert "2 differ" in warnings[0] and "python -m ccdf_mri.calibration" in warnings[0]
    # arrays (the ladder of another N, other weights) are named, not their hashes printed
    other_n = check_calibration(changed.inferer, _recon(models, tmp_path, num_steps=20).settings())
    assert "inferer.sub.sigmas: changed" in other_n and not any("sha256" in d for d in other_n)
    # a fixed t0 does not use the calibration: nothing to compare
    assert check_calibration(_recon(models, tmp_path, t0=0.1, **{"inferer#dc#prior_std": 0.05}).inferer, changed.settings()) is None


def test_another_initializer_is_named_unless_the_selector_has_a_factor_measured_for_it(models, tmp_path):
    l1, cg = _recon(models, tmp_path), _recon(models, tmp_path, initializer="cg_sense")
    only_l1 = _stamp(l1)
    both = _stamp(l1, [("cg_sense", cg)])
    # the (K, t0) table is fitted for the bundle's initializer only
    differences = calibration_differences(both, cg.settings())
    assert differences == ["initializer: 'L1Wavelet' -> 'CGSense'"]
    assert "initializer: 'L1Wavelet' -> 'CGSense'" in calibration_differences(only_l1, cg.settings(), any_initializer=True)
    # a per-slice factor measured for cg_sense covers it; one never measured does not
    assert calibration_differences(both, cg.settings(), any_initializer=True) == []
    # the table's acceleration and t0 themselves are not settings it depends on
    assert calibration_differences(both, _recon(models, tmp_path, acceleration=8, center_fraction=0.04, t0=0.3).settings()) == []


def test_records_of_runs_with_other_settings_are_not_fitted_together(models, tmp_path):
    recon = _recon(models, tmp_path)
    cg = _recon(models, tmp_path, initializer="cg_sense")
    rows = [{"initializer": "l1_wavelet", "slice": "a", "acceleration": 4.0}]
    paths = [tmp_path / f"r{i}.json" for i in range(4)]
    paths[0].write_text(json.dumps({"fitted_with": _stamp(recon), "records": rows}))
    paths[1].write_text(json.dumps({"fitted_with": fitted_with("l1_wavelet", recon.settings(), {"cg_sense": _initializer_settings(cg)}),
                                    "records": rows}))
    other = _recon(models, tmp_path, **{"inferer#dc#prior_std": 0.05})
    paths[2].write_text(json.dumps({"fitted_with": _stamp(other), "records": rows}))
    paths[3].write_text(json.dumps(rows))  # before 0.3.3: says nothing
    merged = records_fitted_with(paths[:2])
    assert set(merged["initializers"]) == {"l1_wavelet", "cg_sense"} and merged["settings"] == _stamp(recon)["settings"]
    with pytest.raises(ValueError, match=r"r2.json: expected records made with the settings of .*r0.json.*inferer.dc.prior_std"):
        records_fitted_with(paths[:3])
    with pytest.raises(ValueError, match=r"r3.json: expected records that say which settings made them"):
        records_fitted_with([paths[0], paths[3]])
    assert records_fitted_with([paths[3]]) is None


def test_the_shipped_calibration_was_fitted_with_the_shipped_settings(tmp_path):
    """Whoever changes a bundle setting the automatic start depends on refits the table (or this fails)."""
    recon = from_bundle(None, {"device": "cpu", "progress": False, "output_dir": str(tmp_path / "out")})
    assert recon.inferer.t0 == "auto"
    assert check_calibration(recon.inferer, recon.settings()) == []
