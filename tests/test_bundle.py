"""The MONAI bundle bundles/ccdf_mri_recon: metadata schema, configs, single and multi-process runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import recon_data as rd

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "ccdf_mri_recon"
CONFIGS = BUNDLE / "configs"
SCHEMA = CONFIGS / "schema" / "meta_schema_20240725.json"
OVERRIDES = {"t0": 0.5, "num_steps": 10, "center_fraction": 0.125, "progress": False}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    rd.write_volume(root / "in" / "file_a.h5")
    rd.write_volume(root / "in" / "file_b.h5", rows=2 * rd.SIZE)
    rd.write_volume(root / "in" / "file_c.h5", num_coils=1)
    rd.write_models(root / "models")
    return root


def run_bundle(config_files, data: Path, out: Path, **overrides) -> None:
    from monai.bundle import run

    run(
        config_file=[str(CONFIGS / name) for name in config_files],
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


def test_inference_config_has_the_inference_properties(data):
    from monai.bundle import ConfigWorkflow

    from ccdf_mri.recon import Reconstructor

    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type="infer",
        models_dir=str(data / "models"),
        num_steps=10,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert isinstance(workflow.evaluator, Reconstructor)
    assert workflow.evaluator.inferer is workflow.inferer


def test_bundle_run_equals_the_library_call(data, tmp_path):
    """The bundle and the CLI's entry (Reconstructor.from_models) give identical outputs."""
    from ccdf_mri.recon import Reconstructor

    run_bundle(["inference.json"], data, tmp_path / "bundle", initializer="zero_filled", formats="nifti,h5")
    defaults = json.loads((CONFIGS / "inference.json").read_text())
    options = {key: defaults[key] for key in ("mask", "acceleration", "sampler", "num_samples", "maps", "seed", "batch_size")}
    Reconstructor.from_models(
        data / "models", tmp_path / "library", initializer="zero_filled", **{**options, **OVERRIDES}
    ).run(data / "in")
    bundle, library = reconstructions(tmp_path / "bundle"), reconstructions(tmp_path / "library")
    assert sorted(bundle) == ["file_a.h5", "file_b.h5", "file_c.h5"] == sorted(library)
    for name in bundle:
        np.testing.assert_array_equal(bundle[name], library[name])
    assert (tmp_path / "bundle" / "metrics.csv").read_text() == (tmp_path / "library" / "metrics.csv").read_text()


def test_evaluate_config_needs_targets(data, tmp_path):
    run_bundle(["inference.json", "evaluate.json"], data, tmp_path / "eval", initializer="zero_filled", t0=0.0)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["file_a.h5", "file_b.h5", "file_c.h5", "metrics.csv"]
    no_target = tmp_path / "no_target"
    rd.write_volume(no_target / "in" / "file_t.h5", target=False)
    (no_target / "models").symlink_to(data / "models")
    with pytest.raises(RuntimeError) as failure:  # monai.bundle wraps the ValueError
        run_bundle(["inference.json", "evaluate.json"], no_target, tmp_path / "eval2", initializer="zero_filled")
    assert "expected files with targets" in str(failure.value.__cause__)
    assert "file_t.h5" in str(failure.value.__cause__)


def test_torchrun_two_processes_equal_one(data, tmp_path):
    """torchrun with 2 CPU processes (gloo) shards the volumes and writes what one process writes."""
    run_bundle(["inference.json"], data, tmp_path / "single", initializer="unet")
    configs = str([str(CONFIGS / "inference.json"), str(CONFIGS / "multi_gpu_inference.json")])
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
        "-m", "monai.bundle", "run", "--config_file", configs, "--bundle_root", str(BUNDLE),
        "--models_dir", str(data / "models"), "--dataset_dir", str(data / "in"),
        "--output_dir", str(tmp_path / "multi"), "--initializer", "unet",
    ]
    for key, value in OVERRIDES.items():
        if key != "progress":
            command += [f"--{key}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single, multi = reconstructions(tmp_path / "single"), reconstructions(tmp_path / "multi")
    assert sorted(multi) == sorted(single) == ["file_a.h5", "file_b.h5", "file_c.h5"]
    for name in single:
        np.testing.assert_allclose(multi[name], single[name], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "multi" / "metrics.csv").read_text() == (tmp_path / "single" / "metrics.csv").read_text()
