"""The Trainer with its gradients written out (``aecore.backprop``) against the same Trainer on autograd.

    python -m bench.backward [--steps 150] [--repeats 4] [--batches 128,256] [--quick]

Same model, data, batch and number of steps; the two run alternately in one process
(``AECORE_BACKWARD`` set for each run) after a warm-up of each, on the CPU in float32. Reported:
the Trainer's steady samples/s (after its first steps) min / median / max, and the ratio
written-out / autograd per repeat (min / median / max). A gain here is all the step's own: the
matrix products are the same calls either way.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from .common import machine_line, mmm, mnist, write
from .training import MODELS, aecore_rate

MODES = ("analytic", "autograd")


def alternate(mc, data, batch: int, steps: int, repeats: int, warmup: int = 5) -> dict[str, list[float]]:
    """{mode: [steady samples/s per repeat]} for both modes, alternating (``AECORE_BACKWARD``
    is restored afterwards); each run's metrics must say it took the path asked for."""
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    old = os.environ.get("AECORE_BACKWARD")
    try:
        for mode in MODES:
            os.environ["AECORE_BACKWARD"] = mode
            aecore_rate(mc, data, batch, warmup, "cpu")
        for _ in range(repeats):
            for mode in MODES:
                os.environ["AECORE_BACKWARD"] = mode
                steady, how = [], []
                aecore_rate(mc, data, batch, steps, "cpu", steady=steady, backward=how)
                if how != [mode]:
                    raise RuntimeError(f"asked for {mode} gradients, the Trainer took {how}")
                rates[mode].append(steady[0])
    finally:
        if old is None:
            os.environ.pop("AECORE_BACKWARD", None)
        else:
            os.environ["AECORE_BACKWARD"] = old
    return rates


def row(name: str, batch: int, rates: dict[str, list[float]]) -> str:
    ours, ref = rates["analytic"], rates["autograd"]
    ratio = [a / b for a, b in zip(ours, ref)]
    return (f"| {name} | {batch} | {mmm(ours)} | {mmm(ref)} | {mmm(ratio)} | "
            f"{float(np.median(ours)) / float(np.median(ref)):.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats, batch 256 only (CI-sized)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.batches = 30, 1, "256"
    torch.set_flush_denormal(True)
    data, real = mnist()
    lines = ["# Gradients written out against autograd (cpu, float32)", "", machine_line(),
             f"Data: {'MNIST' if real else 'random 784-d stand-in (MNIST not found)'}; {args.steps} steps per "
             f"measurement, {args.repeats} alternating repeats (min / median / max); `python -m bench.backward`.", "",
             "| model | batch | written out: steady samples/s | autograd: steady samples/s | ratio per repeat "
             "| ratio of medians |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, mc in MODELS.items():
        for batch in map(int, args.batches.split(",")):
            lines.append(row(name, batch, alternate(mc, data, batch, args.steps, args.repeats)))
            print(lines[-1], flush=True)
    lines += ["", "Both columns are aecore's Trainer (fused Adam, `fast_step`, the same matrix kernels); "
              "`AECORE_BACKWARD=autograd` sends its step through autograd, as before `aecore.backprop`."]
    text = "\n".join(lines)
    print(text)
    write("backward-cpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
