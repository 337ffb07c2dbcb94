"""20 Newsgroups at K = 10: the deep autoencoder's retrieval precision against LSA's.

    AECORE_DATA=../shared/data python -m bench.documents [--code-size 10] [--epochs 10] [--threads 1]
        [--n-train N --n-test N]   (seeded subsets: `python -m bench --quick` uses 3,000 and 1,000)

Runs ``aecore documents --dataset 20newsgroups --json`` (the CLI contract) and writes the
precision-recall table to bench/out/documents.md. Target (Hinton & Salakhutdinov 2006, Fig. 4,
on Reuters): the autoencoder's precision at recall 0.1 is above LSA's.
Test documents are the queries; they retrieve the other test documents by cosine similarity of codes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from .common import run_cli, write


def command(args) -> list[str]:
    """The ``aecore documents`` arguments this benchmark runs (``--n-train``/``--n-test`` only when given)."""
    return ["documents", "--dataset", "20newsgroups", "--code-size", str(args.code_size), "--epochs",
            str(args.epochs), "--seed", str(args.seed), "--data-dir", args.data_dir, "--no-download", "--device", "cpu",
            *(["--n-train", str(args.n_train)] if args.n_train else []),
            *(["--n-test", str(args.n_test)] if args.n_test else [])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code-size", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch/BLAS threads (1 is fastest on a busy 2-core machine: spinning threads stall)")
    ap.add_argument("--data-dir", default=os.environ.get("AECORE_DATA"))
    ap.add_argument("--n-train", type=int, default=None, help="a seeded subset of N training documents (default all)")
    ap.add_argument("--n-test", type=int, default=None, help="a seeded subset of N test documents (default all)")
    args = ap.parse_args(argv)
    if not args.data_dir:
        print("set AECORE_DATA (or --data-dir) to a data root with 20newsgroups/20news-bydate-{train,test}/",
              file=sys.stderr)
        return 2
    cmd = command(args)
    lines = run_cli(cmd, args.threads)
    final = lines[-1]
    curves = next(ln for ln in lines if ln.get("event") == "curves")
    epochs = [ln for ln in lines if ln.get("event") == "epoch"]
    ae, lsa = final["ae"]["0.1"], final["lsa"]["0.1"]
    rows = ["| recall | deep autoencoder | LSA (tf-idf + truncated SVD) |", "|---:|---:|---:|"]
    for r, a, l in zip(curves["recall"], curves["ae"], curves["lsa"]):
        bold = "**" if r == 0.1 else ""
        rows.append(f"| {bold}{r:g}{bold} | {bold}{a:.3f}{bold} | {bold}{l:.3f}{bold} |")
    verdict = "met" if ae > lsa else "NOT met"
    text = "\n".join([
        f"# 20 Newsgroups retrieval at K = {final['code_size']}",
        "",
        f"Precision = fraction of retrieved test documents in the query's group; each of the "
        f"{curves['n_test']} test documents queries the other test documents by cosine similarity of codes. "
        f"Bag of words over the {curves['vocabulary_size']} most frequent words (English stop words removed), "
        f"{curves['n_train']} training documents.",
        "",
        *rows,
        "",
        f"**Target (AE above LSA at recall 0.1): {verdict}** — {ae:.3f} vs {lsa:.3f} "
        f"({ae / lsa:.2f}x).",
        "",
        f"Autoencoder 2000-500-250-125-{final['code_size']} (tanh, linear code, softmax output, cross-entropy with "
        f"the word distribution), Adam lr 3e-3 with cosine decay, batch 100, {len(epochs)} epochs, seed {args.seed}; "
        f"final training loss {epochs[-1]['loss']:.3f} nats per word. "
        f"Total {final['seconds']:.0f} s on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores, shared; {args.threads} thread(s)).",
        "",
        f"Command: `{' '.join(['aecore', *cmd, '--json'])}`",
        "",
        f"Last JSON line: `{json.dumps(final)}`",
        "",
    ])
    print(text)
    write("documents", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
