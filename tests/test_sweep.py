"""aecore sweep: grids, the local process pool and a local Ray cluster (2 CPUs), the CLI.

The same seeded configurations must give the same metrics on both backends, every run must
land in the run store, and a stronger L1 penalty λ must give a sparser code.
"""
from __future__ import annotations

import json
import threading

import pytest

from aecore.config import ConfigError
from aecore.runs import RunStore
from aecore.sweep import build_grid, ray_missing, run_sweep

GRID = dict(variant="sparse", code_sizes=(8, 16), regs=(0.0, 0.3), seeds=1, epochs=6, lr=1e-2)


def grid():
    return build_grid(GRID["variant"], GRID["code_sizes"], GRID["regs"], GRID["seeds"], epochs=GRID["epochs"],
                      lr=GRID["lr"], device="cpu")


def check_outcome(out, store: RunStore) -> None:
    """Every configuration finished and was stored; the code gets sparser as λ grows."""
    assert [(r.code_size, r.reg) for r in out.results] == [(8, 0.0), (8, 0.3), (16, 0.0), (16, 0.3)]
    assert all(r.status == "finished" for r in out.results), [r.error for r in out.results]
    stored = {row["id"]: row for row in store.list()}
    assert set(stored) == {r.run_id for r in out.results}
    for r in out.results:
        row = stored[r.run_id]
        assert row["status"] == "finished"
        assert row["config"]["model"]["code_size"] == r.code_size and row["config"]["model"]["reg"] == r.reg
        assert row["metrics"]["test_sse"] == pytest.approx(r.test_sse)
        run = store.load(r.run_id)  # the weights were saved and rebuild through the registry
        assert tuple(run.model.W.shape) == (r.code_size, 64)
        assert run.model.W.detach().numpy() == pytest.approx(r.W)
    for k in (8, 16):
        plain, sparse = (next(r for r in out.results if r.code_size == k and r.reg == lam) for lam in (0.0, 0.3))
        assert sparse.mean_abs_code < 0.5 * plain.mean_abs_code, (k, plain.mean_abs_code, sparse.mean_abs_code)
        assert sparse.active_fraction < plain.active_fraction
        assert 0 < plain.test_sse < sparse.test_sse  # the penalty costs reconstruction


@pytest.fixture(scope="module")
def local_outcome(digits, tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("local-runs"))
    events = []
    out = run_sweep(grid(), digits, backend="local", workers=2, store=store, on_event=events.append)
    return out, store, events


def test_grid_is_the_product_of_the_values_and_seeds():
    points = build_grid("sparse", (8, 16, 32), (0, 1e-3), seeds=2, seed=5, epochs=3)
    assert len(points) == 12
    assert [p.index for p in points] == list(range(12))
    assert {(p.model_cfg.code_size, p.model_cfg.reg, p.train_cfg.seed) for p in points} == {
        (k, r, s) for k in (8, 16, 32) for r in (0.0, 1e-3) for s in (5, 6)}
    assert all(p.train_cfg.epochs == 3 and p.model_cfg.variant == "sparse" for p in points)


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="sparse", code_sizes=(), regs=(0,)), r"code_size: the list is empty"),
    (dict(variant="sparse", code_sizes=(8,), regs=()), r"reg: the list is empty"),
    (dict(variant="sparse", code_sizes=(0, 8), regs=(0,)), r"code_size=0 must be >= 1"),
    (dict(variant="nope", code_sizes=(8,), regs=(0,)), r"nope"),
    (dict(variant="sparse", code_sizes=(8, 8), regs=(0,)), r"code_size: 8 is listed twice"),
    (dict(variant="sparse", code_sizes=(8,), regs=(-1,)), r"reg=-1 must be >= 0"),
    (dict(variant="linear", code_sizes=(8,), regs=(0.1,)), r"reg=0.1 is not used by variant 'linear'"),
    (dict(variant="sparse", code_sizes=(8,), regs=(0,), seeds=0), r"seeds=0 must be >= 1"),
])
def test_bad_grids_are_refused_before_anything_trains(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build_grid(**kwargs)


def test_unknown_backend_is_refused(digits, tmp_path):
    with pytest.raises(ConfigError, match=r"backend='spark' is not known; choose one of local, ray"):
        run_sweep(grid(), digits, backend="spark", store=RunStore(tmp_path))


def test_local_backend_stores_every_run_and_sparsity_falls_with_lambda(local_outcome):
    out, store, events = local_outcome
    assert out.backend == "local" and out.workers == 2 and out.seconds > 0
    check_outcome(out, store)
    finished = [e for e in events if e["event"] == "finished"]
    assert sorted(e["index"] for e in finished) == [0, 1, 2, 3]
    progress = [e for e in events if e["event"] == "progress"]
    assert {e["index"] for e in progress} == {0, 1, 2, 3}  # every run reported its last epoch at least
    assert all(e["epochs"] == 6 and 0 < e["epoch"] <= 6 for e in progress)


def test_a_stopped_sweep_marks_its_runs_stopped(digits, tmp_path):
    store = RunStore(tmp_path)
    stop = threading.Event()
    points = build_grid("sparse", (8, 16), (0.0,), epochs=5000, device="cpu")

    def on_event(ev):
        if ev["event"] == "progress":
            stop.set()

    stop_timer = threading.Timer(3.0, stop.set)  # in case the first progress event is slow to come
    stop_timer.start()
    try:
        out = run_sweep(points, digits, backend="local", workers=1, store=store, on_event=on_event, stop=stop)
    finally:
        stop_timer.cancel()
    assert [r.status for r in out.results] == ["stopped", "stopped"]
    assert {row["status"] for row in store.list()} == {"stopped"}


@pytest.mark.skipif(ray_missing() is not None, reason=f"the Ray backend needs the cluster extra: {ray_missing()}")
def test_ray_backend_matches_the_local_backend(digits, tmp_path, local_outcome):
    import ray

    store = RunStore(tmp_path)
    events = []
    if ray.is_initialized():  # left by another test in this process: start a fresh 2-CPU cluster
        ray.shutdown()
    out = run_sweep(grid(), digits, backend="ray", workers=2, store=store, on_event=events.append)
    assert not ray.is_initialized()  # the local cluster it started is shut down again
    assert out.backend == "ray" and out.workers == 2
    check_outcome(out, store)
    assert {e["index"] for e in events if e["event"] == "progress"} == {0, 1, 2, 3}
    local = local_outcome[0]
    for a, b in zip(local.results, out.results):  # seeded training: the same numbers on either backend
        assert (a.code_size, a.reg, a.seed) == (b.code_size, b.reg, b.seed)
        for name in ("test_sse", "test_mse", "mean_abs_code", "active_fraction"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-4, abs=1e-6), name
        assert b.W == pytest.approx(a.W, rel=1e-3, abs=1e-5)


def test_ray_backend_without_ray_says_how_to_install(digits, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r'needs the cluster extra: pip install -e "\.\[cluster\]"'):
        run_sweep(grid(), digits, backend="ray", store=RunStore(tmp_path))


def test_cli_sweep_json_lists_every_run(capsys):
    from aecore.cli import main

    rc = main(["sweep", "--variant", "sparse", "--code-size", "4,8", "--reg", "0,0.3", "--epochs", "2",
               "--lr", "1e-2", "--workers", "2", "--device", "cpu", "--json"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 0
    last = lines[-1]
    assert last["event"] == "sweep" and last["backend"] == "local" and last["seconds"] > 0
    assert [(r["code_size"], r["reg"]) for r in last["results"]] == [(4, 0.0), (4, 0.3), (8, 0.0), (8, 0.3)]
    ids = {r["run_id"] for r in last["results"]}
    assert ids == {row["id"] for row in RunStore().list(status="finished")}
    assert {x["event"] for x in lines[:-1]} <= {"progress", "finished"}


def test_cli_sweep_prints_a_table(capsys):
    from aecore.cli import main

    rc = main(["sweep", "--variant", "sparse", "--code-size", "4", "--reg", "0,0.3", "--epochs", "2",
               "--workers", "1", "--device", "cpu", "--no-save"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].split()[:4] == ["variant", "K", "λ", "seed"]
    rows = [line.split() for line in out[2:4]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("sparse", "4", "0"), ("sparse", "4", "0.3")]
    assert out[-1].startswith("2 configurations on the local backend (1 workers)")
    assert RunStore().list() == []


@pytest.mark.parametrize("argv, message", [
    (["--code-size", ""], "aecore: error: code_size: the list is empty"),
    (["--code-size", "0"], "aecore: error: code_size=0 must be >= 1"),
    (["--code-size", "8", "--variant", "nope"], "argument --variant: invalid choice: 'nope'"),
    (["--code-size", "8", "--address", "auto"], "--address auto is only used by --backend ray"),
])
def test_cli_bad_grids_exit_2_with_one_line(capsys, argv, message):
    from aecore.cli import main

    args = ["sweep", "--variant", "sparse", *argv] if "--variant" not in argv else ["sweep", *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.skipif(ray_missing() is not None, reason=f"the Ray backend needs the cluster extra: {ray_missing()}")
def test_stop_cancels_the_ray_tasks(digits, tmp_path):
    import ray

    if ray.is_initialized():
        ray.shutdown()
    store = RunStore(tmp_path)
    stop = threading.Event()
    points = build_grid("sparse", (8, 16, 32), (0.0,), epochs=5000, device="cpu")
    on_event = lambda ev: stop.set() if ev["event"] == "progress" else None  # noqa: E731
    out = run_sweep(points, digits, backend="ray", workers=2, store=store, on_event=on_event, stop=stop)
    assert not ray.is_initialized()
    assert [r.status for r in out.results] == ["stopped"] * 3
    assert all("stopped before this run finished" in r.error for r in out.results)
    assert {row["status"] for row in store.list()} == {"stopped"}


def test_ctrl_c_to_the_terminal_stops_a_cli_sweep_and_saves_what_it_trained(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it: the worker keeps going
    until the parent's stop reaches it, the running configuration is saved as stopped, the queued
    one never starts, and the command exits with 130."""
    from interrupt import interrupt

    code, lines, err = interrupt(["sweep", "--variant", "sigmoid", "--code-size", "8,16", "--reg", "0",
                                  "--epochs", "100000", "--workers", "1", "--device", "cpu", "--json"],
                                 ready=lambda line: line.get("event") == "progress",
                                 env={"AECORE_RUNS": str(tmp_path / "runs")}, group=True)
    assert code == 130, err
    assert "aecore sweep: SIGINT: stopping the sweep" in err and "Traceback" not in err
    assert lines[0]["index"] == 0
    done = [x for x in lines if x["event"] == "finished"]
    assert len(done) == 1 and done[0]["status"] == "stopped" and done[0]["code_size"] == 8
    assert done[0]["test_sse"] == done[0]["test_sse"] and 0 < done[0]["test_sse"] < 1e6  # a number, not NaN
    last = lines[-1]
    assert last["event"] == "sweep" and [r["status"] for r in last["results"]] == ["stopped", "stopped"]
    assert last["results"][1]["error"] == "the sweep was stopped before this run finished"
    rows = {r["id"]: r["status"] for r in RunStore(tmp_path / "runs").list()}
    assert rows == {r["run_id"]: "stopped" for r in last["results"]}
