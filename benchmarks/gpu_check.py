"""Device check of the ccdf-mri bundle: CUDA run + timing for 320x320 recon, 15 coils (fastMRI knee-like).

Run on a GPU machine from the repository root with OUT set: `OUT=out python3 benchmarks/gpu_check.py`.
It writes synthetic 640x368 (2x readout oversampling), 15-coil volumes and random-weight networks
of the given architectures, so the times are real and the image metrics meaningless."""
import json, os, sys, time, subprocess
from pathlib import Path
import numpy as np
import torch

sys.path.insert(0, os.getcwd())
from ccdf_mri.io import make_ismrmrd_header, write_fastmri_h5
from ccdf_mri.physics.fft import fft2c, ifft2c
from ccdf_mri.networks.score import make_score_network
from ccdf_mri.networks.initializer import make_initializer_network

OUT = Path(os.environ["OUT"]); WORK = Path("/tmp/ccdf_check"); (WORK / "in").mkdir(parents=True, exist_ok=True)
DEV = os.environ.get("CHECK_DEVICE", "cuda")
SMALL = os.environ.get("SMALL") == "1"  # CPU smoke test of this script
print("torch", torch.__version__, torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu", flush=True)
S, C, H, W, R = (2, 4, 64, 48, 32) if SMALL else (8, 15, 640, 368, 320)
sync = torch.cuda.synchronize if DEV == "cuda" else (lambda: None)

def volume(path, seed, S=S):
    g = torch.Generator(device=DEV).manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, H, device=DEV), torch.linspace(-1, 1, W, device=DEV), indexing="ij")
    ks = []
    for s in range(S):
        img = (((x / 0.8) ** 2 + (y / 0.4) ** 2) < 1) * (1 + 0.3 * torch.cos(5 * x + s) * torch.sin(7 * y))
        img = img * torch.exp(1j * 0.3 * x)
        maps = torch.stack([torch.exp(-((x - np.cos(a)) ** 2 + (2 * y - np.sin(a)) ** 2)) * torch.exp(1j * a * torch.ones_like(x))
                            for a in np.linspace(0, 2 * np.pi, C, endpoint=False)])
        k = fft2c((maps * img).to(torch.complex64))
        k = k + 1e-3 * torch.randn(k.shape, generator=g, device=DEV, dtype=torch.complex64)
        ks.append(k.cpu().numpy())
    k = np.stack(ks)
    rss = np.sqrt((np.abs(ifft2c(torch.from_numpy(k)).numpy()) ** 2).sum(1))[:, (H - R) // 2:(H + R) // 2, (W - R) // 2:(W + R) // 2]
    hdr = make_ismrmrd_header((H, W, 1), (R, R, 1), (280.0, 161.0, 4.5), (140.0, 140.0, 4.5), kspace_center=W // 2, kspace_max=W - 1)
    write_fastmri_h5(path, k, hdr, {"max": float(rss.max()), "acquisition": "CORPD_FBK"}, {"reconstruction_rss": rss.astype(np.float32)})

t = time.time()
for i in range(2):
    volume(WORK / "in" / f"file{i}.h5", i)
volume(WORK / "small.h5", 5, S=2)
models = WORK / "models"; models.mkdir(exist_ok=True)
for name, factory, kw, extra in (("score_net", make_score_network, {"channels": [32, 64, 64], "num_res_blocks": 1, "norm_num_groups": 8},
                                  {"schedule": "VPSchedule", "schedule_kwargs": {"num_train_steps": 1000}}),
                                 ("unet", make_initializer_network, {"channels": [32, 64, 128, 256], "strides": [2, 2, 2], "num_res_units": 1}, {})):
    net = factory(**kw); torch.save(net.state_dict(), models / f"{name}.pt")
    (models / f"{name}.json").write_text(json.dumps({"factory": f"{factory.__module__}.{factory.__name__}", "kwargs": kw, **extra}))
print(f"data + models {time.time() - t:.1f}s", flush=True)

if DEV == 'cuda':
    torch.cuda.empty_cache()  # the bundle subprocesses below need the GPU memory
results = {}
# the bundle itself on CUDA, and torchrun with 1 process through multi_gpu_inference.json (nccl)
B = "bundles/ccdf_mri_recon/configs"
common = ["--bundle_root", "bundles/ccdf_mri_recon", "--models_dir", str(models), "--dataset_dir", str(WORK / "in"),
          "--t0", "0.2", "--num_steps", "100", "--progress", "False"]
for label, cmd in (("bundle run", [sys.executable, "-m", "monai.bundle", "run", "--config_file", f"{B}/inference.json",
                                   "--output_dir", str(WORK / "bundle")] + common),
                   ("torchrun nccl x1", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                                         "-m", "monai.bundle", "run", "--config_file", f"['{B}/inference.json','{B}/multi_gpu_inference.json']",
                                         "--output_dir", str(WORK / "multi")] + common[:-2])):
    t = time.time(); p = subprocess.run(cmd, capture_output=True, text=True); dt = time.time() - t
    results[label] = {"rc": p.returncode, "wall_s": dt, "tail": (p.stdout + p.stderr)[-1500:] if p.returncode else (p.stderr[-600:])}
    print(label, p.returncode, f"{dt:.1f}s", flush=True)
    if p.returncode: print(p.stdout[-1500:], "\n".join(l for l in p.stderr.splitlines() if "Error" in l or "error" in l)[-3000:])
import h5py
same = all(np.array_equal(h5py.File(WORK / "bundle" / f"file{i}.h5")["reconstruction"][()], h5py.File(WORK / "multi" / f"file{i}.h5")["reconstruction"][()]) for i in range(2)) if (WORK / "multi" / "file1.h5").exists() else None
results["bundle == torchrun outputs"] = same
print("bundle == torchrun", same)
if os.environ.get("ONLY_BUNDLE") == "1":
    (OUT / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str)); sys.exit(0)

from ccdf_mri.recon import Reconstructor
for label, opts in (("zero_filled t0=0", dict(initializer="zero_filled", t0=0.0)),
                    ("unet t0=0", dict(initializer="unet", t0=0.0)),
                    ("ccdf unet t0=0.2 N=100 ddpm", dict(initializer="unet", t0=0.2, num_steps=100)),
                    ("ccdf unet t0=0.2 N=100 K=4", dict(initializer="unet", t0=0.2, num_steps=100, num_samples=4)),
                    ("ccdf espirit maps t0=0.2 N=100", dict(initializer="unet", t0=0.2, num_steps=100, maps="espirit"))):
    try:
        r = Reconstructor.from_models(models, WORK / "out" / label.replace(" ", "_"), progress=False, device=DEV, batch_size=8, **opts)
        espirit = opts.get("maps") == "espirit"  # sigpy ESPIRiT: one small 2-slice volume, no warm-up
        if not espirit:
            r.run(WORK / "in" / "file0.h5")  # warm-up (cuDNN, allocator)
        sync(); torch.cuda.reset_peak_memory_stats() if DEV == "cuda" else None; t = time.time()
        rep = r.run(WORK / "small.h5" if espirit else WORK / "in" / "file1.h5"); sync(); dt = time.time() - t
        res = rep.results[0]
        results[label] = {"s_per_slice": dt / res.slices if res.slices else None, "nfe": res.nfe, "status": res.status, "error": res.error,
                          "psnr_random_net": res.metrics.get("psnr"), "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else None}
    except Exception as e:
        results[label] = {"error": f"{type(e).__name__}: {e}"}
    print(label, results[label], flush=True)

(OUT / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
