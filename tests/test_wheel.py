"""A normal (non-editable) install works outside the checkout, without the training extras.

Builds the wheel, installs it into a fresh virtual environment (CPU torch first, then the
wheel with its declared dependencies only: no pytorch-ignite), and from a temporary directory
runs ``ccdf-mri --help``, ``ccdf-mri bundle path`` and ``ccdf-mri recon`` on a small file with
the shipped models. Needs pip to reach PyPI (or a local index); it is skipped with the reason
when the environment cannot be created.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import recon_data as rd

REPO = Path(__file__).resolve().parents[1]
TORCH = os.environ.get("CCDF_MRI_TEST_TORCH", "torch==2.13.0")


def _run(command, cwd, timeout=900, check=True, env=None):
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.mark.slow
def test_wheel_install_runs_recon_from_anywhere_without_ignite(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(wheels), "-q"], tmp_path)
    wheel = next(wheels.glob("ccdf_mri-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    setup = _run(pip + [TORCH], tmp_path, check=False)
    if setup.returncode != 0:
        pytest.skip(f"cannot install {TORCH} into a fresh venv here: {setup.stderr.strip()[-300:]}")
    setup = _run(pip + [str(wheel)], tmp_path, check=False)
    if setup.returncode != 0:
        pytest.skip(f"cannot install the wheel's dependencies (no package index?): {setup.stderr.strip()[-300:]}")

    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "ccdf-mri")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("CCDF_MRI_BUNDLE", None)  # the shipped bundle, found inside the installed package
    work = tmp_path / "elsewhere"
    work.mkdir()
    assert _run([python, "-c", "import importlib.util as u; print(u.find_spec('ignite') is None)"], work).stdout.strip() == "True"
    assert _run([python, "-c", "import data_prep"], work, check=False).returncode != 0  # nothing generic in site-packages
    start = time.perf_counter()
    assert "recon" in _run([cli, "--help"], work, env=env).stdout
    help_seconds = time.perf_counter() - start
    bundle = Path(_run([cli, "bundle", "path"], work, env=env).stdout.strip())
    assert (bundle / "models" / "score_net.pt").is_file() and REPO not in bundle.resolve().parents

    rd.write_volume(work / "scan.h5")
    done = _run([cli, "recon", "scan.h5", "--out", "out", "--t0", "0.02", "--center-fraction", "0.125", "--quiet"], work,
                env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"scan.nii.gz", "scan.h5", "scan.provenance.json", "metrics.csv"} <= {p.name for p in (work / "out").iterdir()}
    print(f"ccdf-mri --help in a fresh wheel install: {help_seconds:.2f} s")
