"""The ``ccdf-mri`` command line: recon, evaluate, info, demo, train, prepare."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import recon_data as rd
from ccdf_mri import cli

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "ccdf_mri_recon"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rd.write_volume(root / "in" / "file_a.h5")
    rd.write_volume(root / "in" / "file_b.h5", rows=2 * rd.SIZE)
    rd.write_models(root / "models")
    return root


def tiny_model_args() -> list:
    """``--set`` options that make the bundle config build the tiny test models."""
    return [arg for key, value in rd.TINY_MODEL_OVERRIDES.items() for arg in ("--set", f"{key}={value}")]


def recon_args(data: Path, out: Path, *extra: str) -> list:
    return [
        "recon", str(data / "in"), "--out", str(out), "--models", str(data / "models"), *tiny_model_args(),
        "--steps", "10", "--t0", "0.5", "--center-fraction", "0.125", "--quiet", *extra,
    ]


def test_recon_defaults_are_the_bundle_config():
    """Options not given on the command line override nothing: the bundle config's values hold."""
    from ccdf_mri.app.build import RECON_KEYS, config_defaults

    config = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    defaults = config_defaults(BUNDLE)
    assert defaults == {key: config[key] for key in RECON_KEYS}
    assert defaults["t0"] == "auto"
    args = cli.build_parser().parse_args(["recon", "in", "--out", "o"])
    assert cli.recon_overrides(args) == {"output_dir": "o"}
    args = cli.build_parser().parse_args(["recon", "in", "--out", "o", "--steps", "7", "--samples", "2", "--quiet"])
    assert cli.recon_overrides(args) == {"output_dir": "o", "num_steps": 7, "num_samples": 2, "progress": False}


def test_recon_writes_outputs_and_exits_zero(data, tmp_path, capsys):
    status = cli.main(recon_args(data, tmp_path, "--initializer", "unet", "--samples", "2", "--formats", "nifti,h5"))
    assert status == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    outputs = [f"{stem}{suffix}" for stem in ("file_a", "file_b") for suffix in (".h5", ".nii.gz", "_std.nii.gz", ".provenance.json")]
    assert names == sorted(outputs + ["metrics.csv"])
    assert capsys.readouterr().out == ""  # --quiet


def test_recon_prints_the_summary_table(data, tmp_path, capsys):
    args = [a for a in recon_args(data, tmp_path, "--initializer", "zero_filled") if a != "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "file_a" in out and "PSNR" in out and "mean" in out and "metrics.csv" in out


def test_recon_goes_on_after_a_bad_file_then_exits_one(data, tmp_path, capsys):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "broken.h5").write_text("not an h5 file")
    args = recon_args(data, tmp_path / "out", "--initializer", "zero_filled")
    args[1:2] = [str(bad / "broken.h5"), str(data / "in" / "file_a.h5")]
    assert cli.main(args) == 1
    assert "broken.h5" in capsys.readouterr().err
    assert (tmp_path / "out" / "file_a.nii.gz").is_file()
    assert not list((tmp_path / "out").glob("broken*"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--t0", "1.5"], "t0"),
        (["--t0", "-1"], "t0"),
        (["--mask", "spiral"], "invalid choice"),
        (["--formats", "nifti,png"], "formats"),
        (["--sampler", "euler"], "invalid choice"),
    ],
)
def test_recon_rejects_bad_options_with_usage_error(data, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as stop:
        cli.main(recon_args(data, tmp_path) + extra)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_recon_unwritable_output_folder_exits_two(data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(recon_args(data, blocker / "out", "--initializer", "zero_filled")) == 2
    err = capsys.readouterr().err
    assert "file/out" in err and "cannot be written" in err


def test_recon_missing_bundle_exits_two(data, tmp_path, capsys):
    assert cli.main(recon_args(data, tmp_path / "out", "--bundle", str(tmp_path / "nobundle"))) == 2
    assert "nobundle" in capsys.readouterr().err


def test_recon_missing_models_exits_two(data, tmp_path, capsys):
    args = recon_args(data, tmp_path / "out")
    args[args.index("--models") + 1] = str(tmp_path / "nowhere")
    assert cli.main(args) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["tpu9", "cuda"])
def test_recon_unusable_device_exits_two(data, tmp_path, capsys, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert cli.main(recon_args(data, tmp_path / "out", "--device", device)) == 2
    assert "device" in capsys.readouterr().err


def test_set_overrides_any_config_id_and_bad_ids_are_usage_errors(data, tmp_path, capsys):
    assert cli.main(recon_args(data, tmp_path / "base", "--initializer", "unet")) == 0
    assert cli.main(recon_args(data, tmp_path / "lam", "--initializer", "unet", "--set", "inferer#dc#lam=0.5")) == 0
    record = json.loads((tmp_path / "lam" / "file_a.provenance.json").read_text())
    assert record["settings"]["inferer.dc.lam"] == 0.5  # reached the inferer's DC map
    with h5py.File(tmp_path / "base" / "file_a.h5") as base, h5py.File(tmp_path / "lam" / "file_a.h5") as lam:
        assert not np.allclose(base["reconstruction"][()], lam["reconstruction"][()])
    capsys.readouterr()
    for bad, message in (
        (["--set", "inferer#dc#lam"], "ID=VALUE"),
        (["--set", "nosuch#x=1"], "'nosuch#x'"),
        (["--set", "inferer#nope=1"], "nope"),
        (["--set", "inferer#dc#lam=-1"], "lam"),
    ):
        assert cli.main(recon_args(data, tmp_path / "bad", *bad)) == 2, bad
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "bad").exists()


def test_no_overwrite_changed_refuses_and_names_the_differing_setting(data, tmp_path, capsys):
    zero_filled = ("--initializer", "zero_filled", "--t0", "0")
    assert cli.main(recon_args(data, tmp_path, *zero_filled)) == 0
    stamp = (tmp_path / "file_a.h5").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(recon_args(data, tmp_path, *zero_filled, "--no-overwrite-changed")) == 0  # same: skipped
    assert cli.main(recon_args(data, tmp_path, *zero_filled, "--acceleration", "2", "--no-overwrite-changed")) == 1
    err = capsys.readouterr().err
    for name in ("file_a", "file_b"):
        assert f"{name}.h5: the outputs of '{name}'" in err
    assert "acceleration: 4 -> 2" in err and "--no-overwrite-changed" in err
    assert (tmp_path / "file_a.h5").stat().st_mtime_ns == stamp  # refused: untouched
    assert cli.main(recon_args(data, tmp_path, *zero_filled, "--acceleration", "2")) == 0  # default: redone
    assert (tmp_path / "file_a.h5").stat().st_mtime_ns != stamp
    assert "acceleration: 4 -> 2" in capsys.readouterr().err  # said why


def test_info_describes_a_file(data, capsys):
    assert cli.main(["info", str(data / "in" / "file_b.h5")]) == 0
    out = capsys.readouterr().out
    assert "(3, 4, 64, 32)" in out and "multi-coil" in out
    assert "recon matrix:    (32, 32, 1)" in out and "reconstruction_rss (3, 32, 32)" in out
    assert "CORPD_FBK" in out


def test_info_names_an_unreadable_file(tmp_path, capsys):
    (tmp_path / "x.h5").write_text("")
    assert cli.main(["info", str(tmp_path / "x.h5")]) == 1
    assert "x.h5" in capsys.readouterr().err


def test_evaluate_scores_predictions(data, tmp_path, capsys):
    assert cli.main(recon_args(data, tmp_path / "pred", "--initializer", "zero_filled", "--t0", "0")) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "pred"), str(data / "in"), "--csv", str(tmp_path / "m.csv")]) == 0
    assert "file_b" in capsys.readouterr().out
    assert (tmp_path / "m.csv").read_text() == (tmp_path / "pred" / "metrics.csv").read_text()
    with h5py.File(tmp_path / "pred" / "file_a.h5", "w") as handle:
        handle["reconstruction"] = np.zeros((1, 2, 2), np.float32)
    assert cli.main(["evaluate", str(tmp_path / "pred"), str(data / "in")]) == 1
    assert "expected shape (3, 32, 32)" in capsys.readouterr().out


def test_demo_is_imported_lazily_and_gets_the_arguments(monkeypatch):
    calls = []
    fake = types.ModuleType("ccdf_mri.demo")
    fake.main = lambda argv: calls.append(argv) or 3
    monkeypatch.setitem(sys.modules, "ccdf_mri.demo", fake)
    assert cli.main(["demo", "--fast", "--out", "x"]) == 3
    assert calls == [["--fast", "--out", "x"]]


def test_train_runs_a_bundle_config_with_overrides(tmp_path, capsys):
    config = tmp_path / "train_tiny.json"
    config.write_text(json.dumps({"epochs": 1, "run": ["$print('epochs', repr(@epochs), @name, 'root', @bundle_root)"]}))
    assert cli.main(["train", str(config), "--epochs", "3", "--name", "score"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("epochs 3 score root ")
    assert Path(out.split(" root ")[1].strip()).resolve() == BUNDLE.resolve()  # the shipped bundle
    assert cli.main(["train", str(config), "--epochs"]) == 2
    assert "'--key value' pairs" in capsys.readouterr().err


def test_train_unknown_config_lists_the_available(capsys):
    assert cli.main(["train", "train_nothing"]) == 2
    err = capsys.readouterr().err
    assert "train_nothing.json" in err and "train_score" in err


def test_prepare_runs_data_prep_commands(capsys):
    assert cli.main(["prepare", "make_demo_corpus", "--help"]) == 0
    assert "usage" in capsys.readouterr().out
    assert cli.main(["prepare", "no_such_command"]) == 2
    assert "make_demo_corpus" in capsys.readouterr().err
