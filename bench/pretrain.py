"""MNIST: greedy layer-wise denoising pre-training vs random initialisation, with 100 and 1,000 labels.

    AECORE_DATA=../shared/data python -m bench.pretrain [--repeats 3] [--threads 1]

Runs ``aecore pretrain --dataset mnist --json`` (the CLI contract) and writes the table to
bench/out/pretrain.md. Target: pre-training beats random initialisation at 100 labels.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

from .common import run_cli, write


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", default="500,500")
    ap.add_argument("--n-unlabelled", type=int, default=20000, help="inputs for pre-training (MNIST has 60,000)")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--finetune-epochs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="labelled subsets averaged per label count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch/BLAS threads (1 is fastest on a busy 2-core machine: spinning threads stall)")
    ap.add_argument("--data-dir", default=os.environ.get("AECORE_DATA"))
    args = ap.parse_args(argv)
    if not args.data_dir:
        print("set AECORE_DATA (or --data-dir) to a data root with mnist/*.gz", file=sys.stderr)
        return 2
    cmd = ["pretrain", "--dataset", "mnist", "--hidden", args.hidden,
           "--n-unlabelled", str(args.n_unlabelled), "--pretrain-epochs", str(args.pretrain_epochs),
           "--labels", "100,1000", "--finetune-epochs", str(args.finetune_epochs), "--repeats", str(args.repeats),
           "--points", "15", "--seed", str(args.seed), "--data-dir", args.data_dir, "--no-download",
           "--device", "cpu"]
    lines = run_cli(cmd, args.threads)
    final = lines[-1]
    rows = ["| labels | pre-trained + fine-tuned | random init | difference | subsets won by pre-training |",
            "|---:|---:|---:|---:|---:|"]
    for k in final["labels"]:
        p, r = final["pretrained"][k], final["random"][k]
        ps, rs = final["per_subset"]["pretrained"][k], final["per_subset"]["random"][k]
        won = sum(a > b for a, b in zip(ps, rs))
        rows.append(f"| {k} | {p:.4f} | {r:.4f} | {p - r:+.4f} | {won} of {len(ps)} "
                    f"({', '.join(f'{a:.3f} vs {b:.3f}' for a, b in zip(ps, rs))}) |")
    best = {k: (max(c["pretrained"]), max(c["random"])) for k, c in final["curves"].items()}
    layers = "; ".join(f"layer {l['layer']} {l['input_dim']}→{l['code_size']}: loss {l['train_loss']:.1f} "
                       f"({l['seconds']:.0f} s)" for l in final["layers"])
    p100, r100 = final["pretrained"]["100"], final["random"]["100"]
    verdict = "met" if p100 > r100 else "NOT met"
    text = "\n".join([
        "# MNIST: layer-wise pre-training vs random initialisation",
        "",
        f"Network 784-{args.hidden.replace(',', '-')}-10 (sigmoid). Test accuracy on the 10,000 test digits after "
        f"{args.finetune_epochs} fine-tuning epochs, mean of {args.repeats} class-balanced labelled subsets.",
        "",
        *rows,
        "",
        f"**Target (pre-training wins at 100 labels): {verdict}** — {p100:.4f} vs {r100:.4f}.",
        "",
        "Best point on the curves (not used for the verdict: choosing it would need test labels): "
        + ", ".join(f"{k} labels {b[0]:.4f} vs {b[1]:.4f}" for k, b in best.items()) + ".",
        "",
        f"Pre-training: stacked denoising autoencoders (masking noise 0.25, cross-entropy, Adam lr 3e-3 cosine, "
        f"{args.pretrain_epochs} epochs per layer) on {args.n_unlabelled} unlabelled training images; {layers}. "
        f"Fine-tuning: Adam lr 1e-3, batch 32, both networks from the same head init, same examples and order. "
        f"Total {final['seconds']:.0f} s on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores, shared; {args.threads} thread(s)).",
        "",
        f"Command: `{' '.join(['aecore', *cmd, '--json'])}`",
        "",
    ])
    print(text)
    write("pretrain", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
