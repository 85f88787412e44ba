"""Where a batch's time goes on a GPU: the score network alone under each speed option, and a
``torch.profiler`` trace of one CCDF call and one initializer call (issue 11).

Called by :mod:`benchmarks.gpu_check` (step "profile") with the bundle's reconstructor; on the
CPU (``--smoke``) the same code runs at tiny sizes so that the suite checks it.

What it reports, for one batch of the file:

- network: FLOPs and leaf-module bytes of one call (``benchmarks.roofline.network_cost``) and
  its median time under: the plain float32 path, ``cudnn.benchmark``, channels-last, bf16
  autocast, and all three; also at 4x the batch (``K = 4`` posterior samples);
- profiles of the inferer (one call) and the initializer (one call): the device's busy time
  against the wall time (a GPU busy for a small part of the wall time waits for Python and
  kernel launches), the number of kernels launched, host-device synchronisations, and the
  kernels with the most device time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks import common, roofline


def network_options(network: torch.nn.Module, shape: tuple[int, ...], device: str, repeats: int) -> dict[str, Any]:
    """Median seconds of one network call on a ``shape`` input under each speed option."""
    x = torch.randn(shape, device=device)
    t = torch.full((shape[0],), 20, dtype=torch.long, device=device)
    out: dict[str, Any] = {"shape": list(shape)}
    out.update(roofline.network_cost(lambda: network(x, t), network))
    previous = torch.backends.cudnn.benchmark
    options = {"fp32": (False, False, False), "fp32 cudnn.benchmark": (True, False, False),
               "fp32 channels-last": (False, True, False), "bf16 autocast": (False, False, True),
               "bf16 channels-last cudnn.benchmark": (True, True, True)}
    try:
        with torch.no_grad():
            for name, (bench, last, bf16) in options.items():
                torch.backends.cudnn.benchmark = bench
                net = network.to(memory_format=torch.channels_last if last else torch.contiguous_format)
                xin = x.contiguous(memory_format=torch.channels_last) if last else x
                autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)

                def call(net=net, xin=xin, autocast=autocast) -> Any:
                    with autocast:
                        return net(xin, t)

                seconds = common.time_repeats(call, repeats, device)["median"]  # warm-up first (cudnn.benchmark chooses there)
                out[name] = {"ms": 1000 * seconds, "tflops": out["flops"] / seconds / 1e12}
    finally:
        torch.backends.cudnn.benchmark = previous
        network.to(memory_format=torch.contiguous_format)
    return out


def trace(fn: Callable[[], Any], device: str, top: int = 10) -> dict[str, Any]:
    """Profile one ``fn()``: wall and device-busy milliseconds, kernel launches, synchronisations,
    the ``top`` kernels by device time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    fn()  # warm-up
    common.synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        fn()
        common.synchronize(device)
        wall = time.perf_counter() - start
    from torch.autograd import DeviceType

    events = prof.key_averages()
    device_us = lambda e: getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0))  # noqa: E731
    # the kernels themselves (device events); the operators that launched them carry the same
    # time again as their "self device time", so only one of the two is summed
    kernels = [e for e in events if e.device_type != DeviceType.CPU and device_us(e) > 0]
    operators = [e for e in events if e.device_type == DeviceType.CPU and device_us(e) > 0]
    syncs = sum(e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"))
    copies = sum(e.count for e in events if e.key in ("cudaMemcpyAsync", "cudaMemcpy"))  # host<->device or on the device
    items = sum(e.count for e in events if e.key == "aten::_local_scalar_dense")  # tensor -> Python number (a sync on a GPU)
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx"))
    busy = sum(device_us(e) for e in kernels) / 1000
    ranked = sorted(kernels, key=device_us, reverse=True)[:top]
    return {"wall_ms": 1000 * wall, "device_busy_ms": busy, "busy_fraction": busy / (1000 * wall) if wall else float("nan"),
            "kernel_launches": launches, "device_syncs": syncs, "memcpy_calls": copies, "scalar_reads": items,
            "top": [{"name": e.key[:90], "ms": device_us(e) / 1000, "count": e.count} for e in ranked],
            "top_operators": [{"name": e.key[:90], "ms": device_us(e) / 1000, "count": e.count}
                              for e in sorted(operators, key=device_us, reverse=True)[:top]],
            "top_cpu": [{"name": e.key[:90], "ms": e.self_cpu_time_total / 1000, "count": e.count}
                        for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]]}


def profile_batch(recon: Any, path: Path, device: str, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """The network under each option (batch and 4x batch), then traces of the inferer and the initializer."""
    from ccdf_mri.io import FastMRIVolume
    from ccdf_mri.physics import SenseOp
    from ccdf_mri.preprocessing import volume_batch

    with FastMRIVolume(path) as volume:
        indices = list(range(min(recon.batch_size, volume.num_slices)))
        data = recon.preprocessing(volume_batch(volume, indices, None, recon.device))
    op = SenseOp(data["maps"], data["mask"])
    batch, (height, width) = len(indices), data["kspace"].shape[-2:]
    out: dict[str, Any] = {"batch": batch, "image": [int(height), int(width)]}
    for label, items in (("network", batch), ("network 4x batch", 4 * batch)):
        log(f"  {label}")
        out[label] = network_options(recon.network, (items, 2, int(height), int(width)), device, repeats)
    with torch.no_grad():
        x0 = recon.initializer(op, data["kspace"])
        generators = lambda: [torch.Generator(device=x0.device).manual_seed(b) for b in range(batch)]  # noqa: E731
        log("  trace: inferer")
        out["trace inferer"] = trace(lambda: recon.inferer(x0, recon.network, op, data["kspace"], generator=generators()), device)
        log("  trace: initializer")
        out["trace initializer"] = trace(lambda: recon.initializer(op, data["kspace"]), device)
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    """Lines for the gpu_check report."""
    lines = [f"## Profile (batch {result['batch']}, image {result['image'][0]}x{result['image'][1]})", ""]
    for label in ("network", "network 4x batch"):
        row = result.get(label)
        if not row:
            continue
        lines.append(f"{label} {tuple(row['shape'])}: {row['flops'] / 1e9:.1f} GFLOP, leaf-module traffic "
                     f"{row['bytes'] / 2**30:.2f} GiB per call; " + ", ".join(
                         f"{name} {row[name]['ms']:.2f} ms ({row[name]['tflops']:.1f} TFLOP/s)"
                         for name in row if isinstance(row[name], dict)) + ".")
    lines.append("")
    for label in ("trace inferer", "trace initializer"):
        row = result.get(label)
        if not row:
            continue
        lines += [f"{label}: wall {row['wall_ms']:.1f} ms, device busy {row['device_busy_ms']:.1f} ms "
                  f"({100 * row['busy_fraction']:.0f} %), {row['kernel_launches']} kernel launches, "
                  f"{row['device_syncs']} synchronisations, {row.get('memcpy_calls', '?')} cudaMemcpy calls, "
                  f"{row['scalar_reads']} tensor-to-number reads; "
                  "operators with the most device time: "
                  + "; ".join(f"{k['name']} {k['ms']:.1f} ms x{k['count']}" for k in row.get("top_operators", [])[:8]) + ".", ""]
    return lines
