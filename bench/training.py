"""Training-loop speed: aecore's Trainer against the canonical loop, and against the machine.

    python -m bench.training [--steps 150] [--repeats 5] [--device cpu|cuda] [--precisions float32,bfloat16] [--quick]

Peer: the loop the canonical examples write (a DataLoader over a TensorDataset with
shuffle=True, ``loss.item()`` every step, PyTorch's default kernels), the same model,
optimizer, batch and number of steps, run alternately with aecore's Trainer in one process.
Limit: this machine's fastest matmul rate in the same precision for the layer shapes involved
(float32: the larger of PyTorch's default kernel, MKL here, and oneDNN), against the trainer's
effective rate 6 x parameters x samples/s (forward 2, backward 4 FLOPs per weight and example).

Both of aecore's gains are split out. float32 rows compare like with like, and also time the
canonical loop with aecore's oneDNN matrix products (``aecore.kernels``); bfloat16 rows run
aecore's mixed precision (``TrainConfig(precision="bfloat16")``) against the same float32
canonical loop, and also time that loop with ``torch.autocast(bfloat16)`` added. In both, that
third column is the canonical loop with aecore's arithmetic, so the table shows how much of the
gain is the arithmetic and how much the loop.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time

import numpy as np
import torch

from aecore import kernels
from aecore.config import ModelConfig, TrainConfig
from aecore.models import build_model
from aecore.training import Trainer, Finished

from .common import machine_line, mmm, mnist, write

MODELS = {
    "784-256-784 sigmoid": ModelConfig(variant="sigmoid", code_size=256),
    "deep 784-1000-500-250-30": ModelConfig(variant="deep", code_size=30, hidden=(1000, 500, 250)),
    "VAE 784-400-20": ModelConfig(variant="vae", code_size=20, hidden=(400,)),
}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_shapes(model) -> list[tuple[int, int]]:
    return [tuple(p.shape) for p in model.parameters() if p.ndim == 2]


def step_matmul_flops(model, dim: int = 784, batch: int = 64) -> float:
    """Matrix-product FLOPs per example of one training step of ``model`` (forward and backward),
    counted by torch's FlopCounterMode on PyTorch's own kernels. Fewer than the issue's 6 x
    parameters: no gradient is taken for the input, so the first layer's backward has one product,
    not two. (It leaves gradients on the model's parameters.)"""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(batch, dim)
    weights = model.loss_weights()
    with kernels.use("aten"), FlopCounterMode(display=False) as counter:  # (it counts aten's products)
        terms = model.loss_terms(x)
        sum(weights[k] * v for k, v in terms.items()).backward()
    return counter.get_total_flops() / batch


def aecore_rate(mc, data, batch, steps, device, precision="float32", cuda_graph=None, path=None,
                steady=None, backward=None) -> float:
    """The Trainer's samples/s over the whole run; ``path`` (a list), if given, gets "CUDA graph" or
    "eager", ``steady`` (a list) the rate after its warm-up steps and capture, and ``backward`` (a
    list) how the gradients were taken ("analytic": written out; "autograd")."""
    tc = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, n_train=batch * steps, device=device,
                     precision=precision, snapshot_every=1e9, progress_every=1e9)
    for ev in Trainer(mc, tc, data, cuda_graph=cuda_graph).run():
        if isinstance(ev, Finished):
            if path is not None:
                path.append("CUDA graph" if ev.metrics.get("cuda_graph") else "eager")
            if steady is not None:
                steady.append(ev.metrics["steady_samples_per_second"])
            if backward is not None:
                backward.append(ev.metrics["backward"])
            return ev.metrics["samples_per_second"]
    raise RuntimeError("trainer failed")


def reference_rate(mc, data, batch, steps, device, autocast=False, linear="aten") -> float:
    """The canonical loop: DataLoader(TensorDataset, shuffle=True), loss.item() each step, with
    PyTorch's default kernels (``linear="onednn"``: oneDNN matrix products instead;
    ``autocast``: its forward pass under ``torch.autocast(bfloat16)``)."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = build_model(mc, data.dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.tensor(data.x_train[: batch * steps])
    loader = DataLoader(TensorDataset(x), batch_size=batch, shuffle=True)
    weights = model.loss_weights()
    with kernels.use(linear):
        return _canonical_loop(model, opt, loader, weights, device, autocast)


def _canonical_loop(model, opt, loader, weights, device, autocast) -> float:
    t0 = time.perf_counter()
    n = 0
    for (xb,) in loader:
        xb = xb.to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            terms = model.loss_terms(xb)
        loss = sum(weights[k] * v for k, v in terms.items())
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        n += len(xb)
    if device != "cpu":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def compare(mc, data, batch: int, steps: int, repeats: int, device: str, warmup: int = 5, also=None,
            precision: str = "float32", path=None, steady=None, backward=None):
    """aecore's (in ``precision``) and the float32 reference loop's samples/s, alternating after a
    warm-up of each; ``also()`` (a third rate, or None) is measured in the same rounds; ``path``,
    ``steady`` and ``backward`` as in ``aecore_rate``. Returns (ours, ref, also) lists."""
    ours, ref, other = [], [], []
    aecore_rate(mc, data, batch, warmup, device, precision)
    reference_rate(mc, data, batch, warmup, device)
    for _ in range(repeats):
        ours.append(aecore_rate(mc, data, batch, steps, device, precision, path=path, steady=steady,
                                backward=backward))
        ref.append(reference_rate(mc, data, batch, steps, device))
        if also is not None and (v := also()) is not None:
            other.append(v)
    return ours, ref, other


def _aten_mm_t(a, b):
    return a @ b.T


def matmul_rate(shapes, batch, device, reps=30, dtype=torch.float32, mm_t=_aten_mm_t) -> float:
    """GFLOP/s of the forward and backward matmuls of these layers at this batch;
    ``mm_t(a, b)`` computes a bᵀ (PyTorch's ``@`` by default, ``kernels.mm_t`` for oneDNN)."""
    flops, secs = 0.0, 0.0
    for out_f, in_f in shapes:
        a = torch.randn(batch, in_f, device=device, dtype=dtype)
        w = torch.randn(out_f, in_f, device=device, dtype=dtype)
        g = torch.randn(batch, out_f, device=device, dtype=dtype)
        for _ in range(3):
            mm_t(a, w)
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            mm_t(a, w)  # forward
            mm_t(g, w.T)  # grad wrt input
            mm_t(g.T, a.T)  # grad wrt weight
        if device != "cpu":
            torch.cuda.synchronize()
        secs += time.perf_counter() - t
        flops += reps * 3 * 2 * batch * in_f * out_f
    return flops / secs / 1e9


def matmul_rates(shapes, batch, device, dtype=torch.float32) -> list[float]:
    """[PyTorch's default kernel's rate] and, for float32 where oneDNN is there, [..., oneDNN's]."""
    rates = [matmul_rate(shapes, batch, device, dtype=dtype)]
    if dtype == torch.float32 and kernels.available(device):
        rates.append(matmul_rate(shapes, batch, device, dtype=dtype, mm_t=kernels.mm_t))
    return rates


def _kernel_words() -> str:
    cap = f"torch reports {kernels.cpu_capability()}, vendor {kernels.cpu_vendor()}"
    if kernels.chosen() == "onednn":
        return f"oneDNN on this CPU ({cap})"
    return f"PyTorch's default kernel on this CPU ({cap}; `AECORE_LINEAR={kernels.backend()}`)"


def goal_lines(goals) -> str:
    """The issue's two CPU goals, judged on the float32 rows: aecore at least 1.3x the canonical
    loop (every repeat), and at least 60 % of the fastest matmul rate at batch 256. A row's optional
    sixth field, the % of the fastest matmul that 1.3x the loop's median rate would take, is
    reported when the first goal is missed; with a seventh, the ceiling (the % a step of nothing but
    its matrix products at the kernel's rate would reach: above 100 %, since those products are
    fewer than 6 x parameters), it also says what share of the step's time would be left for the
    rest of the step (activations, loss, optimizer), and which rows no loop on these kernels can reach."""
    if not goals:
        return "Goals: no float32 rows in this run."
    worst = min(g[2] for g in goals)
    shown = f"{worst:.2f}"
    if shown == "1.30" and worst < 1.3:  # (missed by less than the rounding: say by how much)
        shown = f"{worst:.4f}"
    speed = (f"**Goal: aecore at least 1.3x the canonical loop in float32: {'met' if worst >= 1.3 else 'not met'}** "
             f"(the lowest of any repeat: {shown}; medians {min(g[3] for g in goals):.2f} to "
             f"{max(g[3] for g in goals):.2f}).")
    need = [g for g in goals if len(g) > 5]
    if worst < 1.3 and need:
        # the reference's own rate fixes how near the matmul kernel 1.3x of it lies
        speed += (" To be 1.3x the canonical loop's median the trainer would have to run at "
                  + ", ".join(f"{g[5]:.0f} % ({g[0]}, {g[1]})" for g in need) + " of the fastest float32 matmul.")
        capped = [g for g in need if len(g) > 6]
        if capped:
            over = [f"{g[0]} at batch {g[1]}" for g in capped if g[5] >= g[6]]
            ceilings = {g[0]: g[6] for g in capped}
            speed += (" A step that did nothing but its matrix products at that rate would reach "
                      + ", ".join(f"{c:.0f} % ({n})" for n, c in ceilings.items())
                      + " (its products are fewer than 6 x parameters: no gradient is taken for the input), so 1.3x "
                      "would leave the rest of the step (activations, loss, Adam) "
                      + ", ".join(f"{max(0.0, 100 * (1 - g[5] / g[6])):.0f} % ({g[0]}, {g[1]})" for g in capped)
                      + " of its time" + (f"; no loop on these kernels can reach it for {'; '.join(over)}."
                                          if over else "."))
    at256 = [g for g in goals if g[1] == 256]
    if not at256:
        return speed
    limit = ", ".join(f"{g[0]} {g[4]:.0f} %" for g in at256)
    met = all(g[4] >= 60 for g in at256)
    return (f"{speed} **Goal: at least 60 % of the fastest float32 matmul at batch 256: "
            f"{'met' if met else 'not met'}** ({limit}).")


def default_precisions(device: str) -> tuple[str, str]:
    """(the precisions to time, a sentence for the output when bfloat16 is left out): bfloat16 is
    left out on a CPU without bfloat16 units, where it is emulated and would take most of the run."""
    if device == "cpu" and kernels.bf16_warning() is not None:
        return "float32", (" No bfloat16 rows: this CPU has no bfloat16 units, so bfloat16 is emulated here "
                           "(`--precisions float32,bfloat16` times it anyway).")
    return "float32,bfloat16", ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=5,
                    help="alternating repeats (on a noisy 2-core host, 3 gave medians that moved by up to 0.4 between runs)")
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default=None,
                    help="aecore's precisions to time (the reference loop is always float32); default "
                         "float32,bfloat16, or float32 alone on a CPU without bfloat16 units (emulated there, "
                         "a tenth of float32's speed on a Zen 3)")
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats, batch 256 only (CI-sized)")
    args = ap.parse_args(argv)
    if args.quick:  # (the goals are judged at batch 256)
        args.steps, args.repeats, args.batches = 30, 1, "256"
    skipped = ""
    if args.precisions is None:
        args.precisions, skipped = default_precisions(args.device)
    torch.set_flush_denormal(True)
    data, real = mnist()
    lines = [f"# Training loop speed ({args.device})", "", machine_line(),
             f"Data: {'MNIST' if real else 'random 784-d stand-in (MNIST not found)'}; {args.steps} steps per "
             f"measurement, {args.repeats} alternating repeats (min / median / max).{skipped}", "",
             "| model | batch | aecore precision | aecore gradients | aecore samples/s | reference samples/s (float32) "
             "| aecore / reference | reference with aecore's arithmetic samples/s | matmul GFLOP/s (same precision; float32: "
             "default kernel / oneDNN) | trainer GFLOP/s (6 x params x samples/s) | % of fastest matmul |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    goals = []  # float32 rows: (model, batch, min ratio, median ratio, % of fastest matmul, % 1.3x needs, ceiling %)
    for name, mc in MODELS.items():
        model = build_model(mc, 784)
        params, shapes = n_params(model), weight_shapes(model)
        ceiling = 100 * 6 * params / step_matmul_flops(model)  # products alone at the kernel's rate, in % of it
        for batch in map(int, args.batches.split(",")):
            for precision in args.precisions.split(","):
                bf16 = precision == "bfloat16"
                also = None if not bf16 and not kernels.available(args.device) else (
                    lambda: reference_rate(mc, data, batch, args.steps, args.device, autocast=bf16,
                                           linear="aten" if bf16 else "onednn"))
                how = []
                ours, ref, amp = compare(mc, data, batch, args.steps, args.repeats, args.device, also=also,
                                         precision=precision, backward=how)
                ratio = [a / b for a, b in zip(ours, ref)]
                rates = matmul_rates(shapes, batch, args.device, torch.bfloat16 if bf16 else torch.float32)
                peak = max(rates)
                eff = [6 * params * s / 1e9 for s in ours]
                pct = 100 * float(np.median(eff)) / peak
                if precision == "float32":  # (and the % of peak that 1.3x the loop's median would take)
                    need = 100 * 1.3 * 6 * params * float(np.median(ref)) / 1e9 / peak
                    goals.append((name, batch, min(ratio), float(np.median(ratio)), pct, need, ceiling))
                grads = ", ".join(sorted(set(how), key=how.index))  # (one word unless a run changed its mind)
                lines.append(f"| {name} | {batch} | {precision} | {grads} | {mmm(ours)} | {mmm(ref)} | {mmm(ratio)} | "
                             f"{mmm(amp) if amp else '—'} | {' / '.join(f'{r:.1f}' for r in rates)} | {mmm(eff)} | "
                             f"{pct:.0f} % |")
                print(lines[-1], flush=True)
    lines += ["", goal_lines(goals)]
    lines += ["", f"float32 rows: aecore's matrix products run on {_kernel_words()} (`aecore.kernels`: "
              "oneDNN by default only on an AMD CPU with AVX-512; `AECORE_LINEAR=onednn|aten` forces one), the canonical "
              "loop's on PyTorch's default kernel; the column \"with aecore's arithmetic\" is the canonical loop "
              "on oneDNN, so where aecore uses oneDNN too, aecore / that column is what the loop alone "
              "gains. bfloat16 rows: aecore's mixed precision (matrix products in bfloat16; weights, Adam state and "
              "losses in float32) against the float32 canonical loop; the third column is that loop with "
              "bfloat16 autocast added. The quality cost is in the anchors section (deep autoencoder and VAE "
              "trained both ways). Column \"aecore gradients\": \"analytic\" where the Trainer's step writes the "
              "gradients out (`aecore.backprop`: the dense autoencoders on the CPU in float32), \"autograd\" "
              "elsewhere (the VAE, bfloat16, a GPU; `AECORE_BACKWARD=autograd` everywhere).", "",
              "How much oneDNN gains over the default kernel depends on the CPU: the matmul column gives both "
              "kernels' rates on this machine, and the float32 goals follow them."]
    text = "\n".join(lines)
    print(text)
    write(f"training-{args.device}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
