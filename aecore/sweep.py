"""Hyper-parameter sweeps: one variant over a grid of code sizes K x strengths λ x seeds.

    points = build_grid("sparse", code_sizes=(16, 32), regs=(0, 1e-3), seeds=2, epochs=20)
    out = run_sweep(points, load("digits"), backend="local")      # or backend="ray"
    for r in out.results: print(r.code_size, r.reg, r.test_sse, r.mean_abs_code, r.run_id)

Backends (each configuration trains exactly as ``aecore train`` would; training is seeded, so
the same configuration gives the same metrics on either backend, up to float round-off):

* ``local``: a ``concurrent.futures`` process pool on this machine (forkserver, else spawn),
  torch threads per worker = cores // workers. The data reach the workers as memory-mapped
  ``.npy`` files (``aecore.worker.spill``).
* ``ray``: one Ray task per configuration (``pip install -e ".[cluster]"``), on the cluster at
  ``address`` or on a local one started on the fly. The data go into Ray's object store once;
  progress comes back through a ``ray.util.queue.Queue`` while ``ray.wait`` collects results.

Workers never write the run store: they return metrics, history and weights (as arrays), and
the calling process saves every run (``RunStore.finish``), so a remote cluster needs no shared
disk and SQLite has a single writer. Events go to ``on_event`` as dicts (``progress``,
``finished``, ``failed``) from the calling thread.
"""
from __future__ import annotations

import math
import os
import queue as queue_mod
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .config import ConfigError, ModelConfig, TrainConfig, check_number

__all__ = ["SweepPoint", "SweepResult", "SweepOutcome", "BACKENDS", "build_grid", "run_sweep", "train_point",
           "summarize", "ray_missing", "add_parser", "run_cli", "table"]

BACKENDS = ("local", "ray")
ACTIVE_THRESHOLD = 1e-3  # a code unit counts as active on an example when |h_k| exceeds this
PROGRESS_EVERY = 0.5     # seconds between the trainer's progress events (as `aecore train`)


# --- the grid ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepPoint:
    index: int
    model_cfg: ModelConfig
    train_cfg: TrainConfig

    @property
    def label(self) -> str:
        mc = self.model_cfg
        return f"{mc.variant} K={mc.code_size} λ={mc.reg:g} seed {self.train_cfg.seed}"


def _values(name: str, flag: str, values: Sequence, example: str) -> tuple:
    vals = tuple(values)
    if not vals:
        raise ConfigError(f"{name}: the list is empty; give one or more values, e.g. {flag} {example}")
    seen = [v for i, v in enumerate(vals) if v in vals[:i]]
    if seen:
        raise ConfigError(f"{name}: {seen[0]!r} is listed twice")
    return vals


def build_grid(variant: str, code_sizes: Sequence[int], regs: Sequence[float], seeds: int = 1, *,
               seed: int = 0, dataset: str = "digits", epochs: int = 20, lr: float = 1e-3, batch_size: int = 64,
               device: str = "auto", n_train: int | None = None) -> list[SweepPoint]:
    """Every (K, λ, seed) configuration, K slowest, seed fastest; ``seeds`` seeds from ``seed`` on.

    Every configuration is validated here, before anything trains (``ConfigError`` names the bad value).
    """
    code_sizes = _values("code_size", "--code-size", code_sizes, "16,32,64")
    regs = _values("reg", "--reg", regs, "0,1e-3,1e-2")
    seeds = check_number("seeds", seeds, 1, 1000, integer=True)
    points = []
    for k in code_sizes:
        for reg in regs:
            for s in range(seed, seed + seeds):
                mc = ModelConfig(variant=variant, code_size=k, reg=reg)
                tc = TrainConfig(dataset=dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=s, device=device,
                                 n_train=n_train, progress_every=PROGRESS_EVERY, snapshot_every=1e9)
                points.append(SweepPoint(len(points), mc, tc))
    return points


# --- one configuration (runs in a worker: a pool process or a Ray task) -------------------------
def train_point(mc_dict: dict, tc_dict: dict, data, threads: int = 1,
                progress: Callable[[float, int, float], None] | None = None, stop=None) -> dict:
    """Train one configuration; return plain data (metrics, history, weights as arrays).

    ``progress(epoch, epochs, loss)`` is called about once per epoch (at the trainer's
    half-second cadence); ``stop`` (anything with ``is_set()``) ends training within a step.
    Raises ``RuntimeError`` with the trainer's reason when training fails.
    """
    import torch

    from .embedding import encode_array
    from .training import Failed, Finished, Progress, Trainer

    torch.set_num_threads(max(1, int(threads)))
    mc, tc = ModelConfig.from_dict(mc_dict), TrainConfig.from_dict(tc_dict)
    reported = 0
    for ev in Trainer(mc, tc, data, stop=stop, n_codes=1).run():
        if isinstance(ev, Progress) and progress is not None:
            whole = math.floor(ev.epoch + 1e-9)
            if whole > reported or ev.step == ev.total_steps:
                reported = whole
                progress(float(ev.epoch), int(ev.epochs), float(ev.loss))
        elif isinstance(ev, Failed):
            raise RuntimeError(ev.reason)
        elif isinstance(ev, Finished):
            model = ev.model.cpu().eval()
            h = encode_array(model, np.asarray(data.x_test))  # (N_test, K)
            metrics = dict(ev.metrics)
            metrics["mean_abs_code"] = float(np.abs(h).mean())
            metrics["active_fraction"] = float((np.abs(h) > ACTIVE_THRESHOLD).mean())
            state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
            return {"metrics": metrics, "history": list(ev.history), "state": state,
                    "input_dim": int(model.input_dim), "stopped": bool(ev.stopped)}
    raise RuntimeError("training ended without a result")


# --- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    index: int
    variant: str
    code_size: int
    reg: float
    seed: int
    status: str                      # finished | stopped | failed
    test_mse: float | None = None    # mean squared error per pixel on the test set
    test_sse: float | None = None    # squared error per image
    mean_abs_code: float | None = None   # mean |h_k| over test examples and units
    active_fraction: float | None = None  # fraction of (example, unit) pairs with |h_k| > 1e-3
    seconds: float | None = None     # training time of this configuration
    run_id: str | None = None
    error: str | None = None
    W: np.ndarray | None = field(default=None, repr=False, compare=False)  # (K, D) first-layer filters

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("index", "variant", "code_size", "reg", "seed", "status", "test_mse",
                                              "test_sse", "mean_abs_code", "active_fraction", "seconds", "run_id",
                                              "error")}


@dataclass(frozen=True)
class SweepOutcome:
    backend: str
    workers: int
    seconds: float                   # wall time of the whole sweep, start of the pool / cluster included
    results: tuple[SweepResult, ...]  # in grid order

    def to_dict(self) -> dict:
        return {"backend": self.backend, "workers": self.workers, "seconds": self.seconds,
                "results": [r.to_dict() for r in self.results]}


SUMMARY_METRICS = ("test_sse", "test_mse", "mean_abs_code", "active_fraction", "seconds")


def summarize(results: Sequence[SweepResult]) -> list[dict]:
    """One row per (K, λ) over the finished seeds: the mean of each metric and its standard
    deviation across seeds (``<metric>_std``, 0 with one seed); K, then λ, ascending."""
    groups: dict[tuple[int, float], list[SweepResult]] = {}
    for r in results:
        if r.status == "finished":
            groups.setdefault((r.code_size, r.reg), []).append(r)
    rows = []
    for (k, reg), rs in sorted(groups.items()):
        row = {"code_size": k, "reg": reg, "seeds": len(rs)}
        for name in SUMMARY_METRICS:
            vals = np.array([getattr(r, name) for r in rs], dtype=np.float64)
            row[name], row[f"{name}_std"] = float(vals.mean()), float(vals.std())
        rows.append(row)
    return rows


def ray_missing() -> str | None:
    """Why the ray backend cannot run here, or None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "backend 'ray' needs the cluster extra: pip install -e \".[cluster]\" (ray is not installed)"
    return None


# --- local backend: a process pool -------------------------------------------------------------
_POOL: dict = {}


def _pool_init(q, stop, threads: int, ignore_sigint: bool = False) -> None:
    _POOL.update(q=q, stop=stop, threads=threads)
    if ignore_sigint:  # Ctrl-C reaches the whole terminal process group: the parent passes it on as ``stop``
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_task(index: int, mc_dict: dict, tc_dict: dict, sd) -> dict | None:
    """One configuration's result; None when the sweep was stopped before it started (the pool
    hands a task to a worker before one is free, so cancelling the future may come too late)."""
    from .worker import load_spilled

    if _POOL["stop"].is_set():
        return None
    q = _POOL["q"]
    return train_point(mc_dict, tc_dict, load_spilled(sd), _POOL["threads"],
                       progress=lambda e, n, loss: q.put((index, e, n, loss)), stop=_POOL["stop"])


class _BareMain:
    """Children of a forkserver or spawn context import the parent's ``__main__`` script; under
    Streamlit that is the page script. A bare ``__main__`` while workers start (see aecore.worker)."""

    def __enter__(self):
        from .worker import _lock

        self._lock = _lock
        _lock.acquire()
        self._main = sys.modules.get("__main__")
        import types

        sys.modules["__main__"] = types.ModuleType("__main__")

    def __exit__(self, *exc):
        if self._main is not None:
            sys.modules["__main__"] = self._main
        self._lock.release()
        return False


def _run_local(points, data, workers: int, on_progress, stop, threads: int | None = None,
               ignore_sigint: bool = False) -> Iterator[tuple[int, object]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .worker import mp_context, spill

    ctx = mp_context()
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    q, stop_ev = ctx.Queue(), ctx.Event()
    sd = spill(data)

    def drain():
        while True:
            try:
                on_progress(*q.get_nowait())
            except queue_mod.Empty:
                return

    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_init,
                             initargs=(q, stop_ev, threads, ignore_sigint))
    try:
        with _BareMain():  # the pool starts its processes on submit
            futures = {ex.submit(_pool_task, p.index, p.model_cfg.to_dict(), p.train_cfg.to_dict(), sd): p.index
                       for p in points}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for f in done:
                if f.cancelled():
                    continue
                exc = f.exception()
                if exc is None and f.result() is None:
                    continue  # stopped before it started: run_sweep reports it with the queued ones
                yield futures[f], (exc if exc is not None else f.result())
            if stop is not None and stop.is_set() and not stop_ev.is_set():
                stop_ev.set()  # running ones finish early (and are saved as stopped); queued ones never start
                for f in pending:
                    f.cancel()
        drain()
    finally:  # no process starts here: shutdown needs no bare __main__ (and must not hold the start lock)
        ex.shutdown(wait=True, cancel_futures=True)
        q.close()


# --- ray backend: one task per configuration ----------------------------------------------------
def _ray_task(index: int, mc_dict: dict, tc_dict: dict, data, q) -> dict:
    return train_point(mc_dict, tc_dict, data, 1, progress=lambda e, n, loss: q.put((index, e, n, loss)))


def _ray_start(address: str | None, workers: int | None) -> bool:
    """Connect to the cluster at ``address`` or start a local one (``workers`` CPUs); True when this
    call started Ray and may shut it down. Off the main thread a local Ray lives as long as the process
    (``aecore.ray_runner.ensure_ray``, 2 CPUs) and is never shut down by a sweep."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    if threading.current_thread() is not threading.main_thread():
        # Ray's processes die with the thread that started them: off the main thread (a dashboard
        # task) Ray is started once for the whole process by the job runner's owner thread
        from .ray_runner import ensure_ray

        ensure_ray(address)
        return False
    kw = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if address:
        ray.init(address=address, **kw)
    else:
        ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, **kw)
    return True


def _run_ray(points, data, workers, address, on_progress, stop, shutdown, info: dict) -> Iterator[tuple[int, object]]:
    import ray
    from ray.util.queue import Queue

    started = _ray_start(address, workers)
    q = None
    try:
        info["workers"] = int(ray.cluster_resources().get("CPU", 0)) or info["workers"]  # tasks take 1 CPU each
        q = Queue()
        data_ref = ray.put(data)  # once into the object store; every task reads it from there
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_task)
        refs = {task.remote(p.index, p.model_cfg.to_dict(), p.train_cfg.to_dict(), data_ref, q): p.index
                for p in points}

        def drain():
            n = q.qsize()
            if n:
                for item in q.get_nowait_batch(n):
                    on_progress(*item)

        pending = list(refs)
        cancelled = False
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
            drain()
            for r in done:
                try:
                    yield refs[r], ray.get(r)
                except ray.exceptions.TaskCancelledError:
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    yield refs[r], cause
                except ray.exceptions.RayError as exc:  # a worker died, the node went away...
                    yield refs[r], RuntimeError(f"{type(exc).__name__}: {exc}")
            if stop is not None and stop.is_set() and not cancelled:
                cancelled = True
                for r in pending:
                    ray.cancel(r, force=True)
        drain()
    finally:
        if q is not None:
            try:
                q.shutdown(force=True)
            except Exception:  # the cluster may be gone already
                pass
        if shutdown if shutdown is not None else started:
            ray.shutdown()


# --- the driver --------------------------------------------------------------------------------
def run_sweep(points: Sequence[SweepPoint], data, backend: str = "local", workers: int | None = None,
              address: str | None = None, store=None, save: bool = True, data_info: dict | None = None,
              on_event: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
              shutdown: bool | None = None, session: str | None = None,
              threads: int | None = None, ignore_sigint: bool = False) -> SweepOutcome:
    """Train every point on ``backend`` and save each run in ``store`` (default: the run store).

    ``workers``: processes (local) or CPUs of a local Ray cluster; default one per core, at
    most one per point. ``shutdown`` (ray): end Ray afterwards (default: when this call started it).
    ``session``: the dashboard session the runs belong to (None: shared, as the CLI's).
    ``threads`` (local): torch threads per worker (default: the cores shared by the workers).
    ``ignore_sigint`` (local): the workers ignore SIGINT, for a caller that turns Ctrl-C into
    ``stop`` itself (the CLI); otherwise a terminal's Ctrl-C would kill them mid-step.
    """
    import torch

    from .models import build_model

    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is not known; choose one of {', '.join(BACKENDS)}")
    if not points:
        raise ConfigError("the sweep has no configurations")
    if backend == "ray" and (why := ray_missing()):
        raise ConfigError(why)
    if workers is not None:
        workers = check_number("workers", workers, 1, 1024, integer=True)
    n_workers = workers or max(1, min(len(points), os.cpu_count() or 1))
    emit = on_event or (lambda ev: None)
    by_index = {p.index: p for p in points}
    if save and store is None:
        from .runs import RunStore
        store = RunStore()
    if data_info is None:
        data_info = {"name": data.name, "shape": list(data.shape), "input_dim": int(data.dim),
                     "value_range": [float(v) for v in data.value_range],
                     "label_names": list(data.label_names) if data.label_names else None}
    run_ids = {}
    if save:
        for p in points:
            mc = p.model_cfg
            run_ids[p.index] = store.start(mc, p.train_cfg, name=f"sweep-{mc.variant}-K{mc.code_size}-"
                                                                 f"l{mc.reg:g}-s{p.train_cfg.seed}", session=session)

    def on_progress(index, epoch, epochs, loss):
        emit({"event": "progress", "index": index, "label": by_index[index].label, "epoch": epoch,
              "epochs": epochs, "loss": loss})

    t0 = time.perf_counter()
    info = {"workers": n_workers}
    if backend == "local":
        outcomes = _run_local(points, data, n_workers, on_progress, stop, threads, ignore_sigint)
    else:
        outcomes = _run_ray(points, data, workers, address, on_progress, stop, shutdown, info)
    results: dict[int, SweepResult] = {}
    for index, out in outcomes:
        p = by_index[index]
        mc, tc = p.model_cfg, p.train_cfg
        base = dict(index=index, variant=mc.variant, code_size=mc.code_size, reg=mc.reg, seed=tc.seed)
        run_id = run_ids.get(index)
        if isinstance(out, BaseException):
            reason = str(out) or type(out).__name__
            if run_id:
                store.fail(run_id, reason)
            results[index] = SweepResult(**base, status="failed", run_id=run_id, error=reason)
            emit({"event": "failed", "label": p.label, **results[index].to_dict()})
            continue
        m = out["metrics"]
        model = build_model(mc, out["input_dim"])
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in out["state"].items()})  # a writable copy
        status = "stopped" if out["stopped"] else "finished"
        if run_id:
            store.finish(run_id, mc, tc, model, m, out["history"], data_info, status=status)
        results[index] = SweepResult(**base, status=status, test_mse=m.get("test_mse"), test_sse=m.get("test_sse"),
                                     mean_abs_code=m["mean_abs_code"], active_fraction=m["active_fraction"],
                                     seconds=m.get("seconds"), run_id=run_id,
                                     W=model.W.detach().cpu().numpy().copy())
        emit({"event": "finished", "label": p.label, **results[index].to_dict()})
    seconds = time.perf_counter() - t0
    for p in points:  # stopped before its turn (or, on Ray, cancelled while it trained)
        if p.index not in results:
            mc = p.model_cfg
            reason = "the sweep was stopped before this run finished"
            if run_ids.get(p.index):
                store.fail(run_ids[p.index], reason, status="stopped")
            results[p.index] = SweepResult(p.index, mc.variant, mc.code_size, mc.reg, p.train_cfg.seed, "stopped",
                                           run_id=run_ids.get(p.index), error=reason)
    return SweepOutcome(backend, info["workers"], seconds, tuple(results[p.index] for p in points))


# --- command line: aecore sweep ----------------------------------------------------------------
def _float_list(text: str) -> tuple[float, ...]:
    import argparse

    out = []
    for t in text.replace(" ", "").split(","):
        if not t:
            continue
        try:
            out.append(float(t))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {t!r} is not a number (e.g. 0,1e-4,1e-3)") from None
    return tuple(out)


def _int_list(text: str) -> tuple[int, ...]:
    import argparse

    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers (e.g. 16,32,64)")


def add_parser(sub) -> None:
    """Add ``aecore sweep`` to an argparse subparsers object."""
    from .registry import variant_names

    names = variant_names()
    s = sub.add_parser("sweep", help="train one variant over a grid of code sizes x λ x seeds",
                       description="Train every (K, λ, seed) configuration, save each run in the run store "
                                   "and print a summary table. Backends: local (a process pool) or ray "
                                   "(a Ray cluster; needs pip install -e \".[cluster]\").")
    s.add_argument("--variant", required=True, choices=names, metavar="V", help="one of: " + ", ".join(names))
    s.add_argument("--code-size", "-k", type=_int_list, required=True, metavar="K,K,...", help="e.g. 16,32,64")
    s.add_argument("--reg", type=_float_list, default=(0.0,), metavar="L,L,...",
                   help="λ values, e.g. 0,1e-4,1e-3,1e-2 (default 0)")
    s.add_argument("--seeds", type=int, default=1, help="seeds per configuration: --seed, --seed+1, ... (default 1)")
    s.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    s.add_argument("--backend", choices=BACKENDS, default="local")
    s.add_argument("--address", metavar="ADDR", help="ray: a running cluster, e.g. ray://head:10001 or auto "
                                                     "(default: start a local one)")
    s.add_argument("--workers", type=int, help="local: processes; ray without --address: CPUs of the local cluster "
                                               "(default: one per core)")
    s.add_argument("--dataset", default="digits", metavar="D", help="a registered dataset (default digits)")
    s.add_argument("--epochs", type=int, default=20)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--n-train", type=int, help="train on a seeded subset of this many examples")
    s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    s.add_argument("--data-dir", metavar="DIR", help="data root (default: $AECORE_DATA)")
    s.add_argument("--no-download", action="store_true", help="never download; fail if the files are not here")
    s.add_argument("--no-save", action="store_true", help="do not save the runs")
    s.add_argument("--json", action="store_true", help="one JSON object per line; the last holds every result")


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(outcome: SweepOutcome) -> str:
    """The summary table ``aecore sweep`` prints."""
    head = f"{'variant':<11} {'K':>5} {'λ':>8} {'seed':>4}  {'test SSE':>9} {'test MSE':>9} " \
           f"{'mean |h|':>9} {'active':>7} {'seconds':>8}  {'status':<8} run id"
    lines = [head, "-" * len(head)]
    for r in outcome.results:
        lines.append(f"{r.variant:<11} {r.code_size:>5} {r.reg:>8g} {r.seed:>4}  {_fmt(r.test_sse, '9.4f')} "
                     f"{_fmt(r.test_mse, '9.5f')} {_fmt(r.mean_abs_code, '9.4f')} {_fmt(r.active_fraction, '7.1%')} "
                     f"{_fmt(r.seconds, '8.1f')}  {r.status:<8} {r.run_id or '-'}"
                     + (f"  ({r.error})" if r.error and r.status == "failed" else ""))
    lines.append(f"{len(outcome.results)} configurations on the {outcome.backend} backend "
                 f"({outcome.workers} workers) in {outcome.seconds:.1f} s")
    return "\n".join(lines)


def run_cli(args) -> int:
    """``aecore sweep``. The first Ctrl-C or SIGTERM stops it as the dashboard's Stop does (exit
    status 128 + the signal); a second aborts (aecore.cli.StopOnSignal)."""
    import json

    from .cli import StopOnSignal

    from .data import load

    points = build_grid(args.variant, args.code_size, args.reg, args.seeds, seed=args.seed, dataset=args.dataset,
                        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, device=args.device,
                        n_train=args.n_train)
    if args.backend == "ray" and (why := ray_missing()):
        raise ConfigError(why)
    if args.address and args.backend != "ray":
        raise ConfigError(f"--address {args.address} is only used by --backend ray")
    data = load(args.dataset, root=args.data_dir, download=not args.no_download)
    n = len(points)

    def emit(ev: dict) -> None:
        if args.json:
            print(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                              for k, v in ev.items()}), flush=True)
            return
        i = ev["index"] + 1
        if ev["event"] == "progress":
            print(f"[{i}/{n}] {ev['label']}: epoch {ev['epoch']:.1f}/{ev['epochs']}  loss {ev['loss']:.4g}",
                  file=sys.stderr, flush=True)
        elif ev["event"] == "finished":
            print(f"[{i}/{n}] {ev['label']}: {'stopped' if ev.get('status') == 'stopped' else 'done'}, test SSE {ev['test_sse']:.4f}, mean |h| {ev['mean_abs_code']:.4f}",
                  file=sys.stderr, flush=True)
        else:
            print(f"[{i}/{n}] {ev['label']}: failed: {ev['error']}", file=sys.stderr, flush=True)

    doing = ("stopping the sweep; running configurations stop after their current step and are evaluated "
             "and saved as stopped, queued ones do not start")
    with StopOnSignal(what="aecore sweep", doing=doing) as signals:
        out = run_sweep(points, data, backend=args.backend, workers=args.workers, address=args.address,
                        save=not args.no_save, on_event=emit, stop=signals.stop, ignore_sigint=True)
    if args.json:
        print(json.dumps({"event": "sweep", **out.to_dict()}), flush=True)
    else:
        print(table(out))
    if signals.stopped:
        return signals.exit_code
    return 0 if all(r.status == "finished" for r in out.results) else 1
