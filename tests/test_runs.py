"""The run store and the checkpoint files: index, interrupted runs, safe names, corrupted folders."""
from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aecore.checkpoint import CheckpointError, load_run, save_run
from aecore.config import ModelConfig, TrainConfig
from aecore.models import build_model
from aecore.runs import RunStore, runs_root, sanitize_name

MC = ModelConfig(variant="sigmoid", code_size=4)
TC = TrainConfig(epochs=2, seed=1)
D = 64


@pytest.fixture
def model():
    return build_model(MC, D, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def run_dir(tmp_path, model):
    return save_run(tmp_path / "run", MC, TC, model, {"test_mse": 0.25, "steps": 10},
                    [{"step": 1, "loss": 3.0, "recon": 3.0}, {"step": 2, "loss": 2.5, "recon": 2.5}])


def _set_pid(root: Path, run_id: str, pid: int | None) -> None:
    with sqlite3.connect(root / "index.sqlite") as con:
        con.execute("UPDATE runs SET pid = ? WHERE id = ?", (pid, run_id))
    con.close()


# --- the store ------------------------------------------------------------------------------------
def test_default_root_comes_from_the_environment(tmp_path):
    assert runs_root() == tmp_path / "aecore-runs"  # set by the autouse fixture in conftest.py
    store = RunStore()
    assert store.root == tmp_path / "aecore-runs" and (store.root / "index.sqlite").exists()


def test_start_finish_list_load(tmp_path, model):
    store = RunStore(tmp_path / "runs")
    run_id = store.start(MC, TC, name="my first run")
    assert "my-first-run" in run_id
    [row] = store.list()
    assert row["id"] == run_id and row["status"] == "running"
    assert row["variant"] == "sigmoid" and row["code_size"] == 4 and row["dataset"] == "digits"
    assert ModelConfig.from_dict(row["config"]["model"]) == MC
    assert TrainConfig.from_dict(row["config"]["train"]) == TC

    path = store.finish(run_id, MC, TC, model, {"test_mse": 0.125}, [{"step": 1, "loss": 1.0}], {"name": "digits"})
    assert path == store.root / run_id and path.is_dir()
    [row] = store.list()
    assert row["status"] == "finished" and row["metrics"] == {"test_mse": 0.125} and row["finished"] >= row["created"]
    assert store.list(status="running") == []
    assert [r["id"] for r in store.list(status="finished")] == [run_id]

    run = store.load(run_id)
    assert run.model_cfg == MC and run.train_cfg == TC and run.metrics == {"test_mse": 0.125}
    assert run.data_info == {"name": "digits", "input_dim": D}
    x = torch.rand(5, D)
    model.eval()
    with torch.no_grad():
        assert torch.equal(run.model(x).recon, model(x).recon)

    # a second store on the same folder sees the same index
    assert [r["id"] for r in RunStore(tmp_path / "runs").list()] == [run_id]


def test_list_is_newest_first(tmp_path):
    store = RunStore(tmp_path)
    ids = [store.start(MC, TC, name=f"r{i}") for i in range(3)]
    assert [r["id"] for r in store.list()] == ids[::-1]


def test_fail_records_the_reason(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.start(MC, TC)
    store.fail(run_id, "diverged at step 3 (term 'recon' is not finite)")
    [row] = store.list(status="failed")
    assert row["id"] == run_id and row["reason"] == "diverged at step 3 (term 'recon' is not finite)"
    assert row["finished"] is not None
    assert not (store.root / run_id).exists()


def test_a_saved_run_keeps_its_status_when_a_failure_comes_after_it(tmp_path, model):
    # e.g. a second Ctrl-C while `aecore train` prints the metrics of the run it has just saved
    store = RunStore(tmp_path)
    run_id = store.start(MC, TC)
    store.finish(run_id, MC, TC, model, {"test_mse": 0.5}, status="stopped")
    store.fail(run_id, "interrupted (Ctrl-C) before the run was saved", status="interrupted")
    [row] = store.list()
    assert (row["status"], row["reason"], row["metrics"]) == ("stopped", None, {"test_mse": 0.5})
    assert store.load(run_id).metrics == {"test_mse": 0.5}


def test_running_row_of_a_dead_process_is_marked_interrupted(tmp_path):
    # a real process starts a run and exits without finishing it (as a killed server would)
    code = ("import sys; from aecore.runs import RunStore; from aecore.config import ModelConfig, TrainConfig; "
            "print(RunStore(sys.argv[1]).start(ModelConfig(), TrainConfig(), name='dead'))")
    dead = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          check=True).stdout.strip()
    store = RunStore(tmp_path)
    alive_other = store.start(MC, TC, name="other")
    mine = store.start(MC, TC, name="mine")
    _set_pid(tmp_path, alive_other, os.getppid())  # another process that is still running
    rows = {r["id"]: r for r in RunStore(tmp_path).list()}
    assert rows[dead]["status"] == "interrupted"
    assert "ended before it finished" in rows[dead]["reason"]
    assert rows[alive_other]["status"] == "running"
    assert rows[mine]["status"] == "running"


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b\\c", "..", "/abs/path", "x" * 200, "", "  ", "ü-ñ"])
def test_sanitize_name_gives_a_safe_folder_name(name):
    safe = sanitize_name(name)
    assert safe and len(safe) <= 48
    assert "/" not in safe and "\\" not in safe and ".." not in safe and "." not in safe
    assert safe not in (".", "..")


def test_sanitize_name_keeps_plain_names():
    assert sanitize_name("sparse-K32_v2") == "sparse-K32_v2"
    assert sanitize_name("../../etc/passwd") == "etc-passwd"
    assert sanitize_name("") == "run"


def test_run_names_cannot_escape_the_root(tmp_path, model):
    store = RunStore(tmp_path / "runs")
    run_id = store.start(MC, TC, name="../../escape")
    path = store.finish(run_id, MC, TC, model, {})
    assert path.resolve().parent == (tmp_path / "runs").resolve()
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(CheckpointError, match="is not a valid run id"):
            store.path(bad)


# --- checkpoint files -------------------------------------------------------------------------------
def test_save_never_overwrites_and_leaves_no_partial_folder(tmp_path, model, run_dir):
    with pytest.raises(FileExistsError, match="already exists"):
        save_run(run_dir, MC, TC, model, {})
    with pytest.raises(TypeError):
        save_run(tmp_path / "bad", MC, TC, model, {"oops": object()})  # metrics that cannot be written
    assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no hidden .partial folder left


def test_loaded_history_and_metrics(run_dir):
    run = load_run(run_dir)
    assert run.metrics == {"test_mse": 0.25, "steps": 10}
    assert run.history == [{"step": 1.0, "loss": 3.0, "recon": 3.0}, {"step": 2.0, "loss": 2.5, "recon": 2.5}]
    assert run.path == run_dir


def test_truncated_weights_raise_naming_the_file(run_dir):
    p = run_dir / "model.safetensors"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors file"):
        load_run(run_dir)
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_run(run_dir)


@pytest.mark.parametrize("fname", ["config.json", "metrics.json"])
def test_garbage_json_raises_naming_the_file(run_dir, fname):
    (run_dir / fname).write_bytes(b"{not json\xff")
    with pytest.raises(CheckpointError, match=rf"{fname.replace('.', '[.]')} is not valid JSON"):
        load_run(run_dir)


@pytest.mark.parametrize("content", [b"step,loss\n1,abc\n", b"step,loss\n1,2,3\n", b"step,loss\n\xff\xfe,1\n"],
                         ids=["text-cell", "extra-cell", "not-utf8"])
def test_garbage_history_raises_naming_the_file(run_dir, content):
    (run_dir / "history.csv").write_bytes(content)
    with pytest.raises(CheckpointError, match=r"history\.csv"):
        load_run(run_dir)


@pytest.mark.parametrize("fname", ["config.json", "model.safetensors"])
def test_missing_file_raises_naming_it(run_dir, fname):
    (run_dir / fname).unlink()
    with pytest.raises(CheckpointError, match=rf"{fname.replace('.', '[.]')} is missing from run folder"):
        load_run(run_dir)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nowhere")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("model"), r"config\.json does not describe a model"),
    (lambda c: c["model"].update(code_sise=3), r"config\.json does not describe a model: unknown ModelConfig key"),
    (lambda c: c["model"].update(code_size=0), r"config\.json does not describe a model: code_size=0 must be >= 1"),
    (lambda c: c["model"].update(variant="nope"), r"config\.json does not describe a model: variant='nope'"),
    (lambda c: c["data"].pop("input_dim"), r"config\.json does not describe a model"),
])
def test_config_that_does_not_describe_a_model(run_dir, edit, message):
    p = run_dir / "config.json"
    config = json.loads(p.read_text())
    edit(config)
    p.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_run(run_dir)


def _rewrite_weights(run_dir, change):
    p = run_dir / "model.safetensors"
    state = dict(load_file(str(p)))
    change(state)
    save_file(state, str(p))


@pytest.mark.parametrize("change", [
    lambda s: s.update(extra=torch.zeros(3)),                       # a tensor the model does not have
    lambda s: s.pop(next(iter(s))),                                 # a missing tensor
    lambda s: s.update({k: torch.zeros(7, 7) for k in list(s)[:1]}),  # a tensor of the wrong shape
], ids=["extra", "missing", "wrong-shape"])
def test_weights_that_do_not_match_the_model_raise(run_dir, change):
    _rewrite_weights(run_dir, change)
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the model in config\.json"):
        load_run(run_dir)


def test_weights_for_another_input_size_raise(run_dir):
    p = run_dir / "config.json"
    config = json.loads(p.read_text())
    config["data"]["input_dim"] = 100
    p.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the model in config\.json"):
        load_run(run_dir)


class _Evil:
    """Unpickling this creates the folder ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_renamed_to_safetensors_is_refused_without_running_it(run_dir, tmp_path):
    # the payload has teeth: unpickling it does run code
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Evil(probe)))
    assert probe.exists()

    marker = tmp_path / "pwned"
    for payload in (pickle.dumps({"enc_w.0": _Evil(marker)}), _torch_save_bytes(_Evil(marker), tmp_path)):
        (run_dir / "model.safetensors").write_bytes(payload)
        with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors file"):
            load_run(run_dir)
        assert not marker.exists()


def _torch_save_bytes(obj, tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"state": obj}, p)
    return p.read_bytes()


def test_load_on_a_torch_device_object(run_dir):
    run = load_run(run_dir, device=torch.device("cpu"))
    assert next(run.model.parameters()).device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_a_missing_device_is_not_reported_as_a_corrupted_run(run_dir):
    """Loading a healthy run onto a device this machine lacks must say so, not 'the run is corrupted'
    (a user told that deletes a good run)."""
    with pytest.raises(ValueError) as info:
        load_run(run_dir, device="cuda")
    message = str(info.value)
    assert "corrupted" not in message and "not a readable safetensors file" not in message
    assert "cuda" in message.lower()
    assert load_run(run_dir).model is not None  # the folder is fine


def test_an_index_from_an_older_version_is_upgraded_in_place(tmp_path):
    import sqlite3

    from aecore.runs import RunStore

    con = sqlite3.connect(tmp_path / "index.sqlite")  # the first schema: no 'owner' column
    con.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, created REAL, finished REAL, status TEXT, "
                "pid INTEGER, variant TEXT, dataset TEXT, code_size INTEGER, config TEXT, metrics TEXT, reason TEXT)")
    con.execute("INSERT INTO runs (id, name, created, status, pid, variant, dataset, code_size, config) "
                "VALUES ('old-run', 'old', 1.0, 'running', 999999999, 'tied', 'digits', 2, '{}')")
    con.commit()
    con.close()
    store = RunStore(tmp_path)
    rows = store.list()
    assert [r["id"] for r in rows] == ["old-run"]
    assert rows[0]["status"] == "interrupted"  # its process is long gone
    from aecore.config import ModelConfig, TrainConfig

    assert store.start(ModelConfig(variant="tied", code_size=2), TrainConfig())  # new rows work too
