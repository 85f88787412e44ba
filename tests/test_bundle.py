"""The MONAI bundle bundles/ccdf_mri_recon: metadata schema, named parts, runs equal to the CLI,
command-line overrides, the evaluate config and a multi-process run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

import recon_data as rd

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "ccdf_mri_recon"
CONFIGS = BUNDLE / "configs"
MODELS = BUNDLE / "models"
SCHEMA = CONFIGS / "schema" / "meta_schema_20240725.json"
OVERRIDES = {"t0": 0.5, "num_steps": 10, "center_fraction": 0.125, "progress": False, **rd.TINY_MODEL_OVERRIDES}
PROPERTIES = ("network_def", "inferer", "preprocessing", "postprocessing", "evaluator")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    rd.write_volume(root / "in" / "file_a.h5")
    rd.write_volume(root / "in" / "file_b.h5", rows=2 * rd.SIZE)
    rd.write_volume(root / "in" / "file_c.h5", num_coils=1)
    rd.write_models(root / "models")
    return root


def run_bundle(config_files, data: Path, out: Path, **overrides) -> None:
    """``python -m monai.bundle run`` in this process (``monai.bundle.run`` with the same overrides)."""
    from monai.bundle import run

    run(
        config_file=[str(CONFIGS / name) for name in config_files],
        meta_file=str(CONFIGS / "metadata.json"),
        bundle_root=str(BUNDLE),
        models_dir=str(data / "models"),
        dataset_dir=str(data / "in"),
        output_dir=str(out),
        **{**OVERRIDES, **overrides},
    )


def reconstructions(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as handle:
            out[path.name] = np.asarray(handle["reconstruction"])
    return out


def record(path: Path) -> dict:
    """A provenance record without its creation time."""
    content = json.loads(path.read_text())
    content.pop("created")
    return content


# ----------------------------------------------------------------------------- metadata and parts
def test_metadata_is_valid_against_the_local_schema_copy():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA))
    assert json.loads((CONFIGS / "metadata.json").read_text())["schema"].endswith(SCHEMA.name)


def test_metadata_missing_a_required_field_is_rejected(tmp_path):
    from monai.bundle import verify_metadata

    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    del metadata["network_data_format"]["outputs"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="outputs"):
        verify_metadata(meta_file=str(broken), filepath=str(SCHEMA))


def inference_workflow(data: Path, out: Path):
    """The inference config as MONAI's ``ConfigWorkflow`` (what ``monai.bundle run`` builds), initialised."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        models_dir=str(data / "models"),
        dataset_dir=str(data / "in"),
        output_dir=str(out),
        **OVERRIDES,
    )
    workflow.initialize()
    return workflow


def test_inference_config_passes_check_properties(data, tmp_path):
    assert inference_workflow(data, tmp_path / "out").check_properties() == []


def test_inference_config_names_its_parts_without_aliases(data, tmp_path):
    import torch
    from monai.transforms import Compose

    from ccdf_mri.app.engine import ReconstructionEvaluator
    from ccdf_mri.inferers import CCDFInferer

    config = json.loads((CONFIGS / "inference.json").read_text())
    for key in PROPERTIES:  # real parts, not "@other" aliases
        assert isinstance(config[key], dict) and "_target_" in config[key], key
    assert config["handlers"] and all("_target_" in handler for handler in config["handlers"])
    workflow = inference_workflow(data, tmp_path / "out")
    assert isinstance(workflow.network_def, torch.nn.Module)
    assert isinstance(workflow.inferer, CCDFInferer) and workflow.inferer.t0 == 0.5
    assert isinstance(workflow.preprocessing, Compose) and isinstance(workflow.postprocessing, Compose)
    evaluator = workflow.evaluator
    assert isinstance(evaluator, ReconstructionEvaluator)
    assert evaluator.reconstructor.inferer is workflow.inferer
    assert evaluator.reconstructor.preprocessing is workflow.preprocessing
    assert evaluator.reconstructor.postprocessing is workflow.postprocessing
    assert evaluator.reconstructor.network is workflow.parser.get_parsed_content("network")
    assert [name for _, _, name in evaluator.plan] == ["file_a", "file_b", "file_c"]


def test_network_defs_are_the_shipped_models_architectures():
    """The config's network_def / initializer_def / schedule are what models/*.json record and
    the shipped weights load into them (a drift fails here, not in a user's run)."""
    from monai.bundle import ConfigParser

    config = json.loads((CONFIGS / "inference.json").read_text())
    score = json.loads((MODELS / "score_net.json").read_text())
    unet = json.loads((MODELS / "unet.json").read_text())
    assert {k: v for k, v in config["network_def"].items() if k != "_target_"} == score["kwargs"]
    assert {k: v for k, v in config["initializer_def"].items() if k != "_target_"} == unet["kwargs"]
    assert {k: v for k, v in config["schedule"].items() if k != "_target_"} == score["schedule_kwargs"]
    assert config["schedule"]["_target_"].endswith(score["schedule"])
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "device": "cpu", "initializer": "unet", "t0": 0.1})
    for key in ("network", "initializer_network"):  # load_weights raises on any key / shape mismatch
        assert parser.get_parsed_content(key, instantiate=True).training is False


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mask": "random", "acceleration": 6.0, "center_fraction": 0.1, "maps": "espirit", "calib_width": 16},
    ],
)
def test_config_preprocessing_is_the_library_preprocessing(options):
    """The explicit Compose in inference.json and ccdf_mri.preprocessing.make_preprocessing describe
    the same transforms (classes, settings and keys), so the JSON and the library cannot drift."""
    from monai.bundle import ConfigParser

    from ccdf_mri.app.describe import describe
    from ccdf_mri.preprocessing import make_preprocessing

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), **options})
    config = parser.get_parsed_content("preprocessing", instantiate=True)
    defaults = parser.get()
    library = make_preprocessing(
        mask=defaults["mask"], acceleration=defaults["acceleration"], center_fraction=defaults["center_fraction"],
        maps=defaults["maps"], calib_width=defaults["calib_width"],
    )
    assert describe(config) == describe(library)
    assert [tuple(t.keys) for t in config.transforms] == [tuple(t.keys) for t in library.transforms]
    assert [getattr(t, "allow_missing_keys", None) for t in config.transforms] == [
        getattr(t, "allow_missing_keys", None) for t in library.transforms
    ]
    other = make_preprocessing(mask=defaults["mask"], acceleration=defaults["acceleration"] + 1.0,
                               center_fraction=defaults["center_fraction"], maps=defaults["maps"],
                               calib_width=defaults["calib_width"])
    assert describe(config) != describe(other)  # the comparison sees a setting


# ----------------------------------------------------------------------------- runs
def test_bundle_run_equals_the_cli(data, tmp_path, capsys):
    """``python -m monai.bundle run`` and ``ccdf-mri recon`` with the same settings write identical outputs."""
    from ccdf_mri import cli

    run_bundle(["inference.json"], data, tmp_path / "bundle", initializer="unet", formats="nifti,h5")
    tiny = [arg for key, value in rd.TINY_MODEL_OVERRIDES.items() for arg in ("--set", f"{key}={value}")]
    args = ["recon", str(data / "in"), "--out", str(tmp_path / "cli"), "--models", str(data / "models"), *tiny,
            "--initializer", "unet", "--formats", "nifti,h5", "--t0", "0.5", "--steps", "10",
            "--center-fraction", "0.125", "--quiet"]
    assert cli.main(args) == 0, capsys.readouterr().err
    bundle, library = reconstructions(tmp_path / "bundle"), reconstructions(tmp_path / "cli")
    assert sorted(bundle) == ["file_a.h5", "file_b.h5", "file_c.h5"] == sorted(library)
    for name in bundle:
        np.testing.assert_array_equal(bundle[name], library[name])
        stem = name[:-3]
        np.testing.assert_array_equal(
            nib.load(tmp_path / "bundle" / f"{stem}.nii.gz").get_fdata(), nib.load(tmp_path / "cli" / f"{stem}.nii.gz").get_fdata()
        )
        assert record(tmp_path / "bundle" / f"{stem}.provenance.json") == record(tmp_path / "cli" / f"{stem}.provenance.json")
    assert (tmp_path / "bundle" / "metrics.csv").read_text() == (tmp_path / "cli" / "metrics.csv").read_text()


def test_inferer_t0_and_dc_lam_overrides_change_the_result(data, tmp_path):
    """``--inferer#t0 0.1`` and ``--inferer#dc#lam 0.5`` reach the inferer, change the outputs and
    their provenance (so a rerun with them is not mistaken for a finished one)."""
    base = {"initializer": "unet", "formats": "h5"}
    run_bundle(["inference.json"], data, tmp_path / "base", **base)
    run_bundle(["inference.json"], data, tmp_path / "t0", **base, **{"inferer#t0": 0.1})
    run_bundle(["inference.json"], data, tmp_path / "lam", **base, **{"inferer#dc#lam": 0.5})
    reference = reconstructions(tmp_path / "base")
    for folder, key, value in (("t0", "inferer.t0", 0.1), ("lam", "inferer.dc.lam", 0.5)):
        changed = reconstructions(tmp_path / folder)
        assert not np.allclose(changed["file_a.h5"], reference["file_a.h5"]), folder
        assert record(tmp_path / folder / "file_a.provenance.json")["settings"][key] == value
    assert record(tmp_path / "base" / "file_a.provenance.json")["settings"]["inferer.dc.lam"] == "auto"
    # a rerun into the base folder with the override redoes the volumes instead of skipping them
    run_bundle(["inference.json"], data, tmp_path / "base", **base, **{"inferer#dc#lam": 0.5})
    for name, image in reconstructions(tmp_path / "base").items():
        np.testing.assert_array_equal(image, reconstructions(tmp_path / "lam")[name])


def test_evaluate_config_needs_targets(data, tmp_path):
    run_bundle(["inference.json", "evaluate.json"], data, tmp_path / "eval", initializer="zero_filled", t0=0.0)
    names = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert names == sorted([f"file_{v}{s}" for v in "abc" for s in (".h5", ".provenance.json")] + ["metrics.csv"])
    no_target = tmp_path / "no_target"
    rd.write_volume(no_target / "in" / "file_t.h5", target=False)
    (no_target / "models").symlink_to(data / "models")
    with pytest.raises(RuntimeError) as failure:  # monai.bundle wraps the ValueError
        run_bundle(["inference.json", "evaluate.json"], no_target, tmp_path / "eval2", initializer="zero_filled")
    cause = failure.value.__cause__ or failure.value
    assert "expected files with targets" in str(cause) and "file_t.h5" in str(cause)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(data, tmp_path):
    """torchrun with 2 CPU processes (gloo) shards the volumes, gathers the results and writes
    what one process writes (same images, same metrics.csv)."""
    run_bundle(["inference.json"], data, tmp_path / "single", initializer="unet")
    configs = str([str(CONFIGS / "inference.json"), str(CONFIGS / "multi_gpu_inference.json")])
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
        "-m", "monai.bundle", "run", "--config_file", configs, "--meta_file", str(CONFIGS / "metadata.json"),
        "--bundle_root", str(BUNDLE), "--models_dir", str(data / "models"), "--dataset_dir", str(data / "in"),
        "--output_dir", str(tmp_path / "multi"), "--initializer", "unet",
    ]
    for key, value in OVERRIDES.items():
        if key != "progress":
            command += [f"--{key}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # sharded: each volume reconstructed once, by one rank (2 on rank 0, 1 on rank 1)
    logged = re.findall(r"volume (\d+)/(\d+) (\w+): done", done.stdout + done.stderr)
    assert sorted(name for _, _, name in logged) == ["file_a", "file_b", "file_c"], logged
    assert sorted({int(total) for _, total, _ in logged}) == [1, 2]
    single, multi = reconstructions(tmp_path / "single"), reconstructions(tmp_path / "multi")
    assert sorted(multi) == sorted(single) == ["file_a.h5", "file_b.h5", "file_c.h5"]
    for name in single:
        np.testing.assert_allclose(multi[name], single[name], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "multi" / "metrics.csv").read_text() == (tmp_path / "single" / "metrics.csv").read_text()


def test_bundle_run_with_background_writes_equals_the_plain_run(data, tmp_path):
    """``monai.bundle run`` with background writes (the CUDA default) writes the same files and metrics as
    without them; the writes ran in the writer thread."""
    import threading

    from ccdf_mri.app.reconstructor import Reconstructor

    threads = []
    original = Reconstructor.complete

    def complete(self, job):
        threads.append(threading.current_thread().name)
        return original(self, job)

    Reconstructor.complete = complete
    try:
        run_bundle(["inference.json"], data, tmp_path / "on", initializer="unet", background_writes=True)
        run_bundle(["inference.json"], data, tmp_path / "off", initializer="unet", background_writes=False)
    finally:
        Reconstructor.complete = original
    assert threads[:3] == ["ccdf-writer_0"] * 3 and all(not name.startswith("ccdf-writer") for name in threads[3:])
    on, off = reconstructions(tmp_path / "on"), reconstructions(tmp_path / "off")
    assert sorted(on) == sorted(off) == ["file_a.h5", "file_b.h5", "file_c.h5"]
    for name in on:
        np.testing.assert_array_equal(on[name], off[name])
    assert (tmp_path / "on" / "metrics.csv").read_text() == (tmp_path / "off" / "metrics.csv").read_text()


def test_volume_log_names_each_finished_volume_by_its_place_in_the_plan(caplog):
    """With background writes an iteration can finish two volumes (the previous and, last, its own):
    one line each, numbered by the volume's place in this rank's plan."""
    import logging
    from types import SimpleNamespace

    from ccdf_mri.app.engine import VolumeLogHandler
    from ccdf_mri.app.report import VolumeResult

    done = [(7, VolumeResult("b", "b.h5", "done", slices=2)), (9, VolumeResult("c", "c.h5", "failed", error="c.h5: bad"))]
    engine = SimpleNamespace(plan=[(3, "a.h5", "a"), (7, "b.h5", "b"), (9, "c.h5", "c")],
                             state=SimpleNamespace(output={"results": done}, epoch_length=3))
    with caplog.at_level(logging.INFO, logger="ccdf_mri.app.engine"):
        VolumeLogHandler()(engine)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines] == ["volume 2/3 b", "volume 3/3 c"]
    assert "(c.h5: bad)" in lines[1]
