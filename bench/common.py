"""What every benchmark shares: the machine's description, MNIST (or a stand-in), tables."""
from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

import numpy as np

# where parts write their tables; `python -m bench --quick` points it at bench/out/quick/ so that
# CI-sized numbers never mix with the full ones
OUT = Path(os.environ.get("AECORE_BENCH_OUT") or Path(__file__).resolve().parent / "out")


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "gpu": gpu, "python": platform.python_version()}


def machine_line() -> str:
    m = machine()
    return (f"CPU: {m['cpu']}, {m['cores']} cores; torch {m['torch']} with {m['threads']} threads; "
            f"GPU: {m['gpu'] or 'none'}; Python {m['python']}")


def mnist(allow_synthetic: bool = True):
    """MNIST from the data root, else (for a quick run on a fresh clone) random data of its shape."""
    from aecore.data import DataError, load

    try:
        return load("mnist", download=False), True
    except DataError:
        if not allow_synthetic:
            raise
    from aecore.data import Dataset

    rng = np.random.default_rng(0)
    x = rng.random((60_000, 784), dtype=np.float32)
    return Dataset(name="synthetic-784", x_train=x, y_train=None, x_test=x[:10_000].copy(), y_test=None,
                   shape=(28, 28), kind="image", value_range=(0.0, 1.0)), False


def mmm(values) -> str:
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return "n/a"
    return f"{min(v):.3g} / {statistics.median(v):.3g} / {max(v):.3g}"


def write(name: str, text: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.md"
    path.write_text(text.rstrip() + "\n")
    return path


def run_cli(args: list[str], threads: int = 1) -> list[dict]:
    """Run ``aecore <args> --json`` with ``threads`` torch/BLAS threads; its JSON lines, or SystemExit
    with the CLI's own message when it fails."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-m", "aecore.cli", *args, "--json"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip() or f"aecore {args[0]} exited with {proc.returncode}")
    return [json.loads(line) for line in proc.stdout.strip().splitlines()]
