"""Model-zoo files of the bundle: large_files.yml hashes, TorchScript export, architecture records."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "ccdf_mri_recon"


def _large_files() -> dict:
    """``{path: sha256}`` from large_files.yml (a fixed, simple layout: parsed without PyYAML)."""
    text = (BUNDLE / "large_files.yml").read_text()
    paths = re.findall(r'path:\s*"([^"]+)"', text)
    hashes = re.findall(r'hash_val:\s*"([0-9a-f]{64})"', text)
    assert re.findall(r'hash_type:\s*"([^"]+)"', text) == ["sha256"] * len(paths)
    assert len(paths) == len(hashes)
    return dict(zip(paths, hashes))


def test_large_files_lists_every_weight_file_with_its_sha256():
    listed = _large_files()
    committed = {p.relative_to(BUNDLE).as_posix() for p in (BUNDLE / "models").glob("*.pt")}
    assert set(listed) == committed
    for path, digest in listed.items():
        assert hashlib.sha256((BUNDLE / path).read_bytes()).hexdigest() == digest, f"{path}: sha256 differs from large_files.yml"


@pytest.mark.parametrize(("net_id", "weights", "record"), [("network_def", "score_net.pt", "score_net.json"),
                                                            ("initializer_def", "unet.pt", "unet.json")])
def test_config_architectures_are_the_trained_ones(net_id, weights, record):
    """The config's ``_target_`` architecture equals the training record and loads the weights strictly."""
    from ccdf_mri.app.build import read_config
    from ccdf_mri.networks.loading import load_weights

    parser = read_config()
    config = {k: v for k, v in parser.get(net_id).items() if not k.startswith("_")}
    trained = json.loads((BUNDLE / "models" / record).read_text())["kwargs"]
    assert {k: config[k] for k in trained} == trained
    load_weights(parser.get_parsed_content(net_id), BUNDLE / "models" / weights)  # raises on any mismatch


@pytest.mark.parametrize(("net_id", "weights", "shape"), [("network_def", "score_net.pt", (2, 3, 64, 72)),
                                                          ("initializer_def", "unet.pt", (2, 2, 64, 72))])
def test_torchscript_export_matches_eager(net_id, weights, shape, tmp_path):
    """``python -m monai.bundle ckpt_export`` (trace) of both networks gives the eager outputs.
    The score network is traced with the timestep in a third input channel (ckpt_export passes
    one tensor); traced at 64 x 64, it runs at other multiples of 8."""
    from monai.bundle import ckpt_export

    from ccdf_mri.app.build import read_config
    from ccdf_mri.networks.loading import load_weights

    out = tmp_path / f"{net_id}.ts"
    ckpt_export(
        net_id=net_id, filepath=str(out), ckpt_file=str(BUNDLE / "models" / weights),
        meta_file=str(BUNDLE / "configs" / "metadata.json"), config_file=str(BUNDLE / "configs" / "inference.json"),
        bundle_root=str(BUNDLE), use_trace=True, input_shape=[1, shape[1], 64, 64],
    )
    scripted = torch.jit.load(str(out))
    eager = load_weights(read_config().get_parsed_content(net_id), BUNDLE / "models" / weights)
    torch.manual_seed(0)
    x = torch.randn(*shape)
    if shape[1] == 3:
        x[:, 2] = torch.tensor([10.0, 500.0]).reshape(2, 1, 1)  # timesteps 10 and 500
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x), rtol=1e-4, atol=1e-4)
