"""Benchmark: autoencoder recommenders and baselines on MovieLens 100K, folds u1..u5.

    python -m bench.recsys                       # all models, u1..u5 -> bench/out/recsys.md (+ .json)
    python -m bench.recsys --splits u1 --models autorec-item,biased-mf
    python -m bench.recsys --ml1m                # also the AutoRec paper's ML-1M anchor (90/10), if present

Every model uses its default configuration (hyperparameters were chosen on a validation split
carved from u1.base, never on a test set); epochs / iterations are chosen per fold on a
validation split of that fold's training ratings. Prints a markdown table (mean ± std over the
folds) and writes it to bench/out/recsys.md; the per-fold numbers go to bench/out/recsys.json.
Needs $AECORE_DATA/movielens-100k/ (or the cache); never downloads unless --download is given.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from aecore.recsys import make, model_names
from aecore.recsys.baselines import surprise_available
from aecore.recsys.data import load_movielens, movielens_info
from aecore.recsys.evaluate import evaluate

from .common import OUT, machine_line, write

MODELS = ("autorec-item", "autorec-user", "cdae", "mdacf")
LABELS = {"autorec-item": "I-AutoRec", "autorec-user": "U-AutoRec", "cdae": "CDAE", "mdacf": "mDA-CF",
          "global-mean": "global mean", "biased-baseline": "biased baseline", "biased-mf": "biased MF (SGD)",
          "surprise-svd": "Surprise SVD"}
KEYS = ("rmse", "mae", "recall@10", "ndcg@10", "fit_seconds")


def run_one(name: str, data, threads: int) -> dict:
    params = {}
    cfg = make(name).config.to_dict()
    if "threads" in cfg:
        params["threads"] = threads
    model = make(name, **params)
    t0 = time.perf_counter()
    model.fit(data.train, data)
    fit = time.perf_counter() - t0
    m = evaluate(model, data, k=10)
    out = {k: m[k] for k in ("rmse", "mae", "recall@10", "ndcg@10")}
    out["fit_seconds"] = fit
    for attr in ("best_epoch_", "best_epoch_seconds_", "best_valid_rmse_"):
        if getattr(model, attr, None) is not None:
            out[attr.rstrip("_")] = float(getattr(model, attr))
    out["config"] = model.config.to_dict()
    return out


def _fmt(values, digits=4) -> str:
    v = np.array([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    if not len(v):
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def table(results: dict, splits: list[str]) -> str:
    lines = [f"| model | RMSE | MAE | Recall@10 | NDCG@10 | fit s | RMSE {splits[0]} |",
             "|---|---|---|---|---|---|---|"]
    for name, per in results.items():
        rows = [per[s] for s in splits if s in per]
        lines.append("| " + " | ".join([
            LABELS.get(name, name), _fmt([r["rmse"] for r in rows]), _fmt([r["mae"] for r in rows]),
            _fmt([r["recall@10"] for r in rows]), _fmt([r["ndcg@10"] for r in rows]),
            _fmt([r["fit_seconds"] for r in rows], 1),
            _fmt([per[splits[0]]["rmse"]]) if splits[0] in per else "n/a"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--splits", default="u1,u2,u3,u4,u5")
    p.add_argument("--models", default=",".join(MODELS + tuple(model_names(baselines=True))))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per model (default 1)")
    p.add_argument("--ml1m", action="store_true", help="also I-/U-AutoRec on MovieLens 1M (90/10), if present")
    p.add_argument("--download", action="store_true", help="download MovieLens from GroupLens when missing")
    args = p.parse_args(argv)
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if "surprise-svd" in names and not surprise_available():
        print("note: scikit-surprise is not installed; skipping surprise-svd", file=sys.stderr)
        names.remove("surprise-svd")

    results: dict[str, dict] = {n: {} for n in names}
    t_all = time.perf_counter()
    for split in splits:
        data = load_movielens("movielens-100k", split=split, download=args.download)
        for name in names:
            r = run_one(name, data, args.threads)
            results[name][split] = r
            print(f"{split} {name:<16} RMSE {r['rmse']:.4f}  MAE {r['mae']:.4f}  R@10 {r['recall@10']:.4f}  "
                  f"N@10 {r['ndcg@10']:.4f}  fit {r['fit_seconds']:.1f}s", file=sys.stderr, flush=True)

    md = [f"## Recommenders on MovieLens 100K, folds {', '.join(splits)} (mean ± std over folds)", "",
          table(results, splits), ""]
    i_auto = results.get("autorec-item", {}).get(splits[0])
    if i_auto:
        md.append(f"I-AutoRec on {splits[0]}: best epoch {int(i_auto.get('best_epoch', 0))} reached after "
                  f"{i_auto.get('best_epoch_seconds', float('nan')):.1f} s of training (epoch selection on 5% of "
                  f"the training ratings); whole fit incl. patience and the refit on all training ratings "
                  f"{i_auto['fit_seconds']:.1f} s.")
    if args.ml1m:
        info = movielens_info("movielens-1m")
        if info["available_offline"] or args.download:
            data = load_movielens("movielens-1m", split="random", download=args.download)
            md += ["", "## AutoRec paper anchor: MovieLens 1M, seeded random 90/10", "",
                   "| model | RMSE (ours) | RMSE (paper) |", "|---|---|---|"]
            for name, paper in (("autorec-item", 0.831), ("autorec-user", 0.874)):
                r = run_one(name, data, args.threads)
                md.append(f"| {LABELS[name]} | {r['rmse']:.4f} | {paper} |")
                results.setdefault(name, {})["ml-1m"] = r
        else:
            md += ["", f"MovieLens 1M not run: {info['hint']}"]
    md += ["", f"{machine_line()}; torch threads per model during training: {args.threads}; total "
               f"{time.perf_counter() - t_all:.0f} s. Timings are wall clock on a shared CPU (other jobs were "
               "running): noisy."]
    text = "\n".join(md) + "\n"
    print(text)
    write("recsys", text)
    (OUT / "recsys.json").write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
