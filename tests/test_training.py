"""Training: prepare-batches, losses, the initializer network, bundle configs, resume, DDP (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import run as bundle_run
from monai.engines import SupervisedTrainer
from torch.utils.data import DataLoader
from test_datasets import TEST_POLICY, write_tiny_corpus

from ccdf_mri.data.datasets import FastMRISliceDataset
from ccdf_mri.diffusion import VPSchedule, epsilon_loss
from ccdf_mri.engines.batch import undersample_batch
from ccdf_mri.engines.checkpoints import ResumeFromCheckpoint, TrainerCheckpointSaver, load_exported_network
from ccdf_mri.engines.losses import L1SSIMLoss
from ccdf_mri.engines.prepare import EpsilonPrepareBatch, OneStepDenoiseInferer, UNetPrepareBatch, random_patches
from ccdf_mri.intensity import intensity_scale
from ccdf_mri.networks.complex import channels_to_complex
from ccdf_mri.networks.initializer import make_initializer_network
from ccdf_mri.networks.score import make_score_network
from ccdf_mri.physics import SenseOp, estimate_maps_acs, sense_combine

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "ccdf_mri_recon" / "configs"
TINY = {
    "num_workers": 0,
    "batch_size": 2,
    "val_batch_size": 2,
    "center_fractions": [0.125, 0.0625],
    "log_interval": 1,
}
TINY_NETS = {
    "unet": {"network_kwargs#channels": [8, 16, 32, 64]},
    "score": {"network_kwargs#channels": [8, 16, 16], "network_kwargs#num_res_blocks": 1, "patch_size": [32, 32], "patches_per_slice": 2},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("train_corpus"), files=(2, 1, 0))


@pytest.fixture(scope="module")
def batch(corpus):
    torch.manual_seed(0)
    dataset = FastMRISliceDataset(corpus / "train", TEST_POLICY, mask_mode="random")
    return next(iter(DataLoader(dataset, batch_size=3, shuffle=False)))


def test_unet_batches_follow_the_inference_intensity_rule(batch):
    inputs, targets = UNetPrepareBatch()(batch, "cpu")
    assert inputs.shape == targets.shape == (3, 2, 64, 64) and inputs.dtype == torch.float32
    for i in range(3):
        y = batch["kspace"][i : i + 1] * batch["mask"][i : i + 1]
        maps = estimate_maps_acs(y, calib_width=int(batch["num_low_frequency"][i]))
        zero_filled = SenseOp(maps, batch["mask"][i : i + 1]).adjoint(y)[0]
        scale = intensity_scale(zero_filled)
        torch.testing.assert_close(channels_to_complex(inputs[i : i + 1])[0], zero_filled / scale)
        full = sense_combine(batch["kspace"][i : i + 1], maps)[0]
        torch.testing.assert_close(channels_to_complex(targets[i : i + 1])[0], full / scale)
        # the rule makes the network input scale-free: the 99th percentile of |input| is 1
        assert abs(float(torch.quantile(channels_to_complex(inputs[i : i + 1]).abs().flatten(), 0.99)) - 1) < 1e-4


def test_epsilon_batches_give_the_diffusion_epsilon_loss(batch):
    schedule = VPSchedule(num_train_steps=100)
    network = make_score_network(channels=(8, 16, 16))
    prepare = EpsilonPrepareBatch(schedule, patch_size=None, seed=3)
    noisy, noise, (timesteps,), _ = prepare(batch, "cpu")
    ours = torch.nn.functional.mse_loss(network(noisy, timesteps), noise)
    clean = prepare.clean_images(batch, "cpu", False)
    # the stored noise-free complex target, scaled by the zero-filled image's factor
    scale = undersample_batch(batch, "cpu")["scale"].reshape(3, 1, 1)
    torch.testing.assert_close(channels_to_complex(clean) * scale, batch["target_complex"])
    reference = epsilon_loss(network, schedule, clean, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, reference)


def test_epsilon_batches_are_patches_and_validation_is_deterministic(batch):
    schedule = VPSchedule(num_train_steps=100)
    prepare = EpsilonPrepareBatch(schedule, patch_size=(16, 24), patches_per_slice=4, seed=0)
    noisy, noise, (timesteps,), _ = prepare(batch, "cpu")
    assert noisy.shape == noise.shape == (12, 2, 16, 24) and timesteps.shape == (12,)
    validation = EpsilonPrepareBatch(schedule, fixed_timestep=30)
    first, label, (t,), _ = validation(batch, "cpu")
    again, _, _, _ = validation(batch, "cpu")
    torch.testing.assert_close(first, again)
    assert first.shape == (3, 2, 64, 64) and bool((t == 30).all())
    # the inferer inverts the forward jump when the network predicts the true noise
    true_noise = (first - schedule.forward_coefficients(t)[0][0].item() * label) / schedule.forward_coefficients(t)[1][0].item()
    denoised = OneStepDenoiseInferer(schedule)(first, lambda x, _: true_noise, t)
    torch.testing.assert_close(denoised, label, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="fixed_timestep"):
        EpsilonPrepareBatch(schedule, fixed_timestep=100)


def test_random_patches_are_crops_of_their_own_image():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    patches = random_patches(images, (3, 5), 3, torch.Generator().manual_seed(0))
    assert patches.shape == (6, 1, 3, 5)
    for index, patch in enumerate(patches):
        source = images[index // 3, 0]
        row, col = divmod(int(patch[0, 0, 0]) - int(source[0, 0]), 8)
        torch.testing.assert_close(patch[0], source[row : row + 3, col : col + 5])
    with pytest.raises(ValueError, match="patch_size"):
        random_patches(images, (9, 2), 1, torch.Generator())


def test_initializer_starts_as_identity_and_takes_any_size():
    torch.manual_seed(0)
    network = make_initializer_network(channels=(4, 8, 16), strides=(2, 2))
    x = torch.randn(2, 2, 37, 50)
    torch.testing.assert_close(network(x), x)  # zero head: returns the zero-filled input
    with torch.no_grad():
        network.head.weight.fill_(0.1)
    out = network(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    with pytest.raises(ValueError, match="len"):
        make_initializer_network(channels=(4, 8), strides=(2, 2))


def test_l1_ssim_loss():
    torch.manual_seed(0)
    target = torch.rand(2, 2, 16, 16)
    assert float(L1SSIMLoss(ssim_weight=0.5)(target, target)) == pytest.approx(0.0, abs=1e-5)
    pred = target + 0.1 * torch.randn_like(target)
    l1 = float(torch.nn.functional.l1_loss(pred, target))
    assert float(L1SSIMLoss()(pred, target)) == pytest.approx(l1)
    assert float(L1SSIMLoss(ssim_weight=1.0)(pred, target)) > l1


def _overfit_losses(network, prepare, batch, loss, iterations, lr):
    torch.manual_seed(0)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[batch] * iterations,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=lr),
        loss_function=loss,
        prepare_batch=prepare,
        decollate=False,
    )
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"].detach())))
    trainer.run()
    return losses


def test_unet_loss_decreases_on_an_overfit_batch(batch):
    torch.manual_seed(0)
    network = make_initializer_network(channels=(16, 32, 64), strides=(2, 2))
    losses = _overfit_losses(network, UNetPrepareBatch(), batch, L1SSIMLoss(), iterations=40, lr=1e-3)
    assert sum(losses[-5:]) / 5 < 0.85 * losses[0]  # losses[0]: the zero-filled image's L1


def test_epsilon_loss_decreases_on_an_overfit_batch(batch):
    torch.manual_seed(0)
    prepare = EpsilonPrepareBatch(VPSchedule(num_train_steps=100), patch_size=(32, 32), patches_per_slice=4)
    losses = _overfit_losses(make_score_network(channels=(8, 16, 16)), prepare, batch, torch.nn.MSELoss(), 20, 3e-3)
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_resume_restores_iteration_count_and_weights(batch, tmp_path):
    def trainer(network, max_epochs):
        return SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=max_epochs,
            epoch_length=3,
            train_data_loader=[batch] * 3,
            network=network,
            optimizer=torch.optim.SGD(network.parameters(), lr=1e-3),
            loss_function=torch.nn.L1Loss(),
            prepare_batch=UNetPrepareBatch(),
            decollate=False,
        )

    first_net = make_initializer_network(channels=(4, 8, 16), strides=(2, 2))
    first = trainer(first_net, max_epochs=1)
    TrainerCheckpointSaver(tmp_path, {"network": first_net}, save_interval=2).attach(first)
    first.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_final.pt", "checkpoint_iteration=2.pt"]
    os.remove(tmp_path / "checkpoint_final.pt")  # as if killed after iteration 2

    second_net = make_initializer_network(channels=(4, 8, 16), strides=(2, 2))
    second = trainer(second_net, max_epochs=2)
    seen = {}
    ResumeFromCheckpoint(tmp_path, {"network": second_net}).attach(second)
    second.add_event_handler(
        Events.STARTED, lambda e: seen.update(iteration=e.state.iteration, bias=second_net.head.bias.detach().clone())
    )
    saved = torch.load(tmp_path / "checkpoint_iteration=2.pt", weights_only=True)
    second.run()
    assert seen["iteration"] == 2
    torch.testing.assert_close(seen["bias"], saved["network"]["head.bias"])
    assert bool(saved["network"]["head.bias"].abs().sum() > 0)  # trained, not the zero init
    assert second.state.iteration == 6
    empty = tmp_path / "none"
    resume = ResumeFromCheckpoint(empty, {"network": second_net})
    resume.attach(trainer(second_net, 1))
    assert resume.path is None


def _run_config(name, corpus, out, **overrides):
    settings = {
        "dataset_dir": str(corpus),
        "output_dir": str(out),
        "model_path": str(out / f"{name}.pt"),
        "max_epochs": 1,
        "epoch_length": 2,
        "save_interval": 1,
        **TINY,
        **TINY_NETS[name],
        **overrides,
    }
    bundle_run(config_file=str(CONFIGS / f"train_{name}.json"), **settings)
    return json.loads((out / f"{name}.json").read_text())


@pytest.mark.parametrize("name", ["unet", "score"])
def test_bundle_config_trains_exports_and_resumes(name, corpus, tmp_path):
    record = _run_config(name, corpus, tmp_path)
    assert record["training"]["iterations"] == 2 and record["training"]["resumed_from_iteration"] == 0
    assert set(record["training"]["validation"]) == {"val_psnr", "val_ssim"}
    network = load_exported_network(tmp_path / f"{name}.pt")
    assert network(torch.zeros(1, 2, 32, 32), *([torch.zeros(1, dtype=torch.long)] if name == "score" else [])).shape == (1, 2, 32, 32)
    assert (tmp_path / "checkpoints" / "checkpoint_final.pt").is_file()
    # a second run with more epochs continues from the saved iteration
    record = _run_config(name, corpus, tmp_path, max_epochs=2)
    assert record["training"]["resumed_from_iteration"] == 2 and record["training"]["iterations"] == 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_multi_gpu_config_runs_two_gloo_processes(corpus, tmp_path):
    overrides = {"dataset_dir": str(corpus), "output_dir": str(tmp_path), "model_path": str(tmp_path / "score.pt"),
                 "max_epochs": 1, "epoch_length": 2, "save_interval": 1, **TINY, **TINY_NETS["score"]}
    args = [f"--{key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in overrides.items()]
    configs = [str(CONFIGS / "train_score.json"), str(CONFIGS / "multi_gpu_train_score.json")]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
               "-m", "monai.bundle", "run", "--config_file", json.dumps(configs), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "score.json").read_text())
    assert record["training"]["iterations"] == 2
    assert not any(key.startswith("module.") for key in torch.load(tmp_path / "score.pt", weights_only=True))
    # each rank logged its own loss; only rank 0 has the stats handlers attached
    assert result.stderr.count("train_loss") + result.stdout.count("train_loss") == 2


def test_time_limit_stops_cleanly_and_still_exports(corpus, tmp_path):
    record = _run_config("unet", corpus, tmp_path, max_epochs=10_000, time_limit_s=1, val_interval=10_000)
    assert 0 < record["training"]["iterations"] < 20_000
    assert (tmp_path / "checkpoints" / "checkpoint_final.pt").is_file()
