"""The dashboard's ``ray`` job runner: jobs train as actors on a local Ray cluster (2 CPUs) and
stream their events into the same JobRecord the Train page reads; Stop and the queue work."""
import time

import pytest
import torch

ray = pytest.importorskip("ray", reason="the ray runner needs the cluster extra (pip install -e '.[cluster]')")

from aecore.config import ModelConfig, TrainConfig  # noqa: E402
from aecore.runs import RunStore  # noqa: E402
from aecore.training import fit  # noqa: E402
from dashboard.jobs import JobManager  # noqa: E402

LONG = TrainConfig(epochs=100_000)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local cluster for the module (starting one takes seconds); shut down at the end."""
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _wait(pred, timeout, what):
    t0 = time.perf_counter()
    while not pred():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.perf_counter() - t0


def test_a_job_runs_on_ray_streams_snapshots_and_is_saved(tmp_path, digits):
    store = RunStore(tmp_path / "runs")
    mgr = JobManager(max_jobs=1, store=store, runner="ray")
    mc, tc = ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=30, seed=3)
    job = mgr.submit(mc, tc, digits, data_info={"name": "digits"})
    live = []  # (status, snapshots seen) while the job runs: the page's view mid-run

    def running_with_frames():
        if job.status == "running" and job.snapshots:
            live.append(len(job.snapshots))
        return job.done

    _wait(running_with_frames, 120, "the Ray job to end")
    assert job.status == "finished", job.error
    assert live, "no snapshot reached the job record while it was running"
    assert len(job.snapshots) >= 20 and job.snapshots[-1].W.shape == (4, 64)
    assert job.history and job.progress is not None and job.progress.step == job.metrics["steps"]
    # saved in the run store, like a process job
    assert job.run_id and [r["status"] for r in store.list()] == ["finished"]
    saved = store.load(job.run_id)
    # same seed, same data, one torch thread on the worker: the weights of an in-process run
    torch.set_num_threads(1)
    ref = fit(mc, tc, digits)
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(saved.model.state_dict()[k], v, msg=k)
    assert job.metrics["test_sse"] == pytest.approx(ref.metrics["test_sse"], rel=1e-6)


def test_stop_ends_a_long_ray_job(tmp_path, digits):
    mgr = JobManager(max_jobs=1, store=RunStore(tmp_path / "runs"), runner="ray")
    job = mgr.submit(ModelConfig(variant="sigmoid", code_size=8), LONG, digits)
    _wait(lambda: job.progress is not None or job.done, 120, "the first progress")
    assert job.status == "running", job.error
    job.stop()
    _wait(lambda: job.done, 10, "the stopped job to end")
    assert job.status == "stopped", job.error
    assert job.metrics["steps"] < LONG.epochs * 23  # it ended long before its 100 000 epochs


def test_two_jobs_with_a_cap_of_one_queue_in_order(digits):
    mgr = JobManager(max_jobs=1, runner="ray")
    first = mgr.submit(ModelConfig(variant="sigmoid", code_size=8), LONG, digits)
    second = mgr.submit(ModelConfig(variant="sigmoid", code_size=8), LONG, digits)
    _wait(lambda: first.status == "running", 30, "the first job to start")
    assert second.status == "queued" and mgr.queue_position(second) == 1
    assert mgr.queue_position(first) is None
    _wait(lambda: first.progress is not None or first.done, 120, "the first job's progress")
    assert second.status == "queued"  # still waiting: the cap holds for Ray jobs too
    first.stop()
    _wait(lambda: first.done, 10, "the first job to stop")
    _wait(lambda: second.status != "queued", 10, "the second job to start")
    assert mgr.queue_position(second) is None
    second.stop()
    _wait(lambda: second.done, 120, "the second job to stop")
    assert (first.status, second.status) == ("stopped", "stopped")


def test_an_unreachable_cluster_address_fails_fast_naming_the_setting():
    import socket

    from aecore import ray_runner

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"AECORE_RAY_ADDRESS='ray://127.0.0.1:{port}' does not answer"):
        ray_runner._check_reachable(f"ray://127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 30  # not Ray's minutes of retries


def test_an_unknown_runner_lists_ray():
    with pytest.raises(ValueError, match="choose one of process, thread, ray"):
        JobManager(max_jobs=1, runner="slurm")


_OWN_RAY = """
import threading, time
import ray
from aecore.config import ModelConfig, TrainConfig
from aecore.data import load
from dashboard.jobs import JobManager

mgr = JobManager(max_jobs=1, runner="ray")  # starts a local Ray from a thread that ends at once
while any(t.name == "aecore-ray-start" for t in threading.enumerate()):
    time.sleep(0.05)
time.sleep(1.0)  # Ray's processes would be gone by now if they had died with that thread
job = mgr.submit(ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=2), load("digits"))
t0 = time.time()
while not job.done and time.time() - t0 < 90:
    time.sleep(0.05)
print("RESULT", job.status, ray.cluster_resources().get("CPU"), job.error)
"""


def test_the_manager_starts_a_local_ray_that_outlives_the_thread_that_started_it():
    """As in the dashboard: no Ray yet, AECORE_RAY_ADDRESS empty, the manager starts one off the
    main thread (Ray's processes die with the thread that spawned them unless it lives on)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "AECORE_RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _OWN_RAY], env=env, capture_output=True, text=True, timeout=180)
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert result == ["RESULT finished 2.0 None"], proc.stdout[-2000:] + proc.stderr[-3000:]


# --- the Train page, unchanged, on the ray runner (a real server and Chromium) ---------------------
@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    from browser import Server, chromium_missing

    if why := chromium_missing():
        pytest.skip(f"browser test needs Chromium and Playwright: {why}")
    srv = Server(tmp_path_factory.mktemp("ray-server"),
                 env={"AECORE_JOB_RUNNER": "ray", "AECORE_RAY_ADDRESS": "", "AECORE_MAX_JOBS": "1"})
    yield srv
    srv.stop()


@pytest.mark.browser
def test_train_page_trains_and_stops_on_ray(ray_server, page):
    from browser import errors, shot, wait_for_final_figures, wait_for_text

    page.goto(ray_server.url + "/?variant=sigmoid&K=16&epochs=150&lr=0.01")
    page.get_by_role("button", name="Train", exact=True).click()
    frames = set()
    finished = page.get_by_text("Finished after")
    deadline = time.time() + 120
    while time.time() < deadline and not finished.count():
        src = page.evaluate("() => { const i = document.querySelector('.st-key-live_filters img'); "
                            "return i ? i.getAttribute('src') : null; }")
        if src:
            frames.add(src)
        time.sleep(0.15)
    assert finished.count(), "the Ray job did not finish within 120 s"
    wait_for_final_figures(page)
    shot(page, "train-ray-finished")
    assert len(frames) >= 2, f"the live filters changed {len(frames) - 1} times"
    assert errors(page) == []

    page.goto(ray_server.url + "/?variant=relu&K=32&epochs=20000")
    page.get_by_role("button", name="Train", exact=True).click()
    page.locator(".st-key-live_filters img").first.wait_for(timeout=60_000)  # really training
    page.locator(".st-key-train_stop button").first.click()
    wait_for_text(page, "Stopped early", timeout=20)
    shot(page, "train-ray-stopped")
    assert errors(page) == []
