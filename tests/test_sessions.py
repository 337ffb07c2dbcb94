"""Several browser sessions at once: each trains its own job; extra jobs queue in order."""
from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from aecore.config import ModelConfig, TrainConfig
from dashboard.jobs import JobManager
from apptest import APP


def _wait(jobs, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline and not all(j.done for j in jobs):
        time.sleep(0.05)
    assert all(j.done for j in jobs), [j.status for j in jobs]


@pytest.mark.parametrize("runner", ["process", "thread"])
def test_a_full_manager_queues_jobs_in_order_with_positions(digits, runner):
    mgr = JobManager(max_jobs=1, runner=runner)
    long = TrainConfig(epochs=100_000)
    first = mgr.submit(ModelConfig(variant="sigmoid", code_size=4), long, digits, save=False)
    deadline = time.time() + 30
    while first.status != "running" and time.time() < deadline:
        time.sleep(0.02)
    second = mgr.submit(ModelConfig(variant="sigmoid", code_size=5), TrainConfig(epochs=1), digits, save=False)
    third = mgr.submit(ModelConfig(variant="sigmoid", code_size=6), TrainConfig(epochs=1), digits, save=False)
    time.sleep(0.3)
    assert first.status == "running" and mgr.running == 1
    assert (second.status, third.status) == ("queued", "queued")
    assert (mgr.queue_position(second), mgr.queue_position(third)) == (1, 2)
    first.stop()
    _wait([first, second, third])
    assert first.status == "stopped" and second.status == third.status == "finished"
    assert second.started <= third.started  # FIFO
    assert mgr.queue_position(third) is None
    # each job trained its own config
    assert [j.metrics["code_size"] for j in (second, third)] == [5, 6]


def test_a_queued_job_that_is_stopped_never_runs(digits):
    mgr = JobManager(max_jobs=1, runner="thread")
    first = mgr.submit(ModelConfig(variant="sigmoid", code_size=4), TrainConfig(epochs=100_000), digits, save=False)
    second = mgr.submit(ModelConfig(variant="sigmoid", code_size=4), TrainConfig(epochs=1), digits, save=False)
    time.sleep(0.2)
    second.stop()
    first.stop()
    _wait([first, second])
    assert second.status == "stopped" and second.metrics is None and second.started is None


def test_work_outside_jobs_takes_training_slots_in_the_same_queue(digits):
    """A sweep or a feature task reserves slots: jobs submitted after it wait (FIFO, their queue
    position counts it), it waits for enough free slots, and Stop leaves the queue unrun."""
    import threading

    from dashboard.feature_tasks import start_task
    from dashboard.jobs import Stopped

    mgr = JobManager(max_jobs=2, runner="thread")
    long = TrainConfig(epochs=100_000)
    first = mgr.submit(ModelConfig(variant="sigmoid", code_size=4), long, digits, save=False)
    deadline = time.time() + 30
    while first.status != "running" and time.time() < deadline:
        time.sleep(0.02)
    assert mgr.running == 1
    heard, holding, release = [], threading.Event(), threading.Event()

    def sweep():  # wants both slots: waits for the running job
        with mgr.reserve(5, on_wait=heard.append) as n:
            heard.append(f"holding {n}, {mgr.running} in use")
            holding.set()
            release.wait(30)

    t = threading.Thread(target=sweep, daemon=True)
    t.start()
    time.sleep(0.3)
    assert not holding.is_set() and heard == ["waiting for 2 of the server's 2 training slots: 1 in use, 0 queued "
                                              "ahead"]
    later = mgr.submit(ModelConfig(variant="sigmoid", code_size=5), TrainConfig(epochs=1), digits, save=False)
    time.sleep(0.3)
    assert later.status == "queued" and mgr.queue_position(later) == 2  # behind the reservation, though a slot is free
    first.stop()
    assert holding.wait(30) and heard[-1] == "holding 2, 2 in use"
    time.sleep(0.3)
    assert later.status == "queued"  # no slot for it while the sweep holds both
    release.set()
    t.join(30)
    _wait([first, later])
    assert later.status == "finished" and mgr.running == 0

    # stopped while queued: nothing runs, the queue moves on
    busy = mgr.submit(ModelConfig(variant="sigmoid", code_size=4), long, digits, save=False)
    stop = threading.Event()
    ran = []
    with mgr.reserve(1):  # with the busy job: both slots taken
        rec = start_task("probe", {}, lambda r: ran.append(1), slots=0)  # (no slots: runs at once)
        deadline = time.time() + 10
        while not rec.done and time.time() < deadline:
            time.sleep(0.02)
        assert rec.status == "finished" and ran == [1]
        stop.set()
        with pytest.raises(Stopped, match="stopped while waiting for a training slot"):
            with mgr.reserve(1, stop=stop):
                ran.append(2)
    assert ran == [1] and mgr.running == 1
    busy.stop()
    _wait([busy])
    assert mgr.running == 0 and mgr.queue_position(busy) is None


def test_two_sessions_train_independently(tmp_path, monkeypatch):
    monkeypatch.setenv("AECORE_RUNS", str(tmp_path / "runs"))
    a, b = AppTest.from_file(APP, default_timeout=60), AppTest.from_file(APP, default_timeout=60)
    a.query_params["K"], a.query_params["epochs"] = "3", "5"
    b.query_params["K"], b.query_params["epochs"] = "7", "5"
    a.run()
    b.run()
    a.button(key="train_start").click().run()
    b.button(key="train_start").click().run()
    ja, jb = a.session_state["job"], b.session_state["job"]
    assert ja is not jb
    _wait([ja, jb])
    a.run()
    b.run()
    assert ja.metrics["code_size"] == 3 and jb.metrics["code_size"] == 7
    # each page shows its own job only
    text_a = "\n".join(m.value for m in a.markdown)
    text_b = "\n".join(m.value for m in b.markdown)
    assert f"Job {ja.id}:" in text_a and f"Job {jb.id}:" not in text_a
    assert f"Job {jb.id}:" in text_b and f"Job {ja.id}:" not in text_b
    assert a.session_state["model_cfg"].code_size == 3 and b.session_state["model_cfg"].code_size == 7
    # the Runs page of each session lists its own run and not the other's; a run saved from the
    # CLI (no session) is shared; loading the other session's run by id is refused
    from aecore.runs import RunStore

    store = RunStore(tmp_path / "runs")
    shared = store.start(ModelConfig(variant="linear", code_size=2), TrainConfig(dataset="digits"))
    store.fail(shared, "a CLI run, shared by every session")
    for me, other in ((a, jb), (b, ja)):
        me.switch_page("../pages/runs.py").run()
        assert not me.exception
        listed = set(me.dataframe[0].value["id"])
        assert (ja if me is a else jb).run_id in listed and other.run_id not in listed and shared in listed


def test_the_store_shows_each_session_its_own_runs_and_the_shared_ones(tmp_path):
    from aecore.runs import RunStore

    store = RunStore(tmp_path)
    mc, tc = ModelConfig(variant="linear", code_size=2), TrainConfig(dataset="digits")
    mine, theirs, shared = store.start(mc, tc, session="s1"), store.start(mc, tc, session="s2"), store.start(mc, tc)
    assert {r["id"] for r in store.list()} == {mine, theirs, shared}  # the CLI sees everything
    assert {r["id"] for r in store.list(session="s1")} == {mine, shared}
    assert {r["id"] for r in store.list(session=None)} == {shared}
    store.fail(mine, "x")
    assert [r["id"] for r in store.list("failed", session="s1")] == [mine]
    assert store.visible_to(mine, "s1") and store.visible_to(shared, "s1")
    assert not store.visible_to(theirs, "s1") and not store.visible_to("no-such-run", "s1")
