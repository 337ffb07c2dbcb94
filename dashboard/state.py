"""Process-wide resources and per-session state the pages share.

Process-wide (``st.cache_resource``): the ``RunStore``, the ``JobManager`` and loaded datasets.
They are keyed by the folders they use, so changing ``$AECORE_RUNS`` / ``$AECORE_CACHE``
(tests do) gives a fresh store instead of a stale one.

Per session (``st.session_state``):

    "job"             the session's current JobRecord (or absent)
    "loaded_run_id"   a run chosen with "Load into pages" on the Runs page
    "current_source"  "job" or "run": which of the two the pages show
    "model_cfg", "train_cfg"   the sidebar's configs (see ``dashboard.sidebar``)

``current_model()`` merges the two sources into one ``CurrentModel`` record.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from aecore.checkpoint import CheckpointError, LoadedRun
from aecore.config import env_int
from aecore.data import DataError, Dataset, list_datasets, load
from aecore.runs import RunStore, runs_root
from aecore.worker import share
from aecore.embedding import encode_array

from .jobs import JobManager, JobRecord
from .uploads import is_upload_name

__all__ = ["run_store", "job_manager", "load_dataset", "get_dataset", "data_info", "current_job", "set_current_job",
           "load_run", "visible_runs", "set_loaded_run", "current_model", "CurrentModel", "encode", "datasets_info",
           "cuda_status", "codes_npy"]

JOB_KEY, RUN_KEY, SOURCE_KEY = "job", "loaded_run_id", "current_source"


# --- process-wide resources ------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _run_store(root: str) -> RunStore:
    return RunStore(root)


def _limit_torch_threads(max_jobs: int) -> None:
    """Share the CPU cores between the jobs that train at once.

    The lab's models are small: with torch's default pool (one thread per core) concurrent
    jobs spin-wait on each other and on the server, and a digits step was measured 65x slower
    on a busy 2-core machine. ``$AECORE_TORCH_THREADS`` overrides the choice.
    """
    import torch

    n = env_int("AECORE_TORCH_THREADS", max(1, (os.cpu_count() or 1) // (max_jobs + 1)))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@st.cache_resource(show_spinner=False)
def _job_manager(root: str) -> JobManager:
    manager = JobManager(store=_run_store(root))
    _limit_torch_threads(manager.max_jobs)
    return manager


def run_store() -> RunStore:
    """The RunStore under ``$AECORE_RUNS`` (else ``$AECORE_CACHE/runs``, else ``~/.cache/aecore/runs``)."""
    return _run_store(str(runs_root()))


def job_manager() -> JobManager:
    """The process-wide JobManager (shared by every session); it saves runs into ``run_store()``."""
    return _job_manager(str(runs_root()))


def _data_key() -> tuple[str, str]:
    # loads depend on where files are looked for; a changed environment gives new cache entries
    return os.environ.get("AECORE_DATA", ""), os.environ.get("AECORE_CACHE", "")


@st.cache_resource(show_spinner="Loading the data set…", max_entries=6)
def _load_cached(name: str, key: tuple[str, str]) -> Dataset:
    data = load(name, download=False, memory_cache=False)  # (this cache keeps it)
    try:  # kept as the copy written for the job processes (memory-mapped): one copy per server, not two
        return share(data)
    except OSError:  # no room to write it anywhere: keep it in memory (a job will say what is missing)
        return data


@st.cache_data(ttl=10, show_spinner=False)
def _datasets(key: tuple[str, str]) -> list[dict]:
    return list_datasets()


def datasets_info() -> list[dict]:
    """``aecore.data.list_datasets()`` (name, available_offline, shape...), cached for a few seconds."""
    return _datasets(_data_key())


UPLOADS_KEY = "uploads"  # this session's uploaded data sets: {dataset name: (Upload, Dataset)}


def session_upload(name: str) -> Dataset | None:
    """A data set this session uploaded (``dashboard.uploads``), or None: another session's
    upload name never resolves here."""
    hit = st.session_state.get(UPLOADS_KEY, {}).get(name)
    return hit[1] if hit is not None else None


def get_dataset(name: str) -> Dataset:
    """Load a dataset (downloading it if needed, without UI); raises DataError."""
    if is_upload_name(name):
        ds = session_upload(name)
        if ds is None:
            raise DataError(f"uploaded data set {name.split(':', 2)[2]!r} is not part of this session; upload it again")
        return ds
    try:
        return _load_cached(name, _data_key())
    except DataError:
        load(name, download=True)  # fetches the files into the cache, or raises DataError saying why
        return _load_cached(name, _data_key())


def load_dataset(name: str) -> Dataset | None:
    """Load a dataset for a page: a progress bar while downloading, st.error (no traceback) on failure."""
    if is_upload_name(name):
        ds = session_upload(name)
        if ds is None:
            st.error(f"The uploaded data set {name.split(':', 2)[2]!r} is not part of this session; upload it again.")
        return ds
    try:
        return _load_cached(name, _data_key())
    except DataError:
        pass  # not on disk yet: download below, with a progress bar
    bar = st.progress(0.0, text=f"Downloading {name}…")

    def progress(done: int, total: int) -> None:
        if total:
            bar.progress(min(done / total, 1.0), text=f"Downloading {name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

    try:
        load(name, download=True, progress=progress)
        return _load_cached(name, _data_key())
    except DataError as exc:
        st.error(f"Could not load data set {name!r}: {exc}")
        return None
    finally:
        bar.empty()


def data_info(ds: Dataset) -> dict:
    """What a job and a saved run record about their data."""
    return {"name": ds.name, "shape": list(ds.shape), "input_dim": ds.dim,
            "value_range": [float(v) for v in ds.value_range],
            "label_names": list(ds.label_names) if ds.label_names is not None else None}


@st.cache_resource(show_spinner=False)
def cuda_status() -> str:
    import torch

    if torch.cuda.is_available():
        return f"CUDA is available ({torch.cuda.get_device_name(0)})."
    return "No CUDA GPU found: 'auto' trains on the CPU."


# --- the session's job and loaded run ---------------------------------------------------------
def current_job() -> JobRecord | None:
    return st.session_state.get(JOB_KEY)


def set_current_job(job: JobRecord) -> None:
    st.session_state[JOB_KEY] = job
    st.session_state[SOURCE_KEY] = "job"


@st.cache_resource(show_spinner=False, max_entries=32)
def _load_run(root: str, run_id: str) -> LoadedRun:
    return RunStore(root).load(run_id)


def visible_runs(status: str | None = None) -> list[dict]:
    """The runs this browser session may see: its own and the shared ones (CLI, scripts), never
    another session's (a server serves a whole class)."""
    from dashboard import limits

    return run_store().list(status, session=limits.session_owner())


def load_run(run_id: str) -> LoadedRun:
    """A saved run (model on the CPU, in eval mode), cached; raises CheckpointError when it is bad
    or, in a browser session, when it is another session's run.

    The model is shared between sessions: use it for inference only.
    """
    from dashboard import limits

    owner = limits.session_owner()
    if owner is not None and not run_store().visible_to(run_id, owner):
        raise CheckpointError(f"run {run_id!r} is not one of this session's runs")
    return _load_run(str(run_store().root), run_id)


def set_loaded_run(run_id: str) -> None:
    """Make a saved run the session's current model ("Load into pages")."""
    load_run(run_id)  # raises CheckpointError before anything changes
    st.session_state[RUN_KEY] = run_id
    st.session_state[SOURCE_KEY] = "run"


@dataclass(frozen=True)
class CurrentModel:
    """What the pages show as "the current model": a (possibly running) job or a loaded run."""

    label: str
    source: str  # "job" | "run"
    model_cfg: object
    train_cfg: object
    data_info: dict
    W: np.ndarray | None  # (K1, D) first encoder layer
    decoder_W: np.ndarray | None  # (D, K_last) last decoder layer
    model: object = None  # torch module once trained (None while a job runs)
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    run_id: str | None = None
    job: JobRecord | None = None
    status: str = "finished"


def _weights(model) -> tuple[np.ndarray, np.ndarray]:
    return model.W.detach().cpu().numpy(), model.decoder_weight.detach().cpu().numpy()


def current_model() -> CurrentModel | None:
    """The session's current model: the job trained here, or the run loaded on the Runs page,
    whichever was chosen last. None when there is neither (or the loaded run became unreadable)."""
    source = st.session_state.get(SOURCE_KEY)
    job = current_job()
    if source == "run" and st.session_state.get(RUN_KEY):
        run_id = st.session_state[RUN_KEY]
        try:
            run = load_run(run_id)
        except CheckpointError:
            return None
        W, dW = _weights(run.model)
        return CurrentModel(f"run {run_id}", "run", run.model_cfg, run.train_cfg, run.data_info, W, dW,
                            run.model, dict(run.metrics), list(run.history), run_id, None, "finished")
    if job is None:
        return None
    snap = job.latest
    W, dW = (snap.W, snap.decoder_W) if snap is not None else (None, None)
    return CurrentModel(f"job {job.id} ({job.status})", "job", job.model_cfg, job.train_cfg, job.data_info, W, dW,
                        job.model, dict(job.metrics or {}), list(job.history), job.run_id, job, job.status)


def encode(model, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Codes of an (N, D) array (see ``aecore.embedding.encode_array``)."""
    return encode_array(model, x, batch)


def codes_npy(model, dataset: str) -> bytes:
    """The codes of every test example of ``dataset`` as .npy bytes ((N, K) float32).

    Safe outside a script run (a deferred download runs it in a server thread): it uses no
    ``st.*`` and loads the data through aecore (whose arrays are cached in memory).
    """
    import io

    buf = io.BytesIO()
    np.save(buf, encode(model, load(dataset).x_test))
    return buf.getvalue()
