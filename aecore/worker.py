"""Train in a child process and stream the Trainer's events back.

A web server that trains in its own threads makes training and page rendering fight over
Python's GIL (a redraw every 0.4 s was measured to cost ~40 % of a small model's
throughput). A child process avoids that, and a job that runs out of memory or crashes
takes only itself down.

    job = ProcessJob(model_cfg, train_cfg, data)      # starts at once
    for event in job.events(stop=threading_event):     # Progress, Snapshot, Finished, Failed
        ...

Children are forked from a ``forkserver`` that has already imported torch and aecore, so a
job starts in tens of milliseconds (call ``warm_up()`` early, e.g. when a server starts).
Datasets reach the child as memory-mapped ``.npy`` files written once per dataset.
"""
from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import sys
import tempfile
import threading
import types
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["ProcessJob", "warm_up", "spill", "share", "load_spilled", "mp_context", "default_threads"]

_lock = threading.Lock()
_ctx = None
_spill_dirs: "dict[str | None, Path]" = {}  # base folder (None: the temporary folder) -> this process's spill folder
_spilled: "OrderedDict[int, tuple[object, SpilledData]]" = OrderedDict()


def mp_context():
    """The multiprocessing context job processes start from (a preloaded fork server where there is one)."""
    global _ctx
    with _lock:
        if _ctx is None:
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            if method == "forkserver":
                # torch._dynamo is imported by the first optimizer torch builds (~1.5 s): do it once here
                ctx.set_forkserver_preload(["aecore.worker", "aecore.training", "aecore.data", "torch._dynamo"])
            _ctx = ctx
        return _ctx


def _noop() -> None:
    pass


def _start(process) -> None:
    """Start a child without re-running the parent's ``__main__`` in it.

    multiprocessing's spawn and forkserver children import the parent's main script (as
    ``__mp_main__``). Under Streamlit that is the running page script (Streamlit puts it in
    ``sys.modules['__main__']``), which would redraw the app in the child. A bare ``__main__``
    for the instant of ``start()`` keeps the child to what it was asked to do.
    """
    with _lock:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            process.start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def warm_up() -> None:
    """Start the fork server now (it imports torch: ~2 s) so the first job starts at once."""
    p = mp_context().Process(target=_noop, daemon=True)
    _start(p)
    p.join()


def default_threads(max_jobs: int) -> int:
    """torch threads per job: the cores shared by the jobs that may run at once
    (``AECORE_TORCH_THREADS`` overrides). Oversubscribed cores make torch's spinning
    thread pools many times slower."""
    from .config import env_int

    return env_int("AECORE_TORCH_THREADS", max(1, (os.cpu_count() or 1) // max(1, max_jobs)))


@dataclass(frozen=True)
class SpilledData:
    """A Dataset written to .npy files that a child process memory-maps."""
    folder: str
    name: str
    shape: tuple
    kind: str
    value_range: tuple
    label_names: tuple | None
    arrays: tuple = ("x_train", "x_test", "y_train", "y_test")  # the arrays written (a label array may be None)


SHM = "/dev/shm"
SHM_HEADROOM = 1.25  # /dev/shm must have this much more room than the arrays (it is shared memory)


def _cleanup() -> None:
    for d in _spill_dirs.values():
        shutil.rmtree(d, ignore_errors=True)


def _fits_shm(nbytes: int) -> bool:
    """Whether /dev/shm (memory; the children map the very pages) has room for ``nbytes`` of arrays;
    if not, they go to the temporary folder on disk (the page cache still serves the children).
    A container's /dev/shm is often only 64 MB: too small for MNIST (220 MB)."""
    if not (os.path.isdir(SHM) and os.access(SHM, os.W_OK)):
        return False
    try:
        return shutil.disk_usage(SHM).free >= SHM_HEADROOM * nbytes
    except OSError:
        return False


def _spill_dir(base: str | None) -> Path:
    d = _spill_dirs.get(base)
    if d is None:
        if not _spill_dirs:
            atexit.register(_cleanup)
        d = _spill_dirs[base] = Path(tempfile.mkdtemp(prefix="aecore-jobs-", dir=base))
    return d


def _write_arrays(folder: Path, arrays: dict) -> None:
    folder.mkdir()
    try:
        for name, a in arrays.items():
            np.save(folder / f"{name}.npy", a)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-written data set left behind
        raise


def spill(data, keep: int = 8) -> SpilledData:
    """Write ``data``'s arrays once (cached per Dataset object) and describe where they are."""
    with _lock:
        hit = _spilled.get(id(data))
        if hit is not None and hit[0] is data:
            _spilled.move_to_end(id(data))
            return hit[1]
        arrays = {k: getattr(data, k) for k in ("x_train", "x_test", "y_train", "y_test")
                  if getattr(data, k) is not None}
        nbytes = sum(np.asarray(a).nbytes for a in arrays.values())
        failed = []
        for base in ([SHM] if _fits_shm(nbytes) else []) + [None]:  # /dev/shm may fill up meanwhile: the disk then
            target = _spill_dir(base)
            folder = target / uuid.uuid4().hex
            try:
                _write_arrays(folder, arrays)
                break
            except OSError as exc:
                failed.append(f"'{target}' ({exc})")
        else:
            raise OSError(f"cannot write data set {data.name!r} ({nbytes / 2**20:.3g} MB) for the training process "
                          f"to {' nor to '.join(failed)}; free some space or set TMPDIR to a larger folder")
        sd = SpilledData(str(folder), data.name, tuple(data.shape), data.kind, tuple(data.value_range),
                         tuple(data.label_names) if data.label_names else None, tuple(arrays))
        _spilled[id(data)] = (data, sd)
        while len(_spilled) > keep:
            _, (_, old) = _spilled.popitem(last=False)
            shutil.rmtree(old.folder, ignore_errors=True)
        return sd


def share(data):
    """``data`` written once for job processes (``spill``) and read back from there: a Dataset whose
    arrays map the very pages the job processes map, so a server holds one copy of a data set, not
    one in its own memory beside the one it writes for its jobs. ``spill`` of the result costs nothing.
    Keep it instead of ``data`` (whose arrays can then be freed)."""
    sd = spill(data)
    shared = load_spilled(sd)
    with _lock:
        _spilled[id(shared)] = (shared, sd)
        _spilled.pop(id(data), None)
        _spilled.move_to_end(id(shared))
    return shared


def load_spilled(sd: SpilledData):
    """The Dataset ``spill`` wrote, its arrays memory-mapped read-only (no copy)."""
    from .data import Dataset

    f = Path(sd.folder)
    a = {k: np.load(f / f"{k}.npy", mmap_mode="r") if k in sd.arrays else None
         for k in ("x_train", "x_test", "y_train", "y_test")}
    return Dataset(name=sd.name, **a, shape=sd.shape, kind=sd.kind, value_range=sd.value_range,
                   label_names=sd.label_names)


def wire_events(mc_dict: dict, tc_dict: dict, data, stop, trainer_kw: dict):
    """A remote training run's events as they cross a process boundary (this module's child, a
    Ray actor): the Trainer's events, except that Finished travels as ``("finished", metrics,
    history, stopped, state_dict as arrays, input_dim)`` (the receiver rebuilds the model), and
    any exception at all ends the stream as one Failed (out of memory says what to lower)."""
    from .config import ModelConfig, TrainConfig
    from .training import Failed, Finished, Trainer, is_out_of_memory, out_of_memory_reason

    try:
        mc, tc = ModelConfig.from_dict(mc_dict), TrainConfig.from_dict(tc_dict)
        if callable(data):
            data = data()
        for ev in Trainer(mc, tc, data, stop=stop, **trainer_kw).run():
            if isinstance(ev, Finished):
                state = {k: v.detach().cpu().numpy() for k, v in ev.model.state_dict().items()}
                yield ("finished", dict(ev.metrics), ev.history, ev.stopped, state, int(ev.model.input_dim))
            else:
                yield ev
    except BaseException as exc:  # anything at all: say it, do not vanish
        if is_out_of_memory(exc) and "mc" in locals():
            yield Failed(out_of_memory_reason(exc, mc, tc))
        else:
            yield Failed(f"{type(exc).__name__}: {exc}")


def _child(mc_dict, tc_dict, sd: SpilledData, q, stop, threads: int, trainer_kw: dict) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        for item in wire_events(mc_dict, tc_dict, lambda: load_spilled(sd), stop, trainer_kw):
            q.put(item)
    finally:
        q.put(None)
        q.close()
        q.join_thread()


class ProcessJob:
    """One training run in a child process."""

    def __init__(self, model_cfg, train_cfg, data, threads: int = 1, **trainer_kw):
        """``trainer_kw`` go to the ``Trainer`` (e.g. ``min_snapshots``)."""
        ctx = mp_context()
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        self._q = ctx.Queue()
        self._stop = ctx.Event()
        self.process = ctx.Process(target=_child, name="aecore-train", daemon=True,
                                   args=(model_cfg.to_dict(), train_cfg.to_dict(), spill(data), self._q,
                                         self._stop, threads, trainer_kw))
        _start(self.process)

    def stop(self) -> None:
        self._stop.set()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def events(self, stop: threading.Event | None = None, poll: float = 0.05) -> Iterator:
        """Yield the child's events; forward ``stop``; a child that dies says how."""
        from .models import build_model
        from .training import Failed, Finished

        import torch

        done = False
        try:
            while not done:
                if stop is not None and stop.is_set():
                    self._stop.set()
                try:
                    item = self._q.get(timeout=poll)
                except queue_mod.Empty:
                    if not self.process.is_alive():
                        try:  # the sentinel may have landed just now
                            item = self._q.get(timeout=0.5)
                        except queue_mod.Empty:
                            code = self.process.exitcode
                            hint = ""
                            if code is not None and code < 0:  # the kernel's OOM killer sends SIGKILL
                                hint = (f" (killed by signal {-code}: most likely out of memory; lower "
                                        f"the code size K, the hidden layer sizes or the batch size)")
                            yield Failed(f"the training process ended unexpectedly with exit code {code}{hint}")
                            return
                    else:
                        continue
                if item is None:
                    done = True
                elif isinstance(item, tuple) and item and item[0] == "finished":
                    _, metrics, history, stopped, state, input_dim = item
                    model = build_model(self.model_cfg, input_dim)
                    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
                    model.eval()
                    yield Finished(metrics, history, model, stopped)
                else:
                    yield item
        finally:
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
            self._q.close()
