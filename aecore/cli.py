"""Command line: ``aecore train | show | datasets | documents | probe | pretrain | recommend | sweep``.

With ``--json`` every event is one JSON object per line and the last line is the final
metrics, so scripts, tests and benchmarks parse the output without scraping text. Bad
arguments and bad files exit with status 2 and one line naming the problem.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

__all__ = ["main", "StopOnSignal"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class StopOnSignal:
    """While training: the first SIGINT (Ctrl-C) or SIGTERM asks the trainer to stop after its
    current step, as the dashboard's Stop does; the run so far is then evaluated and saved with
    status 'stopped', and the command exits with 128 + the signal's number. A second signal
    aborts at once (KeyboardInterrupt) without saving.

    Under torchrun, Ctrl-C reaches torchrun, which sends the signal on to every rank and
    waits 30 s before killing them; the ranks agree on a common step to stop at
    (``aecore.distributed.STOP_CHECK_STEPS``). Handlers are only installed in the main thread
    (Python allows no other); elsewhere the signals keep their usual effect. ``what`` and
    ``doing`` word the message for other commands (sweep, documents, probe, pretrain)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, stop=None, what: str = "aecore train",
                 doing: str = "stopping training; the model trained so far will be evaluated and saved"):
        self.stop = stop if stop is not None else threading.Event()  # what the command's loop watches
        self.what = what
        self.doing = doing
        self.signum: int | None = None
        self._old: dict = {}

    def __call__(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.stop.set()
        # os.write, not print: the handler may run while the main thread is inside a print
        os.write(2, (f"{self.what}: {signal.Signals(signum).name}: {self.doing} "
                     f"(a second Ctrl-C or SIGTERM aborts at once)\n").encode())

    @property
    def stopped(self) -> bool:
        """Whether a signal came (the command then reports what it has as stopped)."""
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum is not None else 0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._old[sig] = signal.signal(sig, self)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        raise CLIError(f"{self.prog}: {message}")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers (e.g. 1000,500,250)")
    return vals


def _noise(text: str) -> tuple[str | None, float | None]:
    """``0.3`` (level), ``masking`` (kind) or ``masking:0.3`` (both)."""
    from .config import NOISES

    kind, _, level = text.partition(":")
    try:
        return None, float(text)
    except ValueError:
        pass
    if kind not in NOISES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a noise level or kind; use a number, one of {', '.join(NOISES)}, or KIND:LEVEL")
    try:
        return kind, float(level) if level else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"noise level {level!r} in {text!r} is not a number") from None


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else v
    return v


def _emit(obj: dict) -> None:
    print(json.dumps({k: _clean(v) for k, v in obj.items()}), flush=True)


def _build_parser() -> _Parser:
    from .registry import VARIANTS, variant_names
    from .config import ACTIVATIONS, LOSSES, OPTIMIZERS, OUTPUT_BIASES, PRECISIONS, SCHEDULES

    p = _Parser(prog="aecore", description="Train and inspect autoencoders.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    names = variant_names()
    epilog = "variants:\n" + "\n".join(f"  {n:<12} {VARIANTS[n].summary}" for n in names)
    t = sub.add_parser("train", help="train one autoencoder", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--variant", required=True, choices=names, metavar="V", help="one of: " + ", ".join(names))
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", metavar="D", help="a registered dataset (see `aecore datasets`)")
    src.add_argument("--data-file", metavar="PATH", help=".npy / .npz / .csv array, a .zip of PNG/JPEG images or a folder of images")
    t.add_argument("--code-size", "-k", type=int, required=True, metavar="K")
    t.add_argument("--loss", choices=LOSSES)
    t.add_argument("--activation", choices=ACTIVATIONS)
    t.add_argument("--output", choices=("linear", "sigmoid"), help="decoder output nonlinearity")
    t.add_argument("--tied", action=argparse.BooleanOptionalAction, default=None)
    t.add_argument("--reg", type=float, metavar="L", help="lambda: L1 weight (sparse), Jacobian weight (contractive)")
    t.add_argument("--noise", type=_noise, metavar="S", help="noise level, kind (gaussian, masking, salt-pepper) or KIND:LEVEL")
    t.add_argument("--hidden", type=_int_list, metavar="SIZES", help="hidden layer sizes, e.g. 1000,500,250")
    t.add_argument("--beta", type=float, default=1.0, help="weight of the VAE's KL term")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-schedule", choices=SCHEDULES, default="constant")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--n-train", type=int, help="train on a seeded subset of this many examples")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    t.add_argument("--augment-shift", type=int, default=0, metavar="PIXELS",
                   help="move each training image by a random offset of up to PIXELS in each direction "
                        "(input and target alike): a regularizer for image data")
    t.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="bfloat16: mixed precision (matrix products in bfloat16, weights and losses in float32); "
                        "0.9-2.0x float32's speed on CPUs with bfloat16 units (AVX512-BF16, AMX), most for big layers; without them it is slower")
    t.add_argument("--output-bias", default="data", choices=OUTPUT_BIASES,
                   help="where the decoder's output bias starts: data = the training data's mean (its log-odds "
                        "for a sigmoid output), init = the model's own initialisation (default: %(default)s)")
    t.add_argument("--data-dir", metavar="DIR", help="data root (default: $AECORE_DATA)")
    t.add_argument("--no-download", action="store_true", help="never download; fail if the files are not here")
    t.add_argument("--out", metavar="DIR", help="save the run here (default: the run store, $AECORE_RUNS)")
    t.add_argument("--no-save", action="store_true", help="do not save the run")
    t.add_argument("--json", action="store_true", help="one JSON object per line; the last holds the metrics")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the processes torchrun starts (torchrun --nproc_per_node N -m aecore.cli "
                        "train --distributed ...); --batch-size is per process; rank 0 saves the run")

    s = sub.add_parser("show", help="print a saved run's config and metrics")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--json", action="store_true")

    d = sub.add_parser("datasets", help="list datasets and whether they are available offline")
    d.add_argument("--data-dir", metavar="DIR")
    d.add_argument("--json", action="store_true")

    from .recsys.cli import add_parser as add_recommend_parser
    add_recommend_parser(sub)
    from .features_cli import add_parsers as add_feature_parsers  # documents, probe, pretrain
    add_feature_parsers(sub)
    from .sweep import add_parser as add_sweep_parser
    add_sweep_parser(sub)
    return p


def _load_data(args):
    from .data import load, load_file

    if args.data_file:
        return load_file(args.data_file)
    progress = None
    if not args.json:
        def progress(done, total):
            pct = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:.1f} MB"
            print(f"\rdownloading {args.dataset}: {pct}", end="", file=sys.stderr, flush=True)
    return load(args.dataset, root=args.data_dir, download=not args.no_download, progress=progress)


def _train(args, session=None) -> int:
    from .config import ModelConfig, TrainConfig
    from .training import Trainer

    if getattr(args, "distributed", False) and session is None:
        from .distributed import process_group
        with process_group(args.device) as session:  # torchrun's group; left cleanly on any exit
            _EXIT["without_finalizing"] = True  # (once joined: a launch error ends normally)
            return _train(args, session)
    main_rank = session is None or session.is_main  # only rank 0 prints and records the run

    kind, level = args.noise if args.noise else (None, None)
    if level is not None and kind is None:
        from .registry import get_variant
        if get_variant(args.variant).defaults.get("noise", "none") == "none":
            kind = "gaussian"
    mc = ModelConfig(variant=args.variant, code_size=args.code_size, activation=args.activation, output=args.output,
                     tied=args.tied, loss=args.loss, reg=args.reg, noise=kind, noise_level=level,
                     hidden=args.hidden, beta=args.beta)
    data = _load_data(args)
    tc = TrainConfig(dataset=args.dataset or str(Path(args.data_file).name), epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule, optimizer=args.optimizer,
                     weight_decay=args.weight_decay, seed=args.seed, device=args.device, n_train=args.n_train,
                     precision=args.precision, augment_shift=args.augment_shift, output_bias=args.output_bias, progress_every=0.5, snapshot_every=1e9)
    data_info = {"name": data.name, "shape": list(data.shape), "input_dim": data.dim,
                 "value_range": list(data.value_range),
                 "label_names": list(data.label_names) if data.label_names else None}
    store = run_id = None
    if not args.no_save and not args.out and main_rank:
        from .runs import RunStore
        store = RunStore()
        run_id = store.start(mc, tc)
    if session is not None:
        from .distributed import DistributedTrainer
        trainer = DistributedTrainer(mc, tc, data, session)
    else:
        trainer = Trainer(mc, tc, data)
    signals = StopOnSignal(trainer.stop, "aecore train" if session is None else f"aecore train, rank {session.rank}")
    try:
        with signals:
            _report(args, trainer, mc, tc, data_info, store, run_id, session, main_rank)
    except KeyboardInterrupt:  # a second Ctrl-C (a run already saved keeps its status: RunStore.fail)
        if store:
            store.fail(run_id, "interrupted (Ctrl-C) before the run was saved", status="interrupted")
        raise
    return signals.exit_code


def _report(args, trainer, mc, tc, data_info, store, run_id, session, main_rank) -> None:
    """Print the trainer's events and save its result (rank 0 only)."""
    from .training import Failed, Finished, Progress

    for ev in trainer.run():
        if not main_rank and isinstance(ev, (Progress, Finished)):  # the other ranks only train
            continue
        if isinstance(ev, Progress):
            if args.json:
                _emit({"event": "progress", "step": ev.step, "epoch": round(ev.epoch, 4), "loss": ev.loss,
                       **ev.terms, "samples_per_second": ev.samples_per_second, "elapsed": ev.elapsed})
            else:
                terms = "  ".join(f"{k} {v:.4g}" for k, v in ev.terms.items())
                print(f"epoch {ev.epoch:6.2f}/{ev.epochs}  loss {ev.loss:.4g}  ({terms})  "
                      f"{ev.samples_per_second:,.0f} samples/s", file=sys.stderr)
        elif isinstance(ev, Failed):
            if store:
                store.fail(run_id, ev.reason)
            raise CLIError(f"aecore train: {'' if main_rank else f'rank {session.rank}: '}{ev.reason}")
        elif isinstance(ev, Finished):
            metrics = dict(ev.metrics)
            if args.out:
                from .checkpoint import save_run
                from .runs import sanitize_name
                out = Path(args.out)
                if out.exists():
                    out = out / sanitize_name(f"{mc.variant}-K{mc.code_size}-seed{tc.seed}")
                    n, base = 1, out
                    while out.exists():
                        n, out = n + 1, base.with_name(f"{base.name}-{n}")
                metrics["run_dir"] = str(save_run(out, mc, tc, ev.model, metrics, ev.history, data_info))
            elif store:
                metrics["run_dir"] = str(store.finish(run_id, mc, tc, ev.model, metrics, ev.history, data_info,
                                                      status="stopped" if ev.stopped else "finished"))
            if args.json:
                _emit({"event": "finished", "stopped": ev.stopped, **metrics})
            else:
                if ev.stopped:
                    print(f"stopped after {metrics['epochs']:.4g} of {tc.epochs} epochs; saved what was trained",
                          file=sys.stderr)
                for k, v in metrics.items():
                    print(f"{k:>24}: {v:.6g}" if isinstance(v, float) else f"{k:>24}: {v}")


def _show(args) -> int:
    from .checkpoint import load_run

    run = load_run(args.run_dir)
    doc = {"run_dir": str(run.path), "model": run.model_cfg.to_dict(), "train": run.train_cfg.to_dict(),
           "data": run.data_info, "metrics": run.metrics, "history_rows": len(run.history)}
    print(json.dumps(doc) if args.json else json.dumps(doc, indent=2))
    return 0


def _datasets(args) -> int:
    from .data import list_datasets

    rows = list_datasets(root=args.data_dir)
    if args.json:
        for r in rows:
            _emit(r)
    else:
        for r in rows:
            where = r.get("location") or "not here (downloads on first use)"
            flag = "offline" if r["available_offline"] else "download"
            print(f"{r['name']:<15} {flag:<9} {r.get('description', '')}  [{where}]")
    return 0


# A process that was a torchrun rank ends without interpreter finalization: gloo's C++ threads can
# outlive the group (destroy_process_group returns before they are joined), and destroying them at
# exit aborted rank 1 with "terminate called without an active exception" in about 1 run in 10 on
# a busy 2-core machine, after the run had finished and been saved; torchrun then failed the job.
_EXIT = {"without_finalizing": False}


def _exit_without_finalizing(code: int) -> None:
    """Flush what Python would flush at exit, then end the process at once (no C++ static destructors)."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or a broken pipe: nothing more can be said
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if _EXIT["without_finalizing"]:
        _exit_without_finalizing(code)
    return code


def _main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError

    try:
        args = _build_parser().parse_args(argv)
        from .recsys.cli import run as _recommend
        from .features_cli import HANDLERS as _feature_handlers
        from .sweep import run_cli as _sweep
        return {"train": _train, "show": _show, "datasets": _datasets, "recommend": _recommend,
                "sweep": _sweep, **_feature_handlers}[args.command](args)
    except CLIError as exc:
        print(str(exc), file=sys.stderr)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"aecore: error: {exc}", file=sys.stderr)
    except sqlite3.Error as exc:
        from .runs import runs_root
        print(f"aecore: error: the run store at {runs_root()} cannot be used ({exc}); "
              f"set AECORE_RUNS to another folder or pass --out DIR", file=sys.stderr)
    except OSError as exc:  # a full disk, a folder without write permission...
        print(f"aecore: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("aecore: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
