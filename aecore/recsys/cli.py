"""``aecore recommend``: train one recommender on a ratings split and print its metrics.

    aecore recommend --dataset movielens-100k --model autorec-item --split u1 --baselines --json
    aecore recommend --ratings-csv my.csv --model autorec-user --hidden 200

With ``--json`` every line is one JSON object (progress events, then the summary); the last
line holds ``model, dataset, split, rmse, mae, recall@10, ndcg@10, seconds`` (and with
``--baselines`` a ``baselines`` dict with the same keys per baseline). Bad input raises
DataError / ValueError, which ``aecore.cli.main`` prints as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

__all__ = ["add_parser", "run", "MODEL_FLAGS"]

MODEL_CHOICES = ("autorec-item", "autorec-user", "cdae", "mdacf")
# command-line flag -> config field; a flag the chosen model does not use is an error
MODEL_FLAGS = {
    "hidden": "hidden", "factors": "factors", "reg": "reg", "epochs": "epochs", "lr": "lr",
    "batch_size": "batch_size", "optimizer": "optimizer", "corruption": "corruption", "negatives": "negatives",
    "lam": "lam", "alpha": "alpha", "beta": "beta", "iterations": "iterations", "valid_fraction": "valid_fraction",
    "patience": "patience", "ensemble": "ensemble", "device": "device", "threads": "threads",
    "residual": "residual",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``recommend`` command to an argparse subparsers object; returns its parser."""
    r = subparsers.add_parser(
        "recommend", help="train an autoencoder recommender on ratings and evaluate it",
        description="Train AutoRec (item/user), CDAE or mDA-CF on a ratings split; report RMSE, MAE, "
                    "Recall@k and NDCG@k on the held-out ratings.")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", metavar="NAME", help="movielens-100k or movielens-1m")
    src.add_argument("--ratings-csv", metavar="FILE", help="user,item,rating[,timestamp] per row, header optional")
    r.add_argument("--model", default="autorec-item", choices=MODEL_CHOICES, metavar="M",
                   help="one of: " + ", ".join(MODEL_CHOICES) + " (default autorec-item)")
    r.add_argument("--split", metavar="S", help="u1..u5, ua, ub or random for movielens-100k (default u1); "
                                                "random for movielens-1m and CSV files")
    r.add_argument("--test-csv", metavar="FILE", help="with --ratings-csv: held-out ratings in a second file")
    r.add_argument("--test-fraction", type=float, default=0.1, help="held out by the random split (default 0.1)")
    r.add_argument("--baselines", action="store_true",
                   help="also fit global mean, popularity, biased baseline, biased MF (and Surprise SVD if installed)")
    r.add_argument("--k", type=int, default=10, help="list length for Recall@k / NDCG@k (default 10)")
    r.add_argument("--threshold", type=float, default=4.0, help="held-out ratings >= this are relevant (default 4)")
    g = r.add_argument_group("model parameters (defaults: the model's own)")
    g.add_argument("--hidden", type=int, metavar="K", help="hidden units (AutoRec, CDAE)")
    g.add_argument("--factors", type=int, metavar="K", help="latent factors (mDA-CF)")
    g.add_argument("--reg", type=float, metavar="L", help="L2 weight decay lambda (AutoRec, CDAE)")
    g.add_argument("--epochs", type=int, help="the most epochs; the best on a validation split is kept")
    g.add_argument("--lr", type=float)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=("adam", "rprop"), help="AutoRec")
    g.add_argument("--corruption", type=float, help="input dropout q (CDAE), masking noise p (mDA-CF)")
    g.add_argument("--negatives", type=int, help="CDAE: sampled negatives per positive (0: all items)")
    g.add_argument("--lam", type=float, help="mDA-CF: coupling of mDA codes and factors")
    g.add_argument("--alpha", type=float, help="mDA-CF: weight of the rating fit")
    g.add_argument("--beta", type=float, help="mDA-CF: L2 on the factors")
    g.add_argument("--iterations", type=int, help="mDA-CF: the most alternating iterations")
    g.add_argument("--valid-fraction", type=float, help="training ratings held out to pick the epoch")
    g.add_argument("--patience", type=int, help="epochs without validation gain before stopping")
    g.add_argument("--ensemble", type=int, metavar="N", help="AutoRec: networks averaged (seeds seed..seed+N-1)")
    g.add_argument("--residual", action=argparse.BooleanOptionalAction, default=None,
                   help="AutoRec: learn the residual of the biased baseline (I-AutoRec's default: on; better RMSE, worse top-10 lists)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"))
    g.add_argument("--threads", type=int, help="torch CPU threads while training (0: torch's default)")
    r.add_argument("--seed", type=int, default=0, help="seeds the split, the validation carve-out and the model")
    r.add_argument("--data-dir", metavar="DIR", help="data root (default: $AECORE_DATA)")
    r.add_argument("--no-download", action="store_true", help="never download; fail if the files are not here")
    r.add_argument("--json", action="store_true", help="one JSON object per line; the last holds the metrics")
    return r


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


def _emit(obj: dict) -> None:
    print(json.dumps(_clean(obj)), flush=True)


def _model_params(args, model: str) -> dict:
    from .base import MODELS

    fields = set(MODELS[model].Config.__dataclass_fields__)
    params = {}
    for flag, field in MODEL_FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if field not in fields:
            raise ValueError(f"--{flag.replace('_', '-')} is not used by --model {model}; its parameters: "
                             + ", ".join("--" + f.replace("_", "-") for f in MODEL_FLAGS if MODEL_FLAGS[f] in fields))
        params[field] = value
    if "seed" in fields:
        params["seed"] = args.seed
    return params


def _fit_and_evaluate(model, data, k, threshold, progress=None, stop=None) -> dict:
    from .evaluate import evaluate

    t0 = time.perf_counter()
    model.fit(data.train, data, progress=progress, stop=stop)
    metrics = evaluate(model, data, k=k, threshold=threshold)
    out = {key: metrics[key] for key in ("rmse", "mae", f"recall@{k}", f"ndcg@{k}")}
    out["seconds"] = time.perf_counter() - t0
    out["fit_seconds"] = model.fit_seconds_
    if getattr(model, "best_epoch_", None):
        out["best_epoch"] = int(model.best_epoch_)
    if model.stopped_:  # (network 1's epoch rows for an AutoRec ensemble: its selection and refit)
        out.update(stopped=True, epochs=len(model.history_))
    return out


def run(args) -> int:
    from .base import make, model_names
    from .baselines import surprise_available
    from .data import load

    if args.k < 1:
        raise ValueError(f"--k={args.k} must be >= 1")
    if args.test_csv and not args.ratings_csv:
        raise ValueError("--test-csv needs --ratings-csv")
    params = _model_params(args, args.model)
    model = make(args.model, **params)  # validates before any loading

    progress_dl = None
    if not args.json:
        def progress_dl(done, total):
            pct = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:.1f} MB"
            print(f"\rdownloading {args.dataset}: {pct}", end="", file=sys.stderr, flush=True)
    if args.ratings_csv:
        from .data import load_ratings_csv
        data = load_ratings_csv(args.ratings_csv, split="random", test_fraction=args.test_fraction,
                                seed=args.seed, test_path=args.test_csv)
    else:
        data = load(dataset=args.dataset, split=args.split, root=args.data_dir, download=not args.no_download,
                    seed=args.seed, test_fraction=args.test_fraction, progress=progress_dl)
    if data.skipped:
        n = sum(data.skipped.values())
        reasons = ", ".join(f"{k} {v}" for k, v in data.skipped.items())
        print(f"aecore recommend: warning: '{data.source}': skipped {n} bad row(s) ({reasons})", file=sys.stderr)

    def progress(row):
        if args.json:
            _emit({"event": "epoch", "model": args.model, **row})
        else:
            extra = "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                              if isinstance(v, float) and k not in ("epoch",))
            print(f"{args.model} epoch {row.get('epoch')}/{row.get('epochs')}  {extra}", file=sys.stderr)

    from ..cli import StopOnSignal

    k = args.k
    # the first Ctrl-C or SIGTERM ends training after the current epoch; the model so far is
    # evaluated as usual, the baselines not yet fitted are skipped, and the exit status is 128 +
    # the signal's number; a second signal aborts at once
    with StopOnSignal(what="aecore recommend", doing="stopping training after the current epoch; the model "
                      "trained so far will be evaluated") as signals:
        summary = {"event": "finished", "model": args.model, "dataset": data.name, "split": data.split,
                   **_fit_and_evaluate(model, data, k, args.threshold, progress, stop=signals.stop),
                   "n_users": data.n_users, "n_items": data.n_items, "n_train": len(data.train),
                   "n_test": len(data.test), "skipped": dict(data.skipped), "config": model.config.to_dict()}
        if args.baselines:
            summary["baselines"] = {}
            for name in model_names(baselines=True):
                why = ("training was stopped" if signals.stopped else
                       "scikit-surprise is not installed" if name == "surprise-svd" and not surprise_available()
                       else None)
                if why:
                    summary.setdefault("baselines_skipped", {})[name] = why
                    continue
                params = {"seed": args.seed} if "seed" in make(name).config.to_dict() else {}
                summary["baselines"][name] = _fit_and_evaluate(make(name, **params), data, k, args.threshold,
                                                               stop=signals.stop)
    if args.json:
        _emit(summary)
    else:
        _print_table(summary, k)
        for name, m in [(args.model, summary), *summary.get("baselines", {}).items()]:
            if m.get("stopped"):
                print(f"{name}: stopped after {m['epochs']} epoch(s)")
    return signals.exit_code


def _print_table(summary: dict, k: int) -> None:
    def fmt(v):
        return "   n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"

    print(f"{summary['dataset']} split {summary['split']}: {summary['n_train']} training / "
          f"{summary['n_test']} held-out ratings, {summary['n_users']} users x {summary['n_items']} items")
    print(f"{'model':<16} {'RMSE':>7} {'MAE':>7} {'Recall@' + str(k):>10} {'NDCG@' + str(k):>8} {'seconds':>8}")
    rows = [(summary["model"], summary)] + list(summary.get("baselines", {}).items())
    for name, m in rows:
        print(f"{name:<16} {fmt(m['rmse']):>7} {fmt(m['mae']):>7} {fmt(m[f'recall@{k}']):>10} "
              f"{fmt(m[f'ndcg@{k}']):>8} {m['seconds']:>8.1f}")
    for name, why in summary.get("baselines_skipped", {}).items():
        print(f"{name:<16} skipped: {why}")
