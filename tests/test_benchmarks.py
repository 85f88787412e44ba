"""Smoke-plus-property test of the quality benchmark's core on a tiny synthetic folder.

Runs ``benchmarks.quality_vs_nfe.run`` with tiny random networks on two 64x64, 4-coil
fastMRI-format files and checks the table's columns, that the network evaluations equal
``round(t0 * N)``, and that the reported NMSE / PSNR / SSIM equal ``ccdf_mri.metrics`` on
the saved outputs (per volume, mean over volumes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sigpy.mri
import torch

from benchmarks import common, quality_vs_nfe
from ccdf_mri.diffusion import VPSchedule
from ccdf_mri.io.fastmri import write_fastmri_h5
from ccdf_mri.io.header import make_ismrmrd_header
from ccdf_mri.metrics import volume_metrics
from ccdf_mri.physics import fft2c

SIZE, COILS, SLICES = 64, 4, 2  # 64 columns: a 4x, 8% mask keeps 5 centre lines (the one path needs >= 4)


class TinyEps(torch.nn.Module):
    """A random epsilon 'network' ``(B, 2, H, W), (B,) -> (B, 2, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        assert timesteps.dtype == torch.long and timesteps.shape == x.shape[:1]
        return 0.1 * self.conv(x)


class TinyUNet(torch.nn.Module):
    """A random residual initializer ``(B, 2, H, W) -> (B, 2, H, W)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.01 * self.conv(x)


def _write_volume(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : SIZE * 1j, -1 : 1 : SIZE * 1j]
    maps = sigpy.mri.birdcage_maps((COILS, SIZE, SIZE)).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    images = []
    for _ in range(SLICES):
        radius = 0.5 + 0.3 * rng.random()
        image = (xx**2 + yy**2 < radius**2) * (1.0 + rng.random((SIZE, SIZE)) * 0.2)
        images.append((image * np.exp(1j * 0.5 * xx)).astype(np.complex64))
    coil_images = np.stack(images)[:, None] * maps[None]
    kspace = fft2c(torch.from_numpy(coil_images)).numpy()
    target = np.sqrt((np.abs(coil_images) ** 2).sum(1)).astype(np.float32)
    header = make_ismrmrd_header((SIZE, SIZE, 1), (SIZE, SIZE, 1), (200.0, 200.0, 5.0), (200.0, 200.0, 5.0))
    attrs = {"max": float(target.max()), "norm": float(np.linalg.norm(target)), "acquisition": "AXT1",
             "patient_id": path.stem}
    write_fastmri_h5(path, kspace, header, attrs, targets={"reconstruction_rss": target})


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    for split, seeds in (("test", (1, 2)), ("val", (3,))):
        (tmp_path / split).mkdir()
        for seed in seeds:
            _write_volume(tmp_path / split / f"vol{seed}.h5", seed)
    return tmp_path


def test_quality_core_columns_nfe_and_metrics(corpus: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    models = common.Models(TinyEps(), TinyUNet(), VPSchedule(), {"score_net": "tiny random", "unet": "tiny random"})
    out = tmp_path / "results"
    args = quality_vs_nfe.parse_args([
        "--data", str(corpus), "--out", str(out), "--settings", "equispaced_fraction-4x", "--maps", "acs",
        "--max-slices", "3", "--heavy-slices", "1", "--heavy-nfe", "15", "--val-slices", "1",
        "--l1-grid", "0.001", "0.01", "--save-recons", "--threads", "1",
        "--methods", "zero_filled", "l1_wavelet", "unet", "noise-ddpm-N20", "ccdf-ddpm-N100-t0=0.0[25]",
        "ccdf-ddim-N100-t0=0.1", "ccdf-ddpm-N100-t0=0.1-dcx0", "ccdf-ddpm-N100-auto",
    ])
    payload = quality_vs_nfe.run(args, log=lambda message: None, models=models)

    written = json.loads((out / "quality_vs_nfe.json").read_text())
    assert (out / "quality_vs_nfe.png").stat().st_size > 0
    header = (out / "quality_vs_nfe.md").read_text()
    assert "| " + " | ".join(title for _, title in quality_vs_nfe.COLUMNS) + " |" in header

    rows = written["rows"]
    expected = {"zero_filled", "l1_wavelet", "unet", "noise-ddpm-N20", "ccdf-ddpm-N100-t0=0.02",
                "ccdf-ddpm-N100-t0=0.05", "ccdf-ddim-N100-t0=0.1", "ccdf-ddpm-N100-t0=0.1-dcx0",
                "ccdf-ddpm-N100-auto"}
    assert {row["method"] for row in rows} == expected
    for row in rows:
        assert set(key for key, _ in quality_vs_nfe.COLUMNS) <= set(row)
        t0, steps = (row["t0_used"] if row["t0"] == "auto" else row["t0"]), row["num_steps"]
        assert row["nfe"] == (0 if t0 is None else round(float(t0) * steps))
        # methods above --heavy-nfe 15 (the 20-step run from noise, ...) ran on the first slice only
        assert row["slices"] == (1 if row["nfe"] > 15 else 3)
    for record in written["records"]:
        steps = next(r["num_steps"] for r in rows if r["method"] == record["method"])
        assert record["nfe"] == (0 if record["t0"] is None else round(record["t0"] * steps))

    for row in rows:
        folder = out / "recons" / row["setting"] / row["method"]
        per_volume = []
        for path in sorted(folder.glob("*.npz")):
            saved = np.load(path)
            assert saved["pred"].shape == saved["target"].shape and saved["pred"].shape[1:] == (SIZE, SIZE)
            per_volume.append(volume_metrics(saved["target"], saved["pred"]))
        assert len(per_volume) == row["volumes"]
        for metric in ("nmse", "psnr", "ssim"):
            assert row[metric] == pytest.approx(np.mean([v[metric] for v in per_volume]), rel=1e-9, abs=1e-12)

    by_name = {row["method"]: row for row in payload["rows"]}
    # the U-Net is near-identity on the zero-filled image: its quality must stay close to it
    assert abs(by_name["unet"]["psnr"] - by_name["zero_filled"]["psnr"]) < 3.0
    assert payload["l1_lambda"]["equispaced_fraction-4x"] in (0.001, 0.01)
    auto = payload["auto_t0"]["equispaced_fraction-4x N=100"]["t0"]
    assert by_name["ccdf-ddpm-N100-auto"]["t0_used"] == auto and 0 < auto <= 1


def test_plan_respects_budget_and_priority() -> None:
    settings = common.mask_settings_by_label(["equispaced_fraction-4x", "equispaced_fraction-8x"])
    methods = quality_vs_nfe.build_methods(quick=True)
    kwargs = dict(num_slices=3, heavy_slices=1, heavy_nfe=200, step_seconds=1.0, auto_t0s={}, num_train_steps=1000)
    everything, dropped, total = quality_vs_nfe.plan(settings, methods, budget_seconds=None, **kwargs)
    assert dropped == [] and all(everything[s.label] == methods for s in settings)
    # NFE x slices: the 1000-step run from noise counts once (heavy subset of 1 slice)
    expected = sum(m.expected_nfe(0.1) * (1 if m.expected_nfe(0.1) > 200 else 3) for m in methods) * len(settings)
    assert total == pytest.approx(expected)

    budget = 1500.0
    chosen, dropped, total = quality_vs_nfe.plan(settings, methods, budget_seconds=budget, **kwargs)
    assert total <= budget and dropped
    for setting in settings:
        kept = chosen[setting.label]
        assert kept[:4] == list(quality_vs_nfe.BASELINES)  # 0-NFE baselines always fit
        assert "ccdf-ddpm-N100-t0=0.2" in [m.name for m in kept]  # the claim comes before the variants
    assert "noise-ddpm-N1000" in [m.name for m in chosen["equispaced_fraction-4x"]]
    assert any("noise-ddpm-N1000" in text for text in dropped)  # ... but not twice in 1500 s


# --------------------------------------------------------------------------- speed, step cost, GPU check
def shipped_steps(num_steps: int, acceleration: float = 4.0) -> int:
    """Reverse steps of the shipped calibrated t0 (``models/calibration.json``) on a ladder of ``num_steps``."""
    from benchmarks import common
    from ccdf_mri.diffusion.t0 import load_t0_table

    return round(load_t0_table(common.DEFAULT_MODELS_DIR / "calibration.json")[acceleration] * num_steps)


def shipped_nfe(num_steps: int, acceleration: float = 4.0, samples: int | None = None) -> int:
    """Network evaluations per slice of the shipped defaults: ``K`` samples (the calibrated one
    unless given) times :func:`shipped_steps`."""
    from benchmarks import common
    from ccdf_mri.diffusion.t0 import calibrated_samples

    k = calibrated_samples(common.DEFAULT_MODELS_DIR / "calibration.json") if samples is None else samples
    return k * shipped_steps(num_steps, acceleration)


def test_speed_reports_every_stage_whole_runs_and_the_roofline(tmp_path: Path) -> None:
    """``benchmarks.speed`` on a tiny synthetic volume (64x72 k-space, 2x readout oversampling) with
    the shipped bundle: every pipeline stage timed, the CCDF step split adds up, both prefetch
    modes run, and the roofline's FLOP/s is the counted FLOPs over the measured network time."""
    from benchmarks import speed

    args = speed.parse_args(["--geometry", "tiny", "--slices", "2", "--batch", "2", "--repeats", "1", "--threads", "1",
                             "--set", "num_steps=250", "--out", str(tmp_path), "--name", "speed_test"])
    payload = speed.run(args, log=lambda message: None)
    stages = payload["stages"]
    for key in ("read", "crop_mask", "maps_acs", "maps_espirit", "sense_scale", "preprocessing_total", "initializer",
                "t0", "write_volume"):
        assert stages[key]["median"] > 0, key
    assert stages["image_shape"] == [32, 72]  # readout crop 64 -> 32 rows by the one path
    ccdf = stages["ccdf"]
    assert ccdf["steps"] == shipped_steps(250) and ccdf["nfe"] == [shipped_nfe(250)] * 2
    assert ccdf["network_per_step"] > 0 and ccdf["dc_per_step"] > 0  # the DC is timed through the inferer's bound map
    parts = ccdf["network_per_step"] + ccdf["dc_per_step"] + ccdf["rest_per_step"]
    assert parts * ccdf["steps"] == pytest.approx(ccdf["seconds"]["median"], rel=1e-6)
    assert set(payload["runs"]) == {"prefetch_on", "prefetch_off"}
    assert all(run["median"] > 0 and run["slices"] == 2 for run in payload["runs"].values())
    line = payload["roofline"]
    assert line["flops"] > 0 and line["achieved_flops"] == pytest.approx(line["flops"] / ccdf["network_per_step"])
    text = (tmp_path / "speed_test.md").read_text()
    assert "coil maps: ESPIRiT (torch)" in text and "prefetch_off" in text and "% of the" in text


def test_step_cost_variants_and_quality(corpus: Path, tmp_path: Path) -> None:
    """``benchmarks.step_cost``: the parts of a step, the channels-last variant equal to the plain
    path to rounding, and the quality check through the bundle config's inferer overrides."""
    from benchmarks import step_cost

    args = step_cost.parse_args(["--size", "32", "--coils", "4", "--reps", "1", "--threads", "1", "--variants", "plain",
                                 "channels_last", "--quality-slices", "1", "--data", str(corpus), "--set",
                                 "num_steps=250", "--out", str(tmp_path)])
    result = step_cost.run(args, log=lambda message: None)
    parts = result["parts"]["median_seconds"]
    assert parts["step_proximal"] > parts["dc_proximal"] > 0 and parts["network"] > 0
    variants = result["variants"]["variants"]
    assert variants["channels_last"]["epsilon_relative_difference"] < 1e-5
    assert variants["plain"]["epsilon_relative_difference"] == 0.0
    quality = result["quality"]["summary"]
    assert quality["plain"]["nfe"] == shipped_nfe(250) and abs(quality["channels_last"]["delta_max_abs"]) < 0.01
    assert "Speed options" in (tmp_path / "step_cost.md").read_text()


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_on_the_cpu(corpus: Path, tmp_path: Path) -> None:
    """``benchmarks.gpu_check --smoke``: every step of the device script runs end to end on the CPU
    (tiny sizes) and writes its report; torchrun's output equals the single-process run."""
    from benchmarks import gpu_check

    out = tmp_path / "out"
    results = gpu_check.run(gpu_check.parse_args(["--smoke", "--repeats", "1", "--out", str(out), "--demo",
                                                  str(corpus / "test")]), log=lambda message: None)
    assert results["errors"] == {} and results["skipped"] == []
    steps = results["steps"]
    runs = {name: step["result"] for name, step in steps.items() if name.startswith("run: ")}
    assert runs["run: zero-filled (t0 = 0)"]["nfe"] == 0
    assert runs["run: defaults fp32, K = 1"]["nfe"] == shipped_nfe(250, samples=1)
    assert runs["run: defaults bf16, K = 4"]["nfe"] == shipped_nfe(250, samples=4)
    quality = steps["quality fp32 vs bf16"]["result"]
    assert len(quality["psnr_delta_bf16_minus_fp32"]) == 2 and all(abs(delta) < 0.1 for delta in quality["psnr_delta_bf16_minus_fp32"].values())
    assert steps["torchrun"]["result"]["max_relative_difference"] < 1e-5
    profiled = steps["profile"]["result"]
    assert profiled["network"]["flops"] > 0 and profiled["network 4x batch"]["shape"][0] == 4 * profiled["batch"]
    assert profiled["trace inferer"]["wall_ms"] > 0 and profiled["trace initializer"]["top_cpu"]
    assert json.loads((out / "gpu_check.json").read_text())["steps"].keys() == steps.keys()
    assert "Whole runs" in (out / "gpu_check.md").read_text()


def test_overlap_timeline_is_sequential_without_threads_and_complete_with_them(tmp_path: Path) -> None:
    """``benchmarks.overlap`` (tiny volumes, CPU): every setting computes and writes every
    volume once, in order; with both threads off no write overlaps the next compute."""
    from benchmarks import overlap

    args = overlap.parse_args(["--geometry", "tiny", "--volumes", "2", "--slices", "2", "--batch", "2", "--repeats", "1",
                               "--set", "initializer=zero_filled", "t0=0", "--out", str(tmp_path)])
    result = overlap.run(args)
    assert set(result["s_per_slice"]) == set(overlap.SETTINGS)
    for name, events in result["timeline"].items():
        phases = [(phase, volume) for phase, volume, _ in events]
        for volume in ("vol1", "vol2"):
            assert [p for p, v in phases if v == volume] == ["compute begins", "compute ends", "write begins", "write ends"], name
    sequential = [phase for phase, _, _ in result["timeline"]["both off"]]
    assert sequential == ["compute begins", "compute ends", "write begins", "write ends"] * 2
    assert "| both on |" in overlap.to_markdown(result)


def _oracle_payload(slices: list[str]) -> dict:
    """Two slices of an oracle run: x0 30 dB; the grid's best per slice 33 and 35; the table 32 and 35."""
    rows = []
    for name, (a, b, table) in zip(slices, [(33.0, 31.0, 32.0), (34.0, 35.0, 35.0)]):
        rows.append({"initializer": "unet", "slice": name, "x0": {"psnr": 30.0},
                     "grid": {"0.01": {"psnr": a}, "0.05": {"psnr": b}, "0.2": {"psnr": 99.0}},  # 0.2: over the budget
                     "table": {"psnr": table}, "auto": {"psnr": 31.0, "factor_entry": "default"}})
    return {"data": "d/val", "setting": "4x", "grid": [0.01, 0.05, 0.2], "num_steps": 1000, "max_nfe": 50,
            "slices": 2, "num_samples": 1, "records": rows}


def test_oracle_summary_counts_the_affordable_best_per_slice_and_names_a_defaulted_factor() -> None:
    from benchmarks import real_validation as rv

    text = rv.summarize_oracle(_oracle_payload(["s0", "s1"]))
    row = next(line for line in text.splitlines() if line.startswith("| unet"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # oracle = mean(33, 35) = 34 (the 99 dB point needs 200 evaluations); table gain 3.5 of 4; estimate 1 of 4
    assert cells[3] == "34.00" and cells[4] == "33.50" and cells[5] == "31.00"
    assert cells[6] == "88%" and cells[7] == "25%"
    assert "default entry" in text


def test_oracle_reuse_refuses_curves_made_otherwise(tmp_path: Path) -> None:
    import argparse
    from types import SimpleNamespace

    from benchmarks import real_validation as rv

    stored = tmp_path / "old.json"
    stored.write_text(json.dumps(_oracle_payload(["s0", "s1"])))
    args = argparse.Namespace(reuse=stored, data=Path("d"), split="val", setting="4x", grid=[0.01, 0.05, 0.2],
                              steps=1000, max_nfe=50)
    cases = [SimpleNamespace(name="s0"), SimpleNamespace(name="s1")]
    assert [r["slice"] for r in rv.reusable_rows(args, cases)["unet"]] == ["s0", "s1"]
    with pytest.raises(ValueError, match="slices"):
        rv.reusable_rows(args, cases[::-1])
    with pytest.raises(ValueError, match="setting"):
        rv.reusable_rows(argparse.Namespace(**{**vars(args), "setting": "8x"}), cases)


def test_require_done_refuses_a_report_with_a_volume_not_reconstructed_in_this_run() -> None:
    from ccdf_mri.app.report import RunReport, VolumeResult

    done = VolumeResult("a", "a.h5", "done", slices=2)
    assert common.require_done(RunReport([done]), "x").results == [done]
    with pytest.raises(RuntimeError, match="x: b: skipped"):
        common.require_done(RunReport([done, VolumeResult("b", "b.h5", "skipped")]), "x")
    with pytest.raises(RuntimeError, match="no volume"):
        common.require_done(RunReport([]), "x")
