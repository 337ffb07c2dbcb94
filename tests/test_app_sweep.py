"""AppTest of the Sweep page: settings checks, and a tiny sweep on digits run to completion
whose figures show the right numbers (the code gets sparser as λ grows)."""
from __future__ import annotations

import base64
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from aecore.runs import RunStore
from aecore.sweep import ray_missing
from apptest import figure, titles

PAGE = "../pages/sweep.py"


def finite_values(v) -> int:
    """How many non-gap values a plotly array holds (a nested list, or the base64 typed-array form)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    else:
        a = np.array(v, dtype=np.float64)
    return int(np.isfinite(a).sum())


def open_page(at) -> AppTest:
    at.run()
    return at.switch_page(PAGE).run()


def wait(at, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not at.session_state["sweep_task"].done:
        time.sleep(0.2)
    assert at.session_state["sweep_task"].done, f"the sweep still runs after {timeout} s"
    at.run()


def tiny_grid(at, backend: str = "local") -> None:
    at.selectbox(key="sweep_ds").set_value("digits")
    at.text_input(key="sweep_k").input("4,8")
    at.text_input(key="sweep_reg").input("0,0.3")
    at.number_input(key="sweep_epochs").set_value(6)
    at.radio(key="sweep_backend").set_value(backend).run()


def test_page_renders_with_its_controls(at):
    open_page(at)
    assert not at.exception and not at.error
    assert at.title[0].value == "Sweep"
    assert at.selectbox(key="sweep_variant").value == "sparse"
    assert at.button(key="sweep_run") and not at.button(key="sweep_run").disabled
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("field, value, message", [
    ("sweep_k", "", "Settings: code_size: the list is empty"),
    ("sweep_k", "0,4", "Settings: code_size=0 must be >= 1"),
    ("sweep_k", "4,x", "Settings: code sizes K: 'x' is not a whole number"),
    ("sweep_reg", "0,-1", "Settings: reg=-1.0 must be >= 0"),
    ("sweep_k", ",".join(str(k) for k in range(1, 30)), "this server runs at most 24 per sweep"),
])
def test_bad_grids_show_one_line_and_disable_the_button(at, field, value, message):
    open_page(at)
    at.text_input(key=field).input(value).run()
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value, [e.value for e in at.error]
    assert at.button(key="sweep_run").disabled


def check_results(at) -> None:
    assert not at.exception and not at.error, [e.value for e in at.error]
    names = titles(at)
    # one filter grid per λ at the largest K, and the four summary plots
    assert [t for t in names if t.startswith("λ = ")] == ["λ = 0", "λ = 0.3"], names
    for t in ("Test error against λ", "Sparsity against λ", "Test error against K", "Sparsity against K"):
        assert t in names, names
    sparsity = figure(at, "Sparsity against λ")
    assert {tr["name"] for tr in sparsity["data"]} == {"K = 4", "K = 8"}
    for tr in sparsity["data"]:
        assert tr["x"] == ["0", "0.3"]
        assert tr["y"][1] < 0.5 * tr["y"][0], tr  # the code gets sparser as λ grows
    out = at.session_state["sweep_task"].result
    error = figure(at, "Test error against λ")
    for tr in error["data"]:  # the plotted errors are the runs' own
        k = int(tr["name"].split("= ")[1])
        assert tr["y"] == pytest.approx([r.test_sse for r in out.results if r.code_size == k])
    err_k = figure(at, "Test error against K")
    for tr in err_k["data"]:
        assert tr["x"] == ["4", "8"] and tr["y"][1] < tr["y"][0]  # a larger code reconstructs better
    filters = figure(at, "λ = 0.3")
    assert finite_values(filters["data"][0]["z"]) == 8 * 64  # K = 8 filters of 8 x 8 pixels
    assert {r.status for r in out.results} == {"finished"}
    stored = {row["id"]: row["status"] for row in RunStore().list()}
    assert stored == {r.run_id: "finished" for r in out.results}
    assert RunStore().list(session=None) == []  # the session's own runs, not shared ones


def test_a_tiny_local_sweep_runs_to_completion(at):
    open_page(at)
    tiny_grid(at)
    at.button(key="sweep_run").click().run()
    assert at.session_state["sweep_task"].params["backend"] == "local"
    wait(at)
    check_results(at)
    # the filter K can be switched: the smaller code shows 4 tiles per panel
    at.selectbox(key="sweep_filter_k").set_value(4).run()
    assert finite_values(figure(at, "λ = 0")["data"][0]["z"]) == 4 * 64


def test_a_sweep_queues_for_the_training_slots_a_job_holds(at):
    """Sweeps count in AECORE_MAX_JOBS: with a job training (1 of the 2 slots on a CPU), a
    4-configuration sweep (a worker per slot) waits and says so; when the job stops, it completes."""
    at.query_params.update({"variant": "linear", "K": "4", "epochs": "100000", "dataset": "digits"})
    at.run()
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    deadline = time.time() + 30
    while job.status != "running" and time.time() < deadline:
        time.sleep(0.05)
    assert job.status == "running"
    at.switch_page(PAGE).run()
    tiny_grid(at)
    at.button(key="sweep_run").click().run()
    task = at.session_state["sweep_task"]
    time.sleep(1.0)
    from dashboard.jobs import default_max_jobs

    slots = default_max_jobs()  # the server's (2 on a CPU): the 4 configurations want them all
    assert not task.done and task.stage == (f"waiting for {min(4, slots)} of the server's {slots} training slots: "
                                            f"1 in use, 0 queued ahead"), task.stage
    assert not task.rows and not task.extra.get("progress")  # nothing trained
    job.stop()
    wait(at)
    assert job.status == "stopped"
    assert not at.exception and not at.error, [e.value for e in at.error]
    out = task.result
    assert len(out.results) == 4 and {r.status for r in out.results} == {"finished"} and out.workers == min(4, slots)
    assert "Test error against λ" in titles(at)


@pytest.fixture
def ray_cleanup():
    yield
    import ray

    ray.shutdown()  # the page keeps a local cluster it started for the next sweep


@pytest.mark.skipif(ray_missing() is not None, reason=f"the Ray backend needs the cluster extra: {ray_missing()}")
def test_a_tiny_sweep_on_a_local_ray_cluster(at, ray_cleanup, monkeypatch):
    monkeypatch.delenv("AECORE_RAY_ADDRESS", raising=False)
    open_page(at)
    tiny_grid(at, backend="ray")
    at.button(key="sweep_run").click().run()
    wait(at, timeout=180)
    assert at.session_state["sweep_task"].result.backend == "ray"
    check_results(at)
    import ray

    # the sweep's thread has ended; the local Ray it started must live on for the next sweep
    assert ray.is_initialized()
    assert ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60) == 42


def test_a_sweep_beyond_the_session_caps_is_refused_on_the_page(at, monkeypatch):
    monkeypatch.setenv("AECORE_MAX_CODE_SIZE", "6")
    open_page(at)
    tiny_grid(at)
    at.button(key="sweep_run").click().run()
    assert not at.exception
    assert "sweep_task" not in at.session_state
    assert len(at.error) == 1 and "Not started: Code size K=8 is above this server's limit of 6" in at.error[0].value, \
        [e.value for e in at.error]
    assert RunStore().list() == []
