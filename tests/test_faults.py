"""Fault injection (issue 8): divergence, out of memory, broken downloads, a server killed
mid-training, corrupted checkpoints. Each fault must end in a clear message and a consistent
state, never a crash, a hung job or a half-written file."""
from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import aecore.training as training
from localhttp import serving
from aecore import cli
from aecore.checkpoint import CheckpointError, load_run
from aecore.config import ModelConfig, TrainConfig
from aecore.data import DataError, RemoteFile
from aecore.data.download import fetch
from aecore.runs import RunStore
from aecore.training import Failed, Finished, Progress, Trainer
from apptest import saved_run

REPO = Path(__file__).resolve().parent.parent
HUGE = ModelConfig(variant="deep", code_size=10, hidden=(100_000, 100_000))  # ~2e10 parameters: ~300 GiB


def texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "success", "info", "warning", "error")
                     for e in getattr(at, kind))


def wait_for_job(at, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        if at.session_state["job"].done:
            return at.run()
        time.sleep(0.2)
    raise AssertionError(f"job did not end within {timeout} s")


def wait_all(jobs, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not all(j.ended is not None for j in jobs):
        time.sleep(0.05)
    assert all(j.ended is not None for j in jobs), [j.status for j in jobs]


def leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders of an interrupted write."""
    return sorted(p for p in folder.rglob("*") if p.name.endswith((".partial", ".tmp")) or ".part" in p.name)


# --- 1. divergence ---------------------------------------------------------------------------------
def test_divergence_on_the_train_page_names_step_and_term_suggests_lower_lr_and_is_recorded(at):
    # lr=10 (the largest the settings allow) makes the VAE's loss infinite within a few steps
    at.query_params.update({"variant": "vae", "K": "4", "lr": "10", "epochs": "3"})
    at.run()
    assert at.session_state["train_cfg"].lr == 10
    at.button(key="train_start").click().run()
    wait_for_job(at)
    assert not at.exception
    job = at.session_state["job"]
    assert job.status == "failed"
    errors = " ".join(e.value for e in at.error)
    assert "Training failed: diverged at step" in errors and "(term 'recon'" in errors
    hint = " ".join(i.value for i in at.info)
    assert "Lower the learning rate (now 10)" in hint
    # the run store records it as failed, with the same reason
    rows = RunStore().list()
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert rows[0]["reason"] == job.error and rows[0]["reason"].startswith("diverged at step")
    assert not at.button(key="train_start").disabled  # the page stays usable


def test_divergence_from_the_cli_exits_2_in_one_line_and_is_recorded(capsys):
    code = cli.main(["train", "--variant", "vae", "--dataset", "digits", "-k", "4", "--lr", "10", "--epochs", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("aecore train: diverged at step") and "term 'recon'" in err[-1]
    assert "Traceback" not in "\n".join(err)
    (row,) = RunStore().list()
    assert row["status"] == "failed" and row["reason"].startswith("diverged at step")


# --- 2. out of memory ---------------------------------------------------------------------------------
def _oom_at_step(monkeypatch, exc: BaseException, when=lambda mc: True, at_call: int = 3) -> list:
    """Models built by the Trainer raise ``exc`` in their ``at_call``-th loss computation (the first
    one is the Trainer's check batch). Returns weak references to every model built."""
    real = training.build_model
    built = []

    def build(mc, input_dim, generator=None):
        model = real(mc, input_dim, generator=generator)
        if torch.get_default_device().type == "meta" or not when(mc):
            return model
        built.append(weakref.ref(model))
        calls = [0]

        def failing(inner):
            def fn(*args, **kwargs):
                calls[0] += 1
                if calls[0] >= at_call:
                    raise type(exc)(*exc.args)  # a fresh one: a raised exception keeps its frames
                return inner(*args, **kwargs)
            return fn

        # (reference cycles through the model, as real code makes them). A CPU step whose gradients
        # are written out calls loss_and_grads, one through autograd loss_terms: both count
        model.loss_terms = failing(model.loss_terms)
        if hasattr(model, "loss_and_grads"):
            model.loss_and_grads = failing(model.loss_and_grads)
        return model

    monkeypatch.setattr(training, "build_model", build)
    return built


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total capacity)"),
    MemoryError(),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 400000000000 bytes."),
], ids=["cuda-oom", "memory-error", "cpu-allocator"])
def test_out_of_memory_mid_training_fails_cleanly_and_frees_the_model(monkeypatch, digits, exc):
    built = _oom_at_step(monkeypatch, exc)
    mc, tc = ModelConfig(variant="sigmoid", code_size=12), TrainConfig(epochs=3, batch_size=32)
    events = list(Trainer(mc, tc, digits, memory_fraction=0).run())
    failed = events[-1]
    assert isinstance(failed, Failed) and not any(isinstance(e, Finished) for e in events)
    assert failed.reason.startswith("out of memory: the run needed more memory than was free")
    assert "lower the code size K (now 12)" in failed.reason and "batch size (now 32)" in failed.reason
    assert len(built) == 1
    del events, failed
    assert built[0]() is None  # nothing holds the model, its optimizer state or its batches any more


def test_release_memory_collects_and_empties_the_cuda_cache(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))

    class Cycle:
        pass

    a = Cycle()
    a.me = a
    ref = weakref.ref(a)
    del a
    gc.disable()  # only release_memory may collect the cycle
    try:
        training.release_memory()
    finally:
        gc.enable()
    assert ref() is None and emptied == [1]


def test_a_model_too_big_for_memory_is_refused_before_anything_is_allocated(monkeypatch, digits):
    real = training.build_model
    devices = []

    def build(mc, input_dim, generator=None):
        devices.append(torch.get_default_device().type)
        return real(mc, input_dim, generator=generator)

    monkeypatch.setattr(training, "build_model", build)
    events = list(Trainer(HUGE, TrainConfig(epochs=1), digits).run())
    assert len(events) == 1 and isinstance(events[0], Failed)
    reason = events[0].reason
    assert reason.startswith("not enough memory: this run needs about")
    assert "20,000,000,000" not in reason and "parameters" in reason and "AECORE_MEMORY_FRACTION" in reason
    assert "hidden layer sizes (now 100000,100000)" in reason and "code size K (now 10)" in reason
    assert devices == ["meta"]  # only the estimate built it, on the device that allocates nothing


def test_the_memory_share_is_a_setting(monkeypatch, digits):
    small = ModelConfig(variant="sigmoid", code_size=8)
    # a tiny share refuses even a small model; 0 turns the check off
    (ev,) = list(Trainer(small, TrainConfig(epochs=1), digits, memory_fraction=1e-9).run())
    assert isinstance(ev, Failed) and "one run may use 0% of it" in ev.reason
    monkeypatch.setenv("AECORE_MEMORY_FRACTION", "1e-9")
    assert isinstance(next(iter(Trainer(small, TrainConfig(epochs=1), digits).run())), Failed)
    monkeypatch.setenv("AECORE_MEMORY_FRACTION", "0")
    assert isinstance(list(Trainer(small, TrainConfig(epochs=1), digits).run())[-1], Finished)
    for bad in ("2", "-0.5", "lots", "nan"):
        monkeypatch.setenv("AECORE_MEMORY_FRACTION", bad)
        with pytest.raises(ValueError, match=rf"AECORE_MEMORY_FRACTION='{bad}' must be a number from 0 to 1"):
            training.memory_fraction()


def test_estimate_is_in_the_right_range_for_every_variant():
    from aecore.registry import variant_names

    for v in variant_names():
        mc = ModelConfig(variant=v, code_size=32)
        need, params = training.estimate_memory(mc, 784, 64)
        real = sum(p.numel() for p in training.build_model(mc, 784).parameters())
        assert params == real, v
        assert need >= 16 * real, v  # float32 weights, gradients and Adam's two moments at least
        assert training.estimate_memory(mc, 784, 640)[0] > need, v  # activations grow with the batch
        assert training.estimate_memory(ModelConfig(variant=v, code_size=64), 784, 64)[0] > need, v
        # on a GPU the training set is copied there too; on the CPU it is shared with numpy
        assert training.estimate_memory(mc, 784, 64, n_train=1000, device="cuda")[0] == need + 4 * 1000 * 784, v


def _store_rows(store) -> dict:
    return {r["id"]: r for r in store.list()}


@pytest.mark.parametrize("runner", ["thread", "process"])
def test_one_job_out_of_memory_the_others_go_on_and_finish(monkeypatch, tmp_path, digits, runner):
    from dashboard.jobs import JobManager

    store = RunStore(tmp_path / "runs")
    manager = JobManager(max_jobs=2, store=store, runner=runner)
    if runner == "thread":  # a real OOM inside training, injected into the job with K=13
        bad_mc = ModelConfig(variant="sigmoid", code_size=13)
        built = _oom_at_step(monkeypatch, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB"),
                             when=lambda mc: mc.code_size == 13, at_call=5)
        expect = "out of memory: the run needed more memory than was free"
    else:  # in a child process: the pre-flight estimate refuses a model that cannot fit
        bad_mc = HUGE
        expect = "not enough memory: this run needs about"
    tc = TrainConfig(epochs=4, progress_every=0.0)
    jobs = [manager.submit(ModelConfig(variant="sigmoid", code_size=4), tc, digits, {"name": "digits"}),
            manager.submit(bad_mc, tc, digits, {"name": "digits"}),
            manager.submit(ModelConfig(variant="tied", code_size=5), tc, digits, {"name": "digits"}),
            manager.submit(ModelConfig(variant="linear", code_size=6), tc, digits, {"name": "digits"})]
    wait_all(jobs)
    good = [jobs[0], *jobs[2:]]
    assert jobs[1].status == "failed" and jobs[1].error.startswith(expect), jobs[1].error
    assert "lower the code size K" in jobs[1].error and jobs[1].model is None
    if runner == "thread":
        gc.collect()
        assert built and all(ref() is None for ref in built)  # the failed job's model is not held anywhere
    assert [j.status for j in good] == ["finished"] * 3, [j.error for j in good]
    assert manager.running == 0
    rows = _store_rows(store)
    assert len(rows) == 4
    assert sorted(r["status"] for r in rows.values()) == ["failed", "finished", "finished", "finished"]
    (failed,) = [r for r in rows.values() if r["status"] == "failed"]
    assert failed["reason"] == jobs[1].error
    for j in good:
        assert store.load(j.run_id).metrics["test_sse"] == pytest.approx(j.metrics["test_sse"])


# --- 3. downloads ---------------------------------------------------------------------------------------
FILE = "/files/images.bin.gz"


@pytest.fixture
def flaky(monkeypatch):
    """``routes[FILE]`` = (mode, ``body``): the same file served whole, cut off or wrong."""
    with serving(monkeypatch) as httpd:
        httpd.body = np.random.default_rng(0).bytes(300_000)
        httpd.routes[FILE] = ("ok", httpd.body)
        yield httpd


def test_dropped_then_corrupted_download_leaves_nothing_and_a_retry_works(flaky, tmp_path):
    body = flaky.body
    want = hashlib.sha256(body).hexdigest()
    f = RemoteFile("images.bin.gz", want, len(body))
    dest = tmp_path / "cache" / "tiny"
    url = flaky.url("/files/")

    flaky.routes[FILE] = ("drop", body)  # (a) the connection dies halfway
    with pytest.raises(DataError, match=r"could not download 'images\.bin\.gz'(.|\n)*(IncompleteRead|Connection broken)"):
        fetch([f], dest, [url])
    assert not dest.exists() or list(dest.rglob("*")) == []  # no partial or temp file

    flaky.routes[FILE] = ("wrong", body)  # (b) the whole file arrives, with the wrong bytes
    with pytest.raises(DataError) as info:
        fetch([f], dest, [url], hint="Place images.bin.gz in /somewhere by hand.")
    msg = str(info.value)
    wrong = hashlib.sha256(b"\x00" * len(body)).hexdigest()
    assert f"could not download 'images.bin.gz'" in msg and url + "images.bin.gz" in msg
    assert f"checksum mismatch: expected sha256 {want}, got {wrong}" in msg
    assert "Place images.bin.gz in /somewhere by hand." in msg
    assert list(dest.rglob("*")) == []

    flaky.routes[FILE] = ("ok", body)  # (c) the server is fixed: the retry lands the verified file, alone
    got = fetch([f], dest, [url])
    assert got["images.bin.gz"].read_bytes() == body
    assert [p.name for p in dest.rglob("*")] == ["images.bin.gz"]


# --- 4. a server killed mid-training ------------------------------------------------------------------------
def _train_process(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "aecore.cli", "train", "--variant", "sigmoid", "--dataset", "digits", "-k", "8",
         "--epochs", "100000", "--json"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_process_killed_mid_training_leaves_a_consistent_store(tmp_path):
    root = Path(os.environ["AECORE_RUNS"])
    earlier = saved_run("linear", 4)  # a finished run from before the crash
    before = {p.name: p.read_bytes() for p in RunStore().path(earlier).iterdir()}
    env = {**os.environ, "AECORE_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = _train_process(env)
    try:
        line = proc.stdout.readline()  # the first progress event: training is under way
        assert json.loads(line)["event"] == "progress", proc.stderr.read()
        (running,) = RunStore().list(status="running")  # alive: not marked interrupted by a reader
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)  # no handler, no cleanup: as a crashed server
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    store = RunStore()  # a restarted server opens the store anew
    rows = _store_rows(store)
    assert rows[running["id"]]["status"] == "interrupted"
    assert rows[running["id"]]["reason"] == "the process running it ended before it finished"
    assert rows[earlier]["status"] == "finished"
    assert {p.name: p.read_bytes() for p in store.path(earlier).iterdir()} == before
    assert store.load(earlier).metrics["test_sse"] > 0
    assert not store.path(running["id"]).exists()  # no folder for a run that never finished
    assert leftovers(root) == []
    with sqlite3.connect(root / "index.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    assert RunStore().list(status="interrupted")[0]["id"] == running["id"]  # and it stays so


def test_a_worker_job_killed_mid_training_fails_and_is_recorded(tmp_path, digits):
    import multiprocessing

    from dashboard.jobs import JobManager

    store = RunStore(tmp_path / "runs")
    manager = JobManager(max_jobs=1, store=store, runner="process")
    job = manager.submit(ModelConfig(variant="sigmoid", code_size=8), TrainConfig(epochs=100_000), digits)
    deadline = time.time() + 60
    while job.progress is None and time.time() < deadline:
        time.sleep(0.05)
    (child,) = [p for p in multiprocessing.active_children() if p.name == "aecore-train" and p.is_alive()]
    os.kill(child.pid, signal.SIGKILL)
    wait_all([job])
    assert job.status == "failed"
    assert "ended unexpectedly with exit code -9" in job.error and "out of memory" in job.error
    (row,) = store.list()
    assert row["status"] == "failed" and row["reason"] == job.error
    assert manager.running == 0


def test_a_half_written_run_of_a_killed_process_is_swept_on_open(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = root / f".20260101-000000-x-abcdef.{dead_pid}.{'0' * 32}.partial"
    stale.mkdir()
    (stale / "config.json").write_text('{"model": {"vari')  # cut off mid-write
    stale_file = root / f".index-note.{dead_pid}.{'1' * 32}.tmp"
    stale_file.write_bytes(b"half")
    mine = root / f".20260101-000000-y-abcdef.{os.getpid()}.{'2' * 32}.partial"  # a live writer's: kept
    mine.mkdir()
    store = RunStore(root)
    assert not stale.exists() and not stale_file.exists() and mine.exists()
    assert store.list() == []


def test_a_damaged_index_row_does_not_hide_the_other_runs(tmp_path):
    store = RunStore(tmp_path / "runs")
    a = store.start(ModelConfig(), TrainConfig())
    b = store.start(ModelConfig(), TrainConfig())
    with sqlite3.connect(store.root / "index.sqlite") as con:
        con.execute("UPDATE runs SET config = '{cut', metrics = '[1, 2' WHERE id = ?", (a,))
    con.close()
    rows = _store_rows(store)
    assert set(rows) == {a, b} and rows[a]["config"] == {} and rows[a]["metrics"] == {}


# --- 5. corrupted or truncated checkpoints ------------------------------------------------------------------
def _truncate(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])


def _wrong_shapes(p: Path) -> None:
    state = dict(load_file(str(p)))
    state = {k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in state.items()}
    save_file(state, str(p))


def _huge_config(p: Path) -> None:  # claims an input size whose model would need terabytes
    config = json.loads(p.read_text())
    config["data"]["input_dim"] = 10**9
    config["model"]["code_size"] = 100_000
    p.write_text(json.dumps(config))


CORRUPTIONS = {
    "truncated-weights": ("model.safetensors", _truncate, r"model\.safetensors is not a readable safetensors file"),
    "garbage-weights": ("model.safetensors", lambda p: p.write_bytes(os.urandom(4096)),
                        r"model\.safetensors is not a readable safetensors file"),
    "empty-weights": ("model.safetensors", lambda p: p.write_bytes(b""), r"model\.safetensors"),
    "wrong-shapes": ("model.safetensors", _wrong_shapes,
                     r"model\.safetensors does not match the model in config\.json: \S+ is \[\d+, \d+\], expected"),
    "missing-config": ("config.json", lambda p: p.unlink(), r"config\.json is missing from run folder"),
    "bad-json": ("config.json", lambda p: p.write_bytes(b'{"model": {"variant": \xff'), r"config\.json is not valid JSON"),
    "json-not-an-object": ("config.json", lambda p: p.write_text("[1, 2, 3]"), r"config\.json does not describe a model"),
    "huge-claimed-size": ("config.json", _huge_config, r"model\.safetensors does not match the model in config\.json"),
    "bad-metrics": ("metrics.json", lambda p: p.write_text("{"), r"metrics\.json is not valid JSON"),
    "truncated-history": ("history.csv", lambda p: p.write_text("step,loss\n1,0.5,9\n"), r"history\.csv"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_corrupted_run_gives_a_checkpoint_error_naming_the_file(name, capsys):
    fname, corrupt, message = CORRUPTIONS[name]
    run_id = saved_run("sigmoid", 5, epochs=1)
    store = RunStore()
    corrupt(store.path(run_id) / fname)
    with pytest.raises(CheckpointError, match=message):
        store.load(run_id)
    with pytest.raises(CheckpointError, match=message):
        load_run(store.path(run_id))
    # the CLI: exit 2, one line naming the file, no traceback
    assert cli.main(["show", str(store.path(run_id))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aecore: error: ") and fname in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert store.list()[0]["status"] == "finished"  # the index is untouched; only loading says it is broken


def test_runs_page_shows_an_error_per_corrupted_run_and_still_lists_the_others(at):
    good = saved_run("linear", 3, epochs=1)
    truncated = saved_run("linear", 4, epochs=1)
    no_config = saved_run("tied", 5, epochs=1)
    store = RunStore()
    _truncate(store.path(truncated) / "model.safetensors")
    (store.path(no_config) / "config.json").unlink()
    at.run()
    at.switch_page("../pages/runs.py").run()
    at.multiselect(key="runs_selected").set_value([good, truncated, no_config]).run()
    assert not at.exception
    assert set(at.dataframe[0].value["id"]) == {good, truncated, no_config}
    errors = [e.value for e in at.error]
    assert any(truncated in e and "model.safetensors is not a readable safetensors file" in e for e in errors)
    assert any(no_config in e and "config.json is missing" in e for e in errors)
    assert not any(good in e for e in errors)
    at.selectbox(key="runs_focus").set_value(truncated).run()  # the focus on a broken run: an error, no crash
    assert not at.exception and any(f"Run {truncated} cannot be loaded" in e.value for e in at.error)
    at.selectbox(key="runs_focus").set_value(good).run()
    at.button(key="runs_load").click().run()
    assert not at.exception and at.session_state["loaded_run_id"] == good


def test_train_page_says_what_to_lower_when_memory_ran_out(at):
    from dashboard.jobs import JobRecord

    reason = training.out_of_memory_reason(MemoryError(), ModelConfig(code_size=77), TrainConfig(batch_size=512))
    at.session_state["job"] = JobRecord(7, ModelConfig(code_size=77), TrainConfig(batch_size=512),
                                        {"name": "digits", "shape": [8, 8]}, status="failed", error=reason)
    at.run()
    assert not at.exception
    assert any("Training failed: out of memory" in e.value for e in at.error)
    hint = " ".join(i.value for i in at.info)
    assert "Lower the code size K (now 77)" in hint and "batch size (now 512)" in hint


def test_a_download_temp_file_left_by_a_killed_process_is_swept(flaky, tmp_path):
    dest = tmp_path / "cache" / "tiny"
    dest.mkdir(parents=True)
    orphan, live = dest / "tmpab12cd34", dest / "tmpzz99yy88"  # pooch's temp names
    orphan.write_bytes(b"half a file")
    live.write_bytes(b"still arriving")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    body = flaky.body
    f = RemoteFile("images.bin.gz", hashlib.sha256(body).hexdigest(), len(body))
    fetch([f], dest, [flaky.url("/files/")])
    assert sorted(p.name for p in dest.iterdir()) == ["images.bin.gz", "tmpzz99yy88"]
