"""CCDFInferer on an undersampled multi-coil problem with a Gaussian prior and exact epsilon."""

from __future__ import annotations

import pytest
import torch
from gaussian_model import ExactEpsilon, GaussianImageModel, equispaced_mask, smooth_coil_maps
from monai.inferers import Inferer

from ccdf_mri.diffusion import VESchedule, VPSchedule
from ccdf_mri.inferers import CCDFInferer
from ccdf_mri.physics import ProjectionDC, ProximalDC, SenseOp, conjugate_gradient

SIZE = (16, 16)
MODEL = GaussianImageModel(size=SIZE, rank=8, top=10.0, decay=0.7)
SCHEDULE = VPSchedule()


def make_problem(batch: int, noise_std: float = 0.02, seed: int = 0, cg_iters: int = 5):
    """Truth from the prior, 4 coils, R = 3.2 equispaced mask with 2 centre lines, noisy k-space.

    Returns ``(truth, op, kspace, x0)``; ``x0`` is ``cg_iters`` CG-SENSE iterations from zero
    (the truth is only used to simulate the measurement).
    """
    gen = torch.Generator().manual_seed(seed)
    truth = MODEL.sample(batch, gen)
    maps = smooth_coil_maps(4, SIZE).expand(batch, -1, -1, -1).contiguous()
    mask = equispaced_mask(SIZE[1], 4, 2)
    op = SenseOp(maps, mask)
    kspace = op(truth)
    kspace = (kspace + noise_std * torch.randn(kspace.shape, generator=gen, dtype=torch.complex64)) * mask
    x0 = conjugate_gradient(op.normal, op.adjoint(kspace), None, cg_iters)
    return truth, op, kspace, x0


def rel_error(x: torch.Tensor, truth: torch.Tensor) -> float:
    return ((x - truth).abs().pow(2).sum() / truth.abs().pow(2).sum()).item()


def run(x0, op, kspace, seed=1, network=None, **kwargs) -> torch.Tensor:
    inferer = CCDFInferer(SCHEDULE, **kwargs)
    net = ExactEpsilon(MODEL, SCHEDULE) if network is None else network
    return inferer(x0, net, op, kspace, generator=torch.Generator().manual_seed(seed)).mean


def test_is_a_monai_inferer() -> None:
    assert isinstance(CCDFInferer(SCHEDULE), Inferer)


@pytest.mark.parametrize(("t0", "num_steps"), [(0.2, 100), (0.013, 100), (0.55, 40), (1.0, 30)])
def test_counts_exactly_round_t0_n_evaluations(t0, num_steps) -> None:
    _, op, kspace, x0 = make_problem(2)
    net = ExactEpsilon(MODEL, SCHEDULE)
    inferer = CCDFInferer(SCHEDULE, "ddim", t0=t0, num_steps=num_steps)
    result = inferer(x0, net, op, kspace)
    assert net.calls == round(t0 * num_steps)
    assert result.nfe.tolist() == [round(t0 * num_steps)] * 2 and result.t0.tolist() == [t0] * 2


def test_nfe_counts_every_posterior_sample() -> None:
    """K samples run in one batch (one call per step) but cost K network evaluations per item each step."""
    _, op, kspace, x0 = make_problem(2)
    net = ExactEpsilon(MODEL, SCHEDULE)
    result = CCDFInferer(SCHEDULE, "ddpm", t0=0.2, num_steps=50, num_samples=3)(x0, net, op, kspace)
    assert net.calls == 10 and result.nfe.tolist() == [30, 30]


def test_corrector_steps_are_counted() -> None:
    _, op, kspace, x0 = make_problem(1)
    net = ExactEpsilon(MODEL, SCHEDULE)
    inferer = CCDFInferer(SCHEDULE, "ve", t0=0.1, num_steps=50, corrector_steps=2)
    result = inferer(x0, net, op, kspace, generator=torch.Generator().manual_seed(0))
    assert net.calls == int(result.nfe[0]) == 15


def test_t0_zero_returns_x0_without_evaluations() -> None:
    _, op, kspace, x0 = make_problem(2)
    net = ExactEpsilon(MODEL, SCHEDULE)
    inferer = CCDFInferer(SCHEDULE, t0=0.0, num_steps=100)
    result = inferer(x0, net, op, kspace)
    assert result.mean is x0 and result.std is None
    assert net.calls == 0 and result.nfe.tolist() == [0, 0]


def test_t0_one_starts_from_pure_noise() -> None:
    """From noise, the result does not depend on x0."""
    _, op, kspace, x0 = make_problem(2)
    a = run(x0, op, kspace, t0=1.0, num_steps=20)
    b = run(torch.zeros_like(x0), op, kspace, t0=1.0, num_steps=20)
    torch.testing.assert_close(a, b)
    c = run(x0, op, kspace, t0=0.5, num_steps=20)
    d = run(torch.zeros_like(x0), op, kspace, t0=0.5, num_steps=20)
    assert not torch.allclose(c, d)


def test_forward_jump_is_eq5_in_network_coordinates() -> None:
    """The first network input is a x0 + b z with (a, b) of eq. 5 at step N' (mean and variance
    over 400 copies of one x0)."""
    _, _, _, x0 = make_problem(1)
    copies = x0.expand(400, *SIZE).contiguous()
    op = SenseOp.single_coil(None, copies.shape)
    net = ExactEpsilon(MODEL, SCHEDULE, record=True)
    run(copies, op, op(copies), network=net, t0=0.3, num_steps=10)
    first, t = net.inputs[0]
    assert t.tolist() == [299] * 400
    a, b = SCHEDULE.sub_schedule(10).forward_coefficients(3)
    jumped = MODEL.to_image(first.reshape(400, -1))
    torch.testing.assert_close(jumped.mean(0), a * x0[0], rtol=0.0, atol=5 * b / 400**0.5)
    assert jumped.real.var(0).mean().item() == pytest.approx(b**2, rel=0.05)
    assert jumped.imag.var(0).mean().item() == pytest.approx(b**2, rel=0.05)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_ccdf_beats_x0_and_short_noise_and_matches_long_noise(sampler) -> None:
    """CCDF (N = 100, t0 = 0.2: 20 evaluations) vs x0, 20 steps from noise, 1000 from noise.

    Noisy measurements (k-space noise std 0.02 against pixel std ~0.25), proximal DC with
    lam = 0.1. Errors are relative squared errors over a batch of 8 prior draws.
    """
    truth, op, kspace, x0 = make_problem(8)
    dc = ProximalDC(lam=0.1)
    ccdf = rel_error(run(x0, op, kspace, sampler=sampler, t0=0.2, num_steps=100, dc=dc), truth)
    noise_20 = rel_error(run(x0, op, kspace, sampler=sampler, t0=1.0, num_steps=20, dc=dc), truth)
    noise_1000 = rel_error(run(x0, op, kspace, sampler=sampler, t0=1.0, num_steps=1000, dc=dc), truth)
    assert ccdf < 0.5 * rel_error(x0, truth)
    assert ccdf < noise_20
    assert ccdf <= noise_1000


def test_dc_on_the_denoised_estimate_also_improves_x0() -> None:
    truth, op, kspace, x0 = make_problem(8)
    out = run(x0, op, kspace, t0=0.2, num_steps=100, dc=ProximalDC(lam=0.1), dc_target="x0")
    assert rel_error(out, truth) < 0.5 * rel_error(x0, truth)


@pytest.mark.parametrize("dc_target", ["sample", "x0"])
def test_output_is_data_consistent(dc_target) -> None:
    _, op, kspace, x0 = make_problem(2, noise_std=0.0)
    dc = ProjectionDC(num_iters=50, tol=1e-7)
    out = run(x0, op, kspace, t0=0.2, num_steps=50, dc=dc, dc_target=dc_target)
    residual = lambda x: (op(x) - kspace).norm().item() / kspace.norm().item()  # noqa: E731
    assert residual(x0) > 1e-2
    # as consistent as the DC map itself makes an image (its CG runs in float32)
    assert residual(out) <= residual(dc(x0, op, kspace)) and residual(out) < 1e-3


def test_same_generator_same_output_and_different_seed_differs() -> None:
    _, op, kspace, x0 = make_problem(2)
    a = run(x0, op, kspace, seed=5, t0=0.3, num_steps=30)
    b = run(x0, op, kspace, seed=5, t0=0.3, num_steps=30)
    c = run(x0, op, kspace, seed=6, t0=0.3, num_steps=30)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("num_samples", [1, 3])
def test_batch_of_four_equals_four_single_runs(num_samples) -> None:
    _, op, kspace, x0 = make_problem(4)
    seeds = [11, 12, 13, 14]
    inferer = CCDFInferer(SCHEDULE, "ddpm", t0=0.3, num_steps=30, num_samples=num_samples)
    net = ExactEpsilon(MODEL, SCHEDULE)
    batch = inferer(x0, net, op, kspace, generator=[torch.Generator().manual_seed(s) for s in seeds])
    for b, s in enumerate(seeds):
        op_b = SenseOp(op.maps[b : b + 1], op.mask)
        single = inferer(x0[b : b + 1], net, op_b, kspace[b : b + 1], generator=[torch.Generator().manual_seed(s)])
        torch.testing.assert_close(batch.mean[b : b + 1], single.mean, rtol=1e-4, atol=1e-5)


def test_num_samples_mean_and_std() -> None:
    """K = 8 samples in one batch: the pixel std matches the spread of 8 independent runs,
    and the mean beats the average single sample (by the posterior variance it removes)."""
    truth, op, kspace, x0 = make_problem(4, noise_std=0.0)
    kwargs = dict(t0=0.5, num_steps=40, dc=ProximalDC(lam=0.1))
    inferer = CCDFInferer(SCHEDULE, "ddpm", num_samples=8, **kwargs)
    result = inferer(x0, ExactEpsilon(MODEL, SCHEDULE), op, kspace, generator=torch.Generator().manual_seed(0))
    mean, std = result.mean, result.std
    assert std is not None and std.shape == x0.shape and not torch.is_complex(std)
    singles = torch.stack([run(x0, op, kspace, seed=s, sampler="ddpm", **kwargs) for s in range(100, 108)])
    assert std.pow(2).mean().item() == pytest.approx(singles.std(dim=0).pow(2).mean().item(), rel=0.3)
    single_error = sum(rel_error(s, truth) for s in singles) / len(singles)
    assert rel_error(mean, truth) < single_error - 0.5 * std.pow(2).sum().item() / truth.abs().pow(2).sum().item()
    one = CCDFInferer(SCHEDULE, num_samples=1, **kwargs)(x0, ExactEpsilon(MODEL, SCHEDULE), op, kspace)
    assert one.std is None


@pytest.mark.parametrize("num_samples", [1, 2])
def test_items_start_at_their_own_level_and_equal_single_runs(num_samples) -> None:
    """Per-item t0: each item costs its own N' evaluations and its result equals a run of that
    item alone at that t0 (items join the batch at their own start level)."""
    _, op, kspace, x0 = make_problem(3)
    seeds, t0s = [21, 22, 23], [0.1, 0.0, 0.3]
    net = ExactEpsilon(MODEL, SCHEDULE)
    inferer = CCDFInferer(SCHEDULE, "ddpm", t0=0.5, num_steps=30, num_samples=num_samples)
    batch = inferer(x0, net, op, kspace, generator=[torch.Generator().manual_seed(s) for s in seeds], t0=t0s)
    assert batch.nfe.tolist() == [3 * num_samples, 0, 9 * num_samples] and batch.t0.tolist() == t0s
    assert net.calls == 9  # level 9..4: item 2 alone; 3..1: items 0 and 2 in one evaluation
    torch.testing.assert_close(batch.mean[1], x0[1])
    for b in (0, 2):
        op_b = SenseOp(op.maps[b : b + 1], op.mask)
        single = inferer(x0[b : b + 1], net, op_b, kspace[b : b + 1], generator=[torch.Generator().manual_seed(seeds[b])], t0=t0s[b])
        torch.testing.assert_close(batch.mean[b : b + 1], single.mean, rtol=1e-4, atol=1e-5)


def test_t0_auto_asks_the_selector_per_item() -> None:
    _, op, kspace, x0 = make_problem(2)
    seen = {}

    def selector(inputs, op_, kspace_, eps_fn, sub):
        seen["shape"], seen["levels"] = tuple(inputs.shape), sub.num_steps
        return torch.tensor([0.2, 0.1])

    with pytest.raises(ValueError, match="t0_selector"):
        CCDFInferer(SCHEDULE, t0="auto")
    result = CCDFInferer(SCHEDULE, t0="auto", num_steps=20, t0_selector=selector)(x0, ExactEpsilon(MODEL, SCHEDULE), op, kspace)
    assert seen == {"shape": (2, *SIZE), "levels": 20} and result.nfe.tolist() == [4, 2]


def test_ve_schedule_network_drives_the_inferer() -> None:
    schedule = VESchedule(0.01, 50.0, 1000)
    truth, op, kspace, x0 = make_problem(8)
    inferer = CCDFInferer(schedule, "ve", t0=0.2, num_steps=100, dc=ProximalDC(lam=0.1))
    out = inferer(x0, ExactEpsilon(MODEL, schedule), op, kspace, generator=torch.Generator().manual_seed(0)).mean
    assert rel_error(out, truth) < 0.5 * rel_error(x0, truth)


def test_rejects_bad_arguments() -> None:
    _, op, kspace, x0 = make_problem(2)
    with pytest.raises(ValueError, match="sampler"):
        CCDFInferer(SCHEDULE, "euler")
    with pytest.raises(ValueError, match="dc_target"):
        CCDFInferer(SCHEDULE, dc_target="image")
    with pytest.raises(ValueError, match="t0"):
        CCDFInferer(SCHEDULE, t0=1.2)
    with pytest.raises(ValueError, match="num_samples"):
        CCDFInferer(SCHEDULE, num_samples=0)
    with pytest.raises(ValueError, match=r"inputs"):
        CCDFInferer(SCHEDULE)(x0[:1], ExactEpsilon(MODEL, SCHEDULE), op, kspace)
    with pytest.raises(ValueError, match="expected 2 generators"):
        CCDFInferer(SCHEDULE)(x0, ExactEpsilon(MODEL, SCHEDULE), op, kspace, generator=[torch.Generator()])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_matches_float32() -> None:
    truth, op, kspace, x0 = make_problem(2)
    dev = torch.device("cuda")
    op_cuda = SenseOp(op.maps.to(dev), op.mask.to(dev))
    net = ExactEpsilon(MODEL, SCHEDULE)
    outs = []
    for amp in (None, torch.bfloat16):
        inferer = CCDFInferer(SCHEDULE, "ddim", t0=0.2, num_steps=50, amp_dtype=amp)
        outs.append(inferer(x0.to(dev), net, op_cuda, kspace.to(dev)).mean.cpu())
    assert outs[0].dtype == outs[1].dtype == torch.complex64
    assert rel_error(outs[1], outs[0]) < 1e-2


@pytest.mark.parametrize("num_samples", [1, 2])
def test_automatic_dc_weight_is_estimated_once_per_call_and_equals_the_per_step_map(num_samples, monkeypatch) -> None:
    """ProximalDC(lam='auto') inside the inferer: the k-space noise is estimated once per call
    (the measurement does not change during sampling), items starting at different levels keep
    their own weights, and the output equals the map that re-estimates at every step."""
    import ccdf_mri.physics.noise as noise_module

    _, op, kspace, x0 = make_problem(3, noise_std=0.05)
    t0s = [0.1, 0.3, 0.2]
    gens = lambda: [torch.Generator().manual_seed(s) for s in (5, 6, 7)]  # noqa: E731

    class EveryStep(ProximalDC):  # the previous behaviour: the weight from y at every call
        def bind(self, op_, y):
            return self

    kwargs = dict(num_steps=30, num_samples=num_samples)
    reference = CCDFInferer(SCHEDULE, dc=EveryStep(lam="auto"), **kwargs)(x0, ExactEpsilon(MODEL, SCHEDULE), op, kspace, gens(), t0=t0s)
    calls = []
    original = noise_module.estimate_kspace_noise
    monkeypatch.setattr(noise_module, "estimate_kspace_noise", lambda *a, **k: calls.append(1) or original(*a, **k))
    result = CCDFInferer(SCHEDULE, dc=ProximalDC(lam="auto"), **kwargs)(x0, ExactEpsilon(MODEL, SCHEDULE), op, kspace, gens(), t0=t0s)
    assert len(calls) == 1
    torch.testing.assert_close(result.mean, reference.mean, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(result.mean, CCDFInferer(SCHEDULE, dc=ProximalDC(lam=1.0), **kwargs)(
        x0, ExactEpsilon(MODEL, SCHEDULE), op, kspace, gens(), t0=t0s).mean, atol=1e-3)  # the weight matters here


def test_nfe_counts_the_t0_selectors_network_probes() -> None:
    """t0 = 'auto' with the per-slice estimator: each item's NFE is its N' reverse steps plus the
    estimator's probes of the network (one per reference level), which the network really saw."""
    from ccdf_mri.diffusion.t0 import EstimatedT0

    _, op, kspace, x0 = make_problem(2)
    net = ExactEpsilon(MODEL, SCHEDULE)
    selector = EstimatedT0(factor=2.0, t0_min=0.1, t0_max=0.5, reference=(0.3, 0.5))
    result = CCDFInferer(SCHEDULE, t0="auto", num_steps=20, t0_selector=selector)(x0, net, op, kspace)
    starts = (result.t0 * 20).round().long()
    assert result.nfe.tolist() == (starts + 2).tolist()
    assert net.calls == 2 + int(starts.max())  # probes (batch together) + reverse levels
    fixed = CCDFInferer(SCHEDULE, t0=0.2, num_steps=20, t0_selector=selector)(x0, net, op, kspace)
    assert fixed.nfe.tolist() == [4, 4]  # a number given: no probes
