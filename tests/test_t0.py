"""Choosing t0: the calibration table and the per-slice estimate from the score network.

On the Gaussian data model (exact epsilon), an initial estimate made by adding white noise of
known level ``s`` to a prior sample must be found at that level (Issue 13: the estimator's
diffusion level within a stated tolerance of ``s``), and a larger error must give a larger t0.
"""

from __future__ import annotations

import json

import pytest
import torch
from gaussian_model import ExactEpsilon, GaussianImageModel, equispaced_mask, smooth_coil_maps

from ccdf_mri.diffusion import VPSchedule
from ccdf_mri.diffusion.samplers import make_epsilon_fn
from ccdf_mri.diffusion.t0 import CalibratedT0, EstimatedT0, item_accelerations, load_t0_table, nearest_t0, noise_level
from ccdf_mri.physics import SenseOp

MODEL = GaussianImageModel(size=(16, 16), rank=8, top=10.0, decay=0.7, floor=1e-3)
SCHEDULE = VPSchedule()
SUB = SCHEDULE.sub_schedule(1000)
TOLERANCE = 0.15  # relative; the model's eigenvalue floor biases small levels low by about f / s^2


def noisy(levels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    clean = MODEL.sample(len(levels), gen)
    noise = torch.view_as_complex(torch.randn(len(levels), 16, 16, 2, generator=gen))
    return clean + torch.tensor(levels).reshape(-1, 1, 1) * noise


@pytest.mark.parametrize("reference", [(0.05, 0.1, 0.2), (0.5,)])
def test_noise_level_of_a_noisy_prior_sample_is_its_noise(reference):
    levels = [0.1, 0.3, 1.0, 3.0]
    eps_fn = make_epsilon_fn(ExactEpsilon(MODEL, SCHEDULE), SUB)
    found = noise_level(noisy(levels), eps_fn, SUB, reference)
    torch.testing.assert_close(found, torch.tensor(levels, dtype=torch.float64), rtol=TOLERANCE, atol=0.0)


def test_a_larger_error_gives_a_larger_t0_within_bounds():
    levels = [0.1, 0.2, 0.4, 0.8, 1.6]
    net = ExactEpsilon(MODEL, SCHEDULE)
    eps_fn = make_epsilon_fn(net, SUB)
    t0 = EstimatedT0(factor=1.5, t0_min=0.0, t0_max=1.0, reference=(0.3, 0.5))(noisy(levels, 1), None, None, eps_fn, SUB)
    assert torch.all(t0[1:] > t0[:-1])
    # the start level carries 1.5 x the noise found (within the tolerance, and the ladder's step)
    sigma_start = SUB.sigmas.double()[(t0 * 1000).round().long()]
    torch.testing.assert_close(sigma_start, 1.5 * torch.tensor(levels, dtype=torch.float64), rtol=TOLERANCE + 0.02, atol=0.0)
    assert net.calls == 2  # one evaluation per reference level, the batch together
    clamped = EstimatedT0(factor=1.5, t0_min=0.02, t0_max=0.2)(noisy(levels, 1), None, None, eps_fn, SUB)
    assert float(clamped.min()) >= 0.02 and float(clamped.max()) <= 0.2


def test_factor_per_initializer_from_a_calibration_file(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"factor": {"unet": 2.0, "zero_filled": 1.2}}))
    assert EstimatedT0(table=path, initializer="zero_filled").factor == 1.2
    assert EstimatedT0(table=path, initializer="unet").factor == 2.0
    missing = EstimatedT0(table=path, initializer="cg_sense")  # fine for runs with a fixed t0
    with pytest.raises(ValueError, match="cg_sense"):
        missing(noisy([0.1]), None, None, make_epsilon_fn(ExactEpsilon(MODEL, SCHEDULE), SUB), SUB)


def test_calibrated_t0_reads_the_table_per_item_acceleration(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"t0": {"4": 0.1, "8": 0.3}}))
    assert load_t0_table(path) == {4.0: 0.1, 8.0: 0.3} and load_t0_table(tmp_path / "none.json") is None
    assert nearest_t0({4.0: 0.1, 8.0: 0.3}, 5.0) == 0.1 and nearest_t0({4.0: 0.1, 8.0: 0.3}, 7.0) == 0.3
    maps = smooth_coil_maps(4, (16, 16)).expand(2, -1, -1, -1).contiguous()
    masks = torch.zeros(2, 1, 1, 16)
    masks[0, ..., ::4] = 1  # 4 of 16 columns: 4x
    masks[1, ..., 7:9] = 1  # 2 of 16 columns: 8x
    op = SenseOp(maps, masks)
    assert item_accelerations(op) == [4.0, 8.0]
    assert [round(a, 1) for a in item_accelerations(SenseOp(maps, equispaced_mask(16, 4, 2)))] == [3.2, 3.2]
    assert CalibratedT0(path)(None, op, None, None, SUB).tolist() == [0.1, 0.3]
    path.write_text(json.dumps({"t0": {"4": 1.5}}))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        load_t0_table(path)


def test_a_budget_of_network_evaluations_bounds_t0_probes_included():
    """max_nfe: N' + probes <= max_nfe on any ladder; below the budget the estimate is unchanged."""
    levels = [0.05, 0.4, 1.6]
    eps_fn = make_epsilon_fn(ExactEpsilon(MODEL, SCHEDULE), SUB)
    free = EstimatedT0(factor=1.5, t0_min=0.0, t0_max=1.0, reference=(0.3, 0.5))(noisy(levels, 1), None, None, eps_fn, SUB)
    for steps in (1000, 250):
        sub = SCHEDULE.sub_schedule(steps)
        capped = EstimatedT0(factor=1.5, t0_min=0.0, t0_max=1.0, reference=(0.3, 0.5), max_nfe=40)(noisy(levels, 1), None, None, eps_fn, sub)
        assert int((capped * steps).round().max()) + 2 <= 40
    sub = SCHEDULE.sub_schedule(1000)
    capped = EstimatedT0(factor=1.5, t0_min=0.0, t0_max=1.0, reference=(0.3, 0.5), max_nfe=40)(noisy(levels, 1), None, None, eps_fn, sub)
    assert capped.tolist()[0] == free.tolist()[0] < 0.038 and capped.tolist()[-1] == 0.038 < free.tolist()[-1]
    with pytest.raises(ValueError, match="max_nfe"):
        EstimatedT0(max_nfe=3)  # no room beyond the three probes
    # K samples share the budget: K N' + probes <= max_nfe
    two = EstimatedT0(factor=1.5, t0_min=0.0, t0_max=1.0, reference=(0.3, 0.5), max_nfe=40, num_samples=2)(noisy(levels, 1), None, None, eps_fn, sub)
    assert two.tolist()[-1] == 0.019 and int((two * 1000).round().max()) * 2 + 2 <= 40
    # an odd remainder: (41 - 2) / 2 = 19.5 steps per sample must become 19, not round up to 20 (42 > 41)
    odd = EstimatedT0(factor=1.5, t0_min=0.0, t0_max=1.0, reference=(0.3, 0.5), max_nfe=41, num_samples=2)(noisy(levels, 1), None, None, eps_fn, sub)
    assert sub.start_level(float(odd.max())) * 2 + 2 <= 41


def test_an_initializer_without_a_factor_uses_the_default_entry_with_a_warning(tmp_path, caplog):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"factor": {"cg_sense": 2.0, "default": 2.0, "zero_filled": 1.2}}))
    with caplog.at_level("WARNING"):
        assert EstimatedT0(table=path, initializer="unet").factor == 2.0
    assert "no factor calibrated for initializer 'unet'" in caplog.text
    caplog.clear()
    assert EstimatedT0(table=path, initializer="zero_filled").factor == 1.2 and not caplog.text


def test_calibrated_samples_reads_k_or_the_default_and_rejects_bad_values(tmp_path):
    from ccdf_mri.diffusion.t0 import calibrated_samples

    path = tmp_path / "calibration.json"
    assert calibrated_samples(path) == 1 and calibrated_samples(path, default=3) == 3  # no file
    path.write_text(json.dumps({"t0": {"4": 0.02}}))
    assert calibrated_samples(path) == 1  # a table fitted before K was
    path.write_text(json.dumps({"t0": {"4": 0.02}, "num_samples": 2}))
    assert calibrated_samples(path) == 2
    for bad in (0, 1.5, "2", True):
        path.write_text(json.dumps({"t0": {"4": 0.02}, "num_samples": bad}))
        with pytest.raises(ValueError, match="num_samples"):
            calibrated_samples(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="does not parse"):
        calibrated_samples(path)
