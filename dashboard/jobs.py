"""Background training jobs for the dashboard.

A job is a thread that runs an ``aecore`` Trainer (in a child process by default, see
``aecore.worker``; ``AECORE_JOB_RUNNER=thread`` trains in the thread itself) and writes what
happens into its ``JobRecord``. It never calls ``st.*`` (output from other threads is lost); pages read the
record from a fragment that reruns on a timer. A process-wide ``JobManager`` caps how many
jobs train at once (``AECORE_MAX_JOBS``, default 2 on CPU) and queues the rest in FIFO order.
"""
from __future__ import annotations

import gc
import itertools
import os
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

from aecore.config import env_int
from aecore.training import Failed, Finished, Progress, Snapshot, Trainer
from aecore.worker import ProcessJob, default_threads, warm_up

from . import limits

# process: a child process per job (no GIL contention with the server); ray: an actor per job on the
# Ray cluster at AECORE_RAY_ADDRESS (empty: a local one started on the fly), see aecore.ray_runner
RUNNERS = ("process", "thread", "ray")

__all__ = ["JobRecord", "JobManager", "default_max_jobs", "LimitError", "Stopped", "trim_heap"]

LimitError = limits.LimitError

MIN_SNAPSHOTS = 40  # per run, so even a one-second run can be replayed frame by frame
MAX_SNAPSHOTS = 120  # kept for replay; thinned by half when full (first and newest always kept)


_malloc_trim = None  # glibc's malloc_trim, False where there is none (macOS, musl, Windows)


def trim_heap() -> bool:
    """Hand the C heap's free memory back to the operating system (glibc's ``malloc_trim``).

    Each job runs in a new thread, and glibc gives threads their own heap arenas; the tens of MB
    of snapshot arrays a job receives are freed into its arena but stay resident. Returns whether
    a trim was made."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes
        import ctypes.util

        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _malloc_trim = False
    if not _malloc_trim:
        return False
    _malloc_trim(0)
    return True


def default_max_jobs() -> int:
    import torch

    return env_int("AECORE_MAX_JOBS", 4 if torch.cuda.is_available() else 2)


class Stopped(Exception):
    """Work stopped while it waited for a training slot (``JobManager.reserve``)."""


@dataclass(eq=False)
class _Reservation:
    """A place in the job queue for work that trains outside a job (``JobManager.reserve``)."""
    slots: int


@dataclass(eq=False)  # a job is itself: compared by identity and hashable (no field-by-field ==)
class JobRecord:
    """Everything a page needs to draw a job. Written by the job thread, read by pages."""

    id: int
    model_cfg: object
    train_cfg: object
    data_info: dict
    status: str = "queued"  # queued | running | finished | stopped | failed
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    progress: Progress | None = None
    history: list = field(default_factory=list)  # dict rows, one per Progress
    snapshots: list = field(default_factory=list)  # Snapshot events, thinned for replay
    metrics: dict | None = None
    error: str | None = None
    run_id: str | None = None
    save_error: str | None = None
    first_progress_at: float | None = None  # wall time of the first loss point (for the latency bench)
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)
    model: object = field(default=None, repr=False)
    owner: str | None = None  # the browser session that submitted it (None: the CLI, a script, a test)

    @property
    def latest(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    @property
    def done(self) -> bool:
        return self.status in ("finished", "stopped", "failed")

    def stop(self) -> None:
        self.stop_event.set()

    def _add_snapshot(self, snap: Snapshot) -> None:
        snaps = self.snapshots
        if len(snaps) >= MAX_SNAPSHOTS:
            # keep the first one and every other one after it; build a new list so readers never see it half-done
            snaps = [snaps[0], *snaps[2::2]]
        self.snapshots = [*snaps, snap]


class JobManager:
    """Runs jobs in threads, at most ``max_jobs`` at once; the rest wait in FIFO order."""

    def __init__(self, max_jobs: int | None = None, store=None, runner: str | None = None):
        self.max_jobs = max_jobs or default_max_jobs()
        self.store = store
        self.runner = runner or os.environ.get("AECORE_JOB_RUNNER", "process")
        if self.runner not in RUNNERS:
            raise ValueError(f"job runner {self.runner!r} is not known; choose one of {', '.join(RUNNERS)} "
                             f"(setting AECORE_JOB_RUNNER)")
        self.threads = default_threads(self.max_jobs)
        if self.runner == "process":  # start the fork server (it imports torch) before the first click
            threading.Thread(target=warm_up, name="aecore-warm-up", daemon=True).start()
        elif self.runner == "ray":  # imported only here: ray stays optional
            from aecore import ray_runner
            if why := ray_runner.ray_missing():
                raise ValueError(f"{why} (setting AECORE_JOB_RUNNER=ray)")
            threading.Thread(target=ray_runner.warm_up, name="aecore-ray-start", daemon=True).start()
        self._cond = threading.Condition()
        self._waiting: list[JobRecord] = []
        self._running = 0
        self._ids = itertools.count(1)
        self._jobs: weakref.WeakSet[JobRecord] = weakref.WeakSet()  # every job someone still holds

    def submit(self, model_cfg, train_cfg, data, data_info: dict | None = None, save: bool = True,
               owner: str | None = None) -> JobRecord:
        """Queue a job. ``owner`` (default: the Streamlit session running this script, if any) gets the
        per-session caps of ``dashboard.limits``: a job beyond one raises ``LimitError`` saying which.
        Called from a page without an owner, a refusal is shown there instead (``limits.refuse_on_page``:
        one st.error line, the script run stops), so no page shows a traceback for it."""
        from_page = owner is None
        owner = owner if owner is not None else limits.session_owner()
        try:
            if owner is not None:
                lim = limits.current()
                x = getattr(data, "x_train", None)
                if x is not None:
                    limits.check_job(model_cfg, train_cfg, len(x), int(x.shape[1]) if x.ndim > 1 else 1, lim)
                else:
                    limits.check_configs(model_cfg, train_cfg, lim)
            with self._cond:
                if owner is not None:
                    mine = sum(1 for j in self._jobs if j.owner == owner and not j.done)
                    if mine >= lim.jobs_per_session:
                        raise LimitError(f"this session already has {mine} job(s) training or queued, the most one "
                                         f"session may have at once ({lim.jobs_per_session}); wait for one to end or "
                                         f"stop one (the lecturer can raise it with {limits.ENV['jobs_per_session']})")
                job = JobRecord(next(self._ids), model_cfg, train_cfg, dict(data_info or {}), owner=owner)
                self._jobs.add(job)
                self._waiting.append(job)
        except LimitError as exc:
            if from_page and owner is not None:
                limits.refuse_on_page(exc)
            raise
        threading.Thread(target=self._work, args=(job, data, save), name=f"aecore-job-{job.id}", daemon=True).start()
        return job

    def reserve(self, n: int, stop: threading.Event | None = None, on_wait: Callable[[str], None] | None = None):
        """Hold ``n`` of the ``max_jobs`` training slots for the ``with`` block: work that trains outside a
        job (a sweep's worker processes, a feature or document task in the server) waits its turn in the
        same FIFO queue as jobs, so the cores are never asked for more than ``max_jobs`` trainings at once.
        ``n`` above ``max_jobs`` holds all of them. ``on_wait(text)`` hears the queue position while
        waiting; ``stop`` leaves the queue (raises ``Stopped``) before anything has started."""
        n = max(1, min(int(n), self.max_jobs))
        ticket = _Reservation(n)
        with self._cond:
            self._waiting.append(ticket)
        return self._hold(ticket, n, stop, on_wait)

    @contextmanager
    def _hold(self, ticket, n: int, stop: threading.Event | None, on_wait: Callable[[str], None] | None = None):
        """Wait until ``ticket`` (already in the queue) is first and ``n`` slots are free, then hold them."""
        with self._cond:
            said = None
            while True:
                if stop is not None and stop.is_set():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                    raise Stopped("stopped while waiting for a training slot")
                if self._waiting[0] is ticket and self._running + n <= self.max_jobs:
                    break
                pos = self._waiting.index(ticket)
                text = (f"waiting for {n} of the server's {self.max_jobs} training slots: "
                        f"{self._running} in use, {pos} queued ahead")
                if on_wait is not None and text != said:
                    on_wait(text)
                    said = text
                self._cond.wait(timeout=0.2)
            self._waiting.pop(0)
            self._running += n
            self._cond.notify_all()
        try:
            yield n
        finally:
            with self._cond:
                self._running -= n
                self._cond.notify_all()

    def queue_position(self, job: JobRecord) -> int | None:
        """1 for the next job to start; None when the job is not waiting."""
        with self._cond:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return None

    @property
    def running(self) -> int:
        return self._running

    def jobs(self, owner: str | None, active: bool = True) -> list[JobRecord]:
        """``owner``'s jobs in the order submitted (only queued and running ones when ``active``)."""
        with self._cond:
            mine = [j for j in self._jobs if j.owner == owner and not (active and j.done)]
        return sorted(mine, key=lambda j: j.id)

    def _work(self, job: JobRecord, data, save: bool) -> None:
        try:
            with self._hold(job, 1, job.stop_event):  # queued by submit(), in order
                self._train(job, data, save)
        except Stopped:  # stopped while queued: it never starts
            job.status, job.ended = "stopped", time.time()
            return
        # what earlier jobs of the session held (their snapshots: tens of MB) is garbage by now, some of
        # it in reference cycles that the server's rare full collections would free only much later
        # (postScriptGC is off); collect it, and hand the freed heap back to the system
        gc.collect()
        trim_heap()

    def _train(self, job: JobRecord, data, save: bool) -> None:
        job.status, job.started = "running", time.time()
        run_id = None
        if save and self.store is not None:
            try:
                run_id = self.store.start(job.model_cfg, job.train_cfg, session=job.owner)
            except Exception as exc:  # a broken store must not stop training
                job.save_error = f"run not recorded: {exc}"
        try:
            for ev in self._events(job, data):
                if isinstance(ev, Progress):
                    if job.first_progress_at is None:
                        job.first_progress_at = time.time()
                    # list.append is atomic: a page iterating the history meanwhile sees a consistent prefix
                    # (copying the whole list on every event made a long run quadratic)
                    job.history.append({"step": ev.step, "epoch": ev.epoch, "elapsed": ev.elapsed,
                                        "loss": ev.loss, "samples_per_second": ev.samples_per_second, **ev.terms})
                    job.progress = ev
                elif isinstance(ev, Snapshot):
                    job._add_snapshot(ev)
                elif isinstance(ev, Failed):
                    job.error = ev.reason
                    job.status = "failed"
                    self._record_failure(job, run_id, ev.reason)
                elif isinstance(ev, Finished):
                    job.metrics = dict(ev.metrics)
                    job.model = ev.model
                    if run_id:
                        try:
                            self.store.finish(run_id, job.model_cfg, job.train_cfg, ev.model, job.metrics,
                                              ev.history, job.data_info, status="stopped" if ev.stopped else "finished")
                            job.run_id = run_id
                        except Exception as exc:
                            job.save_error = f"run not saved: {exc}"
                            self._record_failure(job, run_id, job.save_error)
                    job.status = "stopped" if ev.stopped else "finished"
            if not job.done:  # the trainer ended without Finished or Failed: say so instead of "running" forever
                job.error = "training ended without a result"
                job.status = "failed"
                self._record_failure(job, run_id, job.error)
        except Exception as exc:  # never let a job thread die silently
            job.error = f"{type(exc).__name__}: {exc}"
            job.status = "failed"
            self._record_failure(job, run_id, job.error)
        finally:
            job.ended = time.time()

    def _events(self, job: JobRecord, data):
        """The Trainer's events, from a child process (default), a Ray actor or this thread."""
        kw = {"min_snapshots": MIN_SNAPSHOTS}
        if self.runner == "ray":  # one CPU per actor on the cluster: one torch thread
            from aecore.ray_runner import RayJob
            return RayJob(job.model_cfg, job.train_cfg, data, threads=1, **kw).events(stop=job.stop_event)
        if self.runner == "process":
            return ProcessJob(job.model_cfg, job.train_cfg, data, threads=self.threads, **kw).events(stop=job.stop_event)
        return Trainer(job.model_cfg, job.train_cfg, data, stop=job.stop_event, **kw).run()

    def _record_failure(self, job: JobRecord, run_id: str | None, reason: str) -> None:
        """Mark the run failed in the store; a store error never replaces the job's own reason."""
        if not run_id:
            return
        try:
            self.store.fail(run_id, reason)
        except Exception as exc:
            job.save_error = f"run not marked as failed in the store: {exc}"
