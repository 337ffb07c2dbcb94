"""Train on a Ray cluster and stream the Trainer's events back (the dashboard's ``ray`` job runner).

    job = RayJob(model_cfg, train_cfg, data)           # an actor on the cluster starts training
    for event in job.events(stop=threading_event):     # Progress, Snapshot, Evaluation, Finished, Failed
        ...

Same interface as ``aecore.worker.ProcessJob``, so the dashboard's job records and pages do
not change. Each job is one Ray actor (1 CPU; 1 GPU when the config asks for ``cuda``). Its
``run`` trains with the Trainer in one of the actor's threads and appends the events to a
buffer; the driver polls ``drain`` every ``poll`` seconds, and ``stop`` sets the flag the
Trainer checks after every step, so a Stop reaches the worker within about one poll. The web
server only sends configs and receives events: the training happens on the cluster's workers.

Where: ``AECORE_RAY_ADDRESS`` names a running cluster (``ray://head:10001``, ``auto``...; its
workers need ``aecore`` installed); empty starts a local Ray with ``LOCAL_CPUS`` CPUs on the
first job. A Ray already initialised in this process (e.g. by a sweep) is used as it is.
Needs the ``cluster`` extra (``pip install -e ".[cluster]"``); nothing here imports ray before
it is asked to.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Iterator

__all__ = ["RayJob", "ensure_ray", "warm_up", "ray_address", "ray_missing", "LOCAL_CPUS"]

LOCAL_CPUS = 2  # a local Ray started on the fly
_lock = threading.Lock()
_start_lock = threading.Lock()
_data_refs: "OrderedDict[int, tuple[object, object]]" = OrderedDict()  # id(dataset) -> (dataset, ObjectRef)
_actor_cls = None


def ray_missing() -> str | None:
    """Why the ray runner cannot run here, or None."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "job runner 'ray' needs the cluster extra: pip install -e \".[cluster]\" (ray is not installed)"
    return None


def ray_address() -> str | None:
    """``AECORE_RAY_ADDRESS``; None (start a local Ray) when unset or empty."""
    return os.environ.get("AECORE_RAY_ADDRESS", "").strip() or None


def ensure_ray(address: str | None = None) -> None:
    """Connect to the cluster at ``address`` or start a local one, once per process.

    Ray's own processes (GCS, raylet) die with the *thread* that started them (Linux
    PR_SET_PDEATHSIG), so off the main thread Ray is started from a thread that lives as long as
    this process, never from a job's or a page's short-lived thread.
    """
    import ray

    with _start_lock:
        if ray.is_initialized():
            return
        if threading.current_thread() is threading.main_thread():
            _init(address)
            return
        outcome: dict = {}
        started = threading.Event()

        def owner() -> None:
            try:
                _init(address)
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc
            finally:
                started.set()
            if "error" not in outcome:
                threading.Event().wait()  # live on: Ray's processes end with this thread

        threading.Thread(target=owner, name="aecore-ray-owner", daemon=True).start()
        started.wait()
        if "error" in outcome:
            raise outcome["error"]


def warm_up() -> None:
    """Connect now (a local Ray takes seconds to start) so the first job starts at once; a
    failure here is left to that job to report, with its reason."""
    try:
        ensure_ray(ray_address())
    except Exception:
        pass


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on a head that does not answer (Ray itself retries for minutes)."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # 'auto', 'local' or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"the Ray cluster at AECORE_RAY_ADDRESS={address!r} does not answer "
                              f"({exc.strerror or exc}); start it or fix the setting") from None


def _init(address: str | None) -> None:
    import logging

    import ray

    kw = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **kw)
        except Exception as exc:  # one line that names the setting
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(f"the Ray cluster at AECORE_RAY_ADDRESS={address!r} cannot be used: {first}") from None
    else:
        ray.init(address="local", num_cpus=LOCAL_CPUS, include_dashboard=False, **kw)


def _data_ref(data, keep: int = 4):
    """The dataset in Ray's object store, put there once per Dataset object."""
    import ray

    with _lock:
        hit = _data_refs.get(id(data))
        if hit is not None and hit[0] is data:
            _data_refs.move_to_end(id(data))
            return hit[1]
        ref = ray.put(data)
        _data_refs[id(data)] = (data, ref)
        while len(_data_refs) > keep:
            _data_refs.popitem(last=False)
        return ref


class _TrainActor:
    """Runs on a Ray worker: trains, buffers events, obeys stop. Threaded (``run`` blocks one thread)."""

    def __init__(self, threads: int):
        import torch

        torch.set_num_threads(threads)
        self._stop = threading.Event()
        self._buf: list = []
        self._done = False
        self._lock = threading.Lock()

    def _put(self, item) -> None:
        with self._lock:
            self._buf.append(item)

    def run(self, mc_dict: dict, tc_dict: dict, data, trainer_kw: dict) -> None:
        from .worker import wire_events  # the same stream the process runner's child sends

        try:
            for item in wire_events(mc_dict, tc_dict, data, self._stop, trainer_kw):
                self._put(item)
        finally:
            with self._lock:
                self._done = True

    def drain(self) -> tuple[list, bool]:
        """The events since the last call, and whether training has ended (then nothing follows)."""
        with self._lock:
            items, self._buf = self._buf, []
            return items, self._done

    def stop(self) -> None:
        self._stop.set()


def _actor_class():
    global _actor_cls
    import ray

    with _lock:
        if _actor_cls is None:
            # max_concurrency 3: run, drain and stop never wait for each other
            _actor_cls = ray.remote(max_concurrency=3, max_restarts=0)(_TrainActor)
        return _actor_cls


class RayJob:
    """One training run as a Ray actor; starts at once (Ray itself on first use)."""

    def __init__(self, model_cfg, train_cfg, data, threads: int = 1, address: str | None = None, **trainer_kw):
        """``trainer_kw`` go to the ``Trainer`` (e.g. ``min_snapshots``); ``address`` defaults to
        ``AECORE_RAY_ADDRESS``."""
        if why := ray_missing():
            raise RuntimeError(why)
        ensure_ray(address if address is not None else ray_address())
        self.model_cfg, self.train_cfg = model_cfg, train_cfg
        gpus = 1 if train_cfg.device == "cuda" else 0
        self.actor = _actor_class().options(num_cpus=1, num_gpus=gpus).remote(threads)
        self._run = self.actor.run.remote(model_cfg.to_dict(), train_cfg.to_dict(), _data_ref(data), trainer_kw)
        self._stop_sent = False

    def stop(self) -> None:
        if not self._stop_sent:
            self._stop_sent = True
            self.actor.stop.remote()

    def kill(self) -> None:
        import ray

        ray.kill(self.actor, no_restart=True)

    def events(self, stop: threading.Event | None = None, poll: float = 0.05) -> Iterator:
        """Yield the worker's events; forward ``stop``; a worker that dies says how."""
        import numpy as np
        import ray
        import torch

        from .models import build_model
        from .training import Failed, Finished

        pending = None
        try:
            while True:
                if stop is not None and stop.is_set():
                    self.stop()
                if pending is None:
                    pending = self.actor.drain.remote()
                ready, _ = ray.wait([pending], timeout=poll)
                if not ready:  # the actor is still starting (or busy): look at stop again
                    continue
                try:
                    items, done = ray.get(pending)
                except ray.exceptions.RayError as exc:  # the worker died, the node went away...
                    yield Failed(f"the Ray worker ended unexpectedly ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})")
                    return
                pending = None
                for item in items:
                    if isinstance(item, tuple) and item and item[0] == "finished":
                        _, metrics, history, stopped, state, input_dim = item
                        model = build_model(self.model_cfg, input_dim)
                        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
                        model.eval()
                        yield Finished(metrics, history, model, stopped)
                    else:
                        yield item
                if done:
                    return
                if stop is not None and not stop.is_set():
                    stop.wait(poll)  # wakes at once on Stop
                else:
                    time.sleep(poll)
        finally:
            try:
                self.kill()
            except Exception:  # the cluster may be gone already
                pass
