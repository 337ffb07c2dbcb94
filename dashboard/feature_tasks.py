"""Background work for the Documents and Features & pre-training pages.

A ``TaskRecord`` is filled by a daemon thread running one ``aecore`` call (``run_documents``,
``probe``, ``pretrain``); the thread never calls ``st.*``, it only writes the record (stage
text, progress rows, the result or the error). Pages keep the record in ``st.session_state``
and read it from a fragment that reruns on a timer.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from .jobs import Stopped

__all__ = ["TaskRecord", "start_task"]


@dataclass
class TaskRecord:
    kind: str
    params: dict
    status: str = "running"  # running | finished | stopped | failed
    stage: str = "starting"
    rows: list = field(default_factory=list)  # progress rows (dicts), e.g. one per epoch
    result: Any = None
    extra: dict = field(default_factory=dict)  # views computed in the thread after the result
    error: str | None = None
    started: float = field(default_factory=time.time)
    ended: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def elapsed(self) -> float:
        return (self.ended or time.time()) - self.started

    def stop(self) -> None:
        self.stop_event.set()

    # callbacks handed to aecore (called from the thread)
    def on_stage(self, text: str) -> None:
        self.stage = text

    def on_row(self, row: dict) -> None:
        self.rows = [*self.rows, dict(row)]  # a new list: readers never see it half-built


def start_task(kind: str, params: dict, work: Callable[[TaskRecord], Any],
               after: Callable[[TaskRecord, Any], dict] | None = None, slots: int = 0) -> TaskRecord:
    """Run ``work(record)`` in a daemon thread; its return value becomes ``record.result`` and
    ``after(record, result)`` (optional) fills ``record.extra``. Exceptions become ``record.error``.
    ``slots`` > 0: the work trains on this server's cores, so it first takes that many of the job
    manager's training slots (``JobManager.reserve``), queueing with the jobs; the record's stage
    shows its place meanwhile, and Stop leaves the queue."""
    rec = TaskRecord(kind, dict(params))
    manager = None
    if slots:
        from . import state
        manager = state.job_manager()  # (resolved here, in the script's thread)

    def run():
        try:
            if manager is not None:
                with manager.reserve(slots, stop=rec.stop_event, on_wait=rec.on_stage):
                    rec.stage = "starting"
                    result = work(rec)
            else:
                result = work(rec)
            if after is not None:
                rec.stage = "preparing the views"
                rec.extra = dict(after(rec, result))
            rec.result = result
            rec.status = "stopped" if rec.stop_event.is_set() else "finished"
        except Stopped:
            rec.status = "stopped"  # stopped in the queue: nothing ran, no result
        except Exception as exc:  # never let the thread die silently: the page shows the reason
            msg = str(exc).strip() or type(exc).__name__
            known = type(exc).__name__ in ("DataError", "ConfigError", "TrainingFailed", "ValueError")
            rec.error = msg if known else f"{type(exc).__name__}: {msg}\n{traceback.format_exc(limit=4)}"
            rec.status = "failed"
        finally:
            rec.ended = time.time()

    threading.Thread(target=run, name=f"aecore-{kind}", daemon=True).start()
    return rec
