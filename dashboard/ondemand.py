"""Models a page trains on demand (the Denoise and Generate pages' helpers).

They go through the process-wide ``JobManager`` like any job, are not saved as runs and do
not become the session's current model; the page remembers them per session under
``st.session_state["<page>_jobs"]`` (``{key: JobRecord}``, the key chosen by the page, e.g.
``(dataset, "plain", K)``), so coming back to the page finds them trained. ``watch`` shows a
progress bar per job while any trains, and reruns the page once when the last one ends.
"""
from __future__ import annotations

from typing import Callable, Hashable

import streamlit as st

from . import state
from .figures_live import live_container
from .jobs import JobRecord

__all__ = ["jobs", "get", "submit", "ready", "running", "watch", "describe"]

LIVE_EVERY = 0.5


def jobs(page: str) -> dict:
    """The page's jobs in this session, ``{key: JobRecord}``."""
    return st.session_state.setdefault(f"{page}_jobs", {})


def get(page: str, key: Hashable) -> JobRecord | None:
    return jobs(page).get(key)


def ready(job: JobRecord | None) -> bool:
    """A job with a model to use (finished, or stopped after training started)."""
    return job is not None and job.done and job.model is not None and job.status != "failed"


def submit(page: str, key: Hashable, model_cfg, train_cfg, ds) -> JobRecord:
    """Train ``model_cfg`` on ``ds`` in the background under ``key`` (a job already training
    under the key is returned instead of starting another)."""
    old = get(page, key)
    if old is not None and not old.done:
        return old
    job = state.job_manager().submit(model_cfg, train_cfg, ds, data_info=state.data_info(ds), save=False)
    jobs(page)[key] = job
    return job


def running(page: str) -> list[JobRecord]:
    return [j for j in jobs(page).values() if not j.done]


def describe(mc) -> str:
    extra = f", {mc.noise} noise {mc.noise_level:g}" if mc.noise != "none" else ""
    extra += f", β = {mc.beta:g}" if mc.variant == "vae" else ""
    extra += f", hidden {','.join(map(str, mc.hidden))}" if mc.hidden else ""
    return f"{mc.variant} (K = {mc.code_size}, {mc.activation}{extra})"


def _bar(job: JobRecord, label: str) -> None:
    p = job.progress
    if job.status == "queued":
        pos = state.job_manager().queue_position(job)
        st.progress(0.0, text=f"{label}: queued" + (f" (position {pos})" if pos else ""))
        return
    frac = min(p.step / p.total_steps, 1.0) if p and p.total_steps else 0.0
    how = f"epoch {p.epoch:.1f} of {p.epochs}, loss {p.loss:.4g}" if p else job.status
    st.progress(frac, text=f"{label}: {how}")


def watch(page: str, label: Callable[[Hashable, JobRecord], str] | None = None) -> None:
    """Progress bars for the page's running jobs, redrawn every half second; once the last one
    ends the whole page reruns (so it draws what the new models show)."""
    if not running(page):
        return
    label = label or (lambda key, job: f"Training {describe(job.model_cfg)}")

    @st.fragment(run_every=LIVE_EVERY)
    def _watch() -> None:
        live = running(page)
        with live_container(f"{page}_jobs"):  # no fades
            for key, job in list(jobs(page).items()):
                if not job.done:
                    _bar(job, label(key, job))
        if not live:
            st.rerun()

    _watch()
    if st.button("Stop training", key=f"{page}_stop_jobs", help="End the page's training jobs within a second."):
        for job in running(page):
            job.stop()
