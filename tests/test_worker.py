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


def _copy(digits, name):
    from aecore.data import Dataset

    return Dataset(name=name, x_train=digits.x_train.copy(), y_train=digits.y_train, x_test=digits.x_test.copy(),
                   y_test=digits.y_test, shape=digits.shape, kind=digits.kind, value_range=digits.value_range)


@pytest.fixture
def fresh_spills(monkeypatch, tmp_path):
    """This test's own spill folders (the temporary folder under tmp_path), removed afterwards."""
    monkeypatch.setattr(worker.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(worker, "_spill_dirs", {})
    monkeypatch.setattr(worker, "_spilled", worker.OrderedDict())
    yield tmp_path
    worker._cleanup()


def _disk_usage_saying_free(free_for_shm: int):
    real = worker.shutil.disk_usage

    def fake(path):
        if str(path) == worker.SHM:
            return real(path)._replace(free=free_for_shm)
        return real(path)
    return fake


def test_a_small_dev_shm_sends_the_data_to_the_temporary_folder(digits, monkeypatch, fresh_spills):
    """A container's /dev/shm is often 64 MB: a data set that does not fit goes to $TMPDIR on disk,
    and the job process still trains on it (memory-mapped, as from /dev/shm)."""
    if not (worker.os.path.isdir(worker.SHM) and worker.os.access(worker.SHM, worker.os.W_OK)):
        pytest.skip("this machine has no writable /dev/shm: every spill goes to the temporary folder anyway")
    tmp_path = fresh_spills
    nbytes = digits.x_train.nbytes + digits.x_test.nbytes + digits.y_train.nbytes + digits.y_test.nbytes

    monkeypatch.setattr(worker.shutil, "disk_usage", _disk_usage_saying_free(int(worker.SHM_HEADROOM * nbytes)))
    roomy = worker.spill(_copy(digits, "fits"))
    assert roomy.folder.startswith(worker.SHM + "/")
    monkeypatch.setattr(worker.shutil, "disk_usage", _disk_usage_saying_free(int(worker.SHM_HEADROOM * nbytes) - 1))
    small = _copy(digits, "does-not-fit")
    sd = worker.spill(small)
    assert sd.folder.startswith(str(tmp_path) + "/"), sd.folder
    back = worker.load_spilled(sd)
    np.testing.assert_array_equal(back.x_train, small.x_train)
    np.testing.assert_array_equal(back.y_test, small.y_test)
    assert isinstance(back.x_train, np.memmap) and not back.x_train.flags.writeable
    assert worker.spill(small) is sd  # written once per data set

    events = list(worker.ProcessJob(ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=1), small).events())
    assert isinstance(events[-1], Finished), events[-1]
    worker._cleanup()
    assert not any(tmp_path.iterdir())  # the server's exit removes its spill folders


def test_a_full_dev_shm_falls_back_to_disk_and_a_full_disk_is_named(digits, monkeypatch, fresh_spills):
    """/dev/shm filling up between the check and the write (another process) falls back to the disk
    with nothing half-written left behind; when the disk fails too, the error names both places."""
    import errno

    tmp_path = fresh_spills
    real_save = np.save
    refused = []

    def save_refusing_shm(path, a, *args, **kw):
        if str(path).startswith(worker.SHM + "/"):
            real_save(path, a[: len(a) // 2], *args, **kw)  # a partial file, then the device is full
            refused.append(str(path))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, a, *args, **kw)

    monkeypatch.setattr(worker.np, "save", save_refusing_shm)
    data = _copy(digits, "shm-full")
    sd = worker.spill(data)
    assert sd.folder.startswith(str(tmp_path) + "/")
    np.testing.assert_array_equal(worker.load_spilled(sd).x_train, data.x_train)
    for p in refused:  # the half-written folder in /dev/shm is gone
        assert not worker.Path(p).parent.exists()

    def save_refusing_all(path, a, *args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(worker.np, "save", save_refusing_all)
    with pytest.raises(OSError, match=r"cannot write data set 'full-everywhere' \([\d.]+ MB\) for the training process "
                                      r"to '.*' .*No space left on device.*set TMPDIR to a larger folder"):
        worker.spill(_copy(digits, "full-everywhere"))
    left = [p for d in worker._spill_dirs.values() for p in d.iterdir()]
    assert [p.name for p in left] == [worker.Path(sd.folder).name]  # only the good copy remains


def test_share_keeps_one_copy_the_jobs_map_too(digits, fresh_spills):
    """``share`` gives a Dataset read from the files written for the job processes: equal arrays,
    memory-mapped read-only, and spilling it again writes nothing (the server and its jobs share
    the pages instead of the server keeping a copy of its own)."""
    original = _copy(digits, "shared")
    shared = worker.share(original)
    for k in ("x_train", "x_test", "y_train", "y_test"):
        a = getattr(shared, k)
        np.testing.assert_array_equal(a, getattr(original, k))
        assert isinstance(a, np.memmap) and not a.flags.writeable
    assert (shared.name, shared.shape, shared.kind, shared.label_names) == \
        (original.name, original.shape, original.kind, original.label_names)
    assert list(worker._spilled) == [id(shared)]  # the original is not held on to
    sd = worker.spill(shared)
    assert worker.Path(sd.folder) == worker.Path(shared.x_train.filename).parent  # no second copy written
    events = list(worker.ProcessJob(ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=1, seed=2),
                                    shared).events())
    torch.set_num_threads(1)
    ref = fit(ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=1, seed=2), original)
    assert events[-1].metrics["test_sse"] == pytest.approx(ref.metrics["test_sse"], rel=1e-6)
