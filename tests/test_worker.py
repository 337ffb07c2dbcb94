"""Training in a child process: events arrive, Stop works, a dead child is reported."""
import threading
import time

import numpy as np
import pytest
import torch

from aecore import worker
from aecore.config import ModelConfig, TrainConfig
from aecore.training import Failed, Finished, Progress, Snapshot, fit


@pytest.fixture(scope="module", autouse=True)
def warm():
    worker.warm_up()


def test_child_process_run_matches_an_in_process_run(digits):
    mc, tc = ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=2, seed=3)
    events = list(worker.ProcessJob(mc, tc, digits, threads=1).events())
    kinds = {type(e) for e in events}
    assert {Progress, Snapshot, Finished} <= kinds
    fin = events[-1]
    assert isinstance(fin, Finished) and not fin.stopped
    torch.set_num_threads(1)
    ref = fit(mc, tc, digits)
    # same seed, same data, same single thread: the same weights and metrics
    for (k, a), (_, b) in zip(fin.model.state_dict().items(), ref.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert fin.metrics["test_sse"] == pytest.approx(ref.metrics["test_sse"], rel=1e-6)
    snap = next(e for e in events if isinstance(e, Snapshot))
    assert snap.W.shape == (4, 64) and snap.principal_angles_deg is not None


def test_stop_reaches_the_child(digits):
    stop = threading.Event()
    job = worker.ProcessJob(ModelConfig(variant="sigmoid", code_size=8), TrainConfig(epochs=100_000), digits)
    t_stop = None
    for ev in job.events(stop=stop):
        if isinstance(ev, Progress) and t_stop is None:
            stop.set()
            t_stop = time.perf_counter()
        if isinstance(ev, Finished):
            assert ev.stopped
            break
    assert t_stop is not None and time.perf_counter() - t_stop < 5
    job.process.join(timeout=5)
    assert not job.process.is_alive()


def test_a_killed_child_is_reported_not_silent(digits):
    job = worker.ProcessJob(ModelConfig(variant="sigmoid", code_size=8), TrainConfig(epochs=100_000), digits)
    events = []
    for ev in job.events():
        events.append(ev)
        if isinstance(ev, Progress) and len(events) < 50:
            job.kill()  # as the kernel's OOM killer would
    assert isinstance(events[-1], Failed)
    assert "ended unexpectedly" in events[-1].reason and "out of memory" in events[-1].reason


def test_a_bad_config_in_the_child_fails_with_its_reason(digits):
    from aecore.data import Dataset

    mc = ModelConfig(variant="sigmoid", code_size=4)  # cross-entropy, but the data reach 10
    scaled = Dataset(name="x10", x_train=np.ascontiguousarray(digits.x_train * 10), y_train=digits.y_train,
                     x_test=np.ascontiguousarray(digits.x_test * 10), y_test=digits.y_test, shape=(8, 8),
                     kind="image", value_range=(0.0, 10.0))
    events = list(worker.ProcessJob(mc, TrainConfig(epochs=1), scaled).events())
    assert isinstance(events[-1], Failed) and "needs inputs in [0, 1]" in events[-1].reason


def test_threads_setting_is_validated(monkeypatch):
    monkeypatch.setenv("AECORE_TORCH_THREADS", "zero")
    with pytest.raises(ValueError, match="AECORE_TORCH_THREADS='zero'"):
        worker.default_threads(2)
    monkeypatch.setenv("AECORE_TORCH_THREADS", "3")
    assert worker.default_threads(2) == 3
