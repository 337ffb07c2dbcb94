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


# AMD's x86 family numbers -> core generation (family 25 holds both Zen 3 and Zen 4, told apart
# by model ranges). A cloud VM often names its CPU only "AMD EPYC", yet the generation decides
# which float32 kernel wins: on Zen 4 (256-bit FMA units) oneDNN and MKL ran this project's
# layers at about the same rate, on Zen 5 (512-bit) oneDNN ran them twice as fast.
_ZEN4_MODELS = (range(0x10, 0x20), range(0x60, 0x80), range(0xA0, 0xB0))


def _amd_generation(family: int, model: int) -> str | None:
    if family == 23:
        return "Zen 2" if model >= 0x30 else "Zen/Zen+"
    if family == 25:
        return "Zen 4" if any(model in r for r in _ZEN4_MODELS) else "Zen 3"
    if family == 26:
        return "Zen 5"
    return None


def cpu_description(cpuinfo: str) -> str:
    """The CPU's name from /proc/cpuinfo's text, with what decides kernel speed: x86 family and
    model (for AMD also the core generation) and the vector extensions."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    extra = []
    try:
        family, model = int(fields["cpu family"]), int(fields["model"])
    except (KeyError, ValueError):
        family = model = None
    if family is not None:
        gen = _amd_generation(family, model) if fields.get("vendor_id") == "AuthenticAMD" else None
        extra.append(f"x86 family {family} model {model}" + (f": {gen}" if gen else ""))
    flags = set(fields.get("flags", "").split())
    isa = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                     ("amx_tile", "AMX")) if flag in flags]
    if isa:
        extra.append(", ".join(isa))
    return f"{name} ({'; '.join(extra)})" if extra else name


def machine() -> dict:
    import torch

    try:
        cpu = cpu_description(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = platform.processor() or platform.machine()
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
