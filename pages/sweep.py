"""Sweep: train one variant over a grid of code sizes K and penalty strengths λ, then compare.

The page turns its widgets into ``aecore.sweep.build_grid`` configurations and runs
``aecore.sweep.run_sweep`` in a background thread (local process pool or Ray); the thread only
writes the task record, a fragment polls it. Results are small multiples: the filters at each
λ, and error and sparsity against λ and K. Every run is saved in the run store.
"""
from __future__ import annotations

import threading

import streamlit as st

from aecore.config import ConfigError, env_int
from aecore.ray_runner import ray_address
from aecore.registry import VARIANTS, variant_names
from aecore.sweep import build_grid, ray_missing, run_sweep, summarize
from dashboard import limits, state
from dashboard.feature_tasks import start_task
from dashboard.figures_sweep import filter_panel, lambda_label, sweep_lines

TASK_KEY = "sweep_task"
POLL_EVERY = 0.5

st.title("Sweep")
st.markdown(
    "Train one variant for every combination of **code sizes K** and **penalty strengths λ** (and seeds), "
    "side by side. With the **sparse** autoencoder, watch the filters change as the L1 penalty λ Σ|h_k| grows: "
    "the code gets sparser and the reconstruction worse. Every run is saved (see the Runs page).")


@st.cache_resource(show_spinner=False)
def _slot() -> threading.Semaphore:
    """One sweep trains at a time in this server (it uses every core); others wait their turn."""
    return threading.Semaphore(1)


def _parse(text: str, kind, name: str) -> tuple:
    vals = []
    for t in text.replace(" ", "").split(","):
        if t:
            try:
                vals.append(kind(t))
            except ValueError:
                raise ConfigError(f"{name}: {t!r} is not {'a whole number' if kind is int else 'a number'}") from None
    return tuple(vals)


max_points = env_int("AECORE_MAX_SWEEP", 24)
offline = [d["name"] for d in state.datasets_info() if d.get("available_offline")] or ["digits"]
names = variant_names()
with_reg = [n for n in names if "reg" in VARIANTS[n].uses]

c1, c2, c3, c4 = st.columns(4)
variant = c1.selectbox("Variant", names, index=names.index("sparse") if "sparse" in names else 0, key="sweep_variant",
                       help="Variants with a penalty λ: " + ", ".join(with_reg))
ds_name = c2.selectbox("Data set", offline, key="sweep_ds")
epochs = c3.number_input("Epochs", min_value=1, max_value=1000, value=10, key="sweep_epochs")
lr = c4.number_input("Learning rate", min_value=1e-5, max_value=1.0, value=1e-2, format="%g", key="sweep_lr")
c5, c6, c7, c8 = st.columns(4)
k_text = c5.text_input("Code sizes K", value="16,32", key="sweep_k", help="comma-separated, e.g. 16,32,64")
reg_text = c6.text_input("Penalty strengths λ", value="0,0.03,0.3,1", key="sweep_reg",
                         help="comma-separated, e.g. 0,1e-4,1e-3,1e-2")
seeds = c7.number_input("Seeds per configuration", min_value=1, max_value=10, value=1, key="sweep_seeds")
no_ray = ray_missing()
backend = c8.radio("Backend", ("local", "ray"), horizontal=True, key="sweep_backend",
                   help="local: a process pool on this server. ray: one task per configuration on the Ray "
                        "cluster at $AECORE_RAY_ADDRESS, or a local one started on the first sweep.")
if backend == "ray" and no_ray:
    st.warning(f"The ray backend is not available here: {no_ray}.")

points, problem = None, None
try:
    points = build_grid(variant, _parse(k_text, int, "code sizes K"), _parse(reg_text, float, "penalty strengths λ"),
                        int(seeds), dataset=ds_name, epochs=int(epochs), lr=float(lr))
    if len(points) > max_points:
        problem = (f"The grid has {len(points)} configurations; this server runs at most {max_points} per sweep "
                   f"(setting AECORE_MAX_SWEEP). Remove some K or λ values or seeds.")
except ConfigError as exc:
    problem = f"Settings: {exc}"
if problem:
    st.error(problem)
elif points:
    st.caption(f"{len(points)} configurations: {len(set(p.model_cfg.code_size for p in points))} K × "
               f"{len(set(p.model_cfg.reg for p in points))} λ × {int(seeds)} seed(s), {int(epochs)} epochs each.")

task = st.session_state.get(TASK_KEY)
running = task is not None and not task.done
b1, b2, _ = st.columns([2, 1, 5])
launch = b1.button("Run sweep", type="primary", key="sweep_run",
                   disabled=bool(problem) or running or (backend == "ray" and bool(no_ray)))
if running and b2.button("Stop", key="sweep_stop", help="Running configurations end within a second; the rest never start."):
    task.stop()

if launch and points:
    data = state.load_dataset(ds_name)
    if data is not None:
        try:  # the class server's per-session caps apply to every configuration of a sweep
            for p in points:
                limits.check_job(p.model_cfg, p.train_cfg, len(data.x_train), data.dim)
        except limits.LimitError as exc:
            limits.refuse_on_page(exc)
        store, slot, info = state.run_store(), _slot(), state.data_info(data)
        owner = limits.session_owner()  # the runs are this session's (the Runs page of others does not list them)
        address = ray_address() if backend == "ray" else None  # AECORE_RAY_ADDRESS, as the job runner's
        # on this server's cores a sweep takes training slots like jobs do, so that sweeps and jobs together
        # never oversubscribe the cores: the process pool one per worker, a local Ray cluster (which may
        # use every core, and stays up for later sweeps with as many CPUs as it started with) all of them
        manager = state.job_manager()
        local = backend == "local"
        workers = min(len(points), manager.max_jobs) if local else None
        if local:
            slots = workers
        else:
            slots = 0 if address else manager.max_jobs
        params = {"backend": backend, "address": address, "n": len(points), "shape": tuple(data.shape),
                  "dataset": ds_name, "labels": {p.index: p.label for p in points}}

        def work(rec):
            rec.extra["progress"] = {}
            rec.on_stage("waiting for another sweep on this server to finish")
            with slot:
                rec.on_stage("starting the workers" if backend == "local" else "starting Ray")

                def on_event(ev):
                    if ev["event"] == "progress":
                        rec.extra["progress"] = {**rec.extra["progress"], ev["index"]: (ev["epoch"], ev["epochs"])}
                        rec.on_stage("training")
                    else:
                        rec.on_row(ev)

                # a local Ray cluster started here stays up for the next sweep (starting one takes seconds)
                return run_sweep(points, data, backend=backend, workers=workers, address=address, store=store,
                                 data_info=info, on_event=on_event, stop=rec.stop_event, shutdown=False,
                                 session=owner, threads=manager.threads if local else None)

        st.session_state[TASK_KEY] = start_task("sweep", params, work, slots=slots)
        st.rerun()


@st.fragment(run_every=POLL_EVERY)
def _progress() -> None:
    t = st.session_state.get(TASK_KEY)
    if t is None:
        return
    if t.done:
        if st.session_state.get("_sweep_shown") is not t:
            st.session_state["_sweep_shown"] = t
            st.rerun(scope="app")
        return
    n = t.params["n"]
    done = {row["index"] for row in t.rows}
    live = {i: p for i, p in t.extra.get("progress", {}).items() if i not in done}
    frac = (len(done) + sum(min(e / max(n_ep, 1), 1.0) for e, n_ep in live.values())) / n
    st.progress(min(frac, 1.0), text=f"{len(done)} of {n} configurations done on the {t.params['backend']} backend "
                                     f"({t.stage}, {t.elapsed:.0f} s)")
    for i, (e, n_ep) in sorted(live.items()):
        st.caption(f"{t.params['labels'][i]}: epoch {e:.1f} of {n_ep}")
    for row in t.rows[-3:]:
        if row["event"] == "failed":
            st.caption(f"{row['label']}: failed: {row['error']}")


def _results(t) -> None:
    out = t.result
    st.session_state["_sweep_shown"] = t
    if t.status == "failed":
        st.error(f"The sweep failed: {t.error}")
        return
    if out is None:
        return
    if t.status == "stopped":
        st.warning("Stopped: the figures show the configurations that finished.")
    failed = [r for r in out.results if r.status == "failed"]
    if failed:
        st.warning("Failed: " + "; ".join(f"K={r.code_size} λ={r.reg:g} seed {r.seed}: {r.error}" for r in failed))
    st.caption(f"{len(out.results)} configurations on the {out.backend} backend ({out.workers} workers) in "
               f"{out.seconds:.1f} s. Each run is saved in the run store: open them on the Runs page.")
    rows = summarize(out.results)
    if not rows:
        return
    finished = [r for r in out.results if r.status == "finished" and r.W is not None]
    ks = sorted({r.code_size for r in finished})
    st.subheader("Filters for each λ")
    k = st.selectbox("Code size K", ks, index=len(ks) - 1, key="sweep_filter_k") if len(ks) > 1 else ks[0]
    first_seed = min(r.seed for r in finished if r.code_size == k)
    shown = sorted((r for r in finished if r.code_size == k and r.seed == first_seed), key=lambda r: r.reg)
    per_row = 4
    for start in range(0, len(shown), per_row):
        cols = st.columns(per_row)
        for col, r in zip(cols, shown[start:start + per_row]):
            col.plotly_chart(filter_panel(r.W, t.params["shape"], title=f"λ = {lambda_label(r.reg)}"),
                             key=f"sweep_filters_{r.index}", theme=None)
            col.caption(f"mean |h| {r.mean_abs_code:.3g}, {r.active_fraction:.0%} active, "
                        f"test error {r.test_sse:.3g}")
    st.caption(f"Rows of W at K = {k} (seed {first_seed}), one tile per code unit; each panel has its own "
               f"symmetric colour scale: red positive, blue negative weights, white zero.")
    st.subheader("Error and sparsity")
    a, b = st.columns(2)
    a.plotly_chart(sweep_lines(rows, "test_sse", "reg"), key="sweep_err_reg", theme=None)
    b.plotly_chart(sweep_lines(rows, "mean_abs_code", "reg"), key="sweep_sparse_reg", theme=None)
    if len({r["code_size"] for r in rows}) > 1:
        a, b = st.columns(2)
        a.plotly_chart(sweep_lines(rows, "test_sse", "code_size"), key="sweep_err_k", theme=None)
        b.plotly_chart(sweep_lines(rows, "mean_abs_code", "code_size"), key="sweep_sparse_k", theme=None)
    with st.expander("Every configuration"):
        st.dataframe([{k: v for k, v in r.to_dict().items() if k not in ("index", "error")} for r in out.results],
                     hide_index=True)


task = st.session_state.get(TASK_KEY)
if task is None:
    st.caption("Press **Run sweep**; the results appear here when every configuration has trained.")
elif not task.done:
    _progress()
else:
    _results(task)
