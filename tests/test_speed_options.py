"""The speed options of the reverse step give the plain path's output.

``CCDFInferer(channels_last=..., amp_dtype=..., compile=...)`` and the fused sampler arithmetic
(issue 11, item 3) must change the time of a step, not its result: channels-last and compiled
networks equal the plain float32 path to float rounding, bf16 autocast on the CPU to bf16's
rounding, and the affine DDPM step equals the paper's f, g evaluated operation by operation in
float64.
"""

from __future__ import annotations

import math

import pytest
import torch

from ccdf_mri.diffusion import VPSchedule, ddpm_step
from ccdf_mri.diffusion.samplers import make_epsilon_fn
from ccdf_mri.diffusion.speed_options import native_bf16_cpu, network_input, resolve_amp_dtype, speed_options
from ccdf_mri.inferers import CCDFInferer
from ccdf_mri.networks.score import ScoreUNet
from ccdf_mri.physics import ProximalDC, SenseOp, make_mask

SIZE, COILS = 32, 4
SCHEDULE = VPSchedule()
PLAIN = {"amp_dtype": None, "channels_last": False}  # float32, NCHW: the reference path


def small_score_net(seed: int = 0) -> ScoreUNet:
    """A small ScoreUNet with non-zero random weights (MONAI zero-initialises the output conv)."""
    torch.manual_seed(seed)
    net = ScoreUNet(channels=(8, 16, 16), num_res_blocks=1, norm_num_groups=4).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return net


def problem(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, SenseOp, torch.Tensor]:
    """x0 ``(B, H, W)``, a SENSE operator with smooth maps and a 4x mask, measured k-space."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    angles = 2 * math.pi * torch.arange(COILS) / COILS
    maps = torch.stack([torch.exp(-((yy - 0.7 * torch.sin(a)) ** 2 + (xx - 0.7 * torch.cos(a)) ** 2)) for a in angles])
    maps = (maps / maps.pow(2).sum(0).sqrt()).to(torch.complex64).expand(batch, -1, -1, -1).contiguous()
    truth = ((xx**2 + yy**2) < 0.5).to(torch.complex64) * torch.exp(1j * 0.4 * xx)
    truth = truth.expand(batch, -1, -1) + 0.05 * torch.randn(batch, SIZE, SIZE, dtype=torch.complex64, generator=gen)
    op = SenseOp(maps, make_mask("equispaced_fraction", (batch, COILS, SIZE, SIZE), 4, 0.16, seed=seed))
    kspace = op(truth)
    return op.adjoint(kspace), op, kspace


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().norm() / b.abs().norm())


def test_channels_last_input_is_a_view_with_the_same_values() -> None:
    x = torch.randn(2, 16, 24, dtype=torch.complex64)
    view = network_input(x, channels_last=True)
    assert view.shape == (2, 2, 16, 24) and view.is_contiguous(memory_format=torch.channels_last)
    assert view.data_ptr() == x.data_ptr()  # no copy
    assert torch.equal(view, network_input(x, channels_last=False))
    with pytest.raises(ValueError, match="complex"):
        network_input(x.real, channels_last=True)


def test_channels_last_epsilon_equals_plain() -> None:
    sub = SCHEDULE.sub_schedule(100)
    x = torch.randn(2, SIZE, SIZE, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    plain = make_epsilon_fn(small_score_net(), sub)(x, 20)
    fast = make_epsilon_fn(small_score_net(), sub, channels_last=True)(x, torch.tensor([20, 7]))
    assert fast.dtype == torch.complex64 and fast.shape == x.shape
    assert rel_error(fast[:1], plain[:1]) < 1e-5
    assert rel_error(fast[1:], plain[1:]) > 1e-3  # item 2 was evaluated at its own level


def test_cpu_bf16_autocast_runs_the_network_in_bf16_and_stays_close() -> None:
    dtypes = []
    net = small_score_net()
    net.conv_in.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    sub = SCHEDULE.sub_schedule(100)
    x = torch.randn(2, SIZE, SIZE, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    plain = make_epsilon_fn(net, sub)(x, 30)
    amp = make_epsilon_fn(net, sub, amp_dtype="bfloat16")(x, 30)
    assert dtypes == [torch.float32, torch.bfloat16]
    assert amp.dtype == torch.complex64
    assert 0 < rel_error(amp, plain) < 3e-2  # bf16 rounding (8-bit mantissa), not another function


def test_resolve_amp_dtype_names() -> None:
    assert resolve_amp_dtype(None) is None and resolve_amp_dtype("none") is None
    assert resolve_amp_dtype("bfloat16") is resolve_amp_dtype("torch.bfloat16") is torch.bfloat16
    assert resolve_amp_dtype(torch.float16) is torch.float16 and resolve_amp_dtype("AUTO") == "auto"
    with pytest.raises(ValueError, match="amp_dtype"):
        resolve_amp_dtype("int8")


@pytest.mark.parametrize(("options", "tolerance"), [({"channels_last": True}, 1e-5),
                                                     ({"amp_dtype": torch.bfloat16}, 2e-2),
                                                     ({"amp_dtype": "bf16", "channels_last": True}, 2e-2)],
                         ids=["channels_last", "bf16", "bf16+channels_last"])
def test_inferer_options_match_the_plain_path(options: dict, tolerance: float) -> None:
    x0, op, kspace = problem()
    outputs = []
    for opts in (PLAIN, {**PLAIN, **options}):
        inferer = CCDFInferer(SCHEDULE, "ddpm", t0=0.1, num_steps=100, dc=ProximalDC(), **opts)
        gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
        outputs.append(inferer(x0, small_score_net(), op, kspace, generator=gens))
    plain, fast = outputs
    assert torch.equal(plain.nfe, fast.nfe) and fast.mean.dtype == torch.complex64
    assert rel_error(fast.mean, plain.mean) < tolerance


def test_auto_options_apply_to_convolutional_networks_on_the_cpu_only() -> None:
    """The defaults (``amp_dtype="auto"``, ``channels_last=None``) are what measured faster on the CPU:
    channels-last for conv nets, bf16 where the CPU has native bf16; float32 NCHW elsewhere."""
    conv = small_score_net()
    bf16 = torch.bfloat16 if native_bf16_cpu() else None
    assert speed_options(conv, "cpu", "auto", None) == (bf16, True)
    assert speed_options(conv, "cuda", "auto", None) == (None, False)  # not measured on a GPU yet
    assert speed_options(lambda x, t: x, "cpu", "auto", None) == (None, False)  # not a conv module
    assert speed_options(conv, "cpu", None, False) == (None, False)
    assert speed_options(conv, "cpu", "bfloat16", True) == (torch.bfloat16, True)


def test_default_inferer_is_float32_channels_last_and_auto_bf16_stays_close() -> None:
    """Default: float32 with channels-last for conv nets on the CPU (equal to the NCHW path to
    rounding); the opt-in ``amp_dtype="auto"`` equals its resolved explicit options and stays
    within bf16 rounding of float32."""
    x0, op, kspace = problem()
    gens = lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]  # noqa: E731
    run = lambda **o: CCDFInferer(SCHEDULE, "ddpm", t0=0.1, num_steps=100, **o)(  # noqa: E731
        x0, small_score_net(), op, kspace, generator=gens()).mean
    default = CCDFInferer(SCHEDULE)
    assert default.amp_dtype is None and default.channels_last is None
    plain, out = run(**PLAIN), run()
    assert torch.equal(out, run(amp_dtype=None, channels_last=True))
    assert rel_error(out, plain) < 1e-5
    auto = run(amp_dtype="auto")
    resolved = dict(zip(("amp_dtype", "channels_last"), speed_options(small_score_net(), "cpu", "auto", None)))
    assert torch.equal(auto, run(**resolved))
    assert rel_error(auto, plain) < 2e-2


def test_outputs_do_not_depend_on_the_batch_size_with_channels_last() -> None:
    """Channels-last keeps an item's result independent of its batch (as the NCHW path, ~1e-6)."""
    x0, op, kspace = problem(3)
    inferer = CCDFInferer(SCHEDULE, "ddpm", t0=0.2, num_steps=100, channels_last=True)
    net = small_score_net()
    full = inferer(x0, net, op, kspace, generator=[torch.Generator().manual_seed(s) for s in range(3)]).mean
    for b in range(3):
        alone = inferer(x0[b : b + 1], net, SenseOp(op.maps[b : b + 1], op.mask), kspace[b : b + 1],
                        generator=[torch.Generator().manual_seed(b)]).mean
        assert rel_error(alone, full[b : b + 1]) < 1e-5


@pytest.mark.slow
def test_compiled_network_matches_the_plain_path() -> None:
    """``compile=True`` (inductor on the CPU; compiling takes tens of seconds) equals float32 eager."""
    x0, op, kspace = problem(1)
    net = small_score_net()
    outputs = []
    for compile_ in (False, True):
        inferer = CCDFInferer(SCHEDULE, "ddpm", t0=0.03, num_steps=100, compile=compile_, **PLAIN)
        outputs.append(inferer(x0, net, op, kspace, generator=[torch.Generator().manual_seed(5)]).mean)
    assert rel_error(outputs[1], outputs[0]) < 1e-5
    assert len(inferer._compiled) == 1  # compiled once, reused for every step


def test_fused_ddpm_step_equals_the_papers_f_and_g() -> None:
    """``ddpm_step`` (one affine expression) against eq. f, g computed op by op in float64."""
    gen = torch.Generator().manual_seed(6)
    x, eps, noise = (torch.randn(2, 8, 8, dtype=torch.complex128, generator=gen) for _ in range(3))
    for sigma, sigma_next in ((5.0, 3.0), (0.2, 0.17), (0.05, 0.0)):
        abar, abar_next = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
        alpha = abar / abar_next
        x_vp = x * math.sqrt(abar)
        mean = (x_vp - (1 - alpha) / math.sqrt(1 - abar) * eps) / math.sqrt(alpha)
        std = math.sqrt((1 - alpha) * (1 - abar_next) / (1 - abar))
        expected = (mean + std * noise) / math.sqrt(abar_next)
        got = ddpm_step(x.to(torch.complex64), eps.to(torch.complex64), sigma, sigma_next, noise.to(torch.complex64))
        assert got.dtype == torch.complex64
        assert rel_error(got.to(torch.complex128), expected) < 1e-6
