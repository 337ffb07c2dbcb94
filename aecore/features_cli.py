"""CLI subcommands for the feature-learning applications: ``documents``, ``probe``, ``pretrain``.

``aecore.cli`` calls ``add_parsers(subparsers)`` and dispatches through ``HANDLERS``. With
``--json`` progress goes out as one JSON object per line and the last line holds the result:

    aecore documents --dataset 20newsgroups --code-size 10 --json
        last line: {"ae": {"0.01": p, "0.1": p, "0.5": p}, "lsa": {...}, "code_size": K, "seconds": s}
    aecore probe --dataset digits --variants sigmoid,deep --code-size 16 --json
        last line: {"dataset", "code_size", "labels", "accuracy": {"raw"|"pca"|variant: {"100": a, ...}}, ...}
    aecore pretrain --dataset mnist --hidden 500,500 --labels 100,1000 --json
        last line: {"dataset", "hidden", "labels", "pretrained": {"100": a, ...}, "random": {...}, "curves", ...}

User errors (bad values, missing data) raise ConfigError / DataError / ValueError, which
``aecore.cli.main`` prints as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

__all__ = ["add_parsers", "HANDLERS"]


def _emit(obj: dict) -> None:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    print(json.dumps(clean(obj)), flush=True)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers (e.g. 500,250)")
    if not vals:
        raise argparse.ArgumentTypeError(f"{text!r} names no number")
    return vals


def _label_list(text: str) -> tuple[int | None, ...]:
    out = []
    for t in text.replace(" ", "").split(","):
        if not t:
            continue
        if t.lower() == "all":
            out.append(None)
            continue
        try:
            out.append(int(t))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {t!r} is not a label count (a whole number or 'all')") from None
    if not out:
        raise argparse.ArgumentTypeError(f"{text!r} names no label count")
    return tuple(out)


def _data_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", metavar="D", help="a registered image dataset: digits, mnist, fashion-mnist")
    src.add_argument("--data-file", metavar="PATH", help=".npy / .npz / .csv array with labels, or a folder of images")
    p.add_argument("--data-dir", metavar="DIR", help="data root (default: $AECORE_DATA)")
    p.add_argument("--no-download", action="store_true", help="never download; fail if the files are not here")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--json", action="store_true", help="one JSON object per line; the last holds the result")


def add_parsers(sub) -> None:
    """Add ``documents``, ``probe`` and ``pretrain`` to the ``aecore`` subparsers."""
    from .documents import REPORT_LEVELS

    d = sub.add_parser("documents", help="20 Newsgroups / your texts: deep autoencoder vs LSA, retrieval precision",
                       description="Bag of words (2,000 most frequent words), a deep autoencoder and LSA at the "
                                   "same code size; test documents retrieve other test documents by cosine "
                                   "similarity of codes. The last --json line holds precision at recall "
                                   + ", ".join(f"{r:g}" for r in REPORT_LEVELS) + ".")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", metavar="D", help="20newsgroups (bydate split)")
    src.add_argument("--text-dir", metavar="DIR", help="a folder with one sub-folder of text files per label")
    src.add_argument("--csv", metavar="FILE", help="a CSV of (text, label) rows")
    d.add_argument("--code-size", "-k", type=int, default=10, metavar="K")
    d.add_argument("--hidden", type=_int_list, default=(500, 250, 125), metavar="SIZES",
                   help="encoder layers between the words and the code (default 500,250,125)")
    d.add_argument("--activation", choices=("tanh", "sigmoid", "relu"), default="tanh")
    d.add_argument("--epochs", type=int, default=10)
    d.add_argument("--lr", type=float, default=3e-3)
    d.add_argument("--batch-size", type=int, default=100)
    d.add_argument("--max-features", type=int, default=2000, metavar="V", help="vocabulary size (default 2000)")
    d.add_argument("--test-size", type=float, default=0.3,
                   help="fraction of each label held out for a text folder or CSV (default 0.3)")
    d.add_argument("--n-train", type=int, metavar="N", help="use a seeded subset of N training documents")
    d.add_argument("--n-test", type=int, metavar="N", help="use a seeded subset of N test documents")
    d.add_argument("--data-dir", metavar="DIR", help="data root (default: $AECORE_DATA)")
    d.add_argument("--no-download", action="store_true", help="never download 20 Newsgroups")
    _common(d)

    p = sub.add_parser("probe", help="linear-probe accuracy of codes vs PCA vs raw inputs with 100, 1000, all labels")
    _data_args(p)
    p.add_argument("--variants", default="all", metavar="V,V",
                   help="comma-separated variants, or 'all' (default) for every registered one")
    p.add_argument("--code-size", "-k", type=int, default=16, metavar="K")
    p.add_argument("--labels", type=_label_list, default=(100, 1000, None), metavar="N,N",
                   help="labelled-example counts for the probe, 'all' for every label (default 100,1000,all)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-train", type=int, metavar="N", help="train the autoencoders on a seeded subset of N inputs")
    p.add_argument("--repeats", type=int, default=1, help="average the probe over this many labelled subsets")
    _common(p)

    t = sub.add_parser("pretrain", help="greedy layer-wise (denoising) pre-training vs random init, few labels")
    _data_args(t)
    t.add_argument("--hidden", type=_int_list, default=(500, 500), metavar="SIZES", help="hidden layers (default 500,500)")
    t.add_argument("--activation", choices=("sigmoid", "tanh", "relu"), default="sigmoid")
    t.add_argument("--noise", choices=("masking", "gaussian", "salt-pepper", "none"), default="masking",
                   help="corruption of each layer's autoencoder (default masking)")
    t.add_argument("--noise-level", type=float, default=0.25, help="0 trains plain autoencoders (default 0.25)")
    t.add_argument("--pretrain-epochs", type=int, default=10)
    t.add_argument("--pretrain-lr", type=float, default=3e-3)
    t.add_argument("--pretrain-batch", type=int, default=64)
    t.add_argument("--n-unlabelled", type=int, metavar="N", help="pre-train on a seeded subset of N inputs")
    t.add_argument("--labels", type=_int_list, default=(100, 1000), metavar="N,N", help="default 100,1000")
    t.add_argument("--finetune-epochs", type=int, default=100)
    t.add_argument("--finetune-lr", type=float, default=1e-3)
    t.add_argument("--finetune-batch", type=int, default=32)
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--repeats", type=int, default=1, help="average over this many labelled subsets")
    t.add_argument("--points", type=int, default=25, help="points on each fine-tuning curve")
    _common(t)


def _training_failed(exc: Exception, command: str):
    from .cli import CLIError

    return CLIError(f"aecore {command}: {exc}")


def _load_images(args):
    from .data import load, load_file

    if args.data_file:
        return load_file(args.data_file)
    return load(args.dataset, root=args.data_dir, download=not args.no_download)


def _documents(args) -> int:
    """``aecore documents``; the first Ctrl-C or SIGTERM ends training and the rest of the
    pipeline runs on the model so far (exit status 128 + the signal); a second aborts."""
    from .cli import StopOnSignal
    from .documents import RECALL_LEVELS, DocTrainConfig, load_corpus, run_documents
    from .training import TrainingFailed

    cfg = DocTrainConfig(code_size=args.code_size, hidden=tuple(args.hidden), activation=args.activation,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         device=args.device)
    corpus = load_corpus(dataset=args.dataset, text_dir=args.text_dir, csv_path=args.csv, root=args.data_dir,
                         download=not args.no_download, test_size=args.test_size, seed=args.seed)
    if args.n_train or args.n_test:
        corpus = corpus.subset(args.n_train, args.n_test, seed=args.seed)
    log = sys.stderr

    def on_epoch(row):
        if args.json:
            _emit({"event": "epoch", **row})
        else:
            print(f"epoch {row['epoch']:3d}/{cfg.epochs}  loss {row['loss']:.4f} nats/word  "
                  f"{row['elapsed']:.0f} s", file=log, flush=True)

    if not args.json:
        print(f"{corpus.name}: {corpus.n_train} train / {corpus.n_test} test documents, "
              f"{len(corpus.label_names)} labels", file=log)
    doing = "stopping training; the autoencoder trained so far is compared with LSA as usual"
    try:
        with StopOnSignal(what="aecore documents", doing=doing) as signals:
            res = run_documents(corpus, cfg, max_features=args.max_features, levels=RECALL_LEVELS,
                                on_epoch=on_epoch, on_stage=_stage_reporter(args), stop=signals.stop)
    except TrainingFailed as exc:
        raise _training_failed(exc, "documents") from None
    stopped = signals.stopped
    levels = sorted(res.precision["ae"])
    if args.json:
        _emit({"event": "curves", "recall": levels, "ae": [res.precision["ae"][r] for r in levels],
               "lsa": [res.precision["lsa"][r] for r in levels], "vocabulary_size": len(res.vocabulary),
               "n_train": corpus.n_train, "n_test": corpus.n_test})
        _emit(res.summary() | ({"stopped": True, "epochs": len(res.history)} if stopped else {}))
    else:
        print(f"precision (fraction of retrieved test documents in the query's group), K = {cfg.code_size}")
        print(f"{'recall':>8}  {'autoencoder':>11}  {'LSA':>6}")
        for r in levels:
            print(f"{r:>8g}  {res.precision['ae'][r]:>11.3f}  {res.precision['lsa'][r]:>6.3f}")
        print(f"{res.seconds:.0f} s" + (f" (stopped after {len(res.history)} of {cfg.epochs} epochs)" if stopped else ""))
    return signals.exit_code


def _stage_reporter(args):
    """Where a long pipeline says what it is doing: a JSON line with --json, else stderr."""
    def on_stage(s):
        if args.json:
            _emit({"event": "stage", "stage": s})
        else:
            print(s, file=sys.stderr, flush=True)
    return on_stage


def _probe(args) -> int:
    """``aecore probe``; Ctrl-C / SIGTERM: the variant in training stops after its step and is
    probed with the ones before it, the rest are skipped (exit status 128 + the signal)."""
    from .cli import StopOnSignal
    from .features import probe
    from .registry import variant_names
    from .training import TrainingFailed

    variants = variant_names() if args.variants.strip().lower() == "all" else \
        [v.strip() for v in args.variants.split(",") if v.strip()]
    data = _load_images(args)

    try:
        with StopOnSignal(what="aecore probe", doing="stopping; the variants trained so far are probed and "
                                                     "reported, the rest are skipped") as signals:
            res = probe(data, variants=variants, code_size=args.code_size, labels=args.labels, epochs=args.epochs,
                        lr=args.lr, batch_size=args.batch_size, seed=args.seed, repeats=args.repeats,
                        n_train=args.n_train, device=args.device, on_stage=_stage_reporter(args),
                        stop=signals.stop)
    except TrainingFailed as exc:
        raise _training_failed(exc, "probe") from None
    if args.json:
        _emit(res.to_dict() | ({"stopped": True} if signals.stopped else {}))
    else:
        print(f"linear-probe test accuracy on {res.dataset}, K = {res.code_size}")
        print(f"{'labels':>14}  " + "  ".join(f"{k:>7}" for k in res.labels))
        for name, accs in res.accuracy.items():
            print(f"{name:>14}  " + "  ".join(f"{accs[k]:>7.3f}" for k in res.labels))
        print(f"{res.seconds:.0f} s" + (" (stopped)" if signals.stopped else ""))
    return signals.exit_code


def _pretrain(args) -> int:
    """``aecore pretrain``; Ctrl-C / SIGTERM stops the training in progress and reports what
    finished (exit status 128 + the signal); a second signal aborts."""
    from .cli import StopOnSignal
    from .features import PretrainConfig, pretrain
    from .training import TrainingFailed

    cfg = PretrainConfig(hidden=tuple(args.hidden), activation=args.activation, noise=args.noise,
                         noise_level=args.noise_level, pretrain_epochs=args.pretrain_epochs,
                         pretrain_lr=args.pretrain_lr, pretrain_batch=args.pretrain_batch,
                         n_unlabelled=args.n_unlabelled, labels=tuple(args.labels),
                         finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                         finetune_batch=args.finetune_batch, weight_decay=args.weight_decay,
                         repeats=args.repeats, n_points=args.points, seed=args.seed, device=args.device)
    data = _load_images(args)

    try:
        with StopOnSignal(what="aecore pretrain", doing="stopping; what finished so far is reported (nothing "
                                                        "when stopped during pre-training)") as signals:
            res = pretrain(data, cfg, on_stage=_stage_reporter(args), stop=signals.stop)
    except TrainingFailed as exc:
        raise _training_failed(exc, "pretrain") from None
    if args.json:
        _emit(res.to_dict() | ({"stopped": True} if signals.stopped else {}))
    else:
        print(f"test accuracy after fine-tuning on {res.dataset}, network "
              f"{'-'.join(map(str, [data.dim, *cfg.hidden]))}-classes")
        print(f"{'labels':>8}  {'pre-trained':>11}  {'random init':>11}")
        for k in res.accuracy["random"]:
            print(f"{k:>8}  {res.accuracy['pretrained'][k]:>11.3f}  {res.accuracy['random'][k]:>11.3f}")
        print(f"{res.seconds:.0f} s" + (" (stopped)" if signals.stopped else ""))
    return signals.exit_code


HANDLERS = {"documents": _documents, "probe": _probe, "pretrain": _pretrain}
