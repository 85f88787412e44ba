"""Roofline numbers for the network step: FLOPs, bytes, the CPU's peak and its memory bandwidth.

- :func:`network_cost`: floating-point operations of one forward call counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls; 2 per multiply-add;
  normalisations and activations are not counted, so the count is a slight underestimate), and
  the bytes the leaf modules read and write (inputs + outputs + parameters of each leaf, at
  the tensors' element size): the traffic if nothing stays in cache between layers.
- :func:`cpu_peak`: cores x clock x FLOPs per cycle per core, from ``/proc/cpuinfo`` flags (the
  assumption is returned as text, as the result files must state it).
- :func:`stream_bandwidth`: a STREAM-like copy of a 256 MiB tensor, bytes read + written per
  second (one thread unless told otherwise).
- :func:`roofline`: achieved FLOP/s and bytes/s of a timed call against those limits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def _cpuinfo() -> dict[str, str]:
    """First processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def flops_per_cycle(flags: set[str], vendor: str, family: int, dtype: str = "float32") -> tuple[int, str]:
    """FLOPs per cycle per core of the widest vector FMA the flags show, and the assumption made.

    Two FMA pipes per core (Intel since Haswell, AMD Zen 2-4) x lanes x 2 (multiply + add).
    AMD Zen 4 (family 25 with AVX-512) runs 512-bit instructions on 256-bit pipes, so its
    AVX-512 rate equals AVX2's. bf16 (``avx512_bf16``'s ``VDPBF16PS``, AMX) doubles the lanes.
    """
    amd = vendor == "AuthenticAMD"
    if "avx512f" in flags and not (amd and family <= 25):
        lanes, unit = 16, "2 x 512-bit FMA pipes"
    elif "avx512f" in flags:
        lanes, unit = 8, "2 x 256-bit FMA pipes (AMD Zen 4 runs AVX-512 as 2 x 256 bit)"
    elif "avx2" in flags and "fma" in flags:
        lanes, unit = 8, "2 x 256-bit FMA pipes (AVX2 + FMA)"
    elif "avx" in flags:
        lanes, unit = 8, "256-bit AVX add + multiply, no FMA"
    else:
        lanes, unit = 4, "128-bit SSE add + multiply"
    per_cycle = 2 * lanes * 2
    if dtype == "bfloat16" and ("avx512_bf16" in flags or "amx_bf16" in flags):
        per_cycle *= 2
        unit += "; bf16 dot products (avx512_bf16) at twice the fp32 rate"
    return per_cycle, f"{per_cycle} fp32 FLOPs/cycle/core: {unit}" if dtype != "bfloat16" else f"{per_cycle} bf16 FLOPs/cycle/core: {unit}"


def cpu_peak(cores: int | None = None, dtype: str = "float32") -> dict[str, Any]:
    """Theoretical peak FLOP/s of ``cores`` cores (default: the usable ones).

    Returns:
        ``{"flops": peak FLOP/s, "cores", "ghz", "flops_per_cycle", "assumption", "model", "flags"}``;
        the clock is the nominal ``cpu MHz`` of ``/proc/cpuinfo`` (turbo not counted).
    """
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    vendor = info.get("vendor_id", "")
    family = int(info.get("cpu family", "0") or 0)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores = int(cores or usable)
    ghz = float(info.get("cpu MHz", "0") or 0) / 1000.0
    per_cycle, assumption = flops_per_cycle(flags, vendor, family, dtype)
    shown = sorted(f for f in flags if f.startswith(("avx", "amx")) or f == "fma")
    return {
        "flops": cores * ghz * 1e9 * per_cycle, "cores": cores, "ghz": ghz, "flops_per_cycle": per_cycle,
        "assumption": f"{cores} core{'s' if cores != 1 else ''} x {ghz:.2f} GHz (nominal) x {assumption}", "model": info.get("model name", "?"),
        "flags": shown, "dtype": dtype,
    }


def stream_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Bytes per second of ``dst.copy_(src)`` on ``mib`` MiB float32 tensors (read + write counted), median."""
    src = torch.ones(mib * 2**18)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / float(np.median(times))


def network_cost(call: Callable[[], Any], network: torch.nn.Module) -> dict[str, float]:
    """FLOPs and leaf-module bytes of one ``call()`` that runs ``network``.

    Returns:
        ``{"flops": count, "bytes": sum over leaf modules of input + output + parameter bytes}``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    total = [0]

    def size(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return value.numel() * value.element_size()
        if isinstance(value, (list, tuple)):
            return sum(size(v) for v in value)
        return 0

    def hook(module: torch.nn.Module, args: Any, out: Any) -> None:
        total[0] += size(args) + size(out) + sum(size(p) for p in module.parameters(recurse=False))

    handles = [m.register_forward_hook(hook) for m in network.modules() if not list(m.children())]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            call()
    finally:
        for handle in handles:
            handle.remove()
    return {"flops": float(counter.get_total_flops()), "bytes": float(total[0])}


def roofline(cost: dict[str, float], seconds: float, peak: dict[str, Any], bandwidth: float) -> dict[str, Any]:
    """Achieved FLOP/s and bytes/s of a call of ``cost`` taking ``seconds`` against the limits.

    ``bound_seconds`` is the roofline's lower bound ``max(flops / peak, bytes / bandwidth)``;
    ``limited_by`` names the larger term.
    """
    compute_s = cost["flops"] / peak["flops"]
    memory_s = cost["bytes"] / bandwidth
    return {
        "flops": cost["flops"], "bytes": cost["bytes"], "intensity": cost["flops"] / max(cost["bytes"], 1.0),
        "seconds": seconds, "achieved_flops": cost["flops"] / seconds, "peak_flops": peak["flops"],
        "fraction_of_peak": cost["flops"] / seconds / peak["flops"], "achieved_bytes_per_s": cost["bytes"] / seconds,
        "bandwidth": bandwidth, "bound_seconds": max(compute_s, memory_s),
        "limited_by": "compute" if compute_s >= memory_s else "memory", "assumption": peak["assumption"],
    }


def roofline_line(name: str, line: dict[str, Any]) -> str:
    """One markdown sentence for a :func:`roofline` result."""
    return (
        f"{name}: {line['flops'] / 1e9:.2f} GFLOP in {1000 * line['seconds']:.1f} ms = "
        f"**{line['achieved_flops'] / 1e9:.1f} GFLOP/s, {100 * line['fraction_of_peak']:.0f}% of the "
        f"{line['peak_flops'] / 1e9:.0f} GFLOP/s peak** ({line['assumption']}); leaf-module traffic "
        f"{line['bytes'] / 2**20:.0f} MiB ({line['intensity']:.0f} FLOP/byte) = "
        f"{line['achieved_bytes_per_s'] / 1e9:.1f} GB/s against a measured copy bandwidth of "
        f"{line['bandwidth'] / 1e9:.1f} GB/s; roofline bound {1000 * line['bound_seconds']:.1f} ms "
        f"({line['limited_by']}-bound)."
    )
