"""GPU throughput: aecore's Trainer on CUDA against the reference loop on CUDA, and against a
hand-captured CUDA graph of the same training step (what removing every launch overhead buys),
and against the GPU's measured matmul rate.

    python -m bench.gpu [--steps 3000] [--repeats 3] [--device cuda]
    bash bench/gpu.sh           # the same, from any folder, with only torch/numpy/sklearn/safetensors

Needs only torch, numpy, scikit-learn and safetensors (no Streamlit, no umap, no network): MNIST
is read from $AECORE_DATA when present, else random data of its shape stands in (throughput
does not depend on pixel values). Data stays on the GPU; the Trainer syncs with the host only
at its reporting cadence (set beyond the run here) and uses fused Adam on CUDA.
Writes bench/out/gpu-<device>.md. ``--device cpu`` runs the same plumbing on a CPU (for a smoke test).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from aecore.models import build_model

from .common import machine_line, mmm, mnist, write
from .training import MODELS, aecore_rate, compare, matmul_rates, weight_shapes

GOAL = 1_000_000  # samples/s, 784-256-784 at batch 256 on an H100-class GPU
H100_CLASS = ("H100", "H200", "H800", "GH200", "B100", "B200", "GB200")  # (in torch.cuda.get_device_name)


def graphed_rate(mc, data, batch: int, steps: int, device: str) -> float:
    """One whole training step (forward, backward, fused Adam) captured as a CUDA graph and replayed;
    each replay first gathers the next batch into the graph's static input."""
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(mc, data.dim).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=True)
    weights = model.loss_weights()
    x_all = torch.as_tensor(np.asarray(data.x_train), device=dev)
    n = x_all.shape[0] - x_all.shape[0] % batch
    static_x = x_all[:batch].clone()

    def step():
        terms = model.loss_terms(static_x)
        loss = sum(weights[k] * v for k, v in terms.items())
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graphs' docs require
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        opt.zero_grad(set_to_none=False)
        step()
    perm = torch.randperm(x_all.shape[0], device=dev)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        j = (i * batch) % n
        torch.index_select(x_all, 0, perm[j:j + batch], out=static_x)
        graph.replay()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def graph_check(data, device: str) -> str:
    """The Trainer with and without its CUDA graph on the same run (784-256-784 sigmoid and the
    deep stack, 3 epochs of 2,000 examples at batch 128, cosine lr, so that a short last batch
    runs eagerly between replays): whether the graph was used, and how far apart the two runs
    end. tests/test_cuda_graph.py asserts the same where pytest is installed."""
    from aecore.config import TrainConfig
    from aecore.training import Finished, Trainer

    out = []
    for name in ("784-256-784 sigmoid", "deep 784-1000-500-250-30"):
        mc = MODELS[name]
        tc = TrainConfig(epochs=3, batch_size=128, n_train=2000, lr=1e-3, lr_schedule="cosine", device=device,
                         snapshot_every=1e9, progress_every=0.0)
        runs = []
        for graph in (None, False):
            trainer = Trainer(mc, tc, data, cuda_graph=graph)
            fin = [ev for ev in trainer.run() if isinstance(ev, Finished)]
            if not fin:
                return f"graph check: {name} failed to train"
            runs.append((fin[0], trainer.graph_note))
        (g, note), (e, _) = runs
        with torch.no_grad():  # (a difference of weights, no graph: torch warned on the float() of one)
            dw = max(float((p - q).abs().max()) for p, q in zip(g.model.parameters(), e.model.parameters()))
        dl = max(abs(a["loss"] - b["loss"]) / max(abs(b["loss"]), 1e-12) for a, b in zip(g.history, e.history))
        verdict = "same training" if dw < 1e-4 and dl < 1e-4 else "MISMATCH"
        used = "replayed as a CUDA graph" if g.metrics["cuda_graph"] else f"eager ({note})"
        out.append(f"- {name}: {used}; against AECORE_CUDA_GRAPH=0, largest weight difference {dw:.2e}, "
                   f"largest relative loss difference over {len(g.history)} steps {dl:.2e}: **{verdict}**")
    return "\n".join(["Graph check (the Trainer with and without its CUDA graph):", *out])


def goal_line(rate: float | None, device: str, gpu_name: str | None = None) -> str:
    """The GPU goal's verdict from the steady median of 784-256-784 sigmoid at batch 256 (float32)."""
    head = f"Goal: at least {GOAL:,} samples/s for 784-256-784 sigmoid at batch 256 on an H100-class GPU"
    if rate is None:
        return f"{head}: not measured (no float32 row at batch 256 in this run)."
    if not device.startswith("cuda"):
        return f"{head}: not judged ({rate:,.0f} samples/s on {device}, not a GPU)."
    if gpu_name is None:
        gpu_name = torch.cuda.get_device_name(torch.device(device))
    if not any(k in gpu_name.upper() for k in H100_CLASS):
        return f"{head}: not judged ({rate:,.0f} samples/s on {gpu_name}, not an H100-class GPU)."
    return f"{head}: **{'met' if rate >= GOAL else 'not met'}** ({rate:,.0f} samples/s steady on {gpu_name})."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps of each loop before the first repeat")
    ap.add_argument("--batches", default="128,256")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precisions", default="float32", help="aecore precisions (bfloat16: mixed precision; the reference loop stays float32)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU is visible to torch; run with --device cpu for a smoke test", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 as on the CPU: same arithmetic, comparable rates
    data, real = mnist()
    lines = [f"# GPU throughput ({args.device})", "", machine_line(),
             f"Data: {'MNIST' if real else 'random 784-d stand-in (MNIST not found)'} on the device; {args.steps} steps "
             f"per measurement, {args.repeats} alternating repeats (min / median / max); TF32 off.", "",
             "The Trainer replays its step as a CUDA graph where it can (float32, a step without random numbers: "
             "not the VAE); 'eager' is the same Trainer with AECORE_CUDA_GRAPH=0, 'hand graph' the step captured "
             "by hand (bench/gpu.py graphed_rate), with no loss bookkeeping: the launch-free limit. 'aecore samples/s' "
             "is the whole run, like the reference loop's (its first 3 eager steps and the capture included); 'aecore "
             "steady' leaves those out (the Trainer's `steady_samples_per_second`: from step 4 on, after the capture "
             "where there is one): what a longer run tends to, and what the goal is judged on.", "",
             "| model | batch | aecore precision | Trainer path | aecore samples/s | aecore steady samples/s | "
             "reference samples/s | aecore / reference | eager Trainer samples/s | hand graph samples/s | "
             "aecore steady / hand graph | matmul GFLOP/s | trainer % of matmul (6 x params x steady samples/s) |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    goal_rate = None  # the steady median of 784-256-784 sigmoid, batch 256, float32
    for name, mc in MODELS.items():
        for batch, precision in [(b, pr) for b in map(int, args.batches.split(",")) for pr in args.precisions.split(",")]:
            def eager_and_graphed():
                eager = aecore_rate(mc, data, batch, args.steps, args.device, precision, cuda_graph=False)
                if not args.device.startswith("cuda") or mc.variant == "vae" or precision != "float32":
                    return eager, None
                try:
                    return eager, graphed_rate(mc, data, batch, args.steps, args.device)
                except Exception as exc:  # noqa: BLE001  (report, keep measuring the rest)
                    print(f"CUDA graph capture failed for {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    return eager, None

            path: list[str] = []
            steady: list[float] = []
            ours, ref, others = compare(mc, data, batch, args.steps, args.repeats, args.device, warmup=args.warmup,
                                        also=eager_and_graphed, precision=precision, path=path, steady=steady)
            eager = [e for e, _ in others]
            graphed = [g for _, g in others if g is not None]
            model = build_model(mc, 784)
            params = sum(p.numel() for p in model.parameters())
            peak = max(matmul_rates(weight_shapes(model), batch, args.device,
                                    torch.bfloat16 if precision == "bfloat16" else torch.float32))
            eff = 6 * params * float(np.median(steady)) / 1e9
            g_cell = mmm(graphed) if graphed else "n/a"
            g_ratio = mmm([a / b for a, b in zip(steady, graphed)]) if graphed else "n/a"
            if (name, batch, precision) == ("784-256-784 sigmoid", 256, "float32"):
                goal_rate = float(np.median(steady))
            lines.append(f"| {name} | {batch} | {precision} | {' / '.join(sorted(set(path)))} | {mmm(ours)} | "
                         f"{mmm(steady)} | {mmm(ref)} | {mmm([a / b for a, b in zip(ours, ref)])} | {mmm(eager)} | "
                         f"{g_cell} | {g_ratio} | {peak:.0f} | {100 * eff / peak:.0f} % |")
            print(lines[-1], flush=True)
    lines += ["", graph_check(data, args.device)]
    print(lines[-1], flush=True)
    lines += ["", goal_line(goal_rate, args.device)]
    text = "\n".join(lines)
    print(text)
    write(f"gpu-{args.device.split(':')[0]}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
